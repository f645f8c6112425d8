//! Users and roles: create, read, change, delete. Every operator's change writes its audit row
//! in its own transaction. The credentials stored beside a user (API keys, recovery codes,
//! failed logins) have their own modules.

use std::sync::LazyLock;

use super::audit::INSERT as INSERT_AUDIT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::{AuditRow, RoleRow, UserRow};
use super::scope::{Scope, TenantId};
use super::sql::placeholders;

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO users ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        UserRow::column_list(""),
        placeholders(UserRow::WIDTH, 1)
    )
});

static BY_USERNAME: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM users WHERE tenant_id = $1 AND username_key = $2",
        UserRow::column_list("")
    )
});

static BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM users WHERE user_id = $1 AND {}",
        UserRow::column_list(""),
        Scope::condition("tenant_id", 2)
    )
});

static ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM users WHERE {} ORDER BY tenant_id, username_key",
        UserRow::column_list(""),
        Scope::condition("tenant_id", 1)
    )
});

static ROLES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM roles WHERE tenant_id = $1 ORDER BY role",
        RoleRow::column_list("")
    )
});

/// [`StoreError::Conflict`] (and nothing written) when the tenant has a user of that username
/// (in any case) or the id is taken.
pub async fn insert(pools: &Pools, row: &UserRow, audit: &AuditRow) -> Result<(), StoreError> {
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

/// The user of `tenant` whose username is `username_key` (already lowercased).
pub async fn by_username(
    pools: &Pools,
    tenant: &TenantId,
    username_key: &str,
) -> Result<Option<UserRow>, StoreError> {
    reader!(pools, p => {
        let row = sqlx::query(&BY_USERNAME)
            .bind(tenant)
            .bind(username_key)
            .fetch_optional(p)
            .await?;
        Ok(row.map(|r| UserRow::decode_at(&r, 0)).transpose()?)
    })
}

pub async fn by_id(
    pools: &Pools,
    scope: Scope<'_>,
    user_id: &str,
) -> Result<Option<UserRow>, StoreError> {
    reader!(pools, p => {
        let row = sqlx::query(&BY_ID)
            .bind(user_id)
            .bind(scope.param())
            .fetch_optional(p)
            .await?;
        Ok(row.map(|r| UserRow::decode_at(&r, 0)).transpose()?)
    })
}

pub async fn all(pools: &Pools, scope: Scope<'_>) -> Result<Vec<UserRow>, StoreError> {
    reader!(pools, p => {
        let rows = sqlx::query(&ALL).bind(scope.param()).fetch_all(p).await?;
        Ok(rows
            .iter()
            .map(|row| UserRow::decode_at(row, 0))
            .collect::<Result<_, _>>()?)
    })
}

/// What an operator changes of a user; `None` keeps what it has.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UserChange<'a> {
    pub enabled: Option<bool>,
    /// Space-separated, as stored.
    pub roles: Option<&'a str>,
    pub email: Option<Option<&'a str>>,
    pub display_name: Option<Option<&'a str>>,
}

/// Applies `change` to the user `user_id` of `tenant` and writes `audit(row before)`, in one
/// transaction; disabling a user also revokes its live token families there. Returns the row
/// after, or `None` (nothing written) when there is no such user.
pub async fn update(
    pools: &Pools,
    tenant: &TenantId,
    user_id: &str,
    change: UserChange<'_>,
    now: i64,
    audit: impl FnOnce(&UserRow) -> AuditRow,
) -> Result<Option<UserRow>, StoreError> {
    transaction!(pools, tx => {
        let row = sqlx::query(&BY_ID)
            .bind(user_id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(before) = row.map(|r| UserRow::decode_at(&r, 0)).transpose()? else {
            return Ok(None);
        };
        let after = UserRow {
            enabled: change.enabled.unwrap_or(before.enabled),
            roles: change.roles.map_or_else(|| before.roles.clone(), str::to_owned),
            email: change.email.map_or_else(|| before.email.clone(), |e| e.map(str::to_owned)),
            display_name: change
                .display_name
                .map_or_else(|| before.display_name.clone(), |d| d.map(str::to_owned)),
            updated_at: now,
            ..before.clone()
        };
        sqlx::query(
            "UPDATE users SET enabled = $1, roles = $2, email = $3, display_name = $4, \
             updated_at = $5 WHERE user_id = $6",
        )
        .bind(after.enabled)
        .bind(&after.roles)
        .bind(&after.email)
        .bind(&after.display_name)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if before.enabled && !after.enabled {
            for sql in REVOKE_FAMILIES {
                sqlx::query(sql).bind(now).bind("user_disabled").bind(tenant).bind(user_id)
                    .execute(&mut *tx).await?;
            }
        }
        audit(&before).bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(after))
    })
}

