//! The operator's commands on a user's credentials that have no other home: removing its MFA,
//! clearing its failed logins, and the counts `user show` and the other commands print.

use super::audit::INSERT as INSERT_AUDIT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::AuditRow;
use super::scope::TenantId;

/// What a user's MFA was when it was reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaReset {
    /// A confirmed TOTP secret was stored.
    pub had_totp: bool,
    /// An enrolment not confirmed yet was stored.
    pub had_pending: bool,
    /// Recovery codes deleted (used ones included).
    pub recovery_codes: u64,
}

/// The failed logins of a username when they were cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlocked {
    pub failures: i64,
    pub locked_until: Option<i64>,
}

/// What a user holds besides its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CredentialCounts {
    /// API keys neither revoked nor ended at `now`.
    pub api_keys: i64,
    /// Active recovery codes not used (a pending enrolment's are not counted).
    pub recovery_codes: i64,
}

/// Clears the TOTP columns of the user `user_id` of `tenant` (the confirmed secret and a
/// pending enrolment) and deletes all its recovery codes, and writes `audit(what there was)`,
/// in one transaction; `None` (nothing written) when there is no such user.
pub async fn reset_mfa(
    pools: &Pools,
    tenant: &TenantId,
    user_id: &str,
    now: i64,
    audit: impl FnOnce(MfaReset) -> AuditRow,
) -> Result<Option<MfaReset>, StoreError> {
    transaction!(pools, tx => {
        let had: Option<(bool, bool)> = sqlx::query_as(
            "SELECT totp_secret_enc IS NOT NULL, totp_pending_enc IS NOT NULL FROM users \
             WHERE user_id = $1 AND tenant_id = $2",
        )
        .bind(user_id)
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((had_totp, had_pending)) = had else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE users SET totp_secret_enc = NULL, totp_confirmed_at = NULL, \
             totp_last_step = NULL, totp_pending_enc = NULL, updated_at = $1 WHERE user_id = $2",
        )
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let recovery_codes = sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let reset = MfaReset { had_totp, had_pending, recovery_codes };
        audit(reset).bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(reset))
    })
}

/// Deletes the failed logins of `username_key` in `tenant` and writes `audit(what there was)`,
/// in one transaction (audited even when there were none: the operator's action is).
pub async fn unlock(
    pools: &Pools,
    tenant: &TenantId,
    username_key: &str,
    audit: impl FnOnce(Option<Unlocked>) -> AuditRow,
) -> Result<Option<Unlocked>, StoreError> {
    transaction!(pools, tx => {
        // The column is INTEGER (INT4 on PostgreSQL, which sqlx will not read as an i64).
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT CAST(failures AS BIGINT), locked_until FROM login_failures \
             WHERE tenant_id = $1 AND username_key = $2",
        )
        .bind(tenant)
        .bind(username_key)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM login_failures WHERE tenant_id = $1 AND username_key = $2")
            .bind(tenant)
            .bind(username_key)
            .execute(&mut *tx)
            .await?;
        let before = row.map(|(failures, locked_until)| Unlocked { failures, locked_until });
        audit(before).bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(before)
    })
}

pub async fn credential_counts(
    pools: &Pools,
    user_id: &str,
    now: i64,
) -> Result<CredentialCounts, StoreError> {
    reader!(pools, p => {
        let api_keys: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(user_id)
        .bind(now)
        .fetch_one(p)
        .await?;
        let recovery_codes: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes \
             WHERE user_id = $1 AND used_at IS NULL AND NOT pending",
        )
        .bind(user_id)
        .fetch_one(p)
        .await?;
        Ok(CredentialCounts { api_keys, recovery_codes })
    })
}

/// How many token families of the user were revoked at `at` for `reason`: what a disable, a
/// password reset or a delete at that instant revoked (their transaction stamps them so).
pub async fn families_revoked_at(
    pools: &Pools,
    tenant: &TenantId,
    user_id: &str,
    at: i64,
    reason: &str,
) -> Result<i64, StoreError> {
    reader!(pools, p => {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM token_families WHERE tenant_id = $1 AND subject = $2 \
             AND revoked_at = $3 AND revoke_reason = $4",
        )
        .bind(tenant)
        .bind(user_id)
        .bind(at)
        .bind(reason)
        .fetch_one(p)
        .await?)
    })
}

/// The facade's methods over the functions above.
impl super::Db {
    pub async fn reset_user_mfa(
        &self,
        tenant: &TenantId,
        user_id: &str,
        now: i64,
        audit: impl FnOnce(MfaReset) -> AuditRow,
    ) -> Result<Option<MfaReset>, StoreError> {
        reset_mfa(&self.pools, tenant, user_id, now, audit).await
    }

    pub async fn unlock_username(
        &self,
        tenant: &TenantId,
        username_key: &str,
        audit: impl FnOnce(Option<Unlocked>) -> AuditRow,
    ) -> Result<Option<Unlocked>, StoreError> {
        unlock(&self.pools, tenant, username_key, audit).await
    }

    pub async fn user_credential_counts(
        &self,
        user_id: &str,
        now: i64,
    ) -> Result<CredentialCounts, StoreError> {
        credential_counts(&self.pools, user_id, now).await
    }

    pub async fn user_families_revoked_at(
        &self,
        tenant: &TenantId,
        user_id: &str,
        at: i64,
        reason: &str,
    ) -> Result<i64, StoreError> {
        families_revoked_at(&self.pools, tenant, user_id, at, reason).await
    }
}
