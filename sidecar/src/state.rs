//! The sidecar's shared state: signing keys, the session store, the rate limiter, the upstream
//! client and the metrics.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use crate::config::Config;
use crate::forward::Upstream;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::sessions::SessionStore;
use identity_protocol::signing::{PublishedKey, published_key_from_pem};
use identity_protocol::{KeyDocument, SigningKey};

/// The file `--dev` uses in the working directory.
pub const DEV_SIGNING_KEY_FILE: &str = "sidecar-dev-signing-key.pem";

/// Why the sidecar cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "no signing key: pass --signing-key-file (SIDECAR_SIGNING_KEY_FILE) with a PKCS#8 PEM ECDSA \
         P-256 key, or --dev (SIDECAR_DEV) to generate ./{DEV_SIGNING_KEY_FILE} for development"
    )]
    NoSigningKey,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key {
        path: PathBuf,
        source: identity_protocol::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] identity_runtime::serve::TlsError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The signing key and the key document published at `/.well-known/identity-sidecar`.
#[derive(Debug)]
pub struct Keys {
    pub signing: SigningKey,
    /// The key document, serialised once.
    pub document: Vec<u8>,
}

impl Keys {
    /// The signing key first, then every further published key (rotation), without duplicates.
    pub fn new(signing: SigningKey, extra: Vec<PublishedKey>) -> Self {
        let mut keys = vec![signing.published()];
        for key in extra {
            if !keys.iter().any(|k| k.key_id == key.key_id) {
                keys.push(key);
            }
        }
        #[allow(clippy::expect_used)] // Strings only: always serialises.
        let document =
            serde_json::to_vec(&KeyDocument::new(keys)).expect("key document serialises");
        Self { signing, document }
    }

    /// Reads the keys the configuration names: `--signing-key-file`, else `--dev` (generating
    /// the development key in the working directory if missing), else refuses to start.
    pub fn load(config: &Config) -> Result<Self, StartError> {
        let signing = match (&config.signing_key_file, config.dev) {
            (Some(path), _) => read_signing_key(path)?,
            (None, true) => dev_signing_key(Path::new("."))?,
            (None, false) => return Err(StartError::NoSigningKey),
        };
        let mut extra = Vec::with_capacity(config.publish_key_files.len());
        for path in &config.publish_key_files {
            let pem = read_to_string(path)?;
            let key = published_key_from_pem(&pem).map_err(|source| StartError::Key {
                path: path.clone(),
                source,
            })?;
            extra.push(key);
        }
        Ok(Self::new(signing, extra))
    }
}

fn read_to_string(path: &Path) -> Result<zeroize::Zeroizing<String>, StartError> {
    fs::read_to_string(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|source| StartError::Read {
            path: path.to_owned(),
            source,
        })
}

fn read_signing_key(path: &Path) -> Result<SigningKey, StartError> {
    let pem = read_to_string(path)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|source| StartError::Key {
        path: path.to_owned(),
        source,
    })
}

/// `--dev`: `<dir>/sidecar-dev-signing-key.pem`, generated (mode 0600) when missing.
pub fn dev_signing_key(dir: &Path) -> Result<SigningKey, StartError> {
    let path = dir.join(DEV_SIGNING_KEY_FILE);
    if path.exists() {
        tracing::warn!(
            path = %path.display(),
            "DEVELOPMENT MODE: signing session inits with the development key; never use --dev in production"
        );
        return read_signing_key(&path);
    }
    let key = SigningKey::generate();
    let pem = key.to_pkcs8_pem().map_err(|source| StartError::Key {
        path: path.clone(),
        source,
    })?;
    let write_error = |source| StartError::Write {
        path: path.clone(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(write_error)?;
    file.write_all(pem.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    tracing::warn!(
        path = %path.display(),
        key_id = key.key_id(),
        "DEVELOPMENT MODE: generated a new signing key for session inits; clients must trust it \
         (TOFU or pin); never use --dev in production"
    );
    Ok(key)
}

/// Settings the handlers read, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub anonymous_ttl: u64,
    pub authenticated_ttl: u64,
    pub max_requests_per_session: u64,
    pub max_body_bytes: usize,
    pub routes: HashSet<String>,
    pub sweep_interval: Duration,
    /// Whether the public listener serves /metrics: only without an ops listener.
    pub public_metrics: bool,
    /// Whether the standard OAuth routes are passed through: with TLS, or behind a TLS proxy.
    pub standard_routes: bool,
    /// `--tenant-headers`: the headers that may name a request's tenant, passed through.
    pub tenant_headers: Vec<HeaderName>,
}

/// The names in order, each once: a name given twice must not forward its header twice.
fn unique(names: &[HeaderName]) -> Vec<HeaderName> {
    let mut unique: Vec<HeaderName> = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(name) {
            unique.push(name.clone());
        }
    }
    unique
}

#[derive(Debug)]
pub struct Inner {
    pub settings: Settings,
    pub keys: Keys,
    pub sessions: SessionStore,
    pub limiter: RateLimiter,
    pub upstream: Upstream,
    pub metrics: Metrics,
}

/// Cheap to clone: one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: &Config, keys: Keys) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let upstream = Upstream::new(config).map_err(StartError::Config)?;
        let metrics = Metrics::new();
        let sessions = SessionStore::open(&config.session_store, config.max_sessions, &metrics)
            .map_err(StartError::Config)?;
        Ok(Self(Arc::new(Inner {
            settings: Settings {
                anonymous_ttl: config.anonymous_ttl_secs,
                authenticated_ttl: config.authenticated_ttl_secs,
                max_requests_per_session: config.max_requests_per_session,
                max_body_bytes: config.max_body_bytes,
                routes: config.routes.iter().cloned().collect(),
                sweep_interval: config.sweep_interval(),
                public_metrics: config.ops_listen.is_none(),
                standard_routes: config.tls.standard_routes(),
                tenant_headers: unique(&config.tenant_headers),
            },
            keys,
            sessions,
            limiter: RateLimiter::new(config.init_rate_per_sec, config.init_burst),
            upstream,
            metrics,
        })))
    }
}
