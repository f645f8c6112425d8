//! Client rows outside the hot path: create, list, rotate the secret's verifier, change what
//! the client may do, enable or disable (the read of one client by id is a batched read, `reads::Clients`). Every change
//! writes its audit row in its own transaction: no change without its row, no row without it.

use std::sync::LazyLock;

use super::audit::INSERT as INSERT_AUDIT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::{AuditRow, ClientRow};
use super::scope::{Scope, TenantId};
use super::sql::placeholders;

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO clients ({}) VALUES ({}) ON CONFLICT (client_id) DO NOTHING",
        ClientRow::column_list(""),
        placeholders(ClientRow::WIDTH, 1)
    )
});

/// One client, its row locked until the transaction ends (PostgreSQL; SQLite's write
/// transaction holds the whole database).
static FOR_UPDATE: LazyLock<[String; 2]> = LazyLock::new(|| {
    let select = format!(
        "SELECT {} FROM clients WHERE client_id = $1 AND {}",
        ClientRow::column_list(""),
        Scope::condition("tenant_id", 2)
    );
    [select.clone(), format!("{select} FOR UPDATE")]
});

static ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM clients WHERE {} ORDER BY tenant_id, client_id",
        ClientRow::column_list(""),
        Scope::condition("tenant_id", 1)
    )
});

