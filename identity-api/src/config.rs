//! Command line and environment (flag > environment > default), see docs/CONVENTIONS.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use crate::keys::{Kek, Keks, KeyError};
use crate::secret::InternalToken;

/// Where `--dev` keeps its generated key-encryption key when none is configured.
pub const DEV_KEK_FILE: &str = "identity-dev.kek";

/// A secret given on the command line or in the environment: redacted Debug, wiped on drop.
/// (clap needs `Clone`.)
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct SecretArg(String);

impl SecretArg {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretArg(<redacted>)")
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "identity-api",
    version,
    about = "Identity API: clients, token issuance, introspection, refresh-token families, revocation, JWKS",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format.
    #[arg(long, env = "IDENTITY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (runs the migrations first).
    Serve(ServeArgs),
    /// Run the embedded database migrations and exit.
    Migrate(DbArgs),
    /// Manage clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Key-encryption key: generate one, re-encrypt the stored keys under the current one.
    #[command(subcommand)]
    Kek(KekCommand),
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Database URL: sqlite://path (created if missing) or postgres://user:password@host/db
    /// (TLS: add ?sslmode=require or verify-full, see the README).
    #[arg(
        long,
        env = "IDENTITY_DATABASE_URL",
        default_value = "sqlite://identity.db",
        hide_env_values = true
    )]
    pub database_url: SecretArg,

    /// File holding the database URL (one trailing newline is ignored); keeps a password out of
    /// the environment.
    #[arg(
        long,
        env = "IDENTITY_DATABASE_URL_FILE",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<PathBuf>,
}

impl DbArgs {
    /// The URL from the file when one is given, else from the flag or variable (or the default).
    pub fn url(&self) -> Result<Zeroizing<String>, SecretFileError> {
        match &self.database_url_file {
            Some(path) => read_secret_file("IDENTITY_DATABASE_URL_FILE", path),
            None => Ok(Zeroizing::new(self.database_url.expose().to_owned())),
        }
    }
}

/// A secret file that cannot be used. Names the variable and the path, never the content.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{var}: cannot read {path}: {source}")]
    Read {
        var: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{var}: the file {path} is empty")]
    Empty { var: &'static str, path: String },
    #[error("{var} is set but empty")]
    EmptyValue { var: &'static str },
}

/// Reads a secret from a file (`*_FILE` variables): UTF-8, one trailing newline (`\n` or
/// `\r\n`) removed, not empty. The buffer is wiped on drop.
pub fn read_secret_file(
    var: &'static str,
    path: &Path,
) -> Result<Zeroizing<String>, SecretFileError> {
    let mut text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| SecretFileError::Read {
                var,
                path: path.display().to_string(),
                source,
            })?,
        );
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(SecretFileError::Empty {
            var,
            path: path.display().to_string(),
        });
    }
    Ok(text)
}

#[derive(Debug, Args)]
pub struct KekArgs {
    /// Key-encryption key: 32 random bytes as base64url without padding (`identity-api kek
    /// generate`). Encrypts the signing keys and the client-secret verifier key at rest.
    // allow_hyphen_values: a base64url key starts with '-' one time in 64.
    #[arg(
        long,
        env = "IDENTITY_KEY_ENCRYPTION_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub key_encryption_key: Option<SecretArg>,

