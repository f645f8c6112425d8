//! The identity-sidecar wire protocol, version 1 (`docs/PROTOCOL.md`), without any I/O.
//!
//! The modules follow the document:
//! - [`b64`]: the strict base64url of "Terms";
//! - [`keys`]: ephemeral P-256 keys, strict peer-key checks and the key schedule (section 1);
//! - [`signing`]: server authentication of session init answers (section 1);
//! - [`handshake`]: session init, anonymous and authenticated (sections 1 and 2);
//! - [`envelope`]: request and response AAD, seal and open (section 3);
//! - [`replay`]: the 1024-wide replay window (section 3);
//! - [`error`]: the error codes of section 4.

pub mod b64;
pub mod envelope;
pub mod error;
pub mod handshake;
pub mod keys;
pub mod replay;
pub mod signing;

pub use envelope::{Envelope, Plaintext};
pub use error::{Error, ErrorCode};
pub use handshake::{ClientHandshake, ClientSession, InitAnswer, InitRequest};
pub use keys::{EphemeralSecret, PublicKey, Role, SessionKeys};
pub use replay::ReplayWindow;
pub use signing::{KeyDocument, SigningKey, TrustedKeys};

/// The protocol name, as it appears in the key document and as the prefix of every label.
pub const PROTOCOL: &str = "identity-sidecar/v1";

/// Paths of the protocol's routes (sections 1 to 4).
pub mod paths {
    pub const SESSION_INIT: &str = "/api/v1/session/init";
    pub const TOKEN_ISSUE: &str = "/api/v1/token/issue";
    pub const INTROSPECT: &str = "/api/v1/introspect";
    pub const TOKEN: &str = "/api/v1/token";
    pub const REVOKE: &str = "/api/v1/revoke";
    pub const KEY_DOCUMENT: &str = "/.well-known/identity-sidecar";
    pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
    pub const JWKS: &str = "/.well-known/jwks.json";
    /// The encrypted routes forwarded by default (section 3).
    pub const DEFAULT_ENCRYPTED: [&str; 4] = [TOKEN_ISSUE, INTROSPECT, TOKEN, REVOKE];
}

/// Header names of the protocol.
pub mod headers {
    pub const SESSION_ID: &str = "x-session-id";
    pub const SUBJECT: &str = "x-subject";
    /// Set by the sidecar only; client-sent copies are dropped (section 3).
    pub const SESSION_SUBJECT: &str = "x-session-subject";
    /// Set by the sidecar only; client-sent copies are dropped (section 3).
    pub const INTERNAL_TOKEN: &str = "x-internal-token";
}

/// `session_id` is opaque: 1 to 512 visible ASCII characters (0x21 to 0x7E), section 1.
pub fn is_valid_session_id(session_id: &str) -> bool {
    (1..=512).contains(&session_id.len()) && session_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// `subject` of an authenticated session: 1 to 255 characters and never `-`, which the signing
/// input uses for "anonymous" (sections 1 and 5).
pub fn is_valid_subject(subject: &str) -> bool {
    subject != "-" && (1..=255).contains(&subject.chars().count())
}
