//! What the protocol calls things, in every section: its name, the paths of its routes, its
//! headers, and the form of a session id.

/// The protocol name, as it appears in the key document and as the prefix of every label.
pub const PROTOCOL: &str = "identity-sidecar/v1";

/// Paths of the protocol's routes (sections 1 to 5).
pub mod paths {
    pub const SESSION_INIT: &str = "/api/v1/session/init";
    pub const TOKEN_ISSUE: &str = "/api/v1/token/issue";
    pub const INTROSPECT: &str = "/api/v1/introspect";
    pub const TOKEN: &str = "/api/v1/token";
    pub const REVOKE: &str = "/api/v1/revoke";
    /// The password grant on the sealed channel (section 5, step 2b): a client issues a token
    /// pair for a user that proves itself with its password (and its TOTP code when enrolled).
    pub const TOKEN_PASSWORD: &str = "/api/v1/token/password";
    pub const KEY_DOCUMENT: &str = "/.well-known/identity-sidecar";
    pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
    pub const JWKS: &str = "/.well-known/jwks.json";
    /// The sidecar's liveness, readiness and metrics (section 4); the identity API serves the
    /// same three.
    pub const HEALTH: &str = "/health";
    pub const READY: &str = "/health/ready";
    pub const METRICS: &str = "/metrics";
    /// The encrypted routes forwarded by default (section 3): the four of the journey, the
    /// password grant and the credentials routes.
    pub const DEFAULT_ENCRYPTED: [&str; 10] = [
        TOKEN_ISSUE,
        INTROSPECT,
        TOKEN,
        REVOKE,
        TOKEN_PASSWORD,
        CREDENTIALS_PASSWORD_ROTATE,
        CREDENTIALS_API_KEY_ROTATE,
        CREDENTIALS_API_KEY_VALIDATE,
        CREDENTIALS_MFA_ENROLL,
        CREDENTIALS_MFA_CONFIRM,
    ];

    /// The standard OAuth 2.0 endpoints the identity API serves beside the sealed routes
    /// (docs/OAUTH.md): form bodies in the clear, each request authenticating its client, so
    /// they must only be reached over TLS. Token endpoint, RFC 6749 section 3.2.
    pub const OAUTH_TOKEN: &str = "/oauth/token";
    /// Token introspection, RFC 7662.
    pub const OAUTH_INTROSPECT: &str = "/oauth/introspect";
    /// Token revocation, RFC 7009.
    pub const OAUTH_REVOKE: &str = "/oauth/revoke";
    /// Authorization server metadata, RFC 8414 section 3 (a GET; the same document as
    /// [`OPENID_CONFIGURATION`]).
    pub const OAUTH_AUTHORIZATION_SERVER_METADATA: &str = "/.well-known/oauth-authorization-server";
    /// The standard routes: the three POST endpoints and their metadata, at both its addresses
    /// (it advertises the three, which are served over TLS only, and so is it).
    pub const STANDARD: [&str; 5] = [
        OAUTH_TOKEN,
        OAUTH_INTROSPECT,
        OAUTH_REVOKE,
        OAUTH_AUTHORIZATION_SERVER_METADATA,
        OPENID_CONFIGURATION,
    ];

    /// A user's credentials (docs/users.md): JSON routes that authenticate their client as the
    /// token endpoint does, reachable sealed through the sidecar and over TLS.
    /// The current password proves the caller; the new one replaces it.
    pub const CREDENTIALS_PASSWORD_ROTATE: &str = "/credentials/password/rotate";
    /// A new API key for the one presented.
    pub const CREDENTIALS_API_KEY_ROTATE: &str = "/credentials/api-key/rotate";
    /// Who an API key belongs to.
    pub const CREDENTIALS_API_KEY_VALIDATE: &str = "/credentials/api-key/validate";
    /// TOTP enrolment: a secret, shown once as an `otpauth://` URI, and recovery codes.
    pub const CREDENTIALS_MFA_ENROLL: &str = "/credentials/mfa/enroll";
    /// The first code, which turns the enrolment on.
    pub const CREDENTIALS_MFA_CONFIRM: &str = "/credentials/mfa/confirm";
    /// Every credentials route.
    pub const CREDENTIALS: [&str; 5] = [
        CREDENTIALS_PASSWORD_ROTATE,
        CREDENTIALS_API_KEY_ROTATE,
        CREDENTIALS_API_KEY_VALIDATE,
        CREDENTIALS_MFA_ENROLL,
        CREDENTIALS_MFA_CONFIRM,
    ];

