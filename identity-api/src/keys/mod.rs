//! Signing keys, sealed at rest under the key-encryption key, per tenant: the [`Directory`] of
//! tenants with their key rings that sign and verify access tokens, their JWKS, and rotation.

mod directory;
mod external;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use tokio::sync::Mutex;

pub use directory::{Directory, Tenant, TenantDefaults, Verifier};
pub use external::unusable as unusable_external_key;

use crate::kek::{Kek, Keks, KeyError};
use crate::operator::Operator;
use crate::signing::{Algorithm, PublicJwk, SigningKey};
use crate::storage::{AdminEvent, AuditRow, Db, Scope, SigningKeyRow, TenantId, TenantRow};

/// How long past an access token's lifetime a retired signing key stays in the JWKS: a few
/// reload periods (`serve` reloads the keys every second), so that a token another replica
/// signed with a just-retired key never outlives its published key.
const KEY_RELOAD_SLACK_SECS: i64 = 10;

/// Generates a new key of the tenant's algorithm and stores it (sealed) as the tenant's active
/// key; its older keys are retired. Audited as `keys_rotate` by `by`, with the new key's id.
pub async fn rotate(
    db: &Db,
    kek: &Kek,
    tenant: &TenantRow,
    now: i64,
    by: &Operator,
) -> Result<String, KeyError> {
    if let Some(reference) = &tenant.signing_key_ref {
        return Err(KeyError::ExternalKey {
            tenant: tenant.tenant_id.to_string(),
            reference: reference.clone(),
        });
    }
    let algorithm = algorithm_of(tenant)?;
    let row = new_key(kek, &tenant.tenant_id, algorithm, now)?;
    let audit = AuditRow::admin(
        now,
        AdminEvent::KeysRotate,
        by.as_str(),
        &tenant.tenant_id,
        None,
        serde_json::json!({ "kid": row.kid, "kek_id": row.kek_id, "algorithm": row.algorithm }),
    );
    db.insert_signing_key(&row, true, Some(&audit)).await?;
    Ok(row.kid)
}

fn algorithm_of(tenant: &TenantRow) -> Result<Algorithm, KeyError> {
    tenant
        .algorithm
        .parse()
        .map_err(
            |e: crate::signing::AlgorithmError| KeyError::TenantAlgorithm {
                tenant: tenant.tenant_id.to_string(),
                message: e.to_string(),
            },
        )
}

/// A new signing key of `algorithm` for `tenant`, sealed under `kek`, as its row (not yet
/// stored).
fn new_key(
    kek: &Kek,
    tenant: &TenantId,
    algorithm: Algorithm,
    now: i64,
) -> Result<SigningKeyRow, KeyError> {
    let (key, der) = SigningKey::generate(algorithm).map_err(|_| KeyError::Generate)?;
    let kid = key.kid().to_owned();
    let sealed = kek.seal(&kid, &der)?;
    Ok(SigningKeyRow {
        public_jwk: key.public_jwk().to_json(),
        kid,
        private_key_enc: sealed,
        kek_id: kek.id().to_owned(),
        created_at: now,
        retired_at: None,
        tenant_id: tenant.clone(),
        algorithm: algorithm.as_str().to_owned(),
    })
}

/// The directory as stored, plus the KEK to open private keys.
#[derive(Debug)]
pub struct KeyStore {
    keks: Keks,
    defaults: TenantDefaults,
    directory: RwLock<Arc<Directory>>,
    /// The keys of tenants that reference theirs (`signing_key_ref`), as last read.
    external: Mutex<HashMap<TenantId, external::External>>,
}

impl KeyStore {
    pub fn new(keks: Keks, defaults: TenantDefaults) -> Self {
        let directory = Directory::empty(defaults.default_tenant.clone());
        Self {
            keks,
            defaults,
            directory: RwLock::new(Arc::new(directory)),
            external: Mutex::new(HashMap::new()),
        }
    }

    pub fn keks(&self) -> &Keks {
        &self.keks
    }

