//! Users of a tenant and their credentials: the rules of a username and a role name, creating
//! a user, and what its roles grant. Below: passwords ([`password`]), TOTP and recovery codes
//! ([`totp`]), API keys ([`api_keys`]), role definitions ([`roles`]).
//!
//! A user's id is random and permanent: it is the `sub` of the user's tokens, so that renaming
//! or deleting and re-creating a username never hands one person's tokens to another.

pub mod api_keys;
pub mod password;
pub mod roles;
pub mod totp;

use crate::clients::{split_list, valid_scope_token};
use crate::operator::Operator;
use crate::secret::random_id;
use crate::storage::{AdminEvent, AuditRow, Db, RoleRow, StoreError, TenantId, UserRow};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "a username must be 1 to 128 characters of A-Z a-z 0-9 and . _ @ + -, starting with a \
         letter or a digit"
    )]
    InvalidUsername,
    #[error("invalid role list: {0}")]
    InvalidRoles(String),
    #[error("an email must be at most 254 characters with one @ and no spaces")]
    InvalidEmail,
    #[error("a display name must be 1 to 200 characters without control characters")]
    InvalidDisplayName,
    #[error("tenant {tenant} already has a user {username} (usernames ignore case)")]
    Exists { tenant: String, username: String },
    #[error("tenant {tenant} has no user {username}")]
    NotFound { tenant: String, username: String },
    #[error("no tenant {0}: create it first (identity-api tenant create {0})")]
    UnknownTenant(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key a username is unique by within its tenant: ASCII lowercase. `None` unless
/// `username` is valid: 1 to 128 characters of `A-Z a-z 0-9 . _ @ + -`, starting with a letter
/// or a digit. ASCII only, so that two names that look alike are the same name or visibly not.
pub fn username_key(username: &str) -> Option<String> {
    let valid = (1..=128).contains(&username.len())
        && username.starts_with(|c: char| c.is_ascii_alphanumeric())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-'));
    valid.then(|| username.to_ascii_lowercase())
}

/// A role's name: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`.
pub fn valid_role_name(role: &str) -> bool {
    (1..=64).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A list of role names as given (spaces or commas between them; may be empty), as stored:
/// single spaces, duplicates dropped, in the order given.
pub fn normalize_roles(list: &str) -> Result<String, UserError> {
    let spaced = list.replace(',', " ");
    let roles = split_list(&spaced);
    if let Some(bad) = roles.iter().find(|r| !valid_role_name(r)) {
        return Err(UserError::InvalidRoles(format!(
            "{bad:?} is not a role name (1 to 64 characters of A-Z a-z 0-9 . _ : -)"
        )));
    }
    Ok(roles.join(" "))
}

/// The scopes `user_roles` (as stored) grant under the tenant's `roles`: the union, sorted. A
/// role the tenant does not define grants nothing.
pub fn scopes_of(roles: &[RoleRow], user_roles: &str) -> Vec<String> {
    let mut scopes: Vec<String> = split_list(user_roles)
        .into_iter()
        .filter_map(|name| roles.iter().find(|r| r.role == name))
        .flat_map(|r| split_list(&r.scopes))
        .filter(|s| valid_scope_token(s))
        .map(str::to_owned)
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

/// When the user's password stops working under a rotation window of `rotation_days`
/// (exclusive), or `None` when it does not expire (no window, or no password).
pub fn password_expires_at(user: &UserRow, rotation_days: Option<i64>) -> Option<i64> {
    let days = rotation_days?;
    Some(
        user.password_changed_at?
            .saturating_add(days.saturating_mul(86_400)),
    )
}

fn check_email(email: &str) -> Result<(), UserError> {
    let ok = email.len() <= 254
        && email.matches('@').count() == 1
        && !email.starts_with('@')
        && !email.ends_with('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(()).ok_or(UserError::InvalidEmail)
}

fn check_display_name(name: &str) -> Result<(), UserError> {
    let ok = (1..=200).contains(&name.chars().count()) && !name.chars().any(char::is_control);
    ok.then_some(()).ok_or(UserError::InvalidDisplayName)
}

/// Who a new user is.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub tenant: &'a TenantId,
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub display_name: Option<&'a str>,
    /// Space- or comma-separated role names; may be empty.
    pub roles: &'a str,
}

/// Creates a user with the Argon2id hash of its password (checked and hashed by the caller:
/// `password::Hasher`), or none; audited as `user_create` by `by` (never the hash).
pub async fn create(
    db: &Db,
    new: NewUser<'_>,
    password_hash: Option<String>,
    by: &Operator,
    now: i64,
) -> Result<UserRow, UserError> {
    let username_key = username_key(new.username).ok_or(UserError::InvalidUsername)?;
    let roles = normalize_roles(new.roles)?;
    new.email.map(check_email).transpose()?;
    new.display_name.map(check_display_name).transpose()?;
    if !db
        .tenants()
        .await?
        .iter()
        .any(|t| t.tenant_id == *new.tenant)
    {
        return Err(UserError::UnknownTenant(new.tenant.to_string()));
    }
    let row = UserRow {
        user_id: random_id(),
        tenant_id: new.tenant.clone(),
        username: new.username.to_owned(),
        username_key,
        email: new.email.map(str::to_owned),
        display_name: new.display_name.map(str::to_owned),
        enabled: true,
        roles,
        password_changed_at: password_hash.as_ref().map(|_| now),
        password_hash,
        last_login_at: None,
        totp_secret_enc: None,
        totp_confirmed_at: None,
        totp_last_step: None,
        totp_pending_enc: None,
        created_at: now,
        updated_at: now,
    };
    let audit = AuditRow::user_admin(
        now,
        AdminEvent::UserCreate,
        by.as_str(),
        new.tenant,
        &row.user_id,
        serde_json::json!({
            "username": row.username, "roles": row.roles, "email": row.email,
            "display_name": row.display_name, "password": row.password_hash.is_some(),
        }),
    );
    match db.insert_user(&row, &audit).await {
        Ok(()) => Ok(row),
        Err(StoreError::Conflict) => Err(UserError::Exists {
            tenant: new.tenant.to_string(),
            username: new.username.to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The user of `tenant` named `username` (in any case).
pub async fn find(db: &Db, tenant: &TenantId, username: &str) -> Result<UserRow, UserError> {
    let not_found = || UserError::NotFound {
        tenant: tenant.to_string(),
        username: username.to_owned(),
    };
    let key = username_key(username).ok_or_else(not_found)?;
    db.user_by_username(tenant, &key)
        .await?
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_ascii_and_unique_without_regard_to_case() {
        assert_eq!(
            username_key("Alice.B@example.com").as_deref(),
            Some("alice.b@example.com")
        );
        for bad in ["", ".alice", "al ice", "älice", "a/b", &"a".repeat(129)] {
            assert_eq!(username_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn roles_are_normalized_and_grant_the_union_of_their_scopes() {
        assert_eq!(
            normalize_roles("admin, viewer admin").unwrap(),
            "admin viewer"
        );
        assert_eq!(normalize_roles("").unwrap(), "");
        assert!(normalize_roles("ad min!").is_err());
        let role = |name: &str, scopes: &str| RoleRow {
            tenant_id: TenantId::primary(),
            role: name.into(),
            scopes: scopes.into(),
            updated_at: 0,
        };
        let roles = [
            role("viewer", "orders.read"),
            role("admin", "orders.write orders.read"),
        ];
        assert_eq!(
            scopes_of(&roles, "admin viewer"),
            ["orders.read", "orders.write"]
        );
        assert_eq!(scopes_of(&roles, "viewer ghost"), ["orders.read"]);
        assert!(scopes_of(&roles, "").is_empty());
    }

    #[test]
    fn emails_and_display_names_are_checked() {
        assert!(check_email("a@b").is_ok());
        for bad in ["ab", "a@b@c", "@b", "a@", "a b@c"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_display_name("Alice Ng").is_ok());
        assert!(check_display_name("").is_err());
        assert!(check_display_name("a\nb").is_err());
    }
}
