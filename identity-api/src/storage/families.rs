//! Token families outside the hot path: a family by id, and its revocation.

use std::sync::LazyLock;

use sqlx::Row as _;

use super::audit::INSERT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::{AuditRow, FamilyRow};

static FAMILY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM token_families WHERE family_id = $1",
        FamilyRow::column_list("")
    )
});

pub async fn family(pools: &Pools, family_id: &str) -> Result<Option<FamilyRow>, StoreError> {
    reader!(pools, p => {
        let row = sqlx::query(&FAMILY).bind(family_id).fetch_optional(p).await?;
        Ok(row.map(|row| FamilyRow::decode_at(&row, 0)).transpose()?)
    })
}

/// Revokes a family and writes `audit` in the same transaction; returns true when this call
/// revoked it (false: already revoked or unknown, and nothing is written).
pub async fn revoke(
    pools: &Pools,
    family_id: &str,
    now: i64,
    reason: &str,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
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
            audit.bind(sqlx::query(&INSERT)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    })
}

/// The newest `limit` audit events, oldest first: event, client, family, outcome.
pub async fn audit_events(
    pools: &Pools,
    limit: i64,
) -> Result<Vec<(String, Option<String>, Option<String>, String)>, StoreError> {
    reader!(pools, p => {
        let rows = sqlx::query(
            "SELECT event, client_id, family_id, outcome FROM audit_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(p)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            out.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?));
        }
        Ok(out)
    })
}
