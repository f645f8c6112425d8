//! What every route reads and writes of an HTTP message: the header rules of sections 3 and 4,
//! the body limit, and JSON answers.

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;

/// A JSON answer.
pub fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// At most one copy of a header: "A request carries at most one Authorization header (more:
/// `400 invalid_request`)"; the same for the protocol's own headers.
pub fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::invalid_request(format!(
            "more than one {name} header"
        )));
    }
    Ok(first)
}

/// "`Content-Type: application/json` may carry parameters (`; charset=utf-8`)."
pub fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(ApiError::unsupported_media_type()),
    }
}

/// "any `?` in the target is a query string" (section 3): refused.
pub fn refuse_query(parts: &Parts) -> Result<(), ApiError> {
    if parts.uri.query().is_some() {
        return Err(ApiError::invalid_request(
            "query strings are not allowed on this route",
        ));
    }
    Ok(())
}

/// Reads the body, at most `limit` bytes: a declared Content-Length over it is refused before
/// reading anything, a streamed body as soon as it passes the limit; the rest is never read.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::payload_too_large(limit))
        }
        Err(_) => Err(ApiError::invalid_request(
            "the request body could not be read",
        )),
    }
}