/// [`StoreError::Conflict`] (and nothing written) when a client of that id exists.
pub async fn insert(pools: &Pools, row: &ClientRow, audit: &AuditRow) -> Result<(), StoreError> {
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

pub async fn all(pools: &Pools, scope: Scope<'_>) -> Result<Vec<ClientRow>, StoreError> {
    reader!(pools, p => {
        let rows = sqlx::query(&ALL).bind(scope.param()).fetch_all(p).await?;
        Ok(rows
            .iter()
            .map(|row| ClientRow::decode_at(row, 0))
            .collect::<Result<_, _>>()?)
    })
}

/// The tenant of a client, disabled or not; `None` when no client of that id is in `scope`.
/// A client's tenant never changes, so an operator's change can be scoped and audited by it.
pub async fn tenant_of(
    pools: &Pools,
    scope: Scope<'_>,
    client_id: &str,
) -> Result<Option<TenantId>, StoreError> {
    let sql = format!(
        "SELECT tenant_id FROM clients WHERE client_id = $1 AND {}",
        Scope::condition("tenant_id", 2)
    );
    reader!(pools, p => {
        Ok(sqlx::query_scalar(&sql)
            .bind(client_id)
            .bind(scope.param())
            .fetch_optional(p)
            .await?)
    })
}

/// Replaces the secret's verifier. With `previous_until`, the verifier replaced stays accepted
/// until then; without, it is forgotten, and so is the previous one of an earlier overlap (only
/// the secret replaced gets an overlap: there are never more than two). Returns false (and
/// writes nothing) when the client does not exist.
pub async fn set_verifier(
    pools: &Pools,
    scope: Scope<'_>,
    client_id: &str,
    verifier: &[u8],
    now: i64,
    previous_until: Option<i64>,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    // The right-hand sides read the row as it was: `secret_verifier` is the one replaced.
    const KEEP_PREVIOUS: &str = "UPDATE clients SET secret_verifier = $1, rotated_at = $2, \
        previous_secret_verifier = secret_verifier, previous_verifier_expires_at = $3 \
        WHERE client_id = $4 AND ($5 = '' OR tenant_id = $5)";
    const FORGET_PREVIOUS: &str = "UPDATE clients SET secret_verifier = $1, rotated_at = $2, \
        previous_secret_verifier = NULL, previous_verifier_expires_at = $3 WHERE client_id = $4 \
        AND ($5 = '' OR tenant_id = $5)";
    let sql = match previous_until {
        Some(_) => KEEP_PREVIOUS,
        None => FORGET_PREVIOUS,
    };
    transaction!(pools, tx => {
        let n = sqlx::query(sql)
            .bind(verifier)
            .bind(now)
            .bind(previous_until)
            .bind(client_id)
            .bind(scope.param())
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

/// What `client update` changes; `None` keeps what the client has.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientChange<'a> {
    pub scopes: Option<&'a str>,
    pub audiences: Option<&'a str>,
    pub grant_types: Option<&'a str>,
    pub may_introspect: Option<bool>,
    /// As stored (`clients::SubjectPolicy`).
    pub subject_policy: Option<&'a str>,
}

/// Applies `change` and writes `audit(row before)`, in one transaction. Returns the row after,
/// or `None` (nothing written) when the client does not exist.
pub async fn update(
    pools: &Pools,
    scope: Scope<'_>,
    client_id: &str,
    change: ClientChange<'_>,
    audit: impl FnOnce(&ClientRow) -> AuditRow,
) -> Result<Option<ClientRow>, StoreError> {
    let select = match pools {
        Pools::Sqlite { .. } => &FOR_UPDATE[0],
        Pools::Postgres(_) => &FOR_UPDATE[1],
    };
    let replace = |new: Option<&str>, old: &String| new.map_or_else(|| old.clone(), str::to_owned);
    transaction!(pools, tx => {
        let row = sqlx::query(select)
            .bind(client_id)
            .bind(scope.param())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(before) = row.map(|row| ClientRow::decode_at(&row, 0)).transpose()? else {
            return Ok(None);
        };
        let after = ClientRow {
            scopes: replace(change.scopes, &before.scopes),
            audiences: replace(change.audiences, &before.audiences),
            grant_types: replace(change.grant_types, &before.grant_types),
            may_introspect: change.may_introspect.unwrap_or(before.may_introspect),
            subject_policy: replace(change.subject_policy, &before.subject_policy),
            ..before.clone()
        };
        sqlx::query(
            "UPDATE clients SET scopes = $1, audiences = $2, grant_types = $3, \
             may_introspect = $4, subject_policy = $5 WHERE client_id = $6",
        )
        .bind(&after.scopes)
        .bind(&after.audiences)
        .bind(&after.grant_types)
        .bind(after.may_introspect)
        .bind(&after.subject_policy)
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
        audit(&before).bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(after))
    })
}

/// Enables or disables a client. Disabling also revokes every live token family of the client
/// in the same transaction, so that its refresh tokens stop working and its access tokens
/// become inactive at once, not only its Basic logins (one audit row per family). `audit(n)`
/// is the change's own audit row, given how many families it revoked. Returns false (and
/// writes nothing) when the client does not exist.
///
/// The revocation and its audit rows are set-based, never a statement per family: the
/// transaction holds SQLite's write lock (and, on PostgreSQL, the client's row, which a group
/// commit with an issue of the client waits for, and every write queued behind it), and with one
/// round-trip per family a client with 200,000 live families held it for 14 s on SQLite, longer
/// than a server's busy timeout.
pub async fn set_enabled(
    pools: &Pools,
    scope: Scope<'_>,
    client_id: &str,
    enabled: bool,
    now: i64,
    audit: impl FnOnce(u64) -> AuditRow,
) -> Result<bool, StoreError> {
    // PostgreSQL audits exactly the rows its UPDATE revoked. SQLite cannot feed an INSERT from
    // an UPDATE's RETURNING, but its transaction holds the database's write lock from BEGIN
    // IMMEDIATE: nothing can revoke or add a family between its two statements.
    const REVOKE_POSTGRES: &str = "WITH revoked AS (\
         UPDATE token_families SET revoked_at = $1, revoke_reason = 'client_disabled' \
         WHERE client_id = $2 AND revoked_at IS NULL RETURNING family_id, subject, tenant_id) \
         INSERT INTO audit_events (at, event, client_id, subject, family_id, outcome, tenant_id) \
         SELECT $1, 'revoke', $2, subject, family_id, 'client_disabled', tenant_id FROM revoked";
    const AUDIT_SQLITE: &str = "\
         INSERT INTO audit_events (at, event, client_id, subject, family_id, outcome, tenant_id) \
         SELECT $1, 'revoke', client_id, subject, family_id, 'client_disabled', tenant_id \
         FROM token_families WHERE client_id = $2 AND revoked_at IS NULL";
    const REVOKE_SQLITE: &str = "\
         UPDATE token_families SET revoked_at = $1, revoke_reason = 'client_disabled' \
         WHERE client_id = $2 AND revoked_at IS NULL";
    let revoke: &[&str] = match pools {
        Pools::Sqlite { .. } => &[AUDIT_SQLITE, REVOKE_SQLITE],
        Pools::Postgres(_) => &[REVOKE_POSTGRES],
    };
    transaction!(pools, tx => {
        let n = sqlx::query(
            "UPDATE clients SET enabled = $1 WHERE client_id = $2 AND ($3 = '' OR tenant_id = $3)",
        )
            .bind(enabled)
            .bind(client_id)
            .bind(scope.param())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        // The last statement's count is the families revoked: SQLite's UPDATE, PostgreSQL's
        // INSERT of one audit row per family its CTE revoked.
        let mut revoked = 0;
        if !enabled {
            for sql in revoke {
                revoked = sqlx::query(sql)
                    .bind(now)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
        }
        audit(revoked).bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}
