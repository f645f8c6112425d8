//! The Redis store (`--session-store redis://...`): sessions that every replica sees.
//!
//! One Redis hash per session, `<prefix>{<session_id>}` (the braces are a Redis Cluster hash
//! tag: whatever keys a session ever has share its slot), that expires with the session:
//!
//! | field | value |
//! | --- | --- |
//! | `k` | the session's keys, sealed under the store key, bound to its id, `s` and `e` ([`super::sealing`]) |
//! | `s` | the subject of an authenticated session (absent: anonymous) |
//! | `e` | `expires_at`, Unix seconds |
//! | `h`, `w`, `n` | the replay window (highest seq, a ring of 1024 bits) and the request count |
//!
//! The window and the count change only in `accept.lua`, one atomic script per request. Keys
//! unsealed on a replica are cached there ([`SessionTable`]) until the session's deadline, the
//! next request that finds it ended in Redis, or a sweep; they are wiped when dropped.
//!
//! A session whose keys open under no store key (sealed under a key since removed from
//! `--session-store-key-file`, or altered in Redis) is an unknown session, `401
//! invalid_session`: its client runs session init again, which no retry of the store mends.
//! It is counted and warned about, as a key file out of step among replicas would be.
//!
//! Every operation is bounded by `--session-store-timeout-ms`. A failure is
//! [`StoreUnavailable`]: counted, logged when the store goes down and when it answers again,
//! and answered `503 session_store_unavailable` without forwarding anything. The connection
//! (multiplexed, one per node) reconnects by itself.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Client, IntoConnectionInfo, RedisError, Script, ScriptInvocation, TlsCertificates};

use super::args::StoreArgs;
use super::sealing::{Binding, StoreKeys};
use super::table::{Expires, SessionTable};
use super::{Refusal, Session, StoreUnavailable, unix_now};
use crate::metrics::{OperationLabels, ReasonLabels};

/// `k`, `s` and `e` of a session's hash, as Redis holds them.
type Fields = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The Redis store and this replica's cache of unsealed keys.
pub struct RedisStore {
    connection: Connection,
    keys: StoreKeys,
    prefix: String,
    timeout: Duration,
    cache: SessionTable<Session>,
    create: Script,
    accept: Script,
    end_previous: Script,
    errors: Family<OperationLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    /// Whether the last operation failed: the log says when the store goes down and comes back.
    down: AtomicBool,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisStore {
    /// Sets up the connection without waiting for Redis: a sidecar starts (and answers 503)
    /// while Redis is down, and serves once it answers.
    pub fn connect(
        args: &StoreArgs,
        cache_max: usize,
        errors: Family<OperationLabels, Counter>,
        refusals: Family<ReasonLabels, Counter>,
    ) -> Result<Self, String> {
        let key = args.key.require().map_err(|e| e.to_string())?;
        let keys = StoreKeys::parse(key).map_err(|e| format!("--session-store-key-file {e}"))?;
        let root_cert = match &args.ca_file {
            Some(path) => Some(
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            ),
            None => None,
        };
        if args.urls().any(|url| url.starts_with("rediss://")) {
            // rustls picks the process's default provider; with one crate feature it would
            // anyway, but a second provider elsewhere in the build would make it refuse.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let timeout = args.timeout();
        let bad_url = |e: RedisError| format!("--session-store is not a Redis URL: {e}");
        let connection = if args.cluster {
            let mut builder = ClusterClientBuilder::new(
                args.urls()
                    .map(|url| url.into_connection_info().map_err(bad_url))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .connection_timeout(timeout)
            .response_timeout(timeout);
            if let Some(password) = args.password.get() {
                builder = builder.password(password);
            }
            if let Some(root_cert) = root_cert {
                builder = builder.certs(TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                });
            }
            let client = builder.build().map_err(bad_url)?;
            let config = ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            Connection::Cluster(client.get_pending_async_connection_with_config(config))
        } else {
            let mut info = args.url.trim().into_connection_info().map_err(bad_url)?;
            if let Some(password) = args.password.get() {
                let settings = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(settings);
            }
            let client = match root_cert {
                Some(root_cert) => Client::build_with_tls(
                    info,
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                ),
                None => Client::open(info),
            }
            .map_err(bad_url)?;
            // Reconnection is retried for about a second, then left to the next operation.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(3)
                .set_max_delay(Duration::from_millis(500));
            let manager = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| format!("cannot set up the Redis connection: {e}"))?;
            Connection::Single(manager)
        };
        Ok(Self {
            connection,
            keys,
            prefix: args.prefix.clone(),
            timeout,
            cache: SessionTable::new(cache_max),
            create: Script::new(include_str!("redis/create.lua")),
            accept: Script::new(include_str!("redis/accept.lua")),
            end_previous: Script::new(include_str!("redis/end_previous.lua")),
            errors,
            refusals,
            down: AtomicBool::new(false),
        })
    }

    /// The Redis key of a session.
    pub fn key(&self, session_id: &str) -> String {
        format!("{}{{{session_id}}}", self.prefix)
    }

    /// Sessions whose keys this replica holds.
    pub fn cache(&self) -> &SessionTable<Session> {
        &self.cache
    }

    /// Stores a new session, sealed, with its lifetime; caches it here.
    pub async fn create(
        &self,
        session_id: String,
        session: Session,
        ttl: u64,
        expires_at: u64,
    ) -> Result<(), StoreUnavailable> {
        let binding = Binding {
            session_id: &session_id,
            subject: session.subject(),
            expires_at,
        };
        let sealed = self.keys.seal(&binding, session.keys());
        let mut invocation = self.create.prepare_invoke();
        invocation
            .key(self.key(&session_id))
            .arg(ttl)
            .arg(sealed)
            .arg(expires_at);
        if let Some(subject) = session.subject() {
            invocation.arg(subject);
        }
        self.run::<i64>("create", &invocation).await?;
        if let Ok(slot) = self.cache.reserve() {
            slot.insert(session_id, session);
        }
        Ok(())
    }

    /// A session that exists in Redis (or did a moment ago: `accept` decides), its keys from
    /// the cache or unsealed now.
    pub async fn get(
        &self,
        session_id: &str,
        now: Instant,
    ) -> Result<Option<Arc<Session>>, StoreUnavailable> {
        if let Some(session) = self.cache.get(session_id, now) {
            return Ok(Some(session));
        }
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.key(session_id)).arg(&["k", "s", "e"]);
        // Read as bytes: a value this replica would not have written makes an unknown session,
        // not a failure of the store.
        let (sealed, subject, expires_at): Fields = self
            .bounded("get", hmget.query_async(&mut self.connection.clone()))
            .await?;
        let (Some(sealed), Some(expires_at)) = (sealed, expires_at) else {
            return Ok(None);
        };
        let subject = match subject.map(String::from_utf8) {
            None => None,
            Some(Ok(subject)) => Some(subject),
            Some(Err(_)) => return Ok(self.unopenable()),
        };
        let Some(expires_at) = std::str::from_utf8(&expires_at)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
        else {
            return Ok(self.unopenable());
        };
        let binding = Binding {
            session_id,
            subject: subject.as_deref(),
            expires_at,
        };
        let Some(keys) = self.keys.open(&binding, &sealed) else {
            return Ok(self.unopenable());
        };
        let left = Duration::from_secs(expires_at.saturating_sub(unix_now()));
        let session = Session::new(keys, subject, now + left);
        if session.is_expired(now) {
            return Ok(None);
        }
        Ok(Some(match self.cache.reserve() {
            Ok(slot) => slot.insert(session_id.to_owned(), session),
            Err(_) => Arc::new(session),
        }))
    }

