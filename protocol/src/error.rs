//! Section 4: the sidecar's own error codes, and the protocol library's error type.

use std::fmt;

/// The `error` codes of PROTOCOL.md section 4, with their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidPublicKey,
    DecryptionFailed,
    InvalidSession,
    InvalidToken,
    SubjectMismatch,
    NotFound,
    MethodNotAllowed,
    ReplayedRequest,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    UpstreamUnavailable,
    UpstreamTimeout,
    SessionStoreUnavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 16] = [
        Self::InvalidRequest,
        Self::InvalidPublicKey,
        Self::DecryptionFailed,
        Self::InvalidSession,
        Self::InvalidToken,
        Self::SubjectMismatch,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::ReplayedRequest,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::TooManyRequests,
        Self::UpstreamUnavailable,
        Self::UpstreamTimeout,
        Self::SessionStoreUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidPublicKey => "invalid_public_key",
            Self::DecryptionFailed => "decryption_failed",
            Self::InvalidSession => "invalid_session",
            Self::InvalidToken => "invalid_token",
            Self::SubjectMismatch => "subject_mismatch",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::ReplayedRequest => "replayed_request",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooManyRequests => "too_many_requests",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::SessionStoreUnavailable => "session_store_unavailable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::InvalidPublicKey | Self::DecryptionFailed => 400,
            Self::InvalidSession | Self::InvalidToken => 401,
            Self::SubjectMismatch => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::ReplayedRequest => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::TooManyRequests => 429,
            Self::UpstreamUnavailable => 502,
            Self::SessionStoreUnavailable => 503,
            Self::UpstreamTimeout => 504,
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can go wrong in the protocol itself. Texts are safe to show: they never carry key
/// material, plaintext or tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0} is not canonical base64url without padding")]
    Base64(&'static str),
    #[error("public key is not a 65-byte uncompressed SEC1 point (0x04 || x || y)")]
    PublicKeyEncoding,
    #[error("public key is not a point on P-256")]
    PublicKeyNotOnCurve,
    #[error("{0}")]
    Malformed(String),
    #[error("seq is not an integer in 1 .. 2^53-1")]
    SeqOutOfRange,
    #[error("iv is not 12 bytes")]
    IvLength,
    #[error("decryption failed: GCM authentication did not verify")]
    DecryptionFailed,
    #[error("seq already used, or below the replay window")]
    Replayed,
    #[error("the answer's seq is not the request's seq")]
    SeqMismatch,
    #[error("session init answer is invalid: {0}")]
    InitAnswer(&'static str),
    #[error("session init answer's signature does not verify under any trusted sidecar key")]
    BadSignature,
    #[error("sidecar key is invalid: {0}")]
    SigningKey(&'static str),
}

impl Error {
    /// The section 4 code a sidecar answers with for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::PublicKeyEncoding | Self::PublicKeyNotOnCurve => ErrorCode::InvalidPublicKey,
            Self::DecryptionFailed => ErrorCode::DecryptionFailed,
            Self::Replayed => ErrorCode::ReplayedRequest,
            Self::Base64(_)
            | Self::Malformed(_)
            | Self::SeqOutOfRange
            | Self::IvLength
            | Self::SeqMismatch
            | Self::InitAnswer(_)
            | Self::BadSignature
            | Self::SigningKey(_) => ErrorCode::InvalidRequest,
        }
    }

    /// A serde_json failure as a protocol error: syntax or schema, never the input itself.
    pub(crate) fn json(what: &str, err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            // serde's type errors quote the offending value; say which kind of fault it is instead.
            Category::Data if err.to_string().starts_with("missing field") => {
                let msg = err.to_string();
                let field = msg.split(" at line").next().unwrap_or("missing field");
                Self::Malformed(format!("{what}: {field}"))
            }
            Category::Data => Self::Malformed(format!(
                "{what} has a field of the wrong type or value (line {}, column {})",
                err.line(),
                err.column()
            )),
            Category::Syntax | Category::Eof | Category::Io => {
                Self::Malformed(format!("{what} is not valid JSON"))
            }
        }
    }
}
