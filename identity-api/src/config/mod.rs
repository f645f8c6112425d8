//! Command line and environment (flag > environment > default), see docs/CONVENTIONS.md. Every
//! secret comes from a flag, its variable or its `_FILE` variant ([`identity_runtime::secret`]).

use std::net::SocketAddr;

use http::HeaderName;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use identity_protocol::names::headers;
use identity_runtime::secret::{BadInternalToken, SharedToken, TokenProblem};
use identity_runtime::serve::ServerArgs;
use identity_runtime::{InternalToken, InternalTokenSpec, LogFormat, Secret, SecretSpec};

use crate::kek::{Kek, Keks, KeyError};
use crate::purge::{
    DEFAULT_AUDIT_RETENTION_SECS, DEFAULT_FAMILY_RETENTION_SECS, DEFAULT_PURGE_INTERVAL_SECS,
    Retention,
};
use crate::service::Settings;
use crate::service::settings::{
    DEFAULT_ACCESS_TTL_SECS, DEFAULT_API_KEY_OVERLAP_SECS, DEFAULT_FAMILY_TTL_SECS,
    DEFAULT_JWKS_CACHE_SECS, DEFAULT_MAX_BODY_BYTES, DEFAULT_REFRESH_TTL_SECS,
};
use crate::storage::{DEFAULT_TENANT, TenantId};
use crate::users::password::BadPolicy;
use crate::users::roles::RoleDefinitions;

/// Where `--dev` keeps its generated key-encryption key when none is configured.
pub const DEV_KEK_FILE: &str = "identity-dev.kek";

mod commands;
mod logins;
mod passwords;
mod users;
pub use commands::{
    ApiKeyCommand, AuditCommand, AuditFilterArgs, ClientCommand, ClientTenantArg, KekCommand,
    KeysCommand, TenantCommand,
};
pub use passwords::PasswordArgs;
pub use users::{JsonArg, RoleCommand, RotationArgs, UserCommand, UserTenantArg};

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (runs the migrations first).
    Serve(Box<ServeArgs>),
    /// Run the embedded database migrations and exit.
    Migrate(DbArgs),
    /// Manage tenants: each with its own issuer, keys, clients and tokens.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage users: create, list, show, disable, enable, set roles, reset a password,
    /// delete, reset MFA, unlock.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage roles: what scopes each role of a tenant grants its users.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Manage users' API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Key-encryption key: generate one, re-encrypt the stored keys under the current one.
    #[command(subcommand)]
    Kek(KekCommand),
    /// Read the audit trail: issues, refreshes, revocations, and operators' changes.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Delete what has ended, as `serve` does every --purge-interval-secs: token families
    /// expired or revoked longer ago than the family retention, with their refresh tokens, and
    /// audit events older than the audit retention.
    Purge {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        retention: RetentionArgs,
        /// Print one JSON object {"families", "refresh_tokens", "audit_events"}.
        #[arg(long)]
        json: bool,
    },
}

/// How long what has ended is kept (`serve` and `purge`).
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Seconds a token family is kept after it expired or was revoked, with its refresh
    /// tokens; then the purge deletes it (an hour at the least, so that no request in flight
    /// still uses it).
    #[arg(long, env = "IDENTITY_FAMILY_RETENTION_SECS", default_value_t = DEFAULT_FAMILY_RETENTION_SECS,
          value_parser = clap::value_parser!(i64).range(3600..))]
    pub family_retention_secs: i64,

    /// Seconds an audit event is kept; 0 keeps every event forever.
    #[arg(long, env = "IDENTITY_AUDIT_RETENTION_SECS", default_value_t = DEFAULT_AUDIT_RETENTION_SECS,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub audit_retention_secs: i64,
}

impl RetentionArgs {
    pub fn retention(&self) -> Retention {
        Retention {
            families_secs: self.family_retention_secs,
            audit_secs: (self.audit_retention_secs > 0).then_some(self.audit_retention_secs),
        }
    }
}

/// `IDENTITY_DATABASE_URL`: it may carry a password.
#[derive(Debug)]
pub enum DatabaseUrlSpec {}

impl SecretSpec for DatabaseUrlSpec {
    const FLAG: &'static str = "database-url";
    const FILE_FLAG: &'static str = "database-url-file";
    const ENV: &'static str = "IDENTITY_DATABASE_URL";
    const FILE_ENV: &'static str = "IDENTITY_DATABASE_URL_FILE";
    const HELP: &'static str = "Database URL: sqlite://path (created if missing) or \
        postgres://user:password@host/db (TLS: add ?sslmode=require or verify-full, see the README)";
    const FILE_HELP: &'static str = "File holding the database URL (one trailing newline is \
        ignored); keeps a password out of the environment";
    const DEFAULT: Option<&'static str> = Some("sqlite://identity.db");
}

