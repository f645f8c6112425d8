//! Flags and environment variables of `identity-sidecar` (docs/CONVENTIONS.md: flag > env > default).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::Parser;
use http::HeaderName;
use identity_protocol::{headers, paths};
use identity_runtime::serve::ServerArgs;
use identity_runtime::{InternalTokenSpec, LogFormat, Secret};

use crate::sessions::StoreArgs;

/// "A session carries at most 2^24 requests that decrypted successfully" (section 1).
pub const MAX_REQUESTS_PER_SESSION: u64 = 1 << 24;
/// `--routes`' default, written as the flag takes it (comma-separated).
static DEFAULT_ROUTES: LazyLock<String> = LazyLock::new(|| paths::DEFAULT_ENCRYPTED.join(","));
/// `--tenant-headers`' default: the identity API's default `IDENTITY_TENANT_HEADER_CANDIDATES`.
static DEFAULT_TENANT_HEADERS: LazyLock<String> =
    LazyLock::new(|| headers::TENANT_CANDIDATES.join(","));

identity_runtime::server_env!(SidecarServer, "SIDECAR_");

/// The longest session lifetime a flag accepts: a year keeps every deadline and `expires_at`
/// far from overflow.
pub const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

/// identity-sidecar: terminates the encrypted session channel of PROTOCOL.md and forwards
/// plaintext to the identity API.
#[derive(Debug, Parser)]
#[command(name = "identity-sidecar", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "SIDECAR_LISTEN", default_value = "0.0.0.0:8141")]
    pub listen: SocketAddr,

    /// A second address serving only /health, /health/ready and /metrics, for probes and
    /// Prometheus; with it, /metrics leaves the public listener (404 there).
    #[arg(long, env = "SIDECAR_OPS_LISTEN")]
    pub ops_listen: Option<SocketAddr>,

    /// Base URL of the identity API.
    #[arg(
        long,
        env = "SIDECAR_UPSTREAM",
        default_value = "http://127.0.0.1:8140"
    )]
    pub upstream: String,

    /// Reach the identity API over this Unix socket (its --listen-unix) instead of TCP: no
    /// TCP/IP stack per request, and the API needs no network listener for the sidecar.
    /// --upstream still gives the Host header and any path prefix.
    #[arg(long, env = "SIDECAR_UPSTREAM_SOCKET")]
    pub upstream_socket: Option<PathBuf>,

    /// PKCS#8 PEM file of the ECDSA P-256 key that signs session init answers.
    #[arg(long, env = "SIDECAR_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,

    /// Further PEM public or private keys to publish at /.well-known/identity-sidecar before they
    /// sign (rotation). Repeatable; comma-separated in the environment.
    #[arg(
        long = "publish-key-file",
        env = "SIDECAR_PUBLISH_KEY_FILES",
        value_delimiter = ','
    )]
    pub publish_key_files: Vec<PathBuf>,

    /// Development mode: without --signing-key-file, use ./sidecar-dev-signing-key.pem, generating
    /// it if missing; without an internal token, forward without one (with a warning). Never in
    /// production.
    #[arg(long, env = "SIDECAR_DEV")]
    pub dev: bool,

    // --internal-token / IDENTITY_INTERNAL_TOKEN or --internal-token-file /
    // IDENTITY_INTERNAL_TOKEN_FILE, as the identity API reads them.
    #[command(flatten)]
    pub internal_token: Secret<InternalTokenSpec>,

    /// Forward requests without an internal token (a warning says so at start): only for an
    /// identity API that requires none. Without a token, the sidecar refuses to start unless this
    /// or --dev is given. Ignored when a token is given.
    #[arg(long, env = "SIDECAR_INSECURE_NO_INTERNAL_TOKEN", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_internal_token: bool,

    /// Lifetime of an anonymous session, in seconds (at most a year).
    #[arg(long, env = "SIDECAR_ANONYMOUS_TTL_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=MAX_TTL_SECS))]
    pub anonymous_ttl_secs: u64,

    /// Lifetime of an authenticated session, in seconds (at most a year).
    #[arg(long, env = "SIDECAR_AUTHENTICATED_TTL_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=MAX_TTL_SECS))]
    pub authenticated_ttl_secs: u64,

    /// Most live sessions; session init beyond it is answered 429.
    #[arg(long, env = "SIDECAR_MAX_SESSIONS", default_value_t = 100_000)]
    pub max_sessions: usize,

    /// Most requests that decrypt on one session (at most 2^24); then 401 invalid_session.
    #[arg(long, env = "SIDECAR_MAX_REQUESTS_PER_SESSION", default_value_t = MAX_REQUESTS_PER_SESSION, value_parser = clap::value_parser!(u64).range(1..=MAX_REQUESTS_PER_SESSION))]
    pub max_requests_per_session: u64,

    /// Largest request body, in bytes (exactly this many are accepted); larger is 413.
    #[arg(long, env = "SIDECAR_MAX_BODY_BYTES", default_value_t = 65_536)]
    pub max_body_bytes: usize,

    /// Largest identity API answer, in bytes; larger is 502.
    #[arg(
        long,
        env = "SIDECAR_MAX_UPSTREAM_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub max_upstream_body_bytes: usize,

    /// How long the identity API may take to answer, in milliseconds; then 504.
    #[arg(long, env = "SIDECAR_UPSTREAM_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_timeout_ms: u64,

    /// Session inits per second allowed per client IP (token bucket refill rate).
    #[arg(long, env = "SIDECAR_INIT_RATE_PER_SEC", default_value_t = 20.0)]
    pub init_rate_per_sec: f64,

    /// Session inits a client IP may make at once (token bucket size).
    #[arg(long, env = "SIDECAR_INIT_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub init_burst: u32,

    /// The encrypted routes forwarded to the identity API, comma-separated.
    #[arg(long, env = "SIDECAR_ROUTES", value_delimiter = ',', default_value = DEFAULT_ROUTES.as_str())]
    pub routes: Vec<String>,

    /// The headers that may name a request's tenant, comma-separated: set them to the identity
    /// API's IDENTITY_TENANT_HEADER_CANDIDATES. They are routing metadata, like the path: on the
    /// sealed routes these headers of the outer request are forwarded, unsealed, and no other
    /// tenant header; the standard routes and the JWKS pass them too. A value that is not a
    /// tenant slug (1 to 63 of a-z, 0-9 and -, not first or last), or a header sent twice, is
    /// refused with 400 invalid_request and nothing is forwarded.
    #[arg(long, env = "SIDECAR_TENANT_HEADERS", value_delimiter = ',',
          default_value = DEFAULT_TENANT_HEADERS.as_str(), value_parser = tenant_header)]
    pub tenant_headers: Vec<HeaderName>,

    /// How often expired sessions are swept from memory, in milliseconds.
    #[arg(long, env = "SIDECAR_SWEEP_INTERVAL_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub sweep_interval_ms: u64,

    /// Where sessions live: this process's memory, or Redis shared by the replicas.
    #[command(flatten)]
    pub session_store: StoreArgs,

    /// Deadlines for slow clients, the connection cap and the shutdown grace.
    #[command(flatten)]
    pub server: ServerArgs<SidecarServer>,

    /// Threads that serve requests. Default: the CPUs this process may use (its CPU limit in a
    /// pod, its CPU affinity). With one, everything runs on that thread, so a request never
    /// waits for another thread to wake: the deployment's limit of one CPU gives one.
    #[arg(long, env = "SIDECAR_WORKER_THREADS")]
    pub worker_threads: Option<NonZeroUsize>,

    /// Log format.
    #[arg(long, env = "SIDECAR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// TLS on --listen, and the standard OAuth routes it lets through.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS on the public listener (the ops listener stays plain HTTP, for probes and Prometheus),
