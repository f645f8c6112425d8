//! A table of sessions in this process's memory, by `session_id`, capped: the memory store's
//! live sessions, and the Redis store's cache of unsealed keys.
//!
//! Each entry is an `Arc` in a [`DashMap`], so the keys inside (boxed in `SessionKeys`) never
//! move while it lives and are wiped when the last reference drops: the session ends, expires or
//! is swept.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use dashmap::DashMap;

/// What the table needs of an entry: when it expires.
pub trait Expires {
    fn deadline(&self) -> Instant;

    fn is_expired(&self, now: Instant) -> bool {
        now >= self.deadline()
    }
}

/// The table is full: `429` (memory store), or the session is not cached (Redis store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// Sessions, capped at `max`.
pub struct SessionTable<S> {
    map: DashMap<String, Arc<S>>,
    /// Live sessions plus reservations; kept equal to `map.len()` between operations.
    live: AtomicUsize,
    max: usize,
}

impl<S: Expires> SessionTable<S> {
    pub fn new(max: usize) -> Self {
        Self {
            map: DashMap::new(),
            live: AtomicUsize::new(0),
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A place for one more session, or [`TableFull`]. Taken before the (expensive) key
    /// exchange; returned by [`Reservation`]'s drop unless the session is inserted.
    pub fn reserve(&self) -> Result<Reservation<'_, S>, TableFull> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map_err(|_| TableFull)?;
        Ok(Reservation {
            table: self,
            used: false,
        })
    }

    /// A live session: `None` when unknown, ended or expired (an expired one is dropped now).
    pub fn get(&self, session_id: &str, now: Instant) -> Option<Arc<S>> {
        let session = self.map.get(session_id).map(|s| Arc::clone(s.value()))?;
        if session.is_expired(now) {
            self.remove(session_id);
            return None;
        }
        Some(session)
    }

    /// Ends a session. Its keys are wiped once in-flight requests holding it finish.
    pub fn remove(&self, session_id: &str) -> bool {
        if self.map.remove(session_id).is_some() {
            self.live.fetch_sub(1, Ordering::AcqRel);
            true
        } else {
            false
        }
    }

    /// Drops every expired session; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut dropped = 0;
        self.map.retain(|_, session| {
            let keep = !session.is_expired(now);
            if !keep {
                dropped += 1;
            }
            keep
        });
        self.live.fetch_sub(dropped, Ordering::AcqRel);
        dropped
    }
}

impl<S> fmt::Debug for SessionTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("live", &self.live.load(Ordering::Relaxed))
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// A reserved place in the table.
pub struct Reservation<'a, S> {
    table: &'a SessionTable<S>,
    used: bool,
}

impl<S> Reservation<'_, S> {
    /// Inserts the session in the reserved place. Session ids are 256 random bits: a collision
    /// does not happen, but would replace the older session (and keep the count right).
    pub fn insert(mut self, session_id: String, session: S) -> Arc<S> {
        self.used = true;
        let session = Arc::new(session);
        if self
            .table
            .map
            .insert(session_id, Arc::clone(&session))
            .is_some()
        {
            self.table.live.fetch_sub(1, Ordering::AcqRel);
        }
        session
    }
}

impl<S> fmt::Debug for Reservation<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

impl<S> Drop for Reservation<'_, S> {
    fn drop(&mut self) {
        if !self.used {
            self.table.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic here is a failed test

    use std::time::Duration;

    use super::*;

    struct Entry(Instant);

    impl Expires for Entry {
        fn deadline(&self) -> Instant {
            self.0
        }
    }

    #[test]
    fn table_cap_reservations_expiry_and_sweep() {
        let table = SessionTable::new(2);
        let now = Instant::now();
        let first = table.reserve().unwrap();
        let second = table.reserve().unwrap();
        assert_eq!(table.reserve().unwrap_err(), TableFull);
        drop(second); // an unused reservation gives its place back
        first.insert("a".into(), Entry(now + Duration::from_secs(60)));
        table
            .reserve()
            .unwrap()
            .insert("b".into(), Entry(now + Duration::from_millis(1)));
        assert_eq!(table.len(), 2);
        assert!(table.reserve().is_err());
        let later = now + Duration::from_secs(1);
        assert!(table.get("a", later).is_some());
        assert_eq!(table.sweep(later), 1);
        assert_eq!(table.len(), 1);
        assert!(table.get("b", later).is_none());
        // An expired session is dropped on lookup too.
        assert!(table.get("a", now + Duration::from_secs(61)).is_none());
        assert!(table.is_empty());
        assert!(!table.remove("a"));
    }
}
