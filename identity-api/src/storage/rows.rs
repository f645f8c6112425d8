//! Every table's row, declared once: its struct, its columns in order, how many parameters a row
//! binds, how it is read from a result row and bound to a statement. Adding a column is one edit
//! here (and the migration); the statements that read or write whole rows follow.
//!
//! Both drivers decode and encode these types alike, so each mapper is generic over the driver.
//! A row is read by position ([`Table::decode_at`]), so that a join reads its tables side by side
//! without aliasing a column that two of them share.

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use super::scope::TenantId;

/// Declares a table's row. `columns` names an enum whose variants are the columns in order, so
/// that a statement can name a column's position (`v.column3`) and the compiler checks the name.
macro_rules! table {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $table:literal, columns $columns:ident {
            $( $(#[$fmeta:meta])* pub $field:ident: $ty:ty, )+
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )+
        }

        /// The columns of the table, in the order of the row's fields.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $columns {
            $( $field, )+
        }

        impl $columns {
            /// The column's position in a `VALUES` list of whole rows: `columnN` (1-based).
            pub fn value_column(self) -> String {
                format!("column{}", self as usize + 1)
            }
        }

        impl $name {
            pub const TABLE: &'static str = $table;
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];
            /// Parameters a row binds: one per column.
            pub const WIDTH: usize = Self::COLUMNS.len();

            /// `prefix.a, prefix.b, ...`, or the bare names with an empty prefix.
            pub fn column_list(prefix: &str) -> String {
                let dot = if prefix.is_empty() { "" } else { "." };
                Self::COLUMNS
                    .iter()
                    .map(|c| format!("{prefix}{dot}{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }

            /// Reads the row from the result's columns `at`, `at + 1`, ... (in declaration order).
            pub fn decode_at<R: Row>(row: &R, at: usize) -> Result<Self, sqlx::Error>
            where
                usize: ColumnIndex<R>,
                $( for<'r> $ty: Decode<'r, R::Database> + Type<R::Database>, )+
            {
                Ok(Self {
                    $( $field: row.try_get(at + $columns::$field as usize)?, )+
                })
            }

            /// Binds every column, in order.
            pub fn bind<'q, DB: Database>(
                &'q self,
                query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
            ) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
            where
                $( &'q $ty: Encode<'q, DB> + Type<DB>, )+
            {
                query $( .bind(&self.$field) )+
            }

            /// Binds a NULL for every column: a padding row that matches nothing.
            pub fn bind_nulls<'q, DB: Database>(
                query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
            ) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
            where
                $( Option<&'q $ty>: Encode<'q, DB> + Type<DB>, )+
            {
                query $( .bind(None::<&'q $ty>) )+
            }
        }
    };
}

table! {
    /// A client of the identity API. Only the verifier of its secret is stored.
    #[derive(Clone)]
    pub struct ClientRow in "clients", columns ClientColumn {
        pub client_id: String,
        /// `clients::verifier` of the secret: HMAC-SHA256 under the verifier key.
        pub secret_verifier: Vec<u8>,
        /// Space-separated.
        pub scopes: String,
        /// Space-separated.
        pub audiences: String,
        pub enabled: bool,
        pub created_at: i64,
        pub rotated_at: i64,
        /// During the overlap of `rotate-secret --overlap`: the verifier of the secret replaced,
        /// accepted until `previous_verifier_expires_at` (Unix seconds, exclusive).
        pub previous_secret_verifier: Option<Vec<u8>>,
        pub previous_verifier_expires_at: Option<i64>,
        /// The grants of /oauth/token the client may use, space-separated (`clients::GRANT_TYPES`).
        pub grant_types: String,
        /// May introspect every client's tokens at /oauth/introspect, not only its own.
        pub may_introspect: bool,
        pub tenant_id: TenantId,
        /// Who the client may name as the subject of /api/v1/token/issue
        /// (`clients::SubjectPolicy`, as stored).
        pub subject_policy: String,
    }
}

table! {
    /// A tenant: its own issuer, signing keys, token settings, clients and tokens.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TenantRow in "tenants", columns TenantColumn {
        pub tenant_id: TenantId,
        pub display_name: String,
        /// `None`: the server's issuer, with `/t/{tenant}` after it unless the default tenant.
        pub issuer: Option<String>,
        pub enabled: bool,
        /// The JOSE name of the signing algorithm.
        pub algorithm: String,
        /// Where the signing key is read from (`file:` or `aws-sm:`); `None`: generated.
        pub signing_key_ref: Option<String>,
        /// Lifetimes in seconds; `None`: the server's.
        pub access_ttl: Option<i64>,
        pub refresh_ttl: Option<i64>,
        pub family_ttl: Option<i64>,
        pub created_at: i64,
        pub updated_at: i64,
    }
}

