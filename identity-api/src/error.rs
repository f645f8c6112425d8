//! The one error type of the HTTP API: RFC 6749 §5.2 bodies, status decided by the kind.
//! Internal details are logged here, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use identity_runtime::serve::BodyError;

use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication by `Authorization: Basic`, or none: 401 with
    /// `WWW-Authenticate: Basic` (RFC 6749 section 5.2).
    #[error("invalid_client")]
    InvalidClient,
    /// Client authentication by `client_secret` in a form body (`client_secret_post`): 401
    /// without a challenge, since no HTTP authentication scheme was used.
    #[error("invalid_client (client_secret_post)")]
    InvalidClientInBody,
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    /// A password login refused before any hash is computed: the username, or the source,
    /// failed too often (`service::lockout`). 400 `invalid_grant` with `Retry-After`.
    #[error("invalid_grant: too many failed logins")]
    LoginLocked { retry_after: i64 },
    /// The user has a confirmed second factor and the request brought no code: 403
    /// `mfa_required`, as Auth0 answers, naming the fields to send.
    #[error("mfa_required")]
    MfaRequired,
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// RFC 6749 section 5.2: "The authenticated client is not authorized to use this
    /// authorization grant type" (400, unlike [`ApiError::UnauthorizedClient`] of /api/v1/revoke).
    #[error("unauthorized_client: {0}")]
    GrantNotAllowed(String),
    #[error("invalid_token: {0}")]
    InvalidToken(&'static str),
    #[error("subject_mismatch")]
    SubjectMismatch,
    #[error("unauthorized_client")]
    UnauthorizedClient,
    /// /api/v1/token/issue for a subject the client's subject policy refuses
    /// (`clients::SubjectPolicy`); `own_id_only`: the policy is `none`.
    #[error("unauthorized_client: subject not allowed")]
    SubjectNotAllowed { own_id_only: bool },
    #[error("access_denied: internal token")]
    InternalTokenRequired,
    #[error("payload_too_large")]
    PayloadTooLarge { limit: usize },
    #[error("request_timeout")]
    RequestTimeout,
    #[error("not_found")]
    NotFound,
    /// A tenant named by the path or a tenant header that is not a slug.
    #[error("invalid_tenant")]
    InvalidTenant,
    /// A tenant named by the path or a tenant header that does not exist: never the default's
    /// answer instead.
    #[error("unknown_tenant")]
    UnknownTenant(String),
    #[error("tenant_disabled")]
    TenantDisabled(String),
    /// The user's password is past the rotation window: its API keys are refused until it is
    /// rotated (403, as the gateway this service replaces answered).
    #[error("password_expired")]
    PasswordExpired,
    /// An API key that proves its caller (rotation) is malformed, unknown, revoked, replaced
    /// past its overlap, or of a disabled user: one answer for all.
    #[error("invalid_api_key: {0}")]
    InvalidApiKey(&'static str),
    /// The tenant's signing key is missing or unusable (a key read from outside that cannot be
    /// read, or that another tenant signs with): the log says which and why.
    #[error("no usable signing key")]
    NoSigningKey,
    #[error("method_not_allowed")]
    MethodNotAllowed,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl ApiError {
    pub fn invalid_request(text: impl Into<String>) -> Self {
        ApiError::InvalidRequest(text.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_)
            | ApiError::InvalidScope(_)
            | ApiError::InvalidTarget(_)
            | ApiError::InvalidGrant(_)
            | ApiError::LoginLocked { .. }
            | ApiError::UnsupportedGrantType(_)
            | ApiError::GrantNotAllowed(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidClient | ApiError::InvalidClientInBody | ApiError::InvalidToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::MfaRequired => StatusCode::FORBIDDEN,
            ApiError::SubjectMismatch
            | ApiError::UnauthorizedClient
            | ApiError::SubjectNotAllowed { .. }
            | ApiError::InternalTokenRequired => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound | ApiError::UnknownTenant(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidTenant => StatusCode::BAD_REQUEST,
            ApiError::TenantDisabled(_) => StatusCode::FORBIDDEN,
            ApiError::PasswordExpired => StatusCode::FORBIDDEN,
            ApiError::InvalidApiKey(_) => StatusCode::UNAUTHORIZED,
            ApiError::NoSigningKey => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Store(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::InvalidClient | ApiError::InvalidClientInBody => "invalid_client",
            ApiError::InvalidScope(_) => "invalid_scope",
            ApiError::InvalidTarget(_) => "invalid_target",
            ApiError::InvalidGrant(_) => "invalid_grant",
            ApiError::LoginLocked { .. } => "invalid_grant",
            ApiError::MfaRequired => "mfa_required",
            ApiError::UnsupportedGrantType(_) => "unsupported_grant_type",
            ApiError::GrantNotAllowed(_) => "unauthorized_client",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::SubjectMismatch => "subject_mismatch",
            ApiError::UnauthorizedClient | ApiError::SubjectNotAllowed { .. } => {
                "unauthorized_client"
            }
            ApiError::InternalTokenRequired => "access_denied",
            ApiError::NotFound => "not_found",
            ApiError::InvalidTenant => "invalid_request",
            ApiError::UnknownTenant(_) => "unknown_tenant",
            ApiError::TenantDisabled(_) => "tenant_disabled",
            ApiError::PasswordExpired => "password_expired",
            ApiError::InvalidApiKey(_) => "invalid_api_key",
            ApiError::NoSigningKey => "temporarily_unavailable",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Store(e) if e.is_transient() => "temporarily_unavailable",
            ApiError::Store(_) | ApiError::Internal(_) => "server_error",
        }
    }

    fn description(&self) -> String {
        match self {
            ApiError::InvalidRequest(text)
            | ApiError::InvalidScope(text)
            | ApiError::InvalidTarget(text)
            | ApiError::UnsupportedGrantType(text)
            | ApiError::GrantNotAllowed(text) => text.clone(),
            ApiError::InvalidClient | ApiError::InvalidClientInBody => {
                "client authentication failed".into()
            }
            ApiError::InvalidGrant(text) | ApiError::InvalidToken(text) => (*text).into(),
            ApiError::LoginLocked { retry_after } => {
                format!("too many failed logins; try again in {retry_after} seconds")
            }
            ApiError::MfaRequired => "this user has a second factor: send otp (the current \
                code of its authenticator) or recovery_code (an unused recovery code)"
                .into(),
            ApiError::SubjectMismatch => {
                "the token or request is for another subject than the session".into()
            }
            ApiError::UnauthorizedClient => "the token belongs to another client or subject".into(),
            ApiError::SubjectNotAllowed { own_id_only: true } => {
                "this client may issue tokens only for itself: the subject must be its client id"
                    .into()
            }
            ApiError::SubjectNotAllowed { own_id_only: false } => {
                "this client may not issue tokens for this subject (its subject policy refuses it)"
                    .into()
            }
            ApiError::InternalTokenRequired => "missing or wrong X-Internal-Token".into(),
            ApiError::PayloadTooLarge { limit } => {
                BodyError::TooLarge { limit: *limit }.to_string()
            }
            ApiError::RequestTimeout => BodyError::TimedOut.to_string(),
            ApiError::NotFound => "no such route".into(),
            ApiError::InvalidTenant => "the tenant named by the path or a tenant header is not a \
                valid tenant slug (1 to 63 characters of a-z, 0-9 and -)"
                .into(),
            ApiError::UnknownTenant(slug) => format!("no tenant {slug}"),
            ApiError::TenantDisabled(slug) => format!("tenant {slug} is disabled"),
            ApiError::PasswordExpired => {
                "the user's password is past its rotation window: rotate the password first".into()
            }
            ApiError::InvalidApiKey(text) => (*text).into(),
            ApiError::NoSigningKey => {
                "the tenant has no signing key it can use; the server's log says why".into()
            }
            ApiError::MethodNotAllowed => "method not allowed on this route".into(),
            ApiError::Store(e) if e.is_transient() => {
                "the database is busy or unreachable; retry".into()
            }
            ApiError::Store(_) | ApiError::Internal(_) => "internal error".into(),
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
            BodyError::TimedOut => ApiError::RequestTimeout,
            BodyError::Unreadable => ApiError::invalid_request(err.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let description = self.description();
        let mut response = (
            status,
            Json(Body {
                error: self.code(),
                error_description: &description,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            ApiError::InvalidClient => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"identity-api\""),
                );
            }
            ApiError::InvalidToken(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            ApiError::LoginLocked { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}
