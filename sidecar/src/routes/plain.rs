//! Section 4's unencrypted routes: health, readiness (the identity API answers), metrics, the
//! key document of section 1, and the pass-throughs of discovery and the JWKS.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use identity_protocol::paths;

use super::message::json_response;
use super::tenant::tenant_headers;
use crate::error::ApiError;
use crate::forward::Timer;
use crate::state::AppState;

pub fn health() -> Response {
    json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Ready when the identity API answers its own `/health`.
pub async fn ready(state: &AppState) -> Response {
    match state.upstream.get_status(paths::HEALTH).await {
        Ok(status) if (200..300).contains(&status) => {
            json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ready"}"#))
        }
        _ => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(
                br#"{"status":"unavailable","error_description":"the identity API does not answer /health"}"#,
            ),
        ),
    }
}

pub fn metrics(state: &AppState) -> Response {
    match state.metrics.encode(state.sessions.len()) {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /.well-known/identity-sidecar`, serialised once at start.
pub fn key_document(state: &AppState) -> Response {
    let mut response = json_response(StatusCode::OK, Bytes::from(state.keys.document.clone()));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}

/// `GET /.well-known/jwks.json`, or a tenant's (`path`), from the identity API with the
/// client's tenant headers: public keys, served with or without TLS. `label` names the route in
/// the metrics.
pub async fn pass_through(
    state: &AppState,
    path: &str,
    label: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_headers(&state.settings.tenant_headers, headers)?;
    let timer = Timer::start();
    let answer = state.upstream.get(path, &tenant).await;
    state.metrics.upstream_latency(label, timer.seconds());
    let answer = answer?;
    let status = StatusCode::from_u16(answer.status)
        .map_err(|_| ApiError::upstream_unavailable("the identity API answered a bad status"))?;
    let mut response = json_response(status, answer.body);
    if let Some(content_type) = answer.headers.get(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    Ok(response)
}