table! {
    /// A tenant's signing key; the PKCS#8 private key sealed under the key-encryption key, or
    /// nothing for a key read from outside (the tenant's `signing_key_ref`).
    #[derive(Clone)]
    pub struct SigningKeyRow in "signing_keys", columns SigningKeyColumn {
        pub kid: String,
        /// Empty for a key read from outside.
        pub private_key_enc: Vec<u8>,
        /// Id of the key-encryption key that sealed `private_key_enc`; empty for a key read
        /// from outside.
        pub kek_id: String,
        pub created_at: i64,
        pub retired_at: Option<i64>,
        pub tenant_id: TenantId,
        /// The JOSE name of its algorithm.
        pub algorithm: String,
        /// The public members of its JWK, as a JSON object.
        pub public_jwk: String,
    }
}

table! {
    /// A secret key sealed under the key-encryption key (AAD = `name`); today one row, the
    /// client-secret verifier key.
    pub struct WrappedKeyRow in "wrapped_keys", columns WrappedKeyColumn {
        pub name: String,
        pub kek_id: String,
        pub key_enc: Vec<u8>,
        pub created_at: i64,
    }
}

table! {
    /// A token family: the refresh tokens issued from one token issue, revoked together.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FamilyRow in "token_families", columns FamilyColumn {
        pub family_id: String,
        pub client_id: String,
        pub subject: String,
        pub scope: String,
        pub audience: String,
        pub created_at: i64,
        pub expires_at: i64,
        pub last_used_at: i64,
        pub revoked_at: Option<i64>,
        pub revoke_reason: Option<String>,
        pub tenant_id: TenantId,
        /// A user's family (the password grant's): the user's roles, space-separated, which its
        /// access tokens carry as `roles`. `None` for a client's.
        pub roles: Option<String>,
    }
}

table! {
    /// A refresh token, stored only by its lookup key (`secret::refresh_token_key`).
    #[derive(Clone)]
    pub struct RefreshRow in "refresh_tokens", columns RefreshColumn {
        pub token_hash: Vec<u8>,
        pub jti: String,
        pub family_id: String,
        pub issued_at: i64,
        pub expires_at: i64,
        pub spent: bool,
        pub spent_at: Option<i64>,
        pub tenant_id: TenantId,
    }
}

table! {
    /// An audit event: never a token or a secret. `id` is the database's.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AuditRow in "audit_events", columns AuditColumn {
        pub at: i64,
        pub event: String,
        pub client_id: Option<String>,
        pub subject: Option<String>,
        pub family_id: Option<String>,
        pub outcome: String,
        /// Who made an administrative change, as they claim it (`operator::Operator`); `None`
        /// on the events of requests.
        pub actor: Option<String>,
        /// What an administrative change changed: a JSON object, never a secret.
        pub detail: Option<String>,
        pub tenant_id: TenantId,
    }
}

pub mod events;
pub mod users;
pub use events::{AdminEvent, RequestEvent};
pub use users::{ApiKeyRow, LoginFailureRow, RoleRow, UserRow};

impl RefreshRow {
    /// A refresh token of `family` as issued: not spent.
    pub fn new(
        token_hash: [u8; 32],
        jti: String,
        family: &FamilyRow,
        issued_at: i64,
        expires_at: i64,
    ) -> Self {
        Self {
            token_hash: token_hash.to_vec(),
            jti,
            family_id: family.family_id.clone(),
            issued_at,
            expires_at,
            spent: false,
            spent_at: None,
            tenant_id: family.tenant_id.clone(),
        }
    }
}

