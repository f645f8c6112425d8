//! The tenants as requests see them: each with its issuer, lifetimes and key ring, and the
//! verification keys of every tenant by `kid`. Built from the database by
//! [`super::KeyStore::reload`] and swapped whole.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;

use crate::signing::{Algorithm, SigningKey};
use crate::storage::TenantId;

/// The server's own settings of every tenant, which a tenant's row may override.
#[derive(Debug, Clone)]
pub struct TenantDefaults {
    /// `IDENTITY_ISSUER`: the default tenant's issuer, and the base of the others'.
    pub issuer: String,
    /// `IDENTITY_DEFAULT_TENANT`.
    pub default_tenant: TenantId,
    pub access_ttl: i64,
    pub refresh_ttl: i64,
    pub family_ttl: i64,
}

impl TenantDefaults {
    /// A tenant's issuer when its row sets none: the server's, with `/t/{tenant}` after it for
    /// any tenant but the default, so that its discovery document sits under its prefix.
    pub fn issuer_of(&self, tenant: &TenantId) -> String {
        if *tenant == self.default_tenant {
            self.issuer.clone()
        } else {
            format!(
                "{}{}{}",
                self.issuer.trim_end_matches('/'),
                identity_protocol::paths::TENANT_PREFIX,
                tenant
            )
        }
    }
}

/// One tenant, resolved: what its requests and tokens use.
pub struct Tenant {
    pub id: TenantId,
    pub display_name: String,
    pub issuer: String,
    pub enabled: bool,
    pub algorithm: Algorithm,
    /// Where its signing key is read from, when it is not generated.
    pub signing_key_ref: Option<String>,
    pub access_ttl: i64,
    pub refresh_ttl: i64,
    pub family_ttl: i64,
    /// The key its tokens are signed with; `None` only until its first key exists (or, for a
    /// key read from outside, while it cannot be read).
    pub active: Option<Arc<SigningKey>>,
    /// Its JWKS document, serialized: its own keys only.
    pub jwks: Arc<[u8]>,
    /// How many keys the JWKS holds.
    pub published: usize,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("enabled", &self.enabled)
            .field("algorithm", &self.algorithm)
            .field("active", &self.active)
            .field("published", &self.published)
            .finish_non_exhaustive()
    }
}

/// A key that verifies tokens, and the tenant whose tokens it signed.
pub struct Verifier {
    pub tenant: TenantId,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("tenant", &self.tenant)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Every tenant and every verification key, as of the last reload.
#[derive(Debug)]
pub struct Directory {
    pub(super) default: TenantId,
    pub(super) tenants: HashMap<TenantId, Arc<Tenant>>,
    pub(super) verifiers: HashMap<String, Verifier>,
    /// What the directory was built from, to skip a rebuild when nothing changed.
    pub(super) fingerprint: u64,
}

impl Directory {
    pub(super) fn empty(default: TenantId) -> Self {
        Self {
            default,
            tenants: HashMap::new(),
            verifiers: HashMap::new(),
            fingerprint: 0,
        }
    }

    /// A directory of these tenants and keys, built by hand (for tests and benchmarks of what
    /// reads one; a server's is built by `KeyStore::reload`).
    pub fn of(default: TenantId, tenants: Vec<Tenant>, verifiers: Vec<(String, Verifier)>) -> Self {
        Self {
            default,
            tenants: tenants
                .into_iter()
                .map(|t| (t.id.clone(), Arc::new(t)))
                .collect(),
            verifiers: verifiers.into_iter().collect(),
            fingerprint: 0,
        }
    }

    /// A tenant by slug, enabled or not.
    pub fn tenant(&self, slug: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(slug)
    }

    /// The default tenant (`None` only before the first reload).
    pub fn default_tenant(&self) -> Option<&Arc<Tenant>> {
        self.tenants.get(&self.default)
    }

    /// The key of `kid`, of whichever tenant.
    pub fn verifier(&self, kid: &str) -> Option<&Verifier> {
        self.verifiers.get(kid)
    }
}
