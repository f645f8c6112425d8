//! Sessions, behind one interface ([`SessionStore`]) over two stores:
//!
//! - [`memory`] (the default): sessions in this process alone;
//! - [`redis`] (`--session-store redis://...`): sessions in Redis, shared by every replica, their
//!   keys sealed ([`sealing`]), the replay window checked and updated in one script.
//!
//! [`table`] is the in-memory table both use (the memory store's sessions; the Redis store's
//! cache of unsealed keys); [`args`] holds the flags.

pub mod args;
pub mod memory;
pub mod redis;
pub mod sealing;
pub mod table;

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};

use identity_protocol::{SessionKeys, b64};

pub use args::StoreArgs;
pub use memory::LocalSession;
pub use table::{Expires, TableFull};

use self::redis::RedisStore;
use crate::metrics::Metrics;
use table::{Reservation, SessionTable};

/// A fresh `session_id`: 32 random bytes, base64url (43 visible ASCII characters).
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    b64::encode(&bytes)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What every store knows of a session: its keys, its subject and its deadline.
pub struct Session {
    keys: SessionKeys,
    subject: Option<String>,
    deadline: Instant,
}

impl Session {
    pub fn new(keys: SessionKeys, subject: Option<String>, deadline: Instant) -> Self {
        Self {
            keys,
            subject,
            deadline,
        }
    }

    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// The bound subject of an authenticated session; `None` for an anonymous one.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

impl Expires for Session {
    fn deadline(&self) -> Instant {
        self.deadline
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

/// The session store did not answer (in time): `503 session_store_unavailable`. Already counted
/// and logged by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUnavailable;

/// Why a request may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `409 replayed_request`.
    Replayed,
    /// The session has carried its limit of requests: `401 invalid_session`.
    Exhausted,
    /// The session ended or expired meanwhile (on another replica): `401 invalid_session`.
    Ended,
    /// `503 session_store_unavailable`: nothing was accepted.
    Unavailable(StoreUnavailable),
}

/// Where sessions live.
#[derive(Debug)]
pub enum SessionStore {
    Memory(SessionTable<LocalSession>),
    Redis(Box<RedisStore>),
}

/// A live session, for one request.
#[derive(Debug)]
pub enum Live {
    Local(Arc<LocalSession>),
    Shared(Arc<Session>),
}

impl Live {
    pub fn session(&self) -> &Session {
        match self {
            Self::Local(local) => local.session(),
            Self::Shared(session) => session,
        }
    }
}

/// A place for a new session, taken before the key exchange.
#[derive(Debug)]
pub enum Slot<'a> {
    Memory(Reservation<'a, LocalSession>),
    /// Redis has no cap of its own here (its `maxmemory` is the cap).
    Redis,
}

impl SessionStore {
    /// The store `args` names; the memory store holds at most `max_sessions`, the Redis store
    /// caches at most that many sessions' keys.
    pub fn open(args: &StoreArgs, max_sessions: usize, metrics: &Metrics) -> Result<Self, String> {
        if args.is_memory() {
            return Ok(Self::Memory(SessionTable::new(max_sessions)));
        }
        Ok(Self::Redis(Box::new(RedisStore::connect(
            args,
            max_sessions,
            metrics.session_store_errors.clone(),
            metrics.session_store_refusals.clone(),
        )?)))
    }

    /// Sessions whose keys this process holds: every live session of the memory store, the
    /// cached ones of the Redis store.
    pub fn len(&self) -> usize {
        match self {
            Self::Memory(table) => table.len(),
            Self::Redis(redis) => redis.cache().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A place for one more session: [`TableFull`] when the memory store is full.
    pub fn reserve(&self) -> Result<Slot<'_>, TableFull> {
        match self {
            Self::Memory(table) => table.reserve().map(Slot::Memory),
            Self::Redis(_) => Ok(Slot::Redis),
        }
    }

    /// Stores a new session in its slot, for `ttl` seconds (until `expires_at`).
    pub async fn insert(
        &self,
        slot: Slot<'_>,
        session_id: String,
        session: Session,
        ttl: u64,
        expires_at: u64,
    ) -> Result<(), StoreUnavailable> {
        match (self, slot) {
            (Self::Redis(redis), _) => redis.create(session_id, session, ttl, expires_at).await,
            (Self::Memory(_), Slot::Memory(reservation)) => {
                reservation.insert(session_id, LocalSession::from(session));
                Ok(())
            }
            // A slot of the memory store is only ever taken from it.
            (Self::Memory(_), Slot::Redis) => Err(StoreUnavailable),
        }
    }

    /// A live session: `None` when unknown, ended or expired.
    pub async fn get(
        &self,
        session_id: &str,
        now: Instant,
    ) -> Result<Option<Live>, StoreUnavailable> {
        match self {
            Self::Memory(table) => Ok(table.get(session_id, now).map(Live::Local)),
            Self::Redis(redis) => Ok(redis.get(session_id, now).await?.map(Live::Shared)),
        }
    }

    /// Before decrypting, a cheap refusal where the window is at hand (memory store); the Redis
    /// store decides only in [`SessionStore::accept`], in one round trip. Consumes nothing.
    pub fn check(&self, live: &Live, seq: u64, limit: u64) -> Result<(), Refusal> {
        match live {
            Live::Local(local) => local.check(seq, limit),
            Live::Shared(_) => Ok(()),
        }
    }

    /// After decrypting: consumes `seq` and counts the request. Of two requests with one `seq`
    /// that both decrypted, on one replica or two, only the first here goes on. The Redis store
    /// ends an exhausted session there.
    pub async fn accept(
        &self,
        session_id: &str,
        live: &Live,
        seq: u64,
        limit: u64,
    ) -> Result<(), Refusal> {
        match (self, live) {
            (Self::Redis(redis), _) => redis.accept(session_id, seq, limit).await,
            (Self::Memory(_), Live::Local(local)) => local.accept(seq, limit),
            // A live session of the memory store is only ever taken from it.
            (Self::Memory(_), Live::Shared(_)) => Err(Refusal::Ended),
        }
    }

    /// Drops a session this process holds once it is exhausted or found ended: the memory
    /// store ends it; the Redis store (where `accept` ended it already) drops its cached keys.
    pub fn forget(&self, session_id: &str) {
        match self {
            Self::Memory(table) => table.remove(session_id),
            Self::Redis(redis) => redis.cache().remove(session_id),
        };
    }

    /// Section 2: "A live previous session named in `X-Session-Id` is ended once the new one
    /// exists, if it is anonymous or bound to the same subject; otherwise, or if it is unknown,
    /// it is left alone."
    pub async fn end_previous(
        &self,
        session_id: &str,
        subject: &str,
    ) -> Result<(), StoreUnavailable> {
        match self {
            Self::Memory(table) => {
                if let Some(old) = table.get(session_id, Instant::now())
                    && old.session().subject().is_none_or(|s| s == subject)
                {
                    table.remove(session_id);
                }
                Ok(())
            }
            Self::Redis(redis) => redis.end_previous(session_id, subject).await,
        }
    }

    /// Drops the expired sessions (or cached keys) of this process; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        match self {
            Self::Memory(table) => table.sweep(now),
            Self::Redis(redis) => redis.cache().sweep(now),
        }
    }
}
