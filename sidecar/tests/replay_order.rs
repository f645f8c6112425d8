//! The replay window as the sidecar's memory store drives it (PROTOCOL.md section 3), through
//! `sessions::LocalSession`: `check` before decrypting (consumes nothing), `accept` after,
//! requests that fail decryption in between, two requests with one seq racing, and the
//! per-session request limit. (The Redis store's script: `redis_store.rs`.) The oracle is the protocol's own `ReplayWindow`, which
//! `protocol/tests/replay_window.rs` checks against a model that remembers every seq.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use std::time::{Duration, Instant};

use identity_protocol::keys::Okm;
use identity_protocol::{ReplayWindow, SessionKeys};
use identity_sidecar::sessions::{LocalSession, Refusal};
use proptest::prelude::*;

/// What happens to one request on the sidecar, after `Envelope::from_json`.
#[derive(Debug, Clone)]
enum Step {
    /// Checked, decrypted, accepted.
    Decrypts(u64),
    /// Checked, then GCM refused it: consumes nothing.
    FailsDecryption(u64),
    /// Two requests with one seq, both checked before either is accepted (both decrypt).
    Race(u64),
}

fn session(keys_seed: u8) -> LocalSession {
    let okm = Okm::derive(&[keys_seed; 32], b"salt", b"info");
    LocalSession::new(
        SessionKeys::from_okm(&okm),
        None,
        Instant::now() + Duration::from_secs(600),
    )
}

/// Seqs within a few windows of each other, in any order.
fn seqs() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(1u64..4_000, 1..400)
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    seqs().prop_flat_map(|seqs| {
        let n = seqs.len();
        (Just(seqs), prop::collection::vec(0u8..10, n)).prop_map(|(seqs, kinds)| {
            seqs.into_iter()
                .zip(kinds)
                .map(|(seq, kind)| match kind {
                    0..=5 => Step::Decrypts(seq),
                    6..=8 => Step::FailsDecryption(seq),
                    _ => Step::Race(seq),
                })
                .collect()
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The sidecar's order: check (consumes nothing), decrypt, accept. Requests that fail to
    /// decrypt consume nothing; of two racing requests with one seq exactly one goes on; the count
    /// of decrypted requests is exact and the limit holds.
    #[test]
    fn the_sidecar_order_agrees_with_the_window(steps in steps(), limit in 1u64..300) {
        let session = session(1);
        let mut window = ReplayWindow::new();
        let mut decrypted = 0u64;
        for step in steps {
            match step {
                Step::Decrypts(seq) => {
                    let expected = if decrypted >= limit {
                        Err(Refusal::Exhausted)
                    } else if window.check(seq).is_ok() {
                        Ok(())
                    } else {
                        Err(Refusal::Replayed)
                    };
                    prop_assert_eq!(session.check(seq, limit), expected);
                    prop_assert_eq!(session.accept(seq, limit), expected);
                    if expected.is_ok() {
                        prop_assert!(window.accept(seq).is_ok());
                        decrypted += 1;
                    }
                }
                Step::FailsDecryption(seq) => {
                    let _ = session.check(seq, limit);
                    // Nothing consumed: a later check answers as before.
                    let again = session.check(seq, limit);
                    prop_assert_eq!(again.is_ok(), decrypted < limit && window.check(seq).is_ok());
                }
                Step::Race(seq) => {
                    let first = session.check(seq, limit);
                    let second = session.check(seq, limit);
                    prop_assert_eq!(first, second);
                    if first.is_ok() {
                        prop_assert_eq!(session.accept(seq, limit), Ok(()));
                        prop_assert!(window.accept(seq).is_ok());
                        decrypted += 1;
                        let loser = session.accept(seq, limit);
                        prop_assert!(loser.is_err(), "seq {} accepted twice", seq);
                    }
                }
            }
        }
        prop_assert!(decrypted <= limit);
    }
}
