//! The purge of what has ended: token families that expired or were revoked before a cutoff,
//! with their refresh tokens, and audit events older than theirs.
//!
//! Families are walked in key order, a window of [`WINDOW`] keys at a time: a read finds the
//! window and how many of its families have ended, then one short transaction deletes those
//! and their refresh tokens. A transaction holds SQLite's write lock (and the single write
//! connection the group commit needs), so each is kept to one window; the hot path's commits
//! run between them. An ended family never comes back (`expires_at` is fixed, `revoked_at`
//! never cleared), so what the read saw is still true when the delete runs.

use std::time::{Duration, Instant};

use sqlx::Row as _;

use super::error::StoreError;
use super::pool::Pools;

/// Families one read looks at, and at most one transaction deletes: on SQLite a window of
/// ended families (their rows and tokens scattered through the tables) holds the write lock for
/// about 15 ms (docs/benchmarks.md).
pub const WINDOW: i64 = 250;
/// Audit events, or failed-login counts, one statement deletes.
pub const AUDIT_BATCH: i64 = 5000;

/// An ended family: expired, or revoked, before the cutoff `$3`.
const ENDED: &str = "(expires_at < $3 OR revoked_at < $3)";

/// One window of families.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub families: u64,
    pub refresh_tokens: u64,
    /// How long its transaction took, from its first statement to its commit: on SQLite, how
    /// long it held the write lock.
    pub held: Duration,
}

/// Purges the ended families of the window after `after` (`""` for the first); returns what
/// it deleted and the key to continue after, or `None` when the walk has reached the end.
pub async fn families_after(
    pools: &Pools,
    after: &str,
    cutoff: i64,
) -> Result<(Window, Option<String>), StoreError> {
    let scan = format!(
        "SELECT max(family_id), count(*), \
         coalesce(sum(CASE WHEN {ENDED} THEN 1 ELSE 0 END), 0) FROM (\
         SELECT family_id, expires_at, revoked_at FROM token_families \
         WHERE family_id > $1 ORDER BY family_id LIMIT $2) w"
    );
    let (last, seen, ended): (Option<String>, i64, i64) = reader!(pools, p => {
        let row = sqlx::query(&scan)
            .bind(after)
            .bind(WINDOW)
            .bind(cutoff)
            .fetch_one(p)
            .await?;
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)
    });
    let Some(last) = last else {
        return Ok((Window::default(), None));
    };
    let next = (seen == WINDOW).then(|| last.clone());
    if ended == 0 {
        return Ok((Window::default(), next));
    }
    let in_window = format!("family_id > $1 AND family_id <= $2 AND {ENDED}");
    let tokens = format!(
        "DELETE FROM refresh_tokens WHERE family_id IN \
         (SELECT family_id FROM token_families WHERE {in_window})"
    );
    let families = format!("DELETE FROM token_families WHERE {in_window}");
    let started = Instant::now();
    transaction!(pools, tx => {
        let refresh_tokens = sqlx::query(&tokens)
            .bind(after)
            .bind(&last)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let families = sqlx::query(&families)
            .bind(after)
            .bind(&last)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        let held = started.elapsed();
        Ok((Window { families, refresh_tokens, held }, next))
    })
}

/// Deletes up to [`AUDIT_BATCH`] of the oldest audit events written before `cutoff`; returns how
/// many, and whether there may be more. Events are written in time order, so the oldest ids
/// come first.
pub async fn audit_before(pools: &Pools, cutoff: i64) -> Result<(u64, bool), StoreError> {
    delete_batch(
        pools,
        "DELETE FROM audit_events WHERE id IN \
         (SELECT id FROM audit_events WHERE at < $1 ORDER BY id LIMIT $2)",
        cutoff,
    )
    .await
}

/// Deletes up to [`AUDIT_BATCH`] failed-login counts whose last failure was before `cutoff`;
/// returns how many, and whether there may be more. Anyone may add such rows (a failure is
/// counted for any well-formed username), so they must not outlive their use.
pub async fn login_failures_before(pools: &Pools, cutoff: i64) -> Result<(u64, bool), StoreError> {
    delete_batch(
        pools,
        "DELETE FROM login_failures WHERE (tenant_id, username_key) IN \
         (SELECT tenant_id, username_key FROM login_failures WHERE last_failure < $1 LIMIT $2)",
        cutoff,
    )
    .await
}

/// Runs `delete` (`$1` the cutoff, `$2` the batch): how many rows it deleted, and whether
/// there may be more.
async fn delete_batch(pools: &Pools, delete: &str, cutoff: i64) -> Result<(u64, bool), StoreError> {
    let n = writer!(pools, p => sqlx::query(delete)
        .bind(cutoff)
        .bind(AUDIT_BATCH)
        .execute(p)
        .await?
        .rows_affected());
    Ok((n, n == AUDIT_BATCH.unsigned_abs()))
}

/// On PostgreSQL, the lock that lets one replica purge at a time: held by its own connection,
/// released when the purge ends or the connection closes. SQLite needs none: its transactions
/// take turns.
#[derive(Debug)]
pub struct PurgeLock(Option<sqlx::PgConnection>);

/// `None` when another replica is purging.
pub async fn lock(pools: &Pools) -> Result<Option<PurgeLock>, StoreError> {
    match pools {
        Pools::Sqlite { .. } => Ok(Some(PurgeLock(None))),
        Pools::Postgres(pool) => {
            let mut conn = pool.acquire().await?.detach();
            // Keyed by schema: deployments that share a database in schemas of their own
            // purge independently.
            let locked: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtext('identity-api purge ' || current_schema()))",
            )
            .fetch_one(&mut conn)
            .await?;
            Ok(locked.then_some(PurgeLock(Some(conn))))
        }
    }
}

impl PurgeLock {
    /// Releases the lock (closing its connection releases it too, on every other path).
    pub async fn release(self) {
        if let Some(conn) = self.0 {
            use sqlx::Connection as _;
            let _ = conn.close().await;
        }
    }
}