/// `IDENTITY_KEY_ENCRYPTION_KEY`.
#[derive(Debug)]
pub enum KekSpec {}

impl SecretSpec for KekSpec {
    const FLAG: &'static str = "key-encryption-key";
    const FILE_FLAG: &'static str = "key-encryption-key-file";
    const ENV: &'static str = "IDENTITY_KEY_ENCRYPTION_KEY";
    const FILE_ENV: &'static str = "IDENTITY_KEY_ENCRYPTION_KEY_FILE";
    const HELP: &'static str = "Key-encryption key: 32 random bytes as base64url without \
        padding (`identity-api kek generate`). Encrypts the signing keys and the client-secret \
        verifier key at rest";
    const FILE_HELP: &'static str =
        "File holding the key-encryption key (same text as --key-encryption-key)";
}

/// `IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY`, during a KEK rotation.
#[derive(Debug)]
pub enum PreviousKekSpec {}

impl SecretSpec for PreviousKekSpec {
    const FLAG: &'static str = "previous-key-encryption-key";
    const FILE_FLAG: &'static str = "previous-key-encryption-key-file";
    const ENV: &'static str = "IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY";
    const FILE_ENV: &'static str = "IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY_FILE";
    const HELP: &'static str = "The previous key-encryption key, during a rotation: still \
        decrypts rows not yet re-encrypted (`identity-api kek rewrap`); never used to encrypt";
    const FILE_HELP: &'static str = "File holding the previous key-encryption key. A file that \
        does not exist means \"no previous key\", so a deployment can mount it from an optional \
        Secret key permanently";
    const ABSENT_FILE_IS_NONE: bool = true;
}

/// `IDENTITY_SERVICE_TOKEN`: lets a gateway introspect every token at /oauth/introspect.
#[derive(Debug)]
pub enum ServiceTokenSpec {}

impl SecretSpec for ServiceTokenSpec {
    const FLAG: &'static str = "service-token";
    const FILE_FLAG: &'static str = "service-token-file";
    const ENV: &'static str = "IDENTITY_SERVICE_TOKEN";
    const FILE_ENV: &'static str = "IDENTITY_SERVICE_TOKEN_FILE";
    const HELP: &'static str = "A token that lets its holder introspect every token at \
        /oauth/introspect, presented in the header --service-token-header (for a gateway that \
        has no client of its own). Visible ASCII, no spaces, at least 128 bits of entropy by \
        length and alphabet (`openssl rand -base64 32`). None by default: only clients \
        introspect. Prefer --service-token-file (or the variable) to the flag";
    const FILE_HELP: &'static str =
        "File holding the service token (one trailing newline is ignored)";

    fn check(value: &str) -> Result<(), &'static str> {
        SharedToken::new(value)
            .map(drop)
            .map_err(TokenProblem::problem)
    }
}

/// What every command that touches the database takes.
#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(flatten)]
    pub database_url: Secret<DatabaseUrlSpec>,

    /// Development mode: without a key-encryption key, use (or create, mode 0600) ./identity-dev.kek;
    /// `serve --dev` also seeds the client dev-client, and starts without an internal token
    /// (with a warning) when none is given. Never in production.
    #[arg(long, env = "IDENTITY_DEV", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev: bool,

    /// The tenant that exists from the first start (the rows made before tenants move into it)
    /// and that a request naming no tenant belongs to; `client create` and `keys rotate` use it
    /// without --tenant. Its issuer is --issuer as it is; another tenant's is --issuer/t/<slug>.
    #[arg(long, env = "IDENTITY_DEFAULT_TENANT", value_name = "SLUG", default_value = DEFAULT_TENANT)]
    pub default_tenant: TenantId,
}

impl DbArgs {
    /// The URL, from the flag, the variable, the file or the default.
    pub fn url(&self) -> &str {
        self.database_url.get().unwrap_or_default()
    }
}

#[derive(Debug, Args)]
pub struct KekArgs {
    #[command(flatten)]
    pub key_encryption_key: Secret<KekSpec>,

    #[command(flatten)]
    pub previous_key_encryption_key: Secret<PreviousKekSpec>,
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

    /// Issuer (`iss`) of the default tenant's tokens, and the base of the other tenants'
    /// (<issuer>/t/<slug>, unless `tenant create --issuer` sets one); default
    /// http://<listen address>.
    #[arg(long, env = "IDENTITY_ISSUER")]
    pub issuer: Option<String>,