    /// A tenant's own copy of the identity API's public routes: `/t/{tenant}` then the route
    /// (`/t/acme/.well-known/openid-configuration`), so that a stock client configured with a
    /// tenant's issuer finds its discovery document, JWKS and endpoints.
    pub const TENANT_PREFIX: &str = "/t/";

    /// `(tenant, route)` of a path under [`TENANT_PREFIX`] whose tenant is a valid slug
    /// ([`super::is_valid_tenant_slug`]); `None` for any other path.
    pub fn split_tenant(path: &str) -> Option<(&str, &str)> {
        let rest = path.strip_prefix(TENANT_PREFIX)?;
        let slash = rest.find('/')?;
        let (tenant, route) = rest.split_at(slash);
        super::is_valid_tenant_slug(tenant).then_some((tenant, route))
    }
}

/// Header names of the protocol, lower-case as HTTP/2 and `http::HeaderName` want them.
pub mod headers {
    /// The identity API's service token at /oauth/introspect, by default
    /// (`IDENTITY_SERVICE_TOKEN_HEADER`): not a header of the sealed protocol, but one the
    /// sidecar passes through on the standard routes.
    pub const SERVICE_TOKEN: &str = "x-service-token";
    /// The hop-by-hop headers (RFC 9110 section 7.6.1, and the classic ones it replaced): they
    /// describe one connection, and a proxy drops them.
    pub const HOP_BY_HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];

    pub const SESSION_ID: &str = "x-session-id";
    pub const SUBJECT: &str = "x-subject";
    /// Set by the sidecar only; client-sent copies are dropped (section 3). The identity API
    /// refuses anything on such a session for another subject (section 2).
    pub const SESSION_SUBJECT: &str = "x-session-subject";
    /// Set by the sidecar only; client-sent copies are dropped (section 3). Proves to the
    /// identity API that a request came through the sidecar.
    pub const INTERNAL_TOKEN: &str = "x-internal-token";
    /// Set by the sidecar only, to the address of its TCP peer; client-sent copies are dropped
    /// (a client could otherwise name any address).
    pub const FORWARDED_FOR: &str = "x-forwarded-for";
    /// The headers that may name the tenant of a request, first present wins, by default
    /// (`IDENTITY_TENANT_HEADER_CANDIDATES`). A header can only narrow: a credential of another
    /// tenant is refused, so the sidecar passes them through unsealed.
    pub const TENANT_CANDIDATES: [&str; 3] = ["x-tenant-id", "x-tenant", "x-realm"];
}

/// A tenant's slug: 1 to 63 characters of `a-z`, `0-9` and `-`, neither first nor last a `-`
/// (a DNS label, so that it fits a path segment, a header and a host name alike).
pub fn is_valid_tenant_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// `session_id` is opaque: 1 to 512 visible ASCII characters (0x21 to 0x7E), section 1.
pub fn is_valid_session_id(session_id: &str) -> bool {
    (1..=512).contains(&session_id.len()) && session_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_slugs_are_dns_labels() {
        for ok in ["primary", "a", "acme-eu-1", "0", &"x".repeat(63)] {
            assert!(is_valid_tenant_slug(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Acme",
            "a_b",
            "a.b",
            "a/b",
            "ä",
            &"x".repeat(64),
        ] {
            assert!(!is_valid_tenant_slug(bad), "{bad}");
        }
    }

    #[test]
    fn tenant_paths_split_into_slug_and_route() {
        assert_eq!(
            paths::split_tenant("/t/acme/oauth/token"),
            Some(("acme", "/oauth/token"))
        );
        assert_eq!(paths::split_tenant("/t/acme"), None);
        assert_eq!(paths::split_tenant("/t/Acme/oauth/token"), None);
        assert_eq!(paths::split_tenant("/oauth/token"), None);
    }
}
