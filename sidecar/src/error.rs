//! Section 4: the sidecar's own errors, mapped to HTTP in this one place.
//!
//! "Plaintext JSON `{"error": "<code>", "error_description": "<human text>"}`, without
//! `X-Session-Id`; nothing secret in it. [...] `405` carries an `Allow` header." `429` carries
//! `Retry-After`, and so does `503`.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use identity_protocol::{self as protocol, ErrorCode};
use identity_runtime::serve::BodyError;

use crate::sessions::StoreUnavailable;

/// A section 4 error. The description is safe to send: it never holds a key, token or body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    /// `Allow` of a 405.
    pub allow: Option<&'static str>,
    /// `Retry-After` of a 429 or 503, in seconds.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            allow: None,
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_session(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidSession, description)
    }

    pub fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidToken, description)
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "not a route of the sidecar")
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                ErrorCode::MethodNotAllowed,
                "this path does not take this method",
            )
        }
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is over the limit of {limit} bytes"),
        )
    }

    pub fn request_timeout() -> Self {
        Self::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/json",
        )
    }

    pub fn too_many_requests(description: &'static str, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(ErrorCode::TooManyRequests, description)
        }
    }

    pub fn upstream_unavailable(description: &'static str) -> Self {
        Self::new(ErrorCode::UpstreamUnavailable, description)
    }

    /// The session store does not answer: the client may retry at once.
    pub fn session_store_unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                ErrorCode::SessionStoreUnavailable,
                "the session store does not answer; retry shortly",
            )
        }
    }

    pub fn upstream_timeout() -> Self {
        Self::new(
            ErrorCode::UpstreamTimeout,
            "the identity API did not answer in time",
        )
    }
}

impl From<StoreUnavailable> for ApiError {
    fn from(_: StoreUnavailable) -> Self {
        Self::session_store_unavailable()
    }
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge { limit } => Self::payload_too_large(limit),
            BodyError::TimedOut => Self::request_timeout(),
            BodyError::Unreadable => Self::invalid_request(err.to_string()),
        }
    }
}

/// Protocol errors carry their section 4 code; their texts never hold input or key material.
impl From<protocol::Error> for ApiError {
    fn from(err: protocol::Error) -> Self {
        Self::new(err.code(), err.to_string())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Body {
            error: self.code.as_str(),
            error_description: &self.description,
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