    /// A session found in Redis whose keys open under no store key, or not for what Redis says
    /// of it: unknown, counted and warned about (once per session: its client opens another).
    fn unopenable(&self) -> Option<Arc<Session>> {
        self.refusals
            .get_or_create(&ReasonLabels {
                reason: "unopenable",
            })
            .inc();
        tracing::warn!(
            "a session's keys in the store open under no key of --session-store-key-file (sealed \
             under a key since removed, a key file that differs among replicas, or altered in \
             Redis): answered 401 invalid_session"
        );
        None
    }

    /// After decrypting: consumes `seq` and counts the request, atomically in Redis.
    pub async fn accept(&self, session_id: &str, seq: u64, limit: u64) -> Result<(), Refusal> {
        let mut invocation = self.accept.prepare_invoke();
        invocation.key(self.key(session_id)).arg(seq).arg(limit);
        match self.run::<i64>("accept", &invocation).await {
            Ok(1) => Ok(()),
            Ok(0) => Err(Refusal::Replayed),
            Ok(-1) => Err(Refusal::Exhausted),
            Ok(_) => Err(Refusal::Ended),
            Err(unavailable) => Err(Refusal::Unavailable(unavailable)),
        }
    }

    /// Section 2: ends `session_id` if it is anonymous or bound to `subject`.
    pub async fn end_previous(
        &self,
        session_id: &str,
        subject: &str,
    ) -> Result<(), StoreUnavailable> {
        let mut invocation = self.end_previous.prepare_invoke();
        invocation.key(self.key(session_id)).arg(subject);
        if self.run::<i64>("end", &invocation).await? == 1 {
            self.cache.remove(session_id);
        }
        Ok(())
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreUnavailable> {
        let mut connection = self.connection.clone();
        self.bounded(operation, invocation.invoke_async(&mut connection))
            .await
    }

    /// One Redis operation within the timeout; a failure counted and logged.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreUnavailable> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => {
                if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("the session store answers again");
                }
                Ok(value)
            }
            Ok(Err(err)) => Err(self.failed(operation, &err.to_string())),
            Err(_) => Err(self.failed(operation, "no answer within --session-store-timeout-ms")),
        }
    }

    fn failed(&self, operation: &'static str, reason: &str) -> StoreUnavailable {
        self.errors
            .get_or_create(&OperationLabels { operation })
            .inc();
        // Once per outage at warn; each refused request is logged at info by its route.
        if self.down.swap(true, Ordering::Relaxed) {
            tracing::debug!(operation, reason, "session store unavailable");
        } else {
            tracing::warn!(
                operation,
                reason,
                "session store unavailable: answering 503 session_store_unavailable until it answers"
            );
        }
        StoreUnavailable
    }
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}