/// and the standard OAuth 2.0 routes (/oauth/token, /oauth/introspect, /oauth/revoke,
/// /.well-known/oauth-authorization-server), which carry client secrets and tokens in the clear
/// and so are served only over TLS.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain (the server's certificate first) to serve TLS on --listen, with
    /// --tls-key-file; with TLS the standard OAuth routes are passed to the identity API too.
    /// Both files are read again when they change (cert-manager's rotation): new connections get
    /// the new pair; a broken new pair keeps the old one, logged and counted in
    /// sidecar_tls_reloads_total{outcome="error"}.
    #[arg(long, env = "SIDECAR_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of --tls-cert-file (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SIDECAR_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Seconds between two checks of the TLS files for a change.
    #[arg(long, env = "SIDECAR_TLS_RELOAD_INTERVAL_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tls_reload_interval_secs: u64,

    /// Seconds a client has to complete the TLS handshake; then the connection is closed.
    #[arg(long, env = "SIDECAR_TLS_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tls_handshake_timeout_secs: u64,

    /// Serve the standard OAuth routes without TLS on --listen, because TLS is terminated in
    /// front of the sidecar (an ingress, a service mesh) and nothing reaches --listen otherwise
    /// (a warning says so at start). Without TLS and without this flag they answer 404.
    #[arg(long, env = "SIDECAR_STANDARD_ROUTES_BEHIND_TLS_PROXY", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub standard_routes_behind_tls_proxy: bool,
}

