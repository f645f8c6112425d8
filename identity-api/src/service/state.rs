//! The application state every operation shares: the database, the settings, the keys, the
//! caches and the metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clients::{self, ClientCache};
use crate::clock::{now, now_millis};
use crate::kek::{self, Keks, KeyError};
use crate::keys::{Directory, KeyStore, TenantDefaults};
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::secret::{ClientSecret, Key32};
use crate::signing::Algorithm;
use crate::storage::{Db, Scope, StoreError, TenantId, TenantRow};
use crate::tokens::VerifiedCache;
use crate::users::password::{BadPolicy, Hasher};

use super::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Passwords(#[from] BadPolicy),
}

/// A tenant's `scopes_supported`, and when it was read.
type ScopesRead = (i64, Arc<Vec<String>>);

/// Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) db: Db,
    pub(super) settings: Settings,
    pub(super) keys: KeyStore,
    pub(super) verifier_key: Key32,
    /// The HMAC key of the API-key and recovery-code verifiers.
    pub(super) credential_key: Key32,
    /// Seals the users' TOTP secrets (AES-256-GCM, AAD = the user's id).
    pub(super) mfa_key: Key32,
    /// Hashes and verifies the users' passwords under `settings.passwords`.
    pub(super) hasher: Hasher,
    /// Compared against when the client is unknown, so that both paths cost the same.
    pub(super) dummy_verifier: [u8; 32],
    /// Failed logins per source, and the count of password verifications.
    pub(super) login: super::login::LoginState,
    pub(super) cache: VerifiedCache,
    pub(super) clients: ClientCache,
    /// API keys that validated lately, and the refusals audited lately.
    pub(super) api_keys: super::api_keys::ApiKeys,
    pub(super) metrics: Metrics,
    pub(super) last_key_reload: AtomicI64,
    /// The scopes of each tenant's enabled clients as its metadata lists them, and when they
    /// were read.
    scopes: Mutex<HashMap<TenantId, ScopesRead>>,
}

impl AppState {
    /// Builds the state on a migrated database; creates the default tenant (adopting the rows
    /// made before tenants), its first signing key, the client-secret verifier key and the
    /// keys of the users' credentials if there are none.
    pub async fn new(
        db: Db,
        keks: impl Into<Keks>,
        settings: Settings,
    ) -> Result<Self, StartError> {
        let keks = keks.into();
        let default = default_tenant_row(&settings.default_tenant, now());
        if db.ensure_default_tenant(&default).await? {
            tracing::info!(tenant = %settings.default_tenant, "created the default tenant");
        }
        let verifier_key = kek::verifier_key(&db, &keks).await?;
        let credential_key = kek::wrapped_key(&db, &keks, kek::API_KEY_VERIFIER_KEY_NAME).await?;
        let mfa_key = kek::wrapped_key(&db, &keks, kek::MFA_SECRET_KEY_NAME).await?;
        let hasher = Hasher::new(&settings.passwords)?;
        let dummy_verifier = clients::verifier(&verifier_key, "", "");
        let metrics = Metrics::new(db.batch_metrics());
        let keys = KeyStore::new(
            keks,
            TenantDefaults {
                issuer: settings.issuer.clone(),
                default_tenant: settings.default_tenant.clone(),
                access_ttl: settings.access_ttl,
                refresh_ttl: settings.refresh_ttl,
                family_ttl: settings.family_ttl,
            },
        );
        let state = Self {
            inner: Arc::new(Inner {
                db,
                settings,
                keys,
                verifier_key,
                credential_key,
                mfa_key,
                hasher,
                dummy_verifier,
                login: Default::default(),
                cache: VerifiedCache::default(),
                clients: ClientCache::default(),
                api_keys: Default::default(),
                metrics,
                last_key_reload: AtomicI64::new(0),
                scopes: Mutex::new(HashMap::new()),
            }),
        };
        state.reload_keys().await?;
        Ok(state)
    }