    /// File holding the key-encryption key (same text as --key-encryption-key).
    #[arg(
        long,
        env = "IDENTITY_KEY_ENCRYPTION_KEY_FILE",
        conflicts_with = "key_encryption_key"
    )]
    pub key_encryption_key_file: Option<PathBuf>,

    /// The previous key-encryption key, during a rotation: still decrypts rows not yet
    /// re-encrypted (`identity-api kek rewrap`); never used to encrypt.
    #[arg(
        long,
        env = "IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub previous_key_encryption_key: Option<SecretArg>,

    /// File holding the previous key-encryption key. A file that does not exist means "no
    /// previous key", so a deployment can mount it from an optional Secret key permanently.
    #[arg(
        long,
        env = "IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY_FILE",
        conflicts_with = "previous_key_encryption_key"
    )]
    pub previous_key_encryption_key_file: Option<PathBuf>,

    /// Development mode: without a key-encryption key, use (or create, mode 0600) ./identity-dev.kek;
    /// `serve --dev` also seeds the client dev-client. Never in production.
    #[arg(long, env = "IDENTITY_DEV", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "IDENTITY_LISTEN", default_value = "127.0.0.1:8140")]
    pub listen: SocketAddr,

    /// Optional second address serving only /health, /health/ready, /version and /metrics, so
    /// probes and Prometheus can reach them while the API itself stays on loopback.
    #[arg(long, env = "IDENTITY_OPS_LISTEN")]
    pub ops_listen: Option<SocketAddr>,

    /// Also serve the API on this Unix socket, for a sidecar in the same pod
    /// (SIDECAR_UPSTREAM_SOCKET): no TCP/IP stack per request. The socket is mode 0660 and
    /// removed at shutdown; a stale one left at the path (nothing accepting) is replaced.
    #[arg(long, env = "IDENTITY_LISTEN_UNIX")]
    pub listen_unix: Option<PathBuf>,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub kek: KekArgs,

    /// Issuer (`iss`) of the tokens; default http://<listen address>.
    #[arg(long, env = "IDENTITY_ISSUER")]
    pub issuer: Option<String>,

    /// Shared secret with the sidecar; when set, /api/v1/* require it in X-Internal-Token (403 otherwise).
    #[arg(
        long,
        env = "IDENTITY_INTERNAL_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub internal_token: Option<SecretArg>,

    /// File holding the internal token (one trailing newline is ignored).
    #[arg(
        long,
        env = "IDENTITY_INTERNAL_TOKEN_FILE",
        conflicts_with = "internal_token"
    )]
    pub internal_token_file: Option<PathBuf>,

    /// Access-token lifetime in seconds.
    #[arg(long, env = "IDENTITY_ACCESS_TOKEN_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(i64).range(1..))]
    pub access_token_ttl_secs: i64,

    /// Refresh-token lifetime in seconds since the family's last use.
    #[arg(long, env = "IDENTITY_REFRESH_TOKEN_TTL_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(1..))]
    pub refresh_token_ttl_secs: i64,

    /// Absolute lifetime of a token family in seconds.
    #[arg(long, env = "IDENTITY_FAMILY_TTL_SECS", default_value_t = 2_592_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub family_ttl_secs: i64,

    /// Largest request body accepted, in bytes (413 above).
    #[arg(long, env = "IDENTITY_MAX_BODY_BYTES", default_value_t = 65_536)]
    pub max_body_bytes: usize,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client and print its secret (shown once).
    Create {
        /// Client id: 1 to 128 characters of A-Z a-z 0-9 . _ ~ -
        client_id: String,
        /// Allowed scopes, space-separated.
        #[arg(long)]
        scope: String,
        /// Allowed audiences, space-separated (or repeat the flag).
        #[arg(long, required = true)]
        audience: Vec<String>,
        /// Print one JSON object {"client_id", "client_secret"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
    /// List clients (never secrets).
    List {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace a client's secret and print the new one (the old one stops working at once).
    RotateSecret {
        client_id: String,
        /// Print one JSON object {"client_id", "client_secret"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
    /// Disable a client: it can no longer obtain tokens.
    Disable {
        client_id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new signing key: new tokens use it at once (running servers pick it up within
    /// a second); the JWKS keeps the old public keys while their tokens may be valid.
    Rotate {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KekCommand {
    /// Print a new random key-encryption key (32 bytes, base64url without padding) on stdout.
    Generate,
    /// Re-encrypt every stored key under the current key-encryption key, in one transaction
    /// (idempotent). Rows under the previous key need --previous-key-encryption-key.
    Rewrap {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
}

impl ServeArgs {
    /// The internal token from --internal-token(-file); an empty one is an error.
    pub fn internal_token(&self) -> Result<Option<InternalToken>, SecretFileError> {
        let token = match (&self.internal_token, &self.internal_token_file) {
            (_, Some(path)) => read_secret_file("IDENTITY_INTERNAL_TOKEN_FILE", path)?,
            (Some(text), None) => Zeroizing::new(text.expose().to_owned()),
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            return Err(SecretFileError::EmptyValue {
                var: "IDENTITY_INTERNAL_TOKEN",
            });
        }
        Ok(Some(InternalToken::new(token.as_str().to_owned())))
    }
}

impl KekArgs {
    /// The current key (or with --dev the development key file) and the previous one, if given.
    pub fn resolve(&self) -> Result<Keks, KeyError> {
        let previous = match (
            &self.previous_key_encryption_key,
            &self.previous_key_encryption_key_file,
        ) {
            (Some(text), _) => Some(Kek::parse(text.expose())),
            // Absent = not rotating. A present but unreadable or malformed file is still an error.
            (None, Some(path)) if !path.exists() => {
                tracing::info!(path = %path.display(), "no previous key-encryption key file: none in use");
                None
            }
            (None, Some(path)) => Some(Kek::from_file(path)),
            (None, None) => None,
        }
        .transpose()
        .map_err(|e| match e {
            KeyError::BadKek => KeyError::BadPreviousKek,
            e => e,
        })?;
        Ok(Keks::new(self.resolve_current()?, previous))
    }

    fn resolve_current(&self) -> Result<Kek, KeyError> {
        if let Some(text) = &self.key_encryption_key {
            return Kek::parse(text.expose());
        }
        if let Some(path) = &self.key_encryption_key_file {
            return Kek::from_file(path);
        }
        if self.dev {
            return dev_kek(Path::new(DEV_KEK_FILE));
        }
        Err(KeyError::NoKek)
    }
}

/// Reads the development key file, or creates it with mode 0600.
pub fn dev_kek(path: &Path) -> Result<Kek, KeyError> {
    if path.exists() {
        tracing::warn!(path = %path.display(), "DEVELOPMENT MODE: using the development key-encryption key file");
        return Kek::from_file(path);
    }
    let (kek, text) = Kek::generate();
    write_private(path, text.as_bytes()).map_err(|source| KeyError::KekFile {
        path: path.display().to_string(),
        source,
    })?;
    tracing::warn!(
        path = %path.display(),
        "DEVELOPMENT MODE: created a key-encryption key file; anyone who can read it can decrypt \
         the signing keys. Use IDENTITY_KEY_ENCRYPTION_KEY(_FILE) from a secret store in production."
    );
    eprintln!(
        "WARNING: --dev created the key-encryption key file {} (mode 0600). Do not use in production.",
        path.display()
    );
    Ok(kek)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.write_all(b"\n")?;
    file.sync_all()
}