    pub fn directory(&self) -> Arc<Directory> {
        match self.directory.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the tenants and their keys from the database; creates the first key of a tenant
    /// that has none of its algorithm. Returns true when anything changed.
    pub async fn reload(&self, db: &Db, now: i64) -> Result<bool, KeyError> {
        let tenants = db.tenants().await?;
        let resolved: Vec<Resolved> = tenants
            .iter()
            .map(|row| Resolved::new(row, &self.defaults))
            .collect::<Result<_, _>>()?;
        let oldest = resolved.iter().map(|t| t.family_ttl).max().unwrap_or(0);
        let mut rows = db
            .signing_keys(Scope::AnyTenant, now.saturating_sub(oldest))
            .await?;
        let mut created = false;
        for tenant in resolved.iter().filter(|t| t.row.signing_key_ref.is_none()) {
            let has_active = rows.iter().any(|r| {
                r.tenant_id == tenant.row.tenant_id
                    && r.retired_at.is_none()
                    && r.algorithm == tenant.algorithm.as_str()
                    && !r.private_key_enc.is_empty()
            });
            if !has_active {
                // The server's own first key of a tenant (or the first of a new algorithm): not
                // an operator's change, so not audited.
                let row = new_key(
                    &self.keks.current,
                    &tenant.row.tenant_id,
                    tenant.algorithm,
                    now,
                )?;
                db.insert_signing_key(&row, true, None).await?;
                created = true;
            }
        }
        // The first load is the server's start: a referenced key that cannot be read stops it.
        let starting = self.directory().fingerprint == 0;
        let mut externals = HashMap::new();
        for tenant in &resolved {
            if let Some(reference) = &tenant.row.signing_key_ref {
                // Boxed: a secret manager's client future is large, and a reload's future is
                // part of every request's that may reload on an unknown kid or tenant.
                let (key, stored) =
                    Box::pin(self.external_key(db, tenant, reference, now, starting)).await?;
                created |= stored;
                if let Some(key) = key {
                    externals.insert(tenant.row.tenant_id.clone(), key);
                }
            }
        }
        if created {
            rows = db
                .signing_keys(Scope::AnyTenant, now.saturating_sub(oldest))
                .await?;
        }
        let fingerprint = fingerprint(&tenants, &rows, &resolved, &externals, now);
        if fingerprint == self.directory().fingerprint {
            return Ok(false);
        }
        let directory = self.build(resolved, &rows, externals, now, fingerprint)?;
        match self.directory.write() {
            Ok(mut guard) => *guard = Arc::new(directory),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(directory),
        }
        Ok(true)
    }

    fn build(
        &self,
        resolved: Vec<Resolved>,
        rows: &[SigningKeyRow],
        mut externals: HashMap<TenantId, Arc<SigningKey>>,
        now: i64,
        fingerprint: u64,
    ) -> Result<Directory, KeyError> {
        let mut by_tenant: HashMap<&TenantId, Vec<&SigningKeyRow>> = HashMap::new();
        for row in rows {
            by_tenant.entry(&row.tenant_id).or_default().push(row);
        }
        let mut directory = Directory::empty(self.defaults.default_tenant.clone());
        directory.fingerprint = fingerprint;
        for t in resolved {
            let keys = by_tenant.remove(&t.row.tenant_id).unwrap_or_default();
            let active_kid = active_kid(&keys, t.algorithm);
            let mut published = Vec::new();
            let mut active = externals.remove(&t.row.tenant_id);
            for row in keys {
                if row.retired_at.is_some_and(|at| at <= now - t.family_ttl) {
                    continue;
                }
                let Some((algorithm, jwk)) = public_key(row) else {
                    continue;
                };
                let Ok(key) = jwk.decoding_key() else {
                    tracing::warn!(kid = %row.kid, "skipping a signing key with a bad public key");
                    continue;
                };
                if row
                    .retired_at
                    .is_none_or(|at| at > now - t.access_ttl - KEY_RELOAD_SLACK_SECS)
                {
                    published.push(jwk.jwks_entry(&row.kid, algorithm));
                }
                directory.verifiers.insert(
                    row.kid.clone(),
                    Verifier {
                        tenant: t.row.tenant_id.clone(),
                        algorithm,
                        key,
                    },
                );
                if Some(row.kid.as_str()) == active_kid && t.row.signing_key_ref.is_none() {
                    let der = self.keks.open(
                        &format!("signing key {}", row.kid),
                        &row.kid,
                        &row.kek_id,
                        &row.private_key_enc,
                    )?;
                    // A key keeps the kid it was stored under (those made before tenants were
                    // named otherwise than by their thumbprint).
                    let key = SigningKey::from_pkcs8(algorithm, &der)
                        .and_then(|k| k.with_kid(&row.kid))
                        .map_err(|source| KeyError::BadSigningKey {
                            kid: row.kid.clone(),
                            source,
                        })?;
                    active = Some(Arc::new(key));
                }
            }
            // A key read from outside signs whatever its row says (retired by a replica that read
            // a newer one first, say): published and verified while it signs.
            if let Some(key) = active.as_ref().filter(|_| t.row.signing_key_ref.is_some()) {
                if !published.iter().any(|e| e["kid"] == key.kid()) {
                    published.push(key.public_jwk().jwks_entry(key.kid(), key.algorithm()));
                }
                if let (false, Ok(decoding)) = (
                    directory.verifiers.contains_key(key.kid()),
                    key.public_jwk().decoding_key(),
                ) {
                    directory.verifiers.insert(
                        key.kid().to_owned(),
                        Verifier {
                            tenant: t.row.tenant_id.clone(),
                            algorithm: key.algorithm(),
                            key: decoding,
                        },
                    );
                }
            }
            let jwks = serde_json::to_vec(&serde_json::json!({ "keys": published }))
                .unwrap_or_else(|_| b"{\"keys\":[]}".to_vec());
            let tenant = Tenant {
                id: t.row.tenant_id.clone(),
                display_name: t.row.display_name.clone(),
                issuer: t.issuer,
                enabled: t.row.enabled,
                algorithm: t.algorithm,
                signing_key_ref: t.row.signing_key_ref.clone(),
                access_ttl: t.access_ttl,
                refresh_ttl: t.refresh_ttl,
                family_ttl: t.family_ttl,
                active,
                published: published.len(),
                jwks: Arc::from(jwks),
            };
            directory
                .tenants
                .insert(t.row.tenant_id.clone(), Arc::new(tenant));
        }
        Ok(directory)
    }
}

/// A tenant's row with the server's defaults filled in.
struct Resolved<'a> {
    row: &'a TenantRow,
    issuer: String,
    algorithm: Algorithm,
    access_ttl: i64,
    refresh_ttl: i64,
    family_ttl: i64,
}

