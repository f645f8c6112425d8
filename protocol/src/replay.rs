//! Section 3: the replay window.
//!
//! "With `H` the highest `seq` accepted so far on the session, the sidecar accepts a `seq` above
//! `H` (gaps allowed) or an unseen one in `H-1023 .. H`, and refuses a seen one or one at most
//! `H-1024` with `409 replayed_request`. A request consumes its `seq` once it has decrypted
//! successfully, whatever happens after; one that fails earlier consumes nothing."
//!
//! So the sidecar calls [`ReplayWindow::check`] before decrypting (a cheap refusal) and
//! [`ReplayWindow::accept`] after, under the session's lock: of two requests with one `seq` that
//! both decrypt, only the first to `accept` goes on.

use crate::error::Error;

/// How many `seq` values at and below `H` the window remembers.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Bit `i` of `seen` stands for `seq = H - i`; bit 0 is `H` itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    seen: [u64; WORDS],
}

impl ReplayWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// `H`, the highest `seq` accepted so far (0 before the first).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Would `seq` be accepted now? Consumes nothing.
    pub fn check(&self, seq: u64) -> Result<(), Error> {
        if seq > self.highest {
            return Ok(());
        }
        let age = self.highest - seq;
        if age >= WINDOW || self.is_seen(age) {
            return Err(Error::Replayed);
        }
        Ok(())
    }

    /// Checks `seq` and, if acceptable, records it as consumed.
    pub fn accept(&mut self, seq: u64) -> Result<(), Error> {
        self.check(seq)?;
        if seq > self.highest {
            self.slide(seq - self.highest);
            self.highest = seq;
            self.mark(0);
        } else {
            self.mark(self.highest - seq);
        }
        Ok(())
    }

    fn is_seen(&self, age: u64) -> bool {
        let (word, bit) = ((age / 64) as usize, age % 64);
        self.seen[word] & (1 << bit) != 0
    }

    fn mark(&mut self, age: u64) {
        let (word, bit) = ((age / 64) as usize, age % 64);
        self.seen[word] |= 1 << bit;
    }

    /// H grows by `by`: every remembered seq gets `by` older, and those older than the window
    /// fall off.
    fn slide(&mut self, by: u64) {
        if by >= WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |j| self.seen[j] << bits);
            let low = match (from.and_then(|j| j.checked_sub(1)), bits) {
                (Some(j), 1..) => self.seen[j] >> (64 - bits),
                _ => 0,
            };
            self.seen[i] = high | low;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_in_order_and_refuses_repeats() {
        let mut w = ReplayWindow::new();
        for seq in 1..=3000 {
            assert_eq!(w.accept(seq), Ok(()));
            assert_eq!(w.accept(seq), Err(Error::Replayed));
        }
        assert_eq!(w.highest(), 3000);
    }

    #[test]
    fn window_edges() {
        let mut w = ReplayWindow::new();
        w.accept(5000).unwrap();
        // H-1023 is the oldest unseen seq still accepted; H-1024 is refused.
        assert_eq!(w.check(5000 - 1023), Ok(()));
        assert_eq!(w.check(5000 - 1024), Err(Error::Replayed));
        assert_eq!(w.accept(5000 - 1023), Ok(()));
        assert_eq!(w.accept(5000 - 1023), Err(Error::Replayed));
        // Gaps are allowed, and a slide by less than the window keeps what was seen.
        w.accept(5000 + 100).unwrap();
        assert_eq!(w.check(5000), Err(Error::Replayed));
        assert_eq!(w.check(5001), Ok(()));
        assert_eq!(w.check(5100 - 1024), Err(Error::Replayed));
        // A slide by more than the window forgets everything below.
        w.accept(100_000).unwrap();
        assert_eq!(w.check(100_000 - 1023), Ok(()));
        assert_eq!(w.check(5100), Err(Error::Replayed));
    }

    #[test]
    fn check_consumes_nothing() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(7), Ok(()));
        assert_eq!(w.check(7), Ok(()));
        assert_eq!(w.highest(), 0);
        w.accept(7).unwrap();
        assert_eq!(w.check(7), Err(Error::Replayed));
    }
}
