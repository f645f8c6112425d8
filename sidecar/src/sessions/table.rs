//! The session table: live sessions in memory, by `session_id`.
//!
//! Each session is an `Arc<Session>` in a [`DashMap`], so its keys (boxed inside
//! [`SessionKeys`]) never move while it lives and are wiped when the last reference drops: the
//! session ends, expires or is swept. The replay window and the count of decrypted requests sit
//! behind the session's own mutex, held only for a check or an update, never across an await.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use dashmap::DashMap;
use rand_core::{OsRng, RngCore};

use identity_protocol::{Error, ReplayWindow, SessionKeys, b64};

/// A fresh `session_id`: 32 random bytes, base64url (43 visible ASCII characters).
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    b64::encode(&bytes)
}

/// One live session.
pub struct Session {
    keys: SessionKeys,
    subject: Option<String>,
    deadline: Instant,
    state: Mutex<SessionState>,
}

#[derive(Debug, Default)]
struct SessionState {
    window: ReplayWindow,
    decrypted: u64,
}

/// Why a request may not go on, decided under the session's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `409 replayed_request`.
    Replayed,
    /// The session has carried its limit of requests: `401 invalid_session`.
    Exhausted,
}

impl Session {
    pub fn new(keys: SessionKeys, subject: Option<String>, deadline: Instant) -> Self {
        Self {
            keys,
            subject,
            deadline,
            state: Mutex::new(SessionState::default()),
        }
    }

    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// The bound subject of an authenticated session; `None` for an anonymous one.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    fn state(&self) -> MutexGuard<'_, SessionState> {
        // Nothing panics while the lock is held; a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Before decrypting: would `seq` be accepted, and may the session carry one more request?
    /// Consumes nothing ("one that fails earlier consumes nothing").
    pub fn check(&self, seq: u64, limit: u64) -> Result<(), Refusal> {
        let state = self.state();
        if state.decrypted >= limit {
            return Err(Refusal::Exhausted);
        }
        state
            .window
            .check(seq)
            .map_err(|_: Error| Refusal::Replayed)
    }

    /// After decrypting: consumes `seq` and counts the request. Of two requests with one `seq`
    /// that both decrypted, only the first here goes on.
    pub fn accept(&self, seq: u64, limit: u64) -> Result<(), Refusal> {
        let mut state = self.state();
        if state.decrypted >= limit {
            return Err(Refusal::Exhausted);
        }
        state
            .window
            .accept(seq)
            .map_err(|_: Error| Refusal::Replayed)?;
        state.decrypted += 1;
        Ok(())
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("authenticated", &self.subject.is_some())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// The table is full: `429`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// Live sessions, capped at `max`.
pub struct SessionTable {
    map: DashMap<String, Arc<Session>>,
    /// Live sessions plus reservations; kept equal to `map.len()` between operations.
    live: AtomicUsize,
    max: usize,
}

impl SessionTable {
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
    pub fn reserve(&self) -> Result<Reservation<'_>, TableFull> {
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
    pub fn get(&self, session_id: &str, now: Instant) -> Option<Arc<Session>> {
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

impl fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("live", &self.len())
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// A reserved place in the table.
#[derive(Debug)]
pub struct Reservation<'a> {
    table: &'a SessionTable,
    used: bool,
}

impl Reservation<'_> {
    /// Inserts the session in the reserved place. Session ids are 256 random bits: a collision
    /// does not happen, but would replace the older session (and keep the count right).
    pub fn insert(mut self, session_id: String, session: Session) {
        self.used = true;
        if self
            .table
            .map
            .insert(session_id, Arc::new(session))
            .is_some()
        {
            self.table.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.table.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use identity_protocol::keys::Okm;

    fn session(deadline: Instant) -> Session {
        let okm = Okm::derive(&[7; 32], b"salt", b"info");
        Session::new(SessionKeys::from_okm(&okm), None, deadline)
    }

    #[test]
    fn check_consumes_nothing_accept_consumes_once_and_counts() {
        let s = session(Instant::now() + Duration::from_secs(60));
        assert_eq!(s.check(5, 3), Ok(()));
        assert_eq!(s.check(5, 3), Ok(()));
        assert_eq!(s.accept(5, 3), Ok(()));
        assert_eq!(s.accept(5, 3), Err(Refusal::Replayed));
        assert_eq!(s.check(5, 3), Err(Refusal::Replayed));
        assert_eq!(s.accept(4, 3), Ok(()));
        assert_eq!(s.accept(9, 3), Ok(()));
        // Three requests decrypted: the session is exhausted, whatever the seq.
        assert_eq!(s.check(10, 3), Err(Refusal::Exhausted));
        assert_eq!(s.accept(10, 3), Err(Refusal::Exhausted));
    }

    #[test]
    fn table_cap_reservations_expiry_and_sweep() {
        let table = SessionTable::new(2);
        let now = Instant::now();
        let first = table.reserve().unwrap();
        let second = table.reserve().unwrap();
        assert_eq!(table.reserve().unwrap_err(), TableFull);
        drop(second); // an unused reservation gives its place back
        first.insert("a".into(), session(now + Duration::from_secs(60)));
        table
            .reserve()
            .unwrap()
            .insert("b".into(), session(now + Duration::from_millis(1)));
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
