//! What the storage can fail with, and which failures are worth a retry.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    BadUrl,
    #[error("cannot create the SQLite database file {path}: {source}")]
    CreateFile {
        path: String,
        source: std::io::Error,
    },
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
