//! Retention: token families that ended (expired, or revoked) longer ago than the family
//! retention are deleted with their refresh tokens, audit events older than the audit
//! retention, and failed-login counts that no longer count (their last failure older than the
//! longest window or lock allowed); inside `serve` on a schedule, and by `identity-api purge`.
//!
//! The retention is also what keeps a purge from racing a request: a family is deleted only
//! long after the last moment a refresh or a revocation could have used it.

use std::time::Duration;

use crate::storage::{Db, MAX_LOGIN_WINDOW_SECS, StoreError};

/// A week: long enough to look into a family's end, short enough that a busy service's tables
/// stay a few weeks of traffic.
pub const DEFAULT_FAMILY_RETENTION_SECS: i64 = 7 * 86_400;
/// 90 days, the common minimum of security-log retention policies.
pub const DEFAULT_AUDIT_RETENTION_SECS: i64 = 90 * 86_400;
/// Hourly: a run finds an hour of ended families.
pub const DEFAULT_PURGE_INTERVAL_SECS: u64 = 3600;
/// `serve`'s pause after each batch, at the least: the hot path's queued writes run in it.
pub const PAUSE: Duration = Duration::from_millis(5);
/// And in proportion to the batch: after a batch that held the write lock for `t`, the purge
/// waits `t` times this, so that it takes at most a fifth of the database's write time.
const PACE: u32 = 4;

/// How long what has ended is kept, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub families_secs: i64,
    /// `None`: audit events are kept forever.
    pub audit_secs: Option<i64>,
}

/// What one purge deleted, and how long its family batches held the database.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub families: u64,
    pub refresh_tokens: u64,
    pub audit_events: u64,
    pub login_failures: u64,
    /// Batches of families deleted, their transactions' time in all, and the longest.
    pub batches: u64,
    pub held: Duration,
    pub longest_hold: Duration,
}

/// Runs one purge to its end at `now`. With a `pause`, it waits after each batch that deleted
/// something, `pause` or [`PACE`] times the batch's transaction, whichever is longer, so that
/// the hot path's writes are held back by one batch at a time, and for a fifth of the time at
/// most (`Duration::ZERO`: as fast as it can, for `identity-api purge`). `None` when another
/// replica is purging (PostgreSQL): the next run will see what it left.
pub async fn run(
    db: &Db,
    retention: Retention,
    now: i64,
    pause: Duration,
) -> Result<Option<Purged>, StoreError> {
    let Some(lock) = db.purge_lock().await? else {
        return Ok(None);
    };
    let result = purge(db, retention, now, pause).await;
    lock.release().await;
    result.map(Some)
}

async fn purge(
    db: &Db,
    retention: Retention,
    now: i64,
    pause: Duration,
) -> Result<Purged, StoreError> {
    let mut purged = Purged::default();
    let cutoff = now.saturating_sub(retention.families_secs);
    let mut after = String::new();
    loop {
        let (window, next) = db.purge_families_after(&after, cutoff).await?;
        purged.families += window.families;
        purged.refresh_tokens += window.refresh_tokens;
        if window.families > 0 {
            purged.batches += 1;
            purged.held += window.held;
            purged.longest_hold = purged.longest_hold.max(window.held);
        }
        let Some(next) = next else { break };
        after = next;
        if window.families > 0 && !pause.is_zero() {
            tokio::time::sleep(pause.max(window.held * PACE)).await;
        }
    }
    // Whatever the configured window and lock, a count this old is forgotten and its lock over.
    let cutoff = now.saturating_sub(MAX_LOGIN_WINDOW_SECS);
    loop {
        let (deleted, more) = db.purge_login_failures_before(cutoff).await?;
        purged.login_failures += deleted;
        if !more {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    if let Some(audit_secs) = retention.audit_secs {
        let cutoff = now.saturating_sub(audit_secs);
        loop {
            let (deleted, more) = db.purge_audit_before(cutoff).await?;
            purged.audit_events += deleted;
            if !more {
                break;
            }
            tokio::time::sleep(pause).await;
        }
    }
    Ok(purged)
}