    /// Connects, runs the embedded migrations and builds the state.
    pub async fn open(
        url: &str,
        keks: impl Into<Keks>,
        settings: Settings,
    ) -> Result<Self, StartError> {
        let db = Db::connect(url).await?;
        db.migrate().await?;
        Self::new(db, keks, settings).await
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }

    /// The tenants and their keys, as of the last reload.
    pub fn directory(&self) -> Arc<Directory> {
        self.inner.keys.directory()
    }

    pub fn verifier_key(&self) -> &Key32 {
        &self.inner.verifier_key
    }

    /// The HMAC key of the API-key and recovery-code verifiers.
    pub fn credential_key(&self) -> &Key32 {
        &self.inner.credential_key
    }

    /// The key that seals the users' TOTP secrets.
    pub fn mfa_key(&self) -> &Key32 {
        &self.inner.mfa_key
    }

    /// The users' password hasher (`settings().passwords`).
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// Picks up tenants created or changed and keys rotated by the command line or another
    /// instance.
    pub async fn reload_keys(&self) -> Result<bool, KeyError> {
        self.inner
            .last_key_reload
            .store(now_millis(), Ordering::Relaxed);
        self.inner.keys.reload(&self.inner.db, now()).await
    }

    /// When the keys were last reloaded, in Unix milliseconds.
    pub(super) fn last_key_reload(&self) -> i64 {
        self.inner.last_key_reload.load(Ordering::Relaxed)
    }

    /// Every scope an enabled client of `tenant` may ask for, sorted: the metadata's
    /// `scopes_supported`. Read at most every `ClientCache::TTL_SECS`, since anyone may fetch
    /// the metadata.
    pub async fn scopes_supported(
        &self,
        tenant: &TenantId,
    ) -> Result<Arc<Vec<String>>, StoreError> {
        let now = now();
        if let Ok(kept) = self.inner.scopes.lock()
            && let Some((read_at, scopes)) = kept.get(tenant)
            && now.saturating_sub(*read_at) < ClientCache::TTL_SECS
        {
            return Ok(Arc::clone(scopes));
        }
        let mut scopes: Vec<String> = Vec::new();
        for client in self.inner.db.clients(Scope::Tenant(tenant)).await? {
            if client.enabled {
                scopes.extend(
                    clients::split_list(&client.scopes)
                        .into_iter()
                        .map(str::to_owned),
                );
            }
        }
        scopes.sort_unstable();
        scopes.dedup();
        let scopes = Arc::new(scopes);
        if let Ok(mut kept) = self.inner.scopes.lock() {
            kept.insert(tenant.clone(), (now, Arc::clone(&scopes)));
        }
        Ok(scopes)
    }

    /// Seeds `dev-client` in the default tenant for the quick start; returns its secret when it
    /// was created now.
    pub async fn seed_dev_client(&self) -> Result<Option<ClientSecret>, clients::ClientError> {
        let db = &self.inner.db;
        if db.client(Scope::AnyTenant, "dev-client").await?.is_some() {
            return Ok(None);
        }
        // `any`: the journey's client asserts its users' subjects, as a login front end does.
        let new = clients::NewClient {
            subject_policy: Some("any"),
            ..clients::NewClient::new(
                &self.inner.settings.default_tenant,
                "orders.read orders.write",
                "orders-api",
            )
        };
        match clients::create(
            db,
            &self.inner.verifier_key,
            "dev-client",
            new,
            &Operator::current(),
            now(),
        )
        .await
        {
            Ok(secret) => Ok(Some(secret)),
            Err(clients::ClientError::Exists(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The default tenant as the first start creates it: the server's issuer and lifetimes, ES256.
pub fn default_tenant_row(tenant: &TenantId, now: i64) -> TenantRow {
    TenantRow {
        tenant_id: tenant.clone(),
        display_name: tenant.to_string(),
        issuer: None,
        enabled: true,
        algorithm: Algorithm::Es256.as_str().to_owned(),
        signing_key_ref: None,
        access_ttl: None,
        refresh_ttl: None,
        family_ttl: None,
        created_at: now,
        updated_at: now,
    }
}
