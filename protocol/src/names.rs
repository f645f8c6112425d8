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
    pub const KEY_DOCUMENT: &str = "/.well-known/identity-sidecar";
    pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
    pub const JWKS: &str = "/.well-known/jwks.json";
    /// The sidecar's liveness, readiness and metrics (section 4); the identity API serves the
    /// same three.
    pub const HEALTH: &str = "/health";
    pub const READY: &str = "/health/ready";
    pub const METRICS: &str = "/metrics";
    /// The encrypted routes forwarded by default (section 3).
    pub const DEFAULT_ENCRYPTED: [&str; 4] = [TOKEN_ISSUE, INTROSPECT, TOKEN, REVOKE];

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
}

/// `session_id` is opaque: 1 to 512 visible ASCII characters (0x21 to 0x7E), section 1.
pub fn is_valid_session_id(session_id: &str) -> bool {
    (1..=512).contains(&session_id.len()) && session_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}
