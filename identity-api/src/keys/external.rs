//! Tenants whose signing key is kept outside the database (`tenant create --signing-key-ref`):
//! read at start, read again when it changes, its public key recorded for the other replicas.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use crate::kek::KeyError;
use crate::signing::{Algorithm, KeyReference, SigningKey, Watched};
use crate::storage::{Db, Scope, SigningKeyRow, StoreError, TenantId};

use super::{KeyStore, Resolved};

/// A tenant's key read from outside, and where it is re-read from when it changes.
#[derive(Debug)]
pub(super) struct External {
    watched: Watched,
    key: Option<Arc<SigningKey>>,
}

impl KeyStore {
    /// The key a tenant references, read again if it changed; a new one is recorded (its public
    /// key only) as the tenant's active key, so that every replica publishes it and verifies its
    /// tokens after it is replaced. Returns the key, and whether a row was written. A reference
    /// that cannot be read is an error at start; later, the key read before stays in use.
    pub(super) async fn external_key(
        &self,
        db: &Db,
        tenant: &Resolved<'_>,
        reference: &str,
        now: i64,
        starting: bool,
    ) -> Result<(Option<Arc<SigningKey>>, bool), KeyError> {
        let id = &tenant.row.tenant_id;
        let refused = |message: String| KeyError::ExternalKeyLoad {
            tenant: id.to_string(),
            message,
        };
        let mut external = self.external.lock().await;
        let entry = match external.entry(id.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let parsed: KeyReference =
                    reference.parse().map_err(|e| refused(format!("{e}")))?;
                v.insert(External {
                    watched: Watched::new(parsed),
                    key: None,
                })
            }
        };
        let loaded = match entry.watched.load_if_changed().await {
            Ok(loaded) => loaded,
            Err(e) if starting || entry.key.is_none() => {
                if starting {
                    return Err(refused(e.to_string()));
                }
                tracing::error!(tenant = %id, error = %e, "cannot read the tenant's signing key");
                None
            }
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e,
                    "cannot read the tenant's signing key again; the one read before signs on");
                None
            }
        };
        let mut stored = false;
        if let Some(key) = loaded {
            if let Some(problem) = unusable(db, &key, id, tenant.algorithm).await? {
                let e = refused(problem);
                if starting {
                    return Err(e);
                }
                tracing::error!(error = %e, "keeping the tenant's signing key read before");
            } else {
                let row = SigningKeyRow {
                    kid: key.kid().to_owned(),
                    private_key_enc: Vec::new(),
                    kek_id: String::new(),
                    created_at: now,
                    retired_at: None,
                    tenant_id: id.clone(),
                    algorithm: key.algorithm().as_str().to_owned(),
                    public_jwk: key.public_jwk().to_json(),
                };
                db.insert_signing_key(&row, true, None).await?;
                tracing::info!(tenant = %id, kid = %row.kid, "read the tenant's signing key");
                entry.key = Some(Arc::new(key));
                stored = true;
            }
        }
        Ok((entry.key.clone(), stored))
    }
}

/// Why `key`, read from outside, cannot sign for `tenant`: another algorithm than the tenant's,
/// or a key another tenant signs with (one key in two tenants' JWKS would let a verifier that
/// pins one accept the other's tokens). `None` when it can.
pub async fn unusable(
    db: &Db,
    key: &SigningKey,
    tenant: &TenantId,
    algorithm: Algorithm,
) -> Result<Option<String>, StoreError> {
    if key.algorithm() != algorithm {
        return Ok(Some(format!(
            "the key is an {} key, the tenant signs with {algorithm}",
            key.algorithm()
        )));
    }
    let owner = db
        .signing_keys(Scope::AnyTenant, i64::MIN)
        .await?
        .into_iter()
        .find(|r| r.kid == key.kid() && r.tenant_id != *tenant);
    Ok(owner.map(|r| {
        format!(
            "the key is tenant {}'s already: a key signs for one tenant only",
            r.tenant_id
        )
    }))
}
