//! The second factor's rows: a user's sealed TOTP secret and its state (columns of `users`), and
//! its recovery codes (`recovery_codes`). An enrolment is pending (`totp_pending_enc`, codes
//! with `pending`) until its confirmation swaps it in, so that an enrolment never confirmed
//! leaves the confirmed factor as it was. Every use is a compare-and-set, so that a code is
//! accepted once even by concurrent requests.

use super::audit::INSERT as INSERT_AUDIT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::AuditRow;
use super::scope::TenantId;

/// Stores `sealed` as the user's pending TOTP secret and `verifiers` as its pending recovery
/// codes (replacing those of an earlier pending enrolment), and writes `audit`, in one
/// transaction; false (nothing written) when there is no such user. The confirmed secret, its
/// state and the active recovery codes are left alone: they work until the confirmation.
pub async fn enroll(
    pools: &Pools,
    tenant: &TenantId,
    user_id: &str,
    sealed: &[u8],
    verifiers: &[[u8; 32]],
    now: i64,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
        let n = sqlx::query(
            "UPDATE users SET totp_pending_enc = $1, updated_at = $2 \
             WHERE user_id = $3 AND tenant_id = $4",
        )
        .bind(sealed)
        .bind(now)
        .bind(user_id)
        .bind(tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1 AND pending")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for verifier in verifiers {
            sqlx::query(
                "INSERT INTO recovery_codes (user_id, code_hash, used_at, pending) \
                 VALUES ($1, $2, NULL, TRUE)",
            )
            .bind(user_id)
            .bind(verifier.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Confirms the pending enrolment `sealed` with its code of `step`, and writes `audit`, in one
/// transaction: only if the pending secret is still `sealed` (no enrolment came meanwhile) and
/// `step` is later than the last step used. The pending secret becomes the confirmed one, and
/// the pending recovery codes replace the active ones. False: nothing written.
pub async fn confirm(
    pools: &Pools,
    user_id: &str,
    sealed: &[u8],
    step: i64,
    now: i64,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
        // The right-hand sides read the row as it was, on both backends: the pending secret
        // moves over and is cleared in one statement.
        let n = sqlx::query(
            "UPDATE users SET totp_secret_enc = totp_pending_enc, totp_pending_enc = NULL, \
             totp_confirmed_at = $1, totp_last_step = $2, updated_at = $1 \
             WHERE user_id = $3 AND totp_pending_enc = $4 \
             AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(now)
        .bind(step)
        .bind(user_id)
        .bind(sealed)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM recovery_codes WHERE user_id = $1 AND NOT pending",
            "UPDATE recovery_codes SET pending = FALSE WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Spends the TOTP step `step` of a confirmed enrolment: true for the one request that moves
/// `totp_last_step` forward to it, false for any other (a replay, or a concurrent use).
pub async fn use_step(pools: &Pools, user_id: &str, step: i64) -> Result<bool, StoreError> {
    writer!(pools, p => {
        let n = sqlx::query(
            "UPDATE users SET totp_last_step = $1 WHERE user_id = $2 \
             AND totp_confirmed_at IS NOT NULL \
             AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(p)
        .await?
        .rows_affected();
        Ok(n == 1)
    })
}

/// Spends the active recovery code of `verifier`: true for the one request that marks it
/// used. A pending code proves nothing: whoever started the enrolment holds it, and the
/// enrolment may never be confirmed.
pub async fn use_recovery_code(
    pools: &Pools,
    user_id: &str,
    verifier: &[u8; 32],
    now: i64,
) -> Result<bool, StoreError> {
    writer!(pools, p => {
        let n = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 \
             WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL AND NOT pending",
        )
        .bind(now)
        .bind(user_id)
        .bind(verifier.as_slice())
        .execute(p)
        .await?
        .rows_affected();
        Ok(n == 1)
    })
}

/// How many of the user's active recovery codes are unused.
pub async fn unused_recovery_codes(pools: &Pools, user_id: &str) -> Result<i64, StoreError> {
    reader!(pools, p => {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes \
             WHERE user_id = $1 AND used_at IS NULL AND NOT pending",
        )
        .bind(user_id)
        .fetch_one(p)
        .await?;
        Ok(n)
    })
}

/// The facade's MFA methods (see the functions above).
impl super::Db {
    #[allow(clippy::too_many_arguments)]
    pub async fn enroll_totp(
        &self,
        tenant: &TenantId,
        user_id: &str,
        sealed: &[u8],
        verifiers: &[[u8; 32]],
        now: i64,
        audit: &AuditRow,
    ) -> Result<bool, StoreError> {
        enroll(&self.pools, tenant, user_id, sealed, verifiers, now, audit).await
    }

    pub async fn confirm_totp(
        &self,
        user_id: &str,
        sealed: &[u8],
        step: i64,
        now: i64,
        audit: &AuditRow,
    ) -> Result<bool, StoreError> {
        confirm(&self.pools, user_id, sealed, step, now, audit).await
    }

    pub async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        use_step(&self.pools, user_id, step).await
    }

    pub async fn use_recovery_code(
        &self,
        user_id: &str,
        verifier: &[u8; 32],
        now: i64,
    ) -> Result<bool, StoreError> {
        use_recovery_code(&self.pools, user_id, verifier, now).await
    }

    pub async fn unused_recovery_codes(&self, user_id: &str) -> Result<i64, StoreError> {
        unused_recovery_codes(&self.pools, user_id).await
    }
}
