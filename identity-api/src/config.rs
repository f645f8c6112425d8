//! Command line and environment (flag > environment > default), see docs/CONVENTIONS.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::keys::{Kek, KeyError};

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
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// Database URL: sqlite://path (created if missing) or postgres://user@host/db.
    #[arg(
        long,
        env = "IDENTITY_DATABASE_URL",
        default_value = "sqlite://identity.db"
    )]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct KekArgs {
    /// Key-encryption key: 32 random bytes as base64url without padding. Encrypts the signing
    /// keys at rest and keys the client-secret verifiers.
    #[arg(long, env = "IDENTITY_KEY_ENCRYPTION_KEY", hide_env_values = true)]
    pub key_encryption_key: Option<SecretArg>,

    /// File holding the key-encryption key (same text as --key-encryption-key).
    #[arg(
        long,
        env = "IDENTITY_KEY_ENCRYPTION_KEY_FILE",
        conflicts_with = "key_encryption_key"
    )]
    pub key_encryption_key_file: Option<PathBuf>,

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

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub kek: KekArgs,

    /// Issuer (`iss`) of the tokens; default http://<listen address>.
    #[arg(long, env = "IDENTITY_ISSUER")]
    pub issuer: Option<String>,

    /// Shared secret with the sidecar; when set, /api/v1/* require it in X-Internal-Token (403 otherwise).
    #[arg(long, env = "IDENTITY_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: Option<SecretArg>,

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

impl KekArgs {
    /// The configured key, or with --dev the development key file (created if missing).
    pub fn resolve(&self) -> Result<Kek, KeyError> {
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
