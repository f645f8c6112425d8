//! TLS on a listener (rustls, with the aws-lc-rs provider the rest of the tree uses): a
//! certificate chain and key read from PEM files, and read again when the files change, as
//! cert-manager or a Secret volume rotates them, without a restart.
//!
//! - [`TlsFiles`]: where the PEM files are, how often they are checked, the handshake deadline;
//! - [`Tls`]: the loaded pair and the acceptor [`super::serve_tls`] uses;
//! - the reload: every [`TlsFiles::reload_interval`] the two files are read and compared with
//!   what was last seen; a changed, valid pair replaces the served one for new handshakes, a
//!   broken one keeps the old pair, logs once and is reported to [`Tls::on_reload`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use zeroize::Zeroizing;

/// The default seconds between two checks of the files: a rotated certificate is served within
/// this, and reading two small files this often costs nothing.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// The default handshake deadline, as long as a request header's.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate chain and its key are, and how they are watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    pub reload_interval: Duration,
    /// From the connection's start to the end of the TLS handshake; then it is closed.
    pub handshake_timeout: Duration,
}

impl TlsFiles {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Why a certificate pair cannot be served. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM CERTIFICATE in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM certificate chain ({reason})")]
    Certificate { path: PathBuf, reason: String },
    #[error("{path}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path}: not a usable private key ({reason})")]
    Key { path: PathBuf, reason: String },
    #[error("{key} is not the key of the certificate in {cert} ({reason})")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// What a check of the files found, for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A new valid pair is served from now on.
    Loaded,
    /// The files changed but do not make a valid pair: the previous pair is still served.
    Failed,
}

type Observer = Arc<dyn Fn(Reload) + Send + Sync>;

/// A certificate pair served from files, ready for [`super::serve_tls`].
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    certs: Arc<Served>,
    files: TlsFiles,
    observer: Option<Observer>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Reads and checks the pair now: a server must not start with a certificate it cannot
    /// serve. HTTP/1.1 is offered by ALPN, the one protocol the server speaks.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (pair, seen) = read_pair(&files, &provider)?;
        let certs = Arc::new(Served {
            provider: Arc::clone(&provider),
            current: RwLock::new(pair),
            seen: RwLock::new(seen),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certs,
            files,
            observer: None,
        })
    }

    /// Calls `observer` with the outcome of every check that found the files changed.
    #[must_use]
    pub fn on_reload(mut self, observer: impl Fn(Reload) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Checks the files every reload interval until the task is aborted.
    pub(super) fn watch(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(this.files.reload_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                // Reading two small files is quick, but it is blocking I/O all the same.
                let check = this.clone();
                let outcome = tokio::task::spawn_blocking(move || check.check())
                    .await
                    .ok()
                    .flatten();
                if let (Some(outcome), Some(observer)) = (outcome, &this.observer) {
                    observer(outcome);
                }
            }
        })
    }

    /// One check of the files: `None` when they are as last seen, else whether the new pair
    /// is served. Files that cannot be read count as a change to a broken pair.
    pub fn check(&self) -> Option<Reload> {
        let fingerprint = fingerprint(&self.files);
        if *read(&self.certs.seen) == fingerprint {
            return None;
        }
        let outcome = match read_pair(&self.files, &self.certs.provider) {
            Ok((pair, seen)) => {
                *write(&self.certs.current) = pair;
                *write(&self.certs.seen) = seen;
                tracing::info!(
                    cert = %self.files.cert.display(),
                    "TLS certificate reloaded: new connections get the new certificate"
                );
                Reload::Loaded
            }
            Err(error) => {
                // Logged once per content: the same broken files are not read again.
                *write(&self.certs.seen) = fingerprint;
                tracing::error!(
                    %error,
                    "TLS certificate files changed but cannot be served: keeping the previous certificate"
                );
                Reload::Failed
            }
        };
        Some(outcome)
    }

    /// The handshake, within its deadline; `None` (and the connection dropped) if it fails or
    /// takes too long.
    pub(super) async fn handshake<I>(&self, io: I) -> Option<TlsStream<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.files.handshake_timeout, self.acceptor.accept(io)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("closing a connection that missed the TLS handshake deadline");
                None
            }
        }
    }
}

/// The pair served now, and the fingerprint of the file contents last seen.
#[derive(Debug)]
struct Served {
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    seen: RwLock<[u8; 32]>,
}

impl ResolvesServerCert for Served {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&read(&self.current)))
    }
}

/// A poisoned lock only means a thread panicked while holding it; the value is whole.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

/// SHA-256 over both files' contents: whether anything changed, without keeping the key.
fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((cert.len() as u64).to_be_bytes());
    hash.update(cert);
    hash.update(key);
    hash.finalize().into()
}

/// The digest of both files, or of the error that stops reading them: either way a change
/// shows, and an unchanged error is logged once.
fn fingerprint(files: &TlsFiles) -> [u8; 32] {
    match (read_file(&files.cert), read_file(&files.key)) {
        (Ok(cert), Ok(key)) => digest(&cert, &key),
        (Err(e), _) | (_, Err(e)) => digest(b"unreadable", e.to_string().as_bytes()),
    }
}

fn read_pair(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, [u8; 32]), TlsError> {
    let cert_pem = read_file(&files.cert)?;
    let key_pem = read_file(&files.key)?;
    let seen = digest(&cert_pem, &key_pem);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: files.key.clone(),
        },
        // The PEM error names a section or a position, never the key's bytes.
        e => TlsError::Key {
            path: files.key.clone(),
            reason: e.to_string(),
        },
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })?;
    Ok((Arc::new(pair), seen))
}