impl AuditRow {
    /// An event about a token family, on behalf of its client and subject.
    pub fn family(at: i64, event: RequestEvent, family: &FamilyRow, outcome: &str) -> Self {
        Self {
            at,
            event: event.name().to_owned(),
            client_id: Some(family.client_id.clone()),
            subject: Some(family.subject.clone()),
            family_id: Some(family.family_id.clone()),
            outcome: outcome.to_owned(),
            actor: None,
            detail: None,
            tenant_id: family.tenant_id.clone(),
        }
    }

    /// An administrative change in `tenant` by `actor`, of `client_id` when it is about a
    /// client; `detail` says what changed (a JSON object: never give it a secret).
    /// An operator's change to the deployment as a whole (the key-encryption key), which no
    /// tenant owns: recorded with the empty tenant.
    pub fn server(at: i64, event: AdminEvent, actor: &str, detail: serde_json::Value) -> Self {
        Self::admin(at, event, actor, &TenantId::unadopted(), None, detail)
    }

    pub fn admin(
        at: i64,
        event: AdminEvent,
        actor: &str,
        tenant: &TenantId,
        client_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            at,
            event: event.name().to_owned(),
            client_id: client_id.map(str::to_owned),
            subject: None,
            family_id: None,
            outcome: event.outcome().to_owned(),
            actor: Some(actor.to_owned()),
            detail: Some(detail.to_string()),
            tenant_id: tenant.clone(),
        }
    }
}

/// A refresh token joined with its family: what a refresh, an introspection or a revocation
/// finds by the token.
#[derive(Clone)]
pub struct RefreshView {
    pub token: RefreshRow,
    pub family: FamilyRow,
}

impl RefreshView {
    /// `SELECT <refresh_tokens r> , <token_families f>` read side by side.
    pub fn decode<R: Row>(row: &R) -> Result<Self, sqlx::Error>
    where
        usize: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(Self {
            token: RefreshRow::decode_at(row, 0)?,
            family: FamilyRow::decode_at(row, RefreshRow::WIDTH)?,
        })
    }
}

// Rows that hold secrets (a verifier, a sealed key, a token's lookup key) show only what
// identifies them.
impl std::fmt::Debug for ClientRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRow")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("scopes", &self.scopes)
            .field("audiences", &self.audiences)
            .field("enabled", &self.enabled)
            .field("grant_types", &self.grant_types)
            .field("may_introspect", &self.may_introspect)
            .field("subject_policy", &self.subject_policy)
            .field(
                "previous_verifier_expires_at",
                &self.previous_verifier_expires_at,
            )
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("tenant_id", &self.tenant_id)
            .field("algorithm", &self.algorithm)
            .field("kek_id", &self.kek_id)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WrappedKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKeyRow")
            .field("name", &self.name)
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RefreshRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRow")
            .field("jti", &self.jti)
            .field("family_id", &self.family_id)
            .field("expires_at", &self.expires_at)
            .field("spent", &self.spent)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RefreshView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshView")
            .field("token", &self.token)
            .field("family", &self.family)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_widths_and_positions_follow_the_declaration() {
        assert_eq!(FamilyRow::WIDTH, 12);
        assert_eq!(FamilyRow::COLUMNS[1], "client_id");
        assert_eq!(FamilyColumn::client_id.value_column(), "column2");
        assert_eq!(RefreshColumn::family_id.value_column(), "column3");
        assert_eq!(
            ClientRow::column_list("c"),
            "c.client_id, c.secret_verifier, c.scopes, c.audiences, c.enabled, c.created_at, \
             c.rotated_at, c.previous_secret_verifier, c.previous_verifier_expires_at, \
             c.grant_types, c.may_introspect, c.tenant_id, c.subject_policy"
        );
        assert_eq!(
            WrappedKeyRow::column_list(""),
            "name, kek_id, key_enc, created_at"
        );
    }
}
