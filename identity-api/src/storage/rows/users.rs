//! The rows of users and their credentials (migration 0006): declared as the other tables are.

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use super::super::scope::TenantId;

table! {
    /// A user of a tenant. `user_id` is opaque and permanent: the `sub` of its tokens.
    #[derive(Clone)]
    pub struct UserRow in "users", columns UserColumn {
        pub user_id: String,
        pub tenant_id: TenantId,
        /// As given at creation.
        pub username: String,
        /// `username` in ASCII lowercase: unique per tenant.
        pub username_key: String,
        pub email: Option<String>,
        pub display_name: Option<String>,
        pub enabled: bool,
        /// Space-separated role names.
        pub roles: String,
        /// Argon2id, as a PHC string; `None`: no password (the password grant refuses).
        pub password_hash: Option<String>,
        pub password_changed_at: Option<i64>,
        pub last_login_at: Option<i64>,
        /// The confirmed TOTP secret, sealed under the wrapped key `mfa-secret-key` (AAD =
        /// `user_id`): the one a login asks a code of. Set only by a confirmation.
        pub totp_secret_enc: Option<Vec<u8>>,
        /// When a first code confirmed the enrolment; until then the password grant does not
        /// ask for a code.
        pub totp_confirmed_at: Option<i64>,
        /// The last TOTP time step accepted: a code is accepted once.
        pub totp_last_step: Option<i64>,
        /// An enrolment not confirmed yet, sealed as `totp_secret_enc`. Logins ignore it, so
        /// that an enrolment left unconfirmed does not take away the factor already confirmed.
        pub totp_pending_enc: Option<Vec<u8>>,
        pub created_at: i64,
        pub updated_at: i64,
    }
}

table! {
    /// What a role of a tenant grants.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RoleRow in "roles", columns RoleColumn {
        pub tenant_id: TenantId,
        pub role: String,
        /// Space-separated scopes.
        pub scopes: String,
        pub updated_at: i64,
    }
}

table! {
    /// An API key, stored only by its verifier. `key_id` is the key's public prefix.
    #[derive(Clone)]
    pub struct ApiKeyRow in "api_keys", columns ApiKeyColumn {
        pub key_id: String,
        pub tenant_id: TenantId,
        pub user_id: String,
        /// HMAC-SHA256 of the whole key under the wrapped key `api-key-verifier`.
        pub verifier: Vec<u8>,
        pub created_at: i64,
        /// Set on a key replaced with an overlap: it works until then (exclusive).
        pub expires_at: Option<i64>,
        pub revoked_at: Option<i64>,
        pub last_used_at: Option<i64>,
    }
}

table! {
    /// Failed password logins of a username of a tenant, whether or not such a user exists.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LoginFailureRow in "login_failures", columns LoginFailureColumn {
        pub tenant_id: TenantId,
        pub username_key: String,
        pub failures: i64,
        pub last_failure: i64,
        pub locked_until: Option<i64>,
    }
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("user_id", &self.user_id)
            .field("tenant_id", &self.tenant_id)
            .field("username", &self.username)
            .field("enabled", &self.enabled)
            .field("roles", &self.roles)
            .field("password_changed_at", &self.password_changed_at)
            .field("mfa", &self.totp_confirmed_at.is_some())
            .field("mfa_pending", &self.totp_pending_enc.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ApiKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyRow")
            .field("key_id", &self.key_id)
            .field("tenant_id", &self.tenant_id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl super::AuditRow {
    /// An operator's change to a user (`user_id`) of `tenant`; `detail` says what changed (a
    /// JSON object: never give it a secret).
    pub fn user_admin(
        at: i64,
        event: super::AdminEvent,
        actor: &str,
        tenant: &TenantId,
        user_id: &str,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            subject: Some(user_id.to_owned()),
            ..Self::admin(at, event, actor, tenant, None, detail)
        }
    }

    /// A request's event about a user's credentials (a login, a lock, an API key's use): on
    /// behalf of `client_id` when a client called, about `user_id` when the user is known.
    /// `detail` never holds a secret; the username may be given there when no user matched.
    pub fn credential(
        at: i64,
        event: super::RequestEvent,
        tenant: &TenantId,
        client_id: Option<&str>,
        user_id: Option<&str>,
        outcome: &str,
        detail: Option<serde_json::Value>,
    ) -> Self {
        Self {
            at,
            event: event.name().to_owned(),
            client_id: client_id.map(str::to_owned),
            subject: user_id.map(str::to_owned),
            family_id: None,
            outcome: outcome.to_owned(),
            actor: None,
            detail: detail.map(|d| d.to_string()),
            tenant_id: tenant.clone(),
        }
    }
}