    /// The headers that may name the tenant of a request that carries no credential (discovery,
    /// JWKS, the service token's introspection), the first present one deciding, comma-separated.
    /// A request with a credential belongs to its tenant; one naming another is refused. A
    /// /t/<slug>/ path prefix names the tenant too.
    #[arg(long, env = "IDENTITY_TENANT_HEADER_CANDIDATES", value_name = "HEADERS",
          value_delimiter = ',', default_value = "X-Tenant-ID,X-Tenant,X-Realm",
          value_parser = parse_tenant_header)]
    pub tenant_header_candidates: Vec<HeaderName>,

    #[command(flatten)]
    pub internal_token: Secret<InternalTokenSpec>,

    /// Serve /api/v1/* without an internal token, to anyone who can reach --listen (a warning
    /// says so at start). Without a token, serve refuses to start unless this or --dev is given.
    /// Ignored when a token is given.
    #[arg(long, env = "IDENTITY_INSECURE_NO_INTERNAL_TOKEN", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_internal_token: bool,

    #[command(flatten)]
    pub service_token: Secret<ServiceTokenSpec>,

    /// The header that carries the service token to /oauth/introspect. Not one that means
    /// something else on the way (authorization, cookie, host, content-type, content-length,
    /// the sidecar's x-internal-token, x-session-subject, x-session-id, x-subject, a hop-by-hop
    /// one): refused at start.
    #[arg(long, env = "IDENTITY_SERVICE_TOKEN_HEADER", default_value = headers::SERVICE_TOKEN,
          value_parser = parse_header_name)]
    pub service_token_header: HeaderName,

    /// Seconds a client may cache the JWKS (its Cache-Control max-age). A new signing key is
    /// published when it starts signing: verifiers that cache longer must fetch the JWKS again
    /// on a `kid` they do not know, as common libraries do.
    #[arg(long, env = "IDENTITY_JWKS_CACHE_SECONDS", default_value_t = DEFAULT_JWKS_CACHE_SECS,
          value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub jwks_cache_seconds: u32,

    #[command(flatten)]
    pub rotation: RotationArgs,

    /// Roles of the default tenant, set at start: a JSON object of role name to the list of
    /// scopes it grants, e.g. {"admin": ["orders.read", "orders.write"], "viewer":
    /// ["orders.read"]} (the variable the replaced gateway read). Each role named is created
    /// or replaced (audited when it changes); the others are kept (`identity-api role`
    /// manages them). A malformed value fails the start.
    #[arg(long, env = "ROLE_DEFINITIONS", value_name = "JSON")]
    pub role_definitions: Option<RoleDefinitions>,

    /// Seconds an API key keeps working after its owner rotated it at
    /// /credentials/api-key/rotate, so that its users can move to the new one; 0 (the
    /// default): it stops at once. At most 7 days.
    #[arg(long, env = "IDENTITY_API_KEY_OVERLAP_SECS", value_name = "SECS",
          default_value_t = DEFAULT_API_KEY_OVERLAP_SECS,
          value_parser = clap::value_parser!(i64).range(0..=604_800))]
    pub api_key_overlap_secs: i64,

    /// Access-token lifetime in seconds.
    #[arg(long, env = "IDENTITY_ACCESS_TOKEN_TTL_SECS", default_value_t = DEFAULT_ACCESS_TTL_SECS, value_parser = clap::value_parser!(i64).range(1..))]
    pub access_token_ttl_secs: i64,

    /// Refresh-token lifetime in seconds since the family's last use.
    #[arg(long, env = "IDENTITY_REFRESH_TOKEN_TTL_SECS", default_value_t = DEFAULT_REFRESH_TTL_SECS, value_parser = clap::value_parser!(i64).range(1..))]
    pub refresh_token_ttl_secs: i64,

    /// Absolute lifetime of a token family in seconds.
    #[arg(long, env = "IDENTITY_FAMILY_TTL_SECS", default_value_t = DEFAULT_FAMILY_TTL_SECS, value_parser = clap::value_parser!(i64).range(1..))]
    pub family_ttl_secs: i64,

    /// Largest request body accepted, in bytes (413 above).
    #[arg(long, env = "IDENTITY_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Seconds between two purges of what has ended (see `identity-api purge`); 0 runs none in
    /// this process.
    #[arg(long, env = "IDENTITY_PURGE_INTERVAL_SECS", default_value_t = DEFAULT_PURGE_INTERVAL_SECS)]
    pub purge_interval_secs: u64,

    #[command(flatten)]
    pub retention: RetentionArgs,

    #[command(flatten)]
    pub passwords: PasswordArgs,

    #[command(flatten)]
    pub logins: logins::LoginArgs,

    /// Deadlines for slow clients, the connection cap (each listener's) and the shutdown grace.
    #[command(flatten)]
    pub server: ServerArgs<ApiServer>,
}

identity_runtime::server_env!(ApiServer, "IDENTITY_");

