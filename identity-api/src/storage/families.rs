//! Token families outside the hot path: a family by id, and its revocation.

use std::sync::LazyLock;

use super::audit::INSERT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::{AuditRow, FamilyRow};
use super::scope::TenantId;

static FAMILY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM token_families WHERE family_id = $1 AND tenant_id = $2",
        FamilyRow::column_list("")
    )
});

pub async fn family(
    pools: &Pools,
    tenant: &TenantId,
    family_id: &str,
) -> Result<Option<FamilyRow>, StoreError> {
    reader!(pools, p => {
        let row = sqlx::query(&FAMILY)
            .bind(family_id)
            .bind(tenant)
            .fetch_optional(p)
            .await?;
        Ok(row.map(|row| FamilyRow::decode_at(&row, 0)).transpose()?)
    })
}

/// Revokes a family and writes `audit` in the same transaction; returns true when this call
/// revoked it (false: already revoked or unknown, and nothing is written).
pub async fn revoke(
    pools: &Pools,
    tenant: &TenantId,
    family_id: &str,
    now: i64,
    reason: &str,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
        let n = sqlx::query(
            "UPDATE token_families SET revoked_at = $1, revoke_reason = $2 \
             WHERE family_id = $3 AND tenant_id = $4 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(family_id)
        .bind(tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            audit.bind(sqlx::query(&INSERT)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    })
}