/// One `--tenant-headers` name: a header name, and not one the sidecar or the protocol already
/// gives a meaning (a tenant header is passed through as the client sent it).
fn tenant_header(name: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let reserved = [
        headers::INTERNAL_TOKEN,
        headers::SESSION_SUBJECT,
        headers::FORWARDED_FOR,
        headers::SESSION_ID,
        headers::SUBJECT,
        headers::SERVICE_TOKEN,
        "authorization",
        "content-type",
        "content-length",
        "host",
        "expect",
    ];
    if reserved.contains(&name.as_str()) || headers::HOP_BY_HOP.contains(&name.as_str()) {
        return Err(format!(
            "{name} has a meaning of its own and cannot name a tenant"
        ));
    }
    Ok(name)
}

impl TlsArgs {
    /// The certificate files, when TLS is on.
    pub fn files(&self) -> Option<identity_runtime::serve::TlsFiles> {
        let (cert, key) = (self.tls_cert_file.as_ref()?, self.tls_key_file.as_ref()?);
        let mut files = identity_runtime::serve::TlsFiles::new(cert, key);
        files.reload_interval = Duration::from_secs(self.tls_reload_interval_secs);
        files.handshake_timeout = Duration::from_secs(self.tls_handshake_timeout_secs);
        Some(files)
    }

    /// Whether the standard OAuth routes are served: over TLS, or behind a TLS proxy.
    pub fn standard_routes(&self) -> bool {
        self.tls_cert_file.is_some() || self.standard_routes_behind_tls_proxy
    }
}

impl Config {
    /// Checks what clap cannot: the upstream URL, the rate, the routes.
    pub fn validate(&self) -> Result<(), String> {
        if self.upstream.contains(['?', '#']) {
            return Err("--upstream must not carry a query or fragment".into());
        }
        let url: http::Uri = self
            .upstream
            .parse()
            .map_err(|e| format!("--upstream is not a URL: {e}"))?;
        // The identity API runs beside the sidecar on loopback; the client speaks plain HTTP/1.1.
        if url.scheme_str() != Some("http") || url.host().is_none_or(str::is_empty) {
            return Err("--upstream must be an http:// URL".into());
        }
        if !(self.init_rate_per_sec.is_finite() && self.init_rate_per_sec > 0.0) {
            return Err("--init-rate-per-sec must be a positive number".into());
        }
        if self.max_sessions == 0 || self.max_body_bytes == 0 || self.max_upstream_body_bytes == 0 {
            return Err("--max-sessions and the body limits must be positive".into());
        }
        self.session_store.validate()?;
        for route in &self.routes {
            let reserved = [
                paths::SESSION_INIT,
                paths::KEY_DOCUMENT,
                paths::JWKS,
                paths::HEALTH,
                paths::READY,
                paths::METRICS,
            ];
            if !route.starts_with('/') || route.contains('?') || route.contains('#') {
                return Err(format!("--routes: {route:?} is not a path"));
            }
            if reserved.contains(&route.as_str()) || paths::STANDARD.contains(&route.as_str()) {
                return Err(format!(
                    "--routes: {route:?} is a route of the sidecar itself"
                ));
            }
        }
        Ok(())
    }

    /// The upstream base URL without a trailing slash.
    pub fn upstream_base(&self) -> String {
        self.upstream.trim_end_matches('/').to_owned()
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms)
    }
}