/// Sets a user's password hash (changed now), and writes `audit`, in one transaction; with
/// `revoke`, also revokes the user's live token families (reason `password_changed`). Returns
/// false (nothing written) when there is no such user.
pub async fn set_password(
    pools: &Pools,
    tenant: &TenantId,
    user_id: &str,
    hash: &str,
    now: i64,
    revoke: bool,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
        let n = sqlx::query(
            "UPDATE users SET password_hash = $1, password_changed_at = $2, updated_at = $2 \
             WHERE user_id = $3 AND tenant_id = $4",
        )
        .bind(hash)
        .bind(now)
        .bind(user_id)
        .bind(tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        if revoke {
            for sql in REVOKE_FAMILIES {
                sqlx::query(sql).bind(now).bind("password_changed").bind(tenant).bind(user_id)
                    .execute(&mut *tx).await?;
            }
        }
        audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Replaces the hash of the same password by one of the current parameters, unless the
/// password was changed meanwhile (the old hash is the condition). Not audited: the password
/// and its age are the same.
pub async fn rehash_password(
    pools: &Pools,
    user_id: &str,
    old_hash: &str,
    new_hash: &str,
) -> Result<bool, StoreError> {
    writer!(pools, p => {
        let n = sqlx::query(
            "UPDATE users SET password_hash = $1 WHERE user_id = $2 AND password_hash = $3",
        )
        .bind(new_hash)
        .bind(user_id)
        .bind(old_hash)
        .execute(p)
        .await?
        .rows_affected();
        Ok(n == 1)
    })
}

/// Records a login at `now`. Never moves `last_login_at` back, so that concurrent logins
/// cannot lose the latest.
pub async fn record_login(pools: &Pools, user_id: &str, now: i64) -> Result<(), StoreError> {
    writer!(pools, p => {
        sqlx::query(
            "UPDATE users SET last_login_at = $1 WHERE user_id = $2 \
             AND (last_login_at IS NULL OR last_login_at < $1)",
        )
        .bind(now)
        .bind(user_id)
        .execute(p)
        .await?;
        Ok(())
    })
}

/// Deletes a user with its API keys and recovery codes, revokes its live token families, and
/// writes `audit`, in one transaction; false (nothing written) when there is no such user.
pub async fn delete(
    pools: &Pools,
    tenant: &TenantId,
    user_id: &str,
    now: i64,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM users WHERE user_id = $1 AND tenant_id = $2")
                .bind(user_id)
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM api_keys WHERE user_id = $1",
            "DELETE FROM recovery_codes WHERE user_id = $1",
            "DELETE FROM users WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        for sql in REVOKE_FAMILIES {
            sqlx::query(sql).bind(now).bind("user_deleted").bind(tenant).bind(user_id)
                .execute(&mut *tx).await?;
        }
        audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Revokes the live token families of a user (the families whose subject is its id), with one
/// audit row per family, run in order inside a transaction, bound to `now, reason, tenant,
/// user_id`. The audit rows first: within the transaction nothing else can add or revoke a
/// family of the user between the two (SQLite holds the write lock; PostgreSQL's UPDATE of
/// the same live set waits for nothing else of this user's). Set-based, as a client's disable.
const REVOKE_FAMILIES: [&str; 2] = [
    "INSERT INTO audit_events (at, event, client_id, subject, family_id, outcome, tenant_id) \
     SELECT $1, 'revoke', client_id, subject, family_id, $2, tenant_id FROM token_families \
     WHERE tenant_id = $3 AND subject = $4 AND revoked_at IS NULL",
    "UPDATE token_families SET revoked_at = $1, revoke_reason = $2 \
     WHERE tenant_id = $3 AND subject = $4 AND revoked_at IS NULL",
];

// ---- roles ----

pub async fn roles(pools: &Pools, tenant: &TenantId) -> Result<Vec<RoleRow>, StoreError> {
    reader!(pools, p => {
        let rows = sqlx::query(&ROLES).bind(tenant).fetch_all(p).await?;
        Ok(rows
            .iter()
            .map(|row| RoleRow::decode_at(row, 0))
            .collect::<Result<_, _>>()?)
    })
}

/// Creates or replaces a role, and writes `audit(scopes before)`, in one transaction; returns
/// the scopes it had before (`None`: it is new). Writes nothing when the scopes are unchanged
/// (then returns them as before, and `audit` is not called).
pub async fn set_role(
    pools: &Pools,
    row: &RoleRow,
    audit: impl FnOnce(Option<&str>) -> AuditRow,
) -> Result<Option<String>, StoreError> {
    transaction!(pools, tx => {
        let before: Option<String> =
            sqlx::query_scalar("SELECT scopes FROM roles WHERE tenant_id = $1 AND role = $2")
                .bind(&row.tenant_id)
                .bind(&row.role)
                .fetch_optional(&mut *tx)
                .await?;
        if before.as_deref() == Some(row.scopes.as_str()) {
            return Ok(before);
        }
        sqlx::query(
            "INSERT INTO roles (tenant_id, role, scopes, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, role) DO UPDATE SET scopes = $3, updated_at = $4",
        )
        .bind(&row.tenant_id)
        .bind(&row.role)
        .bind(&row.scopes)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await?;
        audit(before.as_deref()).bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(before)
    })
}

/// Deletes a role and writes `audit`; false (nothing written) when there is no such role. Users
/// that hold it keep the name, which then grants nothing.
pub async fn delete_role(
    pools: &Pools,
    tenant: &TenantId,
    role: &str,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
        let n = sqlx::query("DELETE FROM roles WHERE tenant_id = $1 AND role = $2")
            .bind(tenant)
            .bind(role)
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

/// The facade's user and role methods (see the functions above for what each does).
impl super::Db {
    pub async fn insert_user(&self, row: &UserRow, audit: &AuditRow) -> Result<(), StoreError> {
        insert(&self.pools, row, audit).await
    }

    pub async fn user_by_username(
        &self,
        tenant: &TenantId,
        username_key: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        by_username(&self.pools, tenant, username_key).await
    }

    pub async fn user(
        &self,
        scope: Scope<'_>,
        user_id: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        by_id(&self.pools, scope, user_id).await
    }

    pub async fn users(&self, scope: Scope<'_>) -> Result<Vec<UserRow>, StoreError> {
        all(&self.pools, scope).await
    }

    pub async fn update_user(
        &self,
        tenant: &TenantId,
        user_id: &str,
        change: UserChange<'_>,
        now: i64,
        audit: impl FnOnce(&UserRow) -> AuditRow,
    ) -> Result<Option<UserRow>, StoreError> {
        update(&self.pools, tenant, user_id, change, now, audit).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn set_user_password(
        &self,
        tenant: &TenantId,
        user_id: &str,
        hash: &str,
        now: i64,
        revoke: bool,
        audit: &AuditRow,
    ) -> Result<bool, StoreError> {
        set_password(&self.pools, tenant, user_id, hash, now, revoke, audit).await
    }

    pub async fn rehash_user_password(
        &self,
        user_id: &str,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        rehash_password(&self.pools, user_id, old_hash, new_hash).await
    }

    pub async fn record_login(&self, user_id: &str, now: i64) -> Result<(), StoreError> {
        record_login(&self.pools, user_id, now).await
    }

    pub async fn delete_user(
        &self,
        tenant: &TenantId,
        user_id: &str,
        now: i64,
        audit: &AuditRow,
    ) -> Result<bool, StoreError> {
        delete(&self.pools, tenant, user_id, now, audit).await
    }

    pub async fn roles(&self, tenant: &TenantId) -> Result<Vec<RoleRow>, StoreError> {
        roles(&self.pools, tenant).await
    }

    pub async fn set_role(
        &self,
        row: &RoleRow,
        audit: impl FnOnce(Option<&str>) -> AuditRow,
    ) -> Result<Option<String>, StoreError> {
        set_role(&self.pools, row, audit).await
    }

    pub async fn delete_role(
        &self,
        tenant: &TenantId,
        role: &str,
        audit: &AuditRow,
    ) -> Result<bool, StoreError> {
        delete_role(&self.pools, tenant, role, audit).await
    }
}
