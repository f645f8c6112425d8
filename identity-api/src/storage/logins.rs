//! Failed password logins per username of a tenant (`login_failures`), whether or not such a
//! user exists: the count that locks a username for a while (`service::lockout`). Each failure
//! is one atomic UPSERT, so that concurrent wrong logins are all counted.

use std::sync::LazyLock;

use super::audit::INSERT as INSERT_AUDIT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::{AuditRow, LoginFailureRow};
use super::scope::TenantId;

/// The longest a lock or a failure window may be set to, seconds: a count whose last failure is
/// older than this counts for nothing, and is purged.
pub const MAX_LOGIN_WINDOW_SECS: i64 = 86_400;

static GET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM login_failures WHERE tenant_id = $1 AND username_key = $2",
        LoginFailureRow::column_list("")
    )
});

/// One more failure at `$3`. A count whose last failure is older than the window (`$4` seconds)
/// starts again at 1. The failure that reaches `$5` locks the username until `$3 + $6` and
/// starts the count again, so that a lock ends by itself and failures during it (refused
/// before they get here) cannot extend it. Both databases evaluate every SET expression against
/// the row as it was.
const RECORD: &str = "INSERT INTO login_failures \
     (tenant_id, username_key, failures, last_failure, locked_until) \
     VALUES ($1, $2, CASE WHEN 1 >= $5 THEN 0 ELSE 1 END, $3, \
             CASE WHEN 1 >= $5 THEN $3 + $6 ELSE NULL END) \
     ON CONFLICT (tenant_id, username_key) DO UPDATE SET \
     failures = CASE \
         WHEN (CASE WHEN login_failures.last_failure <= $3 - $4 THEN 1 \
                    ELSE login_failures.failures + 1 END) >= $5 THEN 0 \
         ELSE (CASE WHEN login_failures.last_failure <= $3 - $4 THEN 1 \
                    ELSE login_failures.failures + 1 END) END, \
     locked_until = CASE \
         WHEN (CASE WHEN login_failures.last_failure <= $3 - $4 THEN 1 \
                    ELSE login_failures.failures + 1 END) >= $5 THEN $3 + $6 \
         ELSE login_failures.locked_until END, \
     last_failure = $3 \
     RETURNING failures, locked_until";

/// What [`record_failure`] left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    /// Failures counted within the window since the last lock (0 right after a lock).
    pub failures: i64,
    /// Set when this failure locked the username: until when.
    pub locked_now: Option<i64>,
}

/// The failures row of `username_key`, if any.
pub async fn get(
    pools: &Pools,
    tenant: &TenantId,
    username_key: &str,
) -> Result<Option<LoginFailureRow>, StoreError> {
    reader!(pools, p => {
        let row = sqlx::query(&GET)
            .bind(tenant)
            .bind(username_key)
            .fetch_optional(p)
            .await?;
        Ok(row.map(|r| LoginFailureRow::decode_at(&r, 0)).transpose()?)
    })
}

/// Counts a failure at `now` (see [`RECORD`]); with `audit`, written in the same transaction
/// when this failure locks the username (its `detail` is completed by the caller).
pub async fn record_failure(
    pools: &Pools,
    tenant: &TenantId,
    username_key: &str,
    now: i64,
    limits: FailureLimits,
    lockout_audit: impl FnOnce(i64) -> AuditRow,
) -> Result<FailureCount, StoreError> {
    transaction!(pools, tx => {
        let row = sqlx::query(RECORD)
            .bind(tenant)
            .bind(username_key)
            .bind(now)
            .bind(limits.window_secs)
            .bind(limits.max_failures)
            .bind(limits.lock_secs)
            .fetch_one(&mut *tx)
            .await?;
        let failures: i64 = sqlx::Row::try_get(&row, 0)?;
        let locked_until: Option<i64> = sqlx::Row::try_get(&row, 1)?;
        let locked_now = locked_until.filter(|_| failures == 0);
        if let Some(until) = locked_now {
            lockout_audit(until)
                .bind(sqlx::query(&INSERT_AUDIT))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(FailureCount { failures, locked_now })
    })
}

/// Forgets the failures of `username_key` (a success, or an operator's unlock); true when
/// there were some.
pub async fn clear(
    pools: &Pools,
    tenant: &TenantId,
    username_key: &str,
) -> Result<bool, StoreError> {
    writer!(pools, p => {
        let n = sqlx::query("DELETE FROM login_failures WHERE tenant_id = $1 AND username_key = $2")
            .bind(tenant)
            .bind(username_key)
            .execute(p)
            .await?
            .rows_affected();
        Ok(n > 0)
    })
}

/// The rule [`record_failure`] counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// The failure that reaches this count locks (at least 1).
    pub max_failures: i64,
    /// A count whose last failure is this old starts again.
    pub window_secs: i64,
    pub lock_secs: i64,
}

/// The facade's failed-login methods (see the functions above).
impl super::Db {
    pub async fn login_failures(
        &self,
        tenant: &TenantId,
        username_key: &str,
    ) -> Result<Option<LoginFailureRow>, StoreError> {
        get(&self.pools, tenant, username_key).await
    }

    pub async fn record_login_failure(
        &self,
        tenant: &TenantId,
        username_key: &str,
        now: i64,
        limits: FailureLimits,
        lockout_audit: impl FnOnce(i64) -> AuditRow,
    ) -> Result<FailureCount, StoreError> {
        record_failure(
            &self.pools,
            tenant,
            username_key,
            now,
            limits,
            lockout_audit,
        )
        .await
    }

    pub async fn clear_login_failures(
        &self,
        tenant: &TenantId,
        username_key: &str,
    ) -> Result<bool, StoreError> {
        clear(&self.pools, tenant, username_key).await
    }
}
