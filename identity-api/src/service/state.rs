//! The application state every operation shares: the database, the settings, the keys, the
//! caches and the metrics.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clients::{self, ClientCache};
use crate::clock::{now, now_millis};
use crate::kek::{self, Keks, KeyError};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::secret::{ClientSecret, Key32};
use crate::storage::{Db, StoreError};
use crate::tokens::VerifiedCache;

use super::settings::Settings;

/// How long past an access token's lifetime a retired signing key stays in the JWKS: a few
/// reload periods (`serve` reloads the keys every second).
const KEY_RELOAD_SLACK_SECS: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

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
    /// Compared against when the client is unknown, so that both paths cost the same.
    pub(super) dummy_verifier: [u8; 32],
    pub(super) cache: VerifiedCache,
    pub(super) clients: ClientCache,
    pub(super) metrics: Metrics,
    pub(super) last_key_reload: AtomicI64,
    /// The scopes of the enabled clients as the metadata lists them, and when they were read.
    scopes: Mutex<Option<(i64, Arc<Vec<String>>)>>,
}

impl AppState {
    /// Builds the state on a migrated database; creates the first signing key and the
    /// client-secret verifier key if there are none.
    pub async fn new(
        db: Db,
        keks: impl Into<Keks>,
        settings: Settings,
    ) -> Result<Self, StartError> {
        let keks = keks.into();
        let verifier_key = kek::verifier_key(&db, &keks).await?;
        let dummy_verifier = clients::verifier(&verifier_key, "", "");
        let metrics = Metrics::new(db.batch_metrics());
        // Another replica may sign with a just-retired key until its next reload (every second):
        // the JWKS keeps a retired key a little longer than an access token lives, so no token
        // outlives its published key.
        let keys = KeyStore::new(
            keks,
            settings.family_ttl,
            settings.access_ttl.saturating_add(KEY_RELOAD_SLACK_SECS),
        );
        let state = Self {
            inner: Arc::new(Inner {
                db,
                settings,
                keys,
                verifier_key,
                dummy_verifier,
                cache: VerifiedCache::default(),
                clients: ClientCache::default(),
                metrics,
                last_key_reload: AtomicI64::new(0),
                scopes: Mutex::new(None),
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

    pub fn verifier_key(&self) -> &Key32 {
        &self.inner.verifier_key
    }

    /// Picks up keys rotated by `identity-api keys rotate` or another instance.
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

    /// Every scope an enabled client may ask for, sorted: the metadata's `scopes_supported`.
    /// Read at most every `ClientCache::TTL_SECS`, since anyone may fetch the metadata.
    pub async fn scopes_supported(&self) -> Result<Arc<Vec<String>>, StoreError> {
        let now = now();
        if let Ok(kept) = self.inner.scopes.lock()
            && let Some((read_at, scopes)) = &*kept
            && now.saturating_sub(*read_at) < ClientCache::TTL_SECS
        {
            return Ok(Arc::clone(scopes));
        }
        let mut scopes: Vec<String> = Vec::new();
        for client in self.inner.db.clients().await? {
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
            *kept = Some((now, Arc::clone(&scopes)));
        }
        Ok(scopes)
    }

    /// Seeds `dev-client` for the quick start; returns its secret when it was created now.
    pub async fn seed_dev_client(&self) -> Result<Option<ClientSecret>, clients::ClientError> {
        if self.inner.db.client("dev-client").await?.is_some() {
            return Ok(None);
        }
        match clients::create(
            &self.inner.db,
            &self.inner.verifier_key,
            "dev-client",
            "orders.read orders.write",
            "orders-api",
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
