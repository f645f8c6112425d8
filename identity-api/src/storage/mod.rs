//! Storage over SQLite (embedded default) and PostgreSQL: one enum of pools, the same SQL text
//! on both. The statements every request runs go through [`hot_path`]'s batches.
//!
//! SQLite gets a single-connection write pool (writers queue in the pool instead of failing with
//! SQLITE_BUSY) and a read pool in WAL mode; every write transaction starts with BEGIN IMMEDIATE
//! so that another process holding the file makes us wait (busy_timeout), never fail half-way.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use self::batch::Batcher;
use self::hot_path::{Reads, Write, Written};

macro_rules! insert_audit {
    ($a:expr, $exec:expr) => {
        sqlx::query(
            "INSERT INTO audit_events (at, event, client_id, subject, family_id, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($a.at)
        .bind($a.event)
        .bind($a.client_id)
        .bind($a.subject)
        .bind($a.family_id)
        .bind($a.outcome)
        .execute($exec)
        .await?
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    BadUrl,
    #[error("already exists")]
    Conflict,
    /// The batch task has stopped: `Db::close` was called, or its runtime is shutting down.
    #[error("the database is closed")]
    Closed,
    /// A batch answered out of shape: a bug, never expected.
    #[error("internal: a batch answered out of shape")]
    Batch,
    /// A batch of several calls met a busy or unreachable database (logged once, in full).
    #[error("the database is busy or unreachable")]
    Busy,
    /// A batch's commit was sent and not confirmed: it may or may not have taken effect.
    #[error("the database did not confirm the commit; its outcome is unknown")]
    Unconfirmed,
    /// A batch took longer than its time limit.
    #[error("the database did not answer in time")]
    TimedOut,
}

impl StoreError {
    /// Busy, pool timeout, connection lost: worth a 503 rather than a 500.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(e) => match e {
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
                sqlx::Error::Database(db) => {
                    let code = db.code().unwrap_or_default();
                    // SQLITE_BUSY (5), SQLITE_LOCKED (6); PostgreSQL serialization/deadlock/shutdown.
                    matches!(&*code, "5" | "6" | "40001" | "40P01" | "57P01")
                }
                _ => false,
            },
            StoreError::Closed
            | StoreError::Busy
            | StoreError::Unconfirmed
            | StoreError::TimedOut => true,
            _ => false,
        }
    }
}