impl ServeArgs {
    /// The internal token; none only with --dev or --insecure-no-internal-token.
    pub fn internal_token(&self) -> Result<Option<InternalToken>, BadInternalToken> {
        let none_allowed = self.db.dev || self.insecure_no_internal_token;
        InternalToken::configured(&self.internal_token, none_allowed, "IDENTITY")
    }

    /// The settings these arguments give, for a server bound to `local` (the issuer's default).
    pub fn settings(&self, local: SocketAddr) -> Result<Settings, BadSettings> {
        let settings = Settings {
            issuer: self
                .issuer
                .clone()
                .unwrap_or_else(|| format!("http://{local}")),
            default_tenant: self.db.default_tenant.clone(),
            tenant_headers: self.tenant_header_candidates.clone(),
            access_ttl: self.access_token_ttl_secs,
            refresh_ttl: self.refresh_token_ttl_secs,
            family_ttl: self.family_ttl_secs,
            internal_token: self.internal_token()?,
            max_body_bytes: self.max_body_bytes,
            // Checked while parsing (`ServiceTokenSpec::check`).
            service_token: self
                .service_token
                .get()
                .and_then(|text| SharedToken::new(text).ok()),
            service_token_header: self.service_token_header.clone(),
            jwks_cache_secs: self.jwks_cache_seconds,
            password_rotation_days: self.rotation.password_rotation_days,
            api_key_overlap_secs: self.api_key_overlap_secs,
            clock: Default::default(),
            passwords: self.passwords.policy()?,
            logins: self.logins.limits(),
        };
        if let (Some(internal), Some(service)) = (&settings.internal_token, &settings.service_token)
            && service.matches(internal.expose().as_bytes())
        {
            return Err(BadSettings::ServiceTokenIsInternalToken);
        }
        Ok(settings)
    }
}

/// Why `serve` has no settings to start with. Names the variables, never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadSettings {
    #[error(transparent)]
    InternalToken(#[from] BadInternalToken),
    /// The holder of the service token (a gateway) could then pose as the sidecar at /api/v1/*.
    #[error(
        "--service-token (IDENTITY_SERVICE_TOKEN) is the internal token \
         (IDENTITY_INTERNAL_TOKEN): its holder could pose as the sidecar; give each its own secret"
    )]
    ServiceTokenIsInternalToken,
    #[error(transparent)]
    Passwords(#[from] BadPolicy),
}

/// The header of the service token: a name HTTP/1.1 allows (a token), lower-cased, and none
/// that already means something on the way to this API ([`reserved_header`]).
fn parse_header_name(text: &str) -> Result<HeaderName, String> {
    let name = header_name(text)?;
    match reserved_header(&name) {
        Some(why) => Err(format!(
            "{name:?} is reserved: {why}; choose a header of its own ({} by default)",
            headers::SERVICE_TOKEN
        )),
        None => Ok(name),
    }
}

fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.trim().to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("{text:?} is not a valid header name"))
}

/// A header that may name a tenant: not one that carries something else.
fn parse_tenant_header(text: &str) -> Result<HeaderName, String> {
    let name = header_name(text)?;
    match reserved_header(&name) {
        Some(why) => Err(format!("{name:?} cannot name a tenant: {why}")),
        None => Ok(name),
    }
}

/// Why a header cannot carry the service token (or name a tenant), if it cannot: it carries something else to
/// this API (client credentials, the body's framing, the sidecar's own headers), or a proxy
/// drops or rewrites it on the way.
fn reserved_header(name: &HeaderName) -> Option<&'static str> {
    use http::header;
    let sidecar = [
        headers::INTERNAL_TOKEN,
        headers::SESSION_SUBJECT,
        headers::SESSION_ID,
        headers::SUBJECT,
    ];
    if [header::AUTHORIZATION, header::COOKIE].contains(name) {
        Some("it carries the credentials of clients")
    } else if [header::HOST, header::CONTENT_TYPE, header::CONTENT_LENGTH].contains(name) {
        Some("it describes the request itself")
    } else if sidecar.contains(&name.as_str()) {
        Some("the sidecar sets it, or reads it, for its own use")
    } else if headers::HOP_BY_HOP.contains(&name.as_str()) {
        Some("it is hop-by-hop: a proxy drops it")
    } else {
        None
    }
}

impl KekArgs {
    /// The current key (or with `dev` the development key file) and the previous one, if given.
    pub fn resolve(&self, dev: bool) -> Result<Keks, KeyError> {
        let previous = self
            .previous_key_encryption_key
            .get()
            .map(|text| Kek::parse(text).map_err(|_| KeyError::BadPreviousKek))
            .transpose()?;
        Ok(Keks::new(self.resolve_current(dev)?, previous))
    }

    fn resolve_current(&self, dev: bool) -> Result<Kek, KeyError> {
        if let Some(text) = self.key_encryption_key.get() {
            return Kek::parse(text);
        }
        if dev {
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
