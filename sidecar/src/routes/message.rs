//! What every route reads and writes of an HTTP message: the header rules of sections 3 and 4,
//! and JSON answers. Bodies are read by `identity_runtime::serve::read_body`.

use axum::body::Bytes;
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

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