/// The connection pools. SQLite has a single-connection write pool and a read pool.
#[derive(Clone, Debug)]
pub enum Pools {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

/// The database: its pools and the batches of the hot path, which run on tasks of the tokio
/// runtime that connected (as sqlx's own connections do).
#[derive(Clone, Debug)]
pub struct Db {
    pools: Pools,
    hot: Arc<HotPath>,
}

#[derive(Debug)]
struct HotPath {
    clients: Batcher<Reads<hot_path::Clients>>,
    family_states: Batcher<Reads<hot_path::FamilyStates>>,
    refresh_views: Batcher<Reads<hot_path::RefreshViews>>,
    writes: Batcher<hot_path::GroupCommit>,
    metrics: BatchMetrics,
}

/// Runs `$body` with `$p` bound to the pool that may write.
macro_rules! writer {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            Pools::Sqlite { write: $p, .. } => $body,
            Pools::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` with `$p` bound to a pool for reads.
macro_rules! reader {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            Pools::Sqlite { read: $p, .. } => $body,
            Pools::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction `$tx` (BEGIN IMMEDIATE on SQLite); `$body` commits.
macro_rules! transaction {
    ($db:expr, $tx:ident => $body:expr) => {
        match $db {
            Pools::Sqlite { write, .. } => {
                #[allow(unused_mut)]
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            Pools::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                $body
            }
        }
    };
}

#[derive(Clone)]
pub struct ClientRow {
    pub client_id: String,
    pub secret_verifier: Vec<u8>,
    pub scopes: String,
    pub audiences: String,
    pub enabled: bool,
    pub created_at: i64,
    pub rotated_at: i64,
}

impl std::fmt::Debug for ClientRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRow")
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub public_x: String,
    pub public_y: String,
    pub private_key_enc: Vec<u8>,
    /// Id of the key-encryption key that sealed `private_key_enc` (None: sealed by the previous
    /// version, which did not record it).
    pub kek_id: Option<String>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A secret key sealed under the key-encryption key (today: the client-secret verifier key).
pub struct WrappedKeyRow {
    pub name: String,
    pub kek_id: String,
    pub key_enc: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for WrappedKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKeyRow")
            .field("name", &self.name)
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappedTable {
    SigningKeys,
    WrappedKeys,
}

/// A row sealed under a key-encryption key, as `Db::rewrap` shows it (`name` is the AAD).
pub struct SealedRow {
    pub table: WrappedTable,
    pub name: String,
    pub kek_id: Option<String>,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRow")
            .field("table", &self.table)
            .field("name", &self.name)
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("kek_id", &self.kek_id)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct FamilyRow {
    pub family_id: String,
    pub client_id: String,
    pub subject: String,
    pub scope: String,
    pub audience: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// A refresh token to store: only its SHA-256 is kept.
#[derive(Debug)]
pub struct NewRefresh {
    /// The token's lookup key (`secret::refresh_token_key`), never the token.
    pub token_hash: [u8; 32],
    pub jti: String,
    pub family_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// A refresh token joined with its family.
#[derive(Debug, Clone)]
pub struct RefreshView {
    pub jti: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub spent: bool,
    pub family: FamilyRow,
}

#[derive(Debug, Clone)]
pub struct Audit<'a> {
    pub at: i64,
    pub event: &'a str,
    pub client_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub family_id: Option<&'a str>,
    pub outcome: &'a str,
}

/// Outcome of a token issue's write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The family and its first refresh token are stored.
    Stored,
    /// Nothing stored: the client was disabled, its secret rotated or the client removed after
    /// it authenticated (checked in the statement that stores the family).
    ClientChanged,
}

/// Outcome of the atomic refresh rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// This request spent the token and stored the new one.
    Rotated,
    /// The token was spent already (reuse) or its family was revoked meanwhile.
    Lost,
}

fn migration(version: i64, description: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        Cow::Borrowed(description),
        MigrationType::Simple,
        Cow::Borrowed(sql),
        false,
    )
}

fn migrator(sqlite: bool) -> Migrator {
    let migrations = if sqlite {
        vec![
            migration(
                1,
                "init",
                include_str!("../../migrations/sqlite/0001_init.sql"),
            ),
            migration(
                2,
                "wrapped keys",
                include_str!("../../migrations/sqlite/0002_wrapped_keys.sql"),
            ),
            migration(
                3,
                "no family index",
                include_str!("../../migrations/sqlite/0003_no_family_index.sql"),
            ),
        ]
    } else {
        vec![
            migration(
                1,
                "init",
                include_str!("../../migrations/postgres/0001_init.sql"),
            ),
            migration(
                2,
                "wrapped keys",
                include_str!("../../migrations/postgres/0002_wrapped_keys.sql"),
            ),
            migration(
                3,
                "no family index",
                include_str!("../../migrations/postgres/0003_no_family_index.sql"),
            ),
        ]
    };
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// The columns of a client row, on either driver.
fn client_from<R: Row>(row: &R) -> Result<ClientRow, sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ClientRow {
        client_id: row.try_get("client_id")?,
        secret_verifier: row.try_get("secret_verifier")?,
        scopes: row.try_get("scopes")?,
        audiences: row.try_get("audiences")?,
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
        rotated_at: row.try_get("rotated_at")?,
    })
}

/// The family columns of a row of either driver: SQLite and PostgreSQL decode them alike, so
/// one mapping serves both.
fn family_from<R: Row>(row: &R) -> Result<FamilyRow, sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(FamilyRow {
        family_id: row.try_get("family_id")?,
        client_id: row.try_get("client_id")?,
        subject: row.try_get("subject")?,
        scope: row.try_get("scope")?,
        audience: row.try_get("audience")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// A refresh token joined with its family.
fn refresh_view_from<R: Row>(row: &R) -> Result<RefreshView, sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RefreshView {
        jti: row.try_get("jti")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("r_expires_at")?,
        spent: row.try_get("spent")?,
        family: family_from(row)?,
    })
}

/// Decodes a row with the same column names on both drivers.
macro_rules! get {
    ($row:expr, $($field:ident),+ $(,)?) => {
        ($($row.try_get::<_, _>(stringify!($field))?),+)
    };
}

// Declared after the macros above, which they use.
mod batch;
mod hot_path;

pub use self::batch::{BatchMetrics, Counts};

const FAMILY_COLUMNS: &str = "f.family_id, f.client_id, f.subject, f.scope, f.audience, \
     f.created_at, f.expires_at, f.revoked_at";

impl Db {
    /// `sqlite://path` (created if missing) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            // No ping before each acquire: an embedded SQLite connection cannot go stale, and
            // the ping is one more round-trip to sqlx's connection thread on every query
            // (docs/benchmarks.md: those hand-offs, not SQLite, bounded issue and refresh).
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(8)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Self::new(Pools::Sqlite { write, read }))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                // A prepared statement's generic plan is made once, for the table as it was: a
                // lookup first run against a new, nearly empty database keeps scanning the table
                // as it grows (seen: refresh at 1/10th after 40,000 issues). Plan each execution
                // for the table as it is; the hot path runs in batches, so planning is rare.
                // READ COMMITTED whatever the server's default: each statement of `client
                // disable` then sees what committed before it, so it revokes a family that an
                // issue stored while it waited for the client's row (`hot_path`'s group commit).
                // Session settings, not startup options, so that PgBouncer takes them.
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("SET plan_cache_mode = force_custom_plan")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("SET default_transaction_isolation = 'read committed'")
                            .execute(&mut *conn)
                            .await
                            .map(drop)
                    })
                })
                .connect_with(opts)
                .await?;
            Ok(Self::new(Pools::Postgres(pool)))
        } else {
            Err(StoreError::BadUrl)
        }
    }

    fn new(pools: Pools) -> Self {
        let metrics = BatchMetrics::default();
        let hot = HotPath {
            clients: Batcher::spawn(
                Reads::new(pools.clone(), hot_path::Clients),
                metrics.counts("clients"),
            ),
            family_states: Batcher::spawn(
                Reads::new(pools.clone(), hot_path::FamilyStates),
                metrics.counts("family_states"),
            ),
            refresh_views: Batcher::spawn(
                Reads::new(pools.clone(), hot_path::RefreshViews),
                metrics.counts("refresh_views"),
            ),
            writes: Batcher::spawn(
                hot_path::GroupCommit::new(pools.clone()),
                metrics.counts("writes"),
            ),
            metrics,
        };
        Self {
            pools,
            hot: Arc::new(hot),
        }
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// What the hot path's batches did (registered on /metrics by [`crate::Metrics`]).
    pub fn batch_metrics(&self) -> &BatchMetrics {
        &self.hot.metrics
    }

    pub fn kind(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pools {
            Pools::Sqlite { write, .. } => migrator(true).run(write).await?,
            Pools::Postgres(pool) => migrator(false).run(pool).await?,
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        reader!(&self.pools, p => {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    pub async fn close(&self) {
        // The batch tasks keep connections: they must let go, or closing a pool waits forever.
        let hot = &self.hot;
        hot.clients.stop();
        hot.family_states.stop();
        hot.refresh_views.stop();
        hot.writes.stop();
        match &self.pools {
            Pools::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }

    // ---- clients ----

    pub async fn insert_client(&self, c: &ClientRow) -> Result<(), StoreError> {
        let res = writer!(&self.pools, p => sqlx::query(
            "INSERT INTO clients (client_id, secret_verifier, scopes, audiences, enabled, created_at, rotated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(&c.client_id)
        .bind(&c.secret_verifier)
        .bind(&c.scopes)
        .bind(&c.audiences)
        .bind(c.enabled)
        .bind(c.created_at)
        .bind(c.rotated_at)
        .execute(p)
        .await?
        .rows_affected());
        if res == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    /// One client by id (batched with concurrent lookups).
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRow>, StoreError> {
        self.hot.clients.call(client_id.to_owned()).await
    }

    pub async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        const SQL: &str = "SELECT client_id, secret_verifier, scopes, audiences, enabled, created_at, rotated_at \
                           FROM clients ORDER BY client_id";
        reader!(&self.pools, p => {
            let rows = sqlx::query(SQL).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(client_from(row)?);
            }
            Ok(out)
        })
    }

    /// Returns false when the client does not exist.
    pub async fn set_client_verifier(
        &self,
        client_id: &str,
        verifier: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = writer!(&self.pools, p => sqlx::query(
            "UPDATE clients SET secret_verifier = $1, rotated_at = $2 WHERE client_id = $3",
        )
        .bind(verifier)
        .bind(now)
        .bind(client_id)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Enables or disables a client. Disabling also revokes every live token family of the
    /// client in the same transaction, so that its refresh tokens stop working and its access
    /// tokens become inactive at once, not only its Basic logins (one audit row per family).
    ///
    /// The revocation and its audit rows are set-based, never a statement per family: the
    /// transaction holds SQLite's write lock (and, on PostgreSQL, the client's row, which a
    /// group commit with an issue of the client waits for, and every write queued behind it),
    /// and with one round-trip per family a client with 200,000 live families held it for 14 s
    /// on SQLite, longer than a server's busy timeout.
    pub async fn set_client_enabled(
        &self,
        client_id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        // PostgreSQL audits exactly the rows its UPDATE revoked. SQLite cannot feed an INSERT
        // from an UPDATE's RETURNING, but its transaction holds the database's write lock from
        // BEGIN IMMEDIATE: nothing can revoke or add a family between its two statements.
        const REVOKE_POSTGRES: &str = "WITH revoked AS (\
             UPDATE token_families SET revoked_at = $1, revoke_reason = 'client_disabled' \
             WHERE client_id = $2 AND revoked_at IS NULL RETURNING family_id, subject) \
             INSERT INTO audit_events (at, event, client_id, subject, family_id, outcome) \
             SELECT $1, 'revoke', $2, subject, family_id, 'client_disabled' FROM revoked";
        const AUDIT_SQLITE: &str = "\
             INSERT INTO audit_events (at, event, client_id, subject, family_id, outcome) \
             SELECT $1, 'revoke', client_id, subject, family_id, 'client_disabled' \
             FROM token_families WHERE client_id = $2 AND revoked_at IS NULL";
        const REVOKE_SQLITE: &str = "\
             UPDATE token_families SET revoked_at = $1, revoke_reason = 'client_disabled' \
             WHERE client_id = $2 AND revoked_at IS NULL";
        let revoke: &[&str] = match self.pools {
            Pools::Sqlite { .. } => &[AUDIT_SQLITE, REVOKE_SQLITE],
            Pools::Postgres(_) => &[REVOKE_POSTGRES],
        };
        transaction!(&self.pools, tx => {
            let n = sqlx::query("UPDATE clients SET enabled = $1 WHERE client_id = $2")
                .bind(enabled)
                .bind(client_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 && !enabled {
                for sql in revoke {
                    sqlx::query(sql)
                        .bind(now)
                        .bind(client_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    // ---- signing keys ----

    /// Keys that are active or were retired after `retired_after`.
    pub async fn signing_keys(&self, retired_after: i64) -> Result<Vec<SigningKeyRow>, StoreError> {
        const SQL: &str = "SELECT kid, public_x, public_y, private_key_enc, kek_id, created_at, retired_at \
                           FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at, kid";
        self.signing_keys_where(SQL, retired_after).await
    }

    /// Keys sealed by the previous version, which did not record the key-encryption key.
    pub async fn signing_keys_without_kek_id(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        const SQL: &str = "SELECT kid, public_x, public_y, private_key_enc, kek_id, created_at, retired_at \
                           FROM signing_keys WHERE kek_id IS NULL AND created_at > $1 ORDER BY created_at, kid";
        self.signing_keys_where(SQL, i64::MIN).await
    }

    async fn signing_keys_where(
        &self,
        sql: &'static str,
        arg: i64,
    ) -> Result<Vec<SigningKeyRow>, StoreError> {
        reader!(&self.pools, p => {
            let rows = sqlx::query(sql).bind(arg).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let (kid, public_x, public_y, private_key_enc, kek_id, created_at, retired_at) =
                    get!(row, kid, public_x, public_y, private_key_enc, kek_id, created_at, retired_at);
                out.push(SigningKeyRow { kid, public_x, public_y, private_key_enc, kek_id, created_at, retired_at });
            }
            Ok(out)
        })
    }

    /// Records the key-encryption key of a key sealed by the previous version.
    pub async fn set_signing_key_kek_id(&self, kid: &str, kek_id: &str) -> Result<(), StoreError> {
        writer!(&self.pools, p => sqlx::query(
            "UPDATE signing_keys SET kek_id = $1 WHERE kid = $2 AND kek_id IS NULL",
        )
        .bind(kek_id)
        .bind(kid)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    // ---- keys sealed under the key-encryption key ----

    pub async fn wrapped_key(&self, name: &str) -> Result<Option<WrappedKeyRow>, StoreError> {
        // The write pool: right after an insert, a SQLite read connection may lag.
        writer!(&self.pools, p => {
            let row = sqlx::query(
                "SELECT name, kek_id, key_enc, created_at FROM wrapped_keys WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(p)
            .await?;
            match row {
                None => Ok(None),
                Some(row) => {
                    let (name, kek_id, key_enc, created_at) = get!(row, name, kek_id, key_enc, created_at);
                    Ok(Some(WrappedKeyRow { name, kek_id, key_enc, created_at }))
                }
            }
        })
    }

    /// Inserts unless a row of that name exists (then the existing row stays).
    pub async fn insert_wrapped_key(
        &self,
        name: &str,
        kek_id: &str,
        key_enc: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        writer!(&self.pools, p => sqlx::query(
            "INSERT INTO wrapped_keys (name, kek_id, key_enc, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(kek_id)
        .bind(key_enc)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn has_clients(&self) -> Result<bool, StoreError> {
        writer!(&self.pools, p => {
            let row = sqlx::query("SELECT 1 AS one FROM clients LIMIT 1").fetch_optional(p).await?;
            Ok(row.is_some())
        })
    }

    /// Every sealed row (signing keys and wrapped keys) passes through `f` inside one write
    /// transaction; `Some((kek_id, sealed))` replaces the row. The first `Err` of `f` rolls
    /// everything back and is returned as the inner error. Returns how many rows changed.
    pub async fn rewrap<E>(
        &self,
        mut f: impl FnMut(&SealedRow) -> Result<Option<(String, Vec<u8>)>, E>,
    ) -> Result<Result<usize, E>, StoreError> {
        transaction!(&self.pools, tx => {
            let mut rows = Vec::new();
            for row in sqlx::query("SELECT kid, kek_id, private_key_enc FROM signing_keys ORDER BY kid")
                .fetch_all(&mut *tx)
                .await?
            {
                let (name, kek_id, sealed) = get!(row, kid, kek_id, private_key_enc);
                rows.push(SealedRow { table: WrappedTable::SigningKeys, name, kek_id, sealed });
            }
            for row in sqlx::query("SELECT name, kek_id, key_enc FROM wrapped_keys ORDER BY name")
                .fetch_all(&mut *tx)
                .await?
            {
                let (name, kek_id, sealed): (String, Option<String>, Vec<u8>) = get!(row, name, kek_id, key_enc);
                rows.push(SealedRow { table: WrappedTable::WrappedKeys, name, kek_id, sealed });
            }
            let mut changed = 0;
            for row in &rows {
                let (kek_id, sealed) = match f(row) {
                    Ok(Some(new)) => new,
                    Ok(None) => continue,
                    Err(e) => {
                        tx.rollback().await?;
                        return Ok(Err(e));
                    }
                };
                let sql = match row.table {
                    WrappedTable::SigningKeys => {
                        "UPDATE signing_keys SET private_key_enc = $1, kek_id = $2 WHERE kid = $3"
                    }
                    WrappedTable::WrappedKeys => {
                        "UPDATE wrapped_keys SET key_enc = $1, kek_id = $2 WHERE name = $3"
                    }
                };
                sqlx::query(sql)
                    .bind(&sealed)
                    .bind(&kek_id)
                    .bind(&row.name)
                    .execute(&mut *tx)
                    .await?;
                changed += 1;
            }
            tx.commit().await?;
            Ok(Ok(changed))
        })
    }

    pub async fn insert_signing_key(
        &self,
        k: &SigningKeyRow,
        retire_others: bool,
    ) -> Result<(), StoreError> {
        transaction!(&self.pools, tx => {
            if retire_others {
                sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                    .bind(k.created_at)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO signing_keys (kid, public_x, public_y, private_key_enc, kek_id, created_at, retired_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL)",
            )
            .bind(&k.kid)
            .bind(&k.public_x)
            .bind(&k.public_y)
            .bind(&k.private_key_enc)
            .bind(&k.kek_id)
            .bind(k.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    // ---- families and refresh tokens ----

    /// Opens a family with its first refresh token (and its audit row), in one transaction:
    /// the group commit of concurrent issues and rotations. Stored only if the family's client
    /// is still enabled and still has `verifier`, the secret verifier it authenticated with:
    /// a `client disable` or `rotate-secret` that commits first refuses the issue; a disable
    /// that commits after it revokes the new family with the others.
    pub async fn create_family(
        &self,
        family: FamilyRow,
        refresh: NewRefresh,
        verifier: &[u8],
    ) -> Result<Opened, StoreError> {
        let write = Write::Open {
            family,
            refresh,
            verifier: verifier.to_vec(),
        };
        match self.hot.writes.call(write).await? {
            Written::Open(outcome) => Ok(outcome),
            Written::Rotation(_) => Err(StoreError::Batch),
        }
    }

    /// Whether the family exists and is not revoked: `None` when unknown (batched).
    pub async fn family_revoked(&self, family_id: &str) -> Result<Option<bool>, StoreError> {
        self.hot.family_states.call(family_id.to_owned()).await
    }

    pub async fn family(&self, family_id: &str) -> Result<Option<FamilyRow>, StoreError> {
        let sql = format!("SELECT {FAMILY_COLUMNS} FROM token_families f WHERE f.family_id = $1");
        match &self.pools {
            Pools::Sqlite { read, .. } => {
                let row = sqlx::query(&sql)
                    .bind(family_id)
                    .fetch_optional(read)
                    .await?;
                Ok(row.as_ref().map(family_from).transpose()?)
            }
            Pools::Postgres(pool) => {
                let row = sqlx::query(&sql)
                    .bind(family_id)
                    .fetch_optional(pool)
                    .await?;
                Ok(row.as_ref().map(family_from).transpose()?)
            }
        }
    }

    /// A refresh token by its SHA-256, joined with its family (batched).
    pub async fn refresh_token(&self, hash: &[u8; 32]) -> Result<Option<RefreshView>, StoreError> {
        self.hot.refresh_views.call(*hash).await
    }

    /// Spends `old_hash` and stores `new` (with an audit row naming `family`'s client and
    /// subject) in one transaction, the group commit. The spend is a conditional UPDATE (not
    /// spent, family not revoked): of concurrent callers exactly one wins.
    pub async fn rotate_refresh(
        &self,
        old_hash: [u8; 32],
        new: NewRefresh,
        now: i64,
        family: &FamilyRow,
    ) -> Result<Rotation, StoreError> {
        let write = Write::Rotate {
            old_hash,
            new,
            now,
            client_id: family.client_id.clone(),
            subject: family.subject.clone(),
        };
        match self.hot.writes.call(write).await? {
            Written::Rotation(outcome) => Ok(outcome),
            Written::Open(_) => Err(StoreError::Batch),
        }
    }

    /// Revokes a family; returns true when this call revoked it (false: already revoked or unknown).
    pub async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
        reason: &str,
        audit: &Audit<'_>,
    ) -> Result<bool, StoreError> {
        transaction!(&self.pools, tx => {
            let n = sqlx::query(
                "UPDATE token_families SET revoked_at = $1, revoke_reason = $2 \
                 WHERE family_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(family_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                insert_audit!(audit, &mut *tx);
            }
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    pub async fn audit(&self, audit: &Audit<'_>) -> Result<(), StoreError> {
        writer!(&self.pools, p => {
            insert_audit!(audit, p);
        });
        Ok(())
    }

    /// Audit events, newest last (for tests and operators).
    pub async fn audit_events(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, Option<String>, Option<String>, String)>, StoreError> {
        reader!(&self.pools, p => {
            let rows = sqlx::query(
                "SELECT event, client_id, family_id, outcome FROM audit_events ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(p)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows.iter().rev() {
                out.push(get!(row, event, client_id, family_id, outcome));
            }
            Ok(out)
        })
    }
}
