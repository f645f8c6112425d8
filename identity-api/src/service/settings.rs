//! The identity API's runtime settings, and the one place each of their defaults is written
//! (the command line's defaults are these constants).

use http::HeaderName;
use identity_protocol::names::headers;
use identity_runtime::InternalToken;
use identity_runtime::secret::SharedToken;

use crate::clock::Clock;
use crate::storage::TenantId;
use crate::users::password::PasswordPolicy;

/// Access-token lifetime, seconds.
pub const DEFAULT_ACCESS_TTL_SECS: i64 = 900;
/// Refresh-token lifetime since the family's last use, seconds.
pub const DEFAULT_REFRESH_TTL_SECS: i64 = 86_400;
/// Absolute lifetime of a token family, seconds.
pub const DEFAULT_FAMILY_TTL_SECS: i64 = 2_592_000;
/// Largest request body, bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
/// The JWKS's Cache-Control max-age, seconds.
pub const DEFAULT_JWKS_CACHE_SECS: u32 = 300;
/// Seconds an API key replaced at /credentials/api-key/rotate keeps working.
pub const DEFAULT_API_KEY_OVERLAP_SECS: i64 = 0;
/// The tenant that exists from the first start, and that requests naming none belong to.
pub use crate::storage::DEFAULT_TENANT;

/// What the operations and the routes read (see `config` for the flags and variables).
#[derive(Debug)]
pub struct Settings {
    /// `iss` of the default tenant's tokens, the base of the other tenants' issuers (unless
    /// they set their own), and of the URLs in openid-configuration.
    pub issuer: String,
    /// The tenant that requests naming none belong to (created at the first start).
    pub default_tenant: TenantId,
    /// The headers that may name a request's tenant, the first present one deciding.
    pub tenant_headers: Vec<HeaderName>,
    pub access_ttl: i64,
    pub refresh_ttl: i64,
    pub family_ttl: i64,
    /// When set, /api/v1/* require `X-Internal-Token` equal to it.
    pub internal_token: Option<InternalToken>,
    pub max_body_bytes: usize,
    /// When set, its holder may introspect every token at /oauth/introspect, presenting it in
    /// `service_token_header`.
    pub service_token: Option<SharedToken>,
    pub service_token_header: HeaderName,
    /// The JWKS's Cache-Control max-age.
    pub jwks_cache_secs: u32,
    /// Days a password works for after it was set (`users::password_expires_at`); `None`:
    /// passwords do not expire.
    pub password_rotation_days: Option<i64>,
    /// Seconds an API key its owner rotated keeps working (`IDENTITY_API_KEY_OVERLAP_SECS`).
    pub api_key_overlap_secs: i64,
    /// The time of the user-credential rules (password age, locks, TOTP).
    pub clock: Clock,
    /// New passwords' rules and the Argon2id costs (the `Hasher` of the app state is built
    /// from it).
    pub passwords: PasswordPolicy,
    /// How many failed logins lock a username or a source, and for how long.
    pub logins: super::lockout::LoginLimits,
}

impl Settings {
    /// The defaults, with this issuer.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            default_tenant: TenantId::primary(),
            tenant_headers: headers::TENANT_CANDIDATES
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
            access_ttl: DEFAULT_ACCESS_TTL_SECS,
            refresh_ttl: DEFAULT_REFRESH_TTL_SECS,
            family_ttl: DEFAULT_FAMILY_TTL_SECS,
            internal_token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            service_token: None,
            service_token_header: HeaderName::from_static(headers::SERVICE_TOKEN),
            jwks_cache_secs: DEFAULT_JWKS_CACHE_SECS,
            password_rotation_days: None,
            api_key_overlap_secs: DEFAULT_API_KEY_OVERLAP_SECS,
            clock: Clock::default(),
            passwords: PasswordPolicy::default(),
            logins: super::lockout::LoginLimits::default(),
        }
    }
}
