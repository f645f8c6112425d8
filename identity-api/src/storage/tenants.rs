//! Tenants: their rows, and the one-time adoption of the rows made before tenants.

use std::sync::LazyLock;

use super::audit::INSERT as INSERT_AUDIT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::{AuditRow, TenantRow};
use super::scope::TenantId;
use super::sql::placeholders;

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO tenants ({}) VALUES ({}) ON CONFLICT (tenant_id) DO NOTHING",
        TenantRow::column_list(""),
        placeholders(TenantRow::WIDTH, 1)
    )
});

static ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM tenants ORDER BY tenant_id",
        TenantRow::column_list("")
    )
});

/// The tables whose rows carry a tenant: what the adoption moves into the default tenant.
const OWNED: [&str; 5] = [
    "clients",
    "signing_keys",
    "token_families",
    "refresh_tokens",
    "audit_events",
];

/// Makes sure `default` exists (as given, if it is new). When it is the first tenant of the
/// database, every row made before tenants (tenant `''`) becomes its, in the same transaction:
/// once, at the first start after the upgrade. Returns whether it was created.
pub async fn ensure_default(pools: &Pools, default: &TenantRow) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
        let before: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
            .fetch_one(&mut *tx)
            .await?;
        let created = default.bind(sqlx::query(&INSERT)).execute(&mut *tx).await?.rows_affected() == 1;
        if created && before == 0 {
            for table in OWNED {
                sqlx::query(&format!("UPDATE {table} SET tenant_id = $1 WHERE tenant_id = $2"))
                    .bind(&default.tenant_id)
                    .bind(TenantId::unadopted())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(created)
    })
}

pub async fn all(pools: &Pools) -> Result<Vec<TenantRow>, StoreError> {
    reader!(pools, p => {
        let rows = sqlx::query(&ALL).fetch_all(p).await?;
        Ok(rows
            .iter()
            .map(|row| TenantRow::decode_at(row, 0))
            .collect::<Result<_, _>>()?)
    })
}

/// Creates a tenant and writes `audit`, in one transaction; [`StoreError::Conflict`] (and
/// nothing written) when it exists.
pub async fn insert(pools: &Pools, row: &TenantRow, audit: &AuditRow) -> Result<(), StoreError> {
    transaction!(pools, tx => {
        let inserted = row.bind(sqlx::query(&INSERT)).execute(&mut *tx).await?.rows_affected();
        if inserted != 1 {
            return Err(StoreError::Conflict);
        }
        audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    })
}

/// Enables or disables a tenant and writes `audit`, in one transaction; false (nothing
/// written) when there is no such tenant. A disabled tenant's clients, tokens and keys are left
/// as they are: every read of the hot path joins the tenant's flag, so they stop working at
/// once and work again on enable.
pub async fn set_enabled(
    pools: &Pools,
    tenant: &TenantId,
    enabled: bool,
    now: i64,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
        let n = sqlx::query("UPDATE tenants SET enabled = $1, updated_at = $2 WHERE tenant_id = $3")
            .bind(enabled)
            .bind(now)
            .bind(tenant)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}
