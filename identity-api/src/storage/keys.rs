//! Key rows: the signing keys and the keys sealed under the key-encryption key, and the
//! re-sealing of all of them under a new key-encryption key.

use std::sync::LazyLock;

use sqlx::Row as _;

use super::audit::INSERT as INSERT_AUDIT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::{AuditRow, SigningKeyRow, WrappedKeyRow};
use super::scope::Scope;
use super::sql::placeholders;

/// Keys that are active or were retired after `$1`.
static SIGNING_KEYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM signing_keys WHERE (retired_at IS NULL OR retired_at > $1) AND {} \
         ORDER BY tenant_id, created_at, kid",
        SigningKeyRow::column_list(""),
        Scope::condition("tenant_id", 2)
    )
});

static INSERT_SIGNING_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO signing_keys ({}) VALUES ({}) ON CONFLICT (kid) DO UPDATE SET \
         retired_at = NULL WHERE signing_keys.tenant_id = excluded.tenant_id",
        SigningKeyRow::column_list(""),
        placeholders(SigningKeyRow::WIDTH, 1)
    )
});

static WRAPPED_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM wrapped_keys WHERE name = $1",
        WrappedKeyRow::column_list("")
    )
});

/// Inserts unless a row of that name exists (then the existing row stays).
static INSERT_WRAPPED_KEY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO wrapped_keys ({}) VALUES ({}) ON CONFLICT (name) DO NOTHING",
        WrappedKeyRow::column_list(""),
        placeholders(WrappedKeyRow::WIDTH, 1)
    )
});

/// Keys that are active or were retired after `retired_after`.
pub async fn signing_keys(
    pools: &Pools,
    scope: Scope<'_>,
    retired_after: i64,
) -> Result<Vec<SigningKeyRow>, StoreError> {
    reader!(pools, p => {
        let rows = sqlx::query(&SIGNING_KEYS)
            .bind(retired_after)
            .bind(scope.param())
            .fetch_all(p)
            .await?;
        Ok(rows
            .iter()
            .map(|row| SigningKeyRow::decode_at(row, 0))
            .collect::<Result<_, _>>()?)
    })
}

/// Stores a new signing key; with `retire_others`, every other active key retires as it is
/// created, in the same transaction, as does `audit` (an operator's rotation; none for the
/// first key a server makes itself). A key of its tenant stored again (a key read from outside,
/// back to an earlier one) is active again; another tenant's row of that kid is left alone.
pub async fn insert_signing_key(
    pools: &Pools,
    key: &SigningKeyRow,
    retire_others: bool,
    audit: Option<&AuditRow>,
) -> Result<(), StoreError> {
    transaction!(pools, tx => {
        if retire_others {
            sqlx::query(
                "UPDATE signing_keys SET retired_at = $1 \
                 WHERE retired_at IS NULL AND tenant_id = $2 AND kid <> $3",
            )
            .bind(key.created_at)
            .bind(&key.tenant_id)
            .bind(&key.kid)
            .execute(&mut *tx)
            .await?;
        }
        key.bind(sqlx::query(&INSERT_SIGNING_KEY))
            .execute(&mut *tx)
            .await?;
        if let Some(audit) = audit {
            audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    });
    Ok(())
}

pub async fn wrapped_key(pools: &Pools, name: &str) -> Result<Option<WrappedKeyRow>, StoreError> {
    // The write pool: right after an insert, a SQLite read connection may lag.
    writer!(pools, p => {
        let row = sqlx::query(&WRAPPED_KEY).bind(name).fetch_optional(p).await?;
        Ok(row.map(|row| WrappedKeyRow::decode_at(&row, 0)).transpose()?)
    })
}

/// Inserts unless a row of that name exists (then the existing row stays: two processes
/// racing to create one both end up using the first).
pub async fn insert_wrapped_key(pools: &Pools, key: &WrappedKeyRow) -> Result<(), StoreError> {
    writer!(pools, p => {
        key.bind(sqlx::query(&INSERT_WRAPPED_KEY)).execute(p).await?;
    });
    Ok(())
}

/// The tables whose rows are sealed under a key-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappedTable {
    SigningKeys,
    WrappedKeys,
}

/// A row sealed under a key-encryption key, as [`rewrap`] shows it (`name` is the AAD).
pub struct SealedRow {
    pub table: WrappedTable,
    pub name: String,
    pub kek_id: String,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRow")
            .field("table", &self.table)
            .field("name", &self.name)
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

/// Every sealed row (signing keys and wrapped keys) passes through `f` inside one write
/// transaction; `Some((kek_id, sealed))` replaces the row. The first `Err` of `f` rolls
/// everything back and is returned as the inner error. Otherwise `audit(changed)` is written
/// in the same transaction. Returns how many rows changed.
pub async fn rewrap<E>(
    pools: &Pools,
    mut f: impl FnMut(&SealedRow) -> Result<Option<(String, Vec<u8>)>, E>,
    audit: impl FnOnce(usize) -> AuditRow,
) -> Result<Result<usize, E>, StoreError> {
    const SEALED: [(WrappedTable, &str); 2] = [
        (
            WrappedTable::SigningKeys,
            "SELECT kid, kek_id, private_key_enc FROM signing_keys WHERE kek_id <> '' ORDER BY kid",
        ),
        (
            WrappedTable::WrappedKeys,
            "SELECT name, kek_id, key_enc FROM wrapped_keys ORDER BY name",
        ),
    ];
    transaction!(pools, tx => {
        let mut rows = Vec::new();
        for (table, select) in SEALED {
            for row in sqlx::query(select).fetch_all(&mut *tx).await? {
                rows.push(SealedRow {
                    table,
                    name: row.try_get(0)?,
                    kek_id: row.try_get(1)?,
                    sealed: row.try_get(2)?,
                });
            }
        }
        let mut changed = 0;
        for row in &rows {
            let (kek_id, sealed) = match f(row) {
                Ok(Some(new)) => new,
                Ok(None) => continue,
                Err(e) => {
                    tx.rollback().await?;
                    return Ok(Err(e));
                }
            };
            let sql = match row.table {
                WrappedTable::SigningKeys => {
                    "UPDATE signing_keys SET private_key_enc = $1, kek_id = $2 WHERE kid = $3"
                }
                WrappedTable::WrappedKeys => {
                    "UPDATE wrapped_keys SET key_enc = $1, kek_id = $2 WHERE name = $3"
                }
            };
            sqlx::query(sql)
                .bind(&sealed)
                .bind(&kek_id)
                .bind(&row.name)
                .execute(&mut *tx)
                .await?;
            changed += 1;
        }
        audit(changed).bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Ok(changed))
    })
}
