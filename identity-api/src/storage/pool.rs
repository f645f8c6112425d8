//! The connection pools of either database, how they are opened and migrated, and the macros
//! that run one statement's code on whichever pool a query needs.
//!
//! SQLite gets a single-connection write pool (writers queue in the pool instead of failing with
//! SQLITE_BUSY) and a read pool in WAL mode; every write transaction starts with BEGIN IMMEDIATE
//! so that another process holding the file makes us wait (busy_timeout), never fail half-way.
//! Its files are created owner-only (`sqlite_file`).

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::error::StoreError;
use super::sqlite_file;

/// The connection pools. SQLite has a single-connection write pool and a read pool.
#[derive(Clone, Debug)]
pub enum Pools {
    Sqlite { write: SqlitePool, read: SqlitePool },
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the pool that may write.
macro_rules! writer {
    ($pools:expr, $p:ident => $body:expr) => {
        match $pools {
            $crate::storage::pool::Pools::Sqlite { write: $p, .. } => $body,
            $crate::storage::pool::Pools::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` with `$p` bound to a pool for reads.
macro_rules! reader {
    ($pools:expr, $p:ident => $body:expr) => {
        match $pools {
            $crate::storage::pool::Pools::Sqlite { read: $p, .. } => $body,
            $crate::storage::pool::Pools::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction `$tx` (BEGIN IMMEDIATE on SQLite); `$body` commits.
macro_rules! transaction {
    ($pools:expr, $tx:ident => $body:expr) => {
        match $pools {
            $crate::storage::pool::Pools::Sqlite { write, .. } => {
                #[allow(unused_mut)]
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            $crate::storage::pool::Pools::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                $body
            }
        }
    };
}

impl Pools {
    /// `sqlite://path` (created if missing) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            // Owner-only, before SQLite would create the file 0644.
            sqlite_file::prepare(url, opts.get_filename())?;
            // No ping before each acquire: an embedded SQLite connection cannot go stale, and
            // the ping is one more round-trip to sqlx's connection thread on every query.
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
            Ok(Self::Sqlite { write, read })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(30))
                // A prepared statement's generic plan is made once, for the table as it was: a
                // lookup first run against a new, nearly empty database would keep scanning the
                // table as it grows. Plan each execution for the table as it is; the hot path
                // runs in batches, so planning is rare.
                // READ COMMITTED whatever the server's default: each statement of `client
                // disable` then sees what committed before it, so it revokes a family that an
                // issue stored while it waited for the client's row (see `commit`).
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
            Ok(Self::Postgres(pool))
        } else {
            Err(StoreError::BadUrl)
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Runs the embedded migrations (`identity-api/migrations/<dialect>`).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite { write, .. } => migrator(SQLITE_MIGRATIONS).run(write).await?,
            Self::Postgres(pool) => migrator(POSTGRES_MIGRATIONS).run(pool).await?,
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        reader!(self, p => {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// A migration as embedded: its version, its description (the file name's, as sqlx writes it)
/// and its SQL. Applied migrations are never edited: a change is a new file.
type Embedded = (i64, &'static str, &'static str);

const SQLITE_MIGRATIONS: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "operator changes",
        include_str!("../../migrations/sqlite/0002_operator_changes.sql"),
    ),
    (
        3,
        "purge",
        include_str!("../../migrations/sqlite/0003_purge.sql"),
    ),
    (
        4,
        "standard endpoints",
        include_str!("../../migrations/sqlite/0004_standard_endpoints.sql"),
    ),
    (
        5,
        "tenants",
        include_str!("../../migrations/sqlite/0005_tenants.sql"),
    ),
    (
        6,
        "users",
        include_str!("../../migrations/sqlite/0006_users.sql"),
    ),
];

const POSTGRES_MIGRATIONS: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "operator changes",
        include_str!("../../migrations/postgres/0002_operator_changes.sql"),
    ),
    (
        3,
        "purge",
        include_str!("../../migrations/postgres/0003_purge.sql"),
    ),
    (
        4,
        "standard endpoints",
        include_str!("../../migrations/postgres/0004_standard_endpoints.sql"),
    ),
    (
        5,
        "tenants",
        include_str!("../../migrations/postgres/0005_tenants.sql"),
    ),
    (
        6,
        "users",
        include_str!("../../migrations/postgres/0006_users.sql"),
    ),
];

fn migrator(embedded: &'static [Embedded]) -> Migrator {
    let migrations = embedded
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}