impl<'a> Resolved<'a> {
    fn new(row: &'a TenantRow, defaults: &TenantDefaults) -> Result<Self, KeyError> {
        Ok(Self {
            row,
            issuer: row
                .issuer
                .clone()
                .unwrap_or_else(|| defaults.issuer_of(&row.tenant_id)),
            algorithm: algorithm_of(row)?,
            access_ttl: row.access_ttl.unwrap_or(defaults.access_ttl),
            refresh_ttl: row.refresh_ttl.unwrap_or(defaults.refresh_ttl),
            family_ttl: row.family_ttl.unwrap_or(defaults.family_ttl),
        })
    }
}

/// A key row's algorithm and public key; `None` (logged) when the row cannot be read.
fn public_key(row: &SigningKeyRow) -> Option<(Algorithm, PublicJwk)> {
    let read = row
        .algorithm
        .parse::<Algorithm>()
        .ok()
        .and_then(|alg| Some((alg, PublicJwk::from_json(alg, &row.public_jwk).ok()?)));
    if read.is_none() {
        tracing::warn!(kid = %row.kid, algorithm = %row.algorithm,
            "skipping a signing key whose algorithm or public key cannot be read");
    }
    read
}

/// What a directory is built from: the tenants, each key's presence, state and whether it is
/// published now, and the keys read from outside.
fn fingerprint(
    tenants: &[TenantRow],
    rows: &[SigningKeyRow],
    resolved: &[Resolved],
    externals: &HashMap<TenantId, Arc<SigningKey>>,
    now: i64,
) -> u64 {
    let mut h = DefaultHasher::new();
    for t in tenants {
        format!("{t:?}").hash(&mut h);
        externals.get(&t.tenant_id).map(|k| k.kid()).hash(&mut h);
    }
    let windows: BTreeMap<&TenantId, (i64, i64)> = resolved
        .iter()
        .map(|t| (&t.row.tenant_id, (t.access_ttl, t.family_ttl)))
        .collect();
    for r in rows {
        let (access, family) = windows.get(&r.tenant_id).copied().unwrap_or((0, 0));
        let published = r
            .retired_at
            .is_none_or(|at| at > now - access - KEY_RELOAD_SLACK_SECS);
        let verifies = r.retired_at.is_none_or(|at| at > now - family);
        (&r.kid, &r.tenant_id, r.retired_at, published, verifies).hash(&mut h);
    }
    h.finish()
}

/// The newest key of the tenant's algorithm that is not retired signs (two instances may race
/// to create the first key).
fn active_kid<'a>(rows: &[&'a SigningKeyRow], algorithm: Algorithm) -> Option<&'a str> {
    rows.iter()
        .filter(|r| {
            r.retired_at.is_none()
                && r.algorithm == algorithm.as_str()
                && !r.private_key_enc.is_empty()
        })
        .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
        .map(|r| r.kid.as_str())
}
