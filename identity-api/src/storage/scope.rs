//! Whose rows a query sees. Every row of a client, a signing key, a token family, a refresh
//! token or an audit event carries its tenant as a [`TenantId`], and every method of `Db` that
//! reads or changes such rows takes the tenant or a [`Scope`]: a query that names no tenant
//! does not compile.

use std::fmt;

use identity_protocol::is_valid_tenant_slug;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

/// A tenant's slug, valid by construction (`identity_protocol::is_valid_tenant_slug`), except
/// [`TenantId::unadopted`], the mark of rows made before tenants.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

/// The default tenant's slug unless `IDENTITY_DEFAULT_TENANT` names another.
pub const DEFAULT_TENANT: &str = "primary";

impl TenantId {
    /// [`DEFAULT_TENANT`].
    pub fn primary() -> Self {
        Self(DEFAULT_TENANT.to_owned())
    }

    /// `None` unless `slug` is a valid tenant slug.
    pub fn new(slug: &str) -> Option<Self> {
        is_valid_tenant_slug(slug).then(|| Self(slug.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant of rows stored before tenants existed, until the first start adopts them.
    pub(super) fn unadopted() -> Self {
        Self(String::new())
    }
}

// Hash and Eq are the slug's: a map keyed by tenant is searched by `&str`.
impl std::borrow::Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::str::FromStr for TenantId {
    type Err = InvalidTenant;

    fn from_str(slug: &str) -> Result<Self, InvalidTenant> {
        Self::new(slug).ok_or_else(|| InvalidTenant(slug.chars().take(80).collect()))
    }
}

/// The text of a tenant that is not a valid slug (cut at 80 characters).
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid tenant {0:?}: 1 to 63 characters of a-z, 0-9 and -, not starting or ending with -"
)]
pub struct InvalidTenant(pub String);

// Stored as text, in both databases.
impl<DB: Database> Type<DB> for TenantId
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: Database> Encode<'q, DB> for TenantId
where
    String: Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, DB>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for TenantId
where
    String: Decode<'r, DB>,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        // Read back as stored: the slug was checked when the row was written.
        Ok(Self(<String as Decode<'r, DB>>::decode(value)?))
    }
}

/// Which tenant's rows a lookup may find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// This tenant's rows only: a row of another tenant is not found.
    Tenant(&'a TenantId),
    /// Any tenant's: the lookup of a credential by its own key (a client id, a refresh token)
    /// when the request names no tenant, so that the row found decides the request's tenant;
    /// and an operator's view across tenants.
    AnyTenant,
}

impl Scope<'_> {
    /// Whether a row of `tenant` is in scope.
    pub fn admits(self, tenant: &TenantId) -> bool {
        match self {
            Self::Tenant(t) => t == tenant,
            Self::AnyTenant => true,
        }
    }
}

impl<'a> Scope<'a> {
    /// The condition a statement of the cold path adds for its scope, on `column`, with the
    /// scope's [`Self::param`] bound as parameter `$n`: one text for both kinds of scope (`''`
    /// names no tenant: every row has been adopted into one).
    pub(super) fn condition(column: &str, n: usize) -> String {
        format!("(${n} = '' OR {column} = ${n})")
    }

    pub(super) fn param(self) -> &'a str {
        match self {
            Self::Tenant(t) => t.as_str(),
            Self::AnyTenant => "",
        }
    }
}

impl<'a> From<Option<&'a TenantId>> for Scope<'a> {
    fn from(tenant: Option<&'a TenantId>) -> Self {
        tenant.map_or(Self::AnyTenant, Self::Tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_slugs_become_tenant_ids() {
        assert_eq!(TenantId::new("acme").unwrap().as_str(), "acme");
        assert!(TenantId::new("").is_none());
        assert!("Acme".parse::<TenantId>().is_err());
        let err = "a_b".parse::<TenantId>().unwrap_err().to_string();
        assert!(err.contains("\"a_b\"") && err.contains("a-z, 0-9"), "{err}");
    }

    #[test]
    fn a_scope_admits_its_tenant_only() {
        let a = TenantId::new("a").unwrap();
        let b = TenantId::new("b").unwrap();
        assert!(Scope::Tenant(&a).admits(&a));
        assert!(!Scope::Tenant(&a).admits(&b));
        assert!(Scope::AnyTenant.admits(&b));
    }
}
