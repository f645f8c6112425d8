//! The audit trail outside the hot path: the one statement that writes a row (a refused refresh,
//! a revocation, an administrative change inside its own transaction).

use std::sync::LazyLock;

use super::error::StoreError;
use super::pool::Pools;
use super::rows::AuditRow;
use super::sql::placeholders;

/// Inserts one whole row; run inside the transaction of the change it records.
pub static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO audit_events ({}) VALUES ({})",
        AuditRow::column_list(""),
        placeholders(AuditRow::WIDTH, 1)
    )
});

/// An audit row of its own (a refused refresh: nothing else changes).
pub async fn insert(pools: &Pools, audit: &AuditRow) -> Result<(), StoreError> {
    writer!(pools, p => {
        audit.bind(sqlx::query(&INSERT)).execute(p).await?;
    });
    Ok(())
}
