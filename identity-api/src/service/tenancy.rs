//! Which tenant a request belongs to: the tenant of its credential (a client's row, a token's
//! key), and, for a request without one, the tenant its path or a tenant header names, else
//! the default tenant. A credential presented under another tenant's name is refused.

use std::sync::Arc;

use crate::clock::now_millis;
use crate::error::ApiError;
use crate::keys::Tenant;
use crate::storage::TenantId;

use super::state::AppState;

/// The tenant a request named, by its `/t/{tenant}` prefix or a tenant header: it exists and is
/// enabled (the HTTP layer answered 404 or 403 otherwise).
#[derive(Debug, Clone)]
pub struct NamedTenant(pub Arc<Tenant>);

impl NamedTenant {
    pub fn id(&self) -> &TenantId {
        &self.0.id
    }
}

/// The id of the tenant named, if any: what a credential's tenant must equal.
pub fn named_id(named: Option<&NamedTenant>) -> Option<&TenantId> {
    named.map(NamedTenant::id)
}

impl AppState {
    /// The tenant `slug` names: 404 `unknown_tenant` when there is none, 403 `tenant_disabled`
    /// when it is disabled; never the default tenant instead. A slug the directory does not
    /// know reloads it (at most every 200 ms), so a tenant created a moment ago is found.
    pub async fn named_tenant(&self, slug: &str) -> Result<NamedTenant, ApiError> {
        let mut found = self.directory().tenant(slug).cloned();
        if found.is_none() && self.last_key_reload() + 200 < now_millis() {
            if let Err(e) = Box::pin(self.reload_keys()).await {
                tracing::warn!(error = %e, "tenant reload failed");
            }
            found = self.directory().tenant(slug).cloned();
        }
        match found {
            None => Err(ApiError::UnknownTenant(slug.to_owned())),
            Some(t) if !t.enabled => Err(ApiError::TenantDisabled(slug.to_owned())),
            Some(t) => Ok(NamedTenant(t)),
        }
    }

    /// The tenant of a request without a credential: the one it named, else the default.
    pub fn request_tenant(&self, named: Option<&NamedTenant>) -> Result<Arc<Tenant>, ApiError> {
        if let Some(named) = named {
            return Ok(Arc::clone(&named.0));
        }
        let directory = self.directory();
        match directory.default_tenant() {
            Some(t) if t.enabled => Ok(Arc::clone(t)),
            Some(t) => Err(ApiError::TenantDisabled(t.id.to_string())),
            None => Err(ApiError::Internal(
                "the default tenant is not loaded".into(),
            )),
        }
    }

    /// The tenant of a credential that belongs to `tenant`, if the request may use it there:
    /// the tenant is enabled, and is the one the request named, if it named one.
    pub(super) fn credential_tenant(
        &self,
        tenant: &TenantId,
        named: Option<&TenantId>,
    ) -> Option<Arc<Tenant>> {
        if named.is_some_and(|n| n != tenant) {
            return None;
        }
        self.directory()
            .tenant(tenant.as_str())
            .filter(|t| t.enabled)
            .cloned()
    }
}
