//! The memory store (the default): each session, its replay window and its request count live
//! in this process only. The window and the count sit behind the session's own mutex, held only
//! for a check or an update, never across an await.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use identity_protocol::{Error, ReplayWindow, SessionKeys};

use super::table::Expires;
use super::{Refusal, Session};

/// One live session of the memory store.
pub struct LocalSession {
    session: Session,
    state: Mutex<SessionState>,
}

#[derive(Debug, Default)]
struct SessionState {
    window: ReplayWindow,
    decrypted: u64,
}

impl LocalSession {
    pub fn new(keys: SessionKeys, subject: Option<String>, deadline: Instant) -> Self {
        Self::from(Session::new(keys, subject, deadline))
    }

    pub fn session(&self) -> &Session {
        &self.session
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

impl From<Session> for LocalSession {
    fn from(session: Session) -> Self {
        Self {
            session,
            state: Mutex::new(SessionState::default()),
        }
    }
}

impl Expires for LocalSession {
    fn deadline(&self) -> Instant {
        self.session.deadline()
    }
}

impl fmt::Debug for LocalSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSession")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use identity_protocol::keys::Okm;

    #[test]
    fn check_consumes_nothing_accept_consumes_once_and_counts() {
        let okm = Okm::derive(&[7; 32], b"salt", b"info");
        let deadline = Instant::now() + Duration::from_secs(60);
        let s = LocalSession::new(SessionKeys::from_okm(&okm), None, deadline);
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
}
