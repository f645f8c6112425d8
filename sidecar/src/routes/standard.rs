//! The standard OAuth 2.0 routes of the identity API (RFC 6749's token endpoint, RFC 7662
//! introspection, RFC 7009 revocation, RFC 8414 metadata), and the credentials routes when a
//! request to one is not sealed, passed through in the clear inside the pod. Their clients authenticate on every request, with secrets and tokens in the form
//! body or the Authorization header, so the sidecar serves them only over TLS, its own or a
//! proxy's in front of it (`--standard-routes-behind-tls-proxy`).
//!
//! What the sidecar answers itself there, it answers as the identity API would: a body over
//! the limit, late or unreadable is RFC 6749's `400 invalid_request`, as docs/OAUTH.md says of
//! the API, with the `Cache-Control: no-store` and `Pragma: no-cache` of RFC 6749 section 5.1.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use identity_protocol::{ErrorCode, paths};
use identity_runtime::serve::read_body;

use super::tenant::tenant_headers;
use crate::error::ApiError;
use crate::forward::{Timer, end_to_end};
use crate::state::AppState;

/// The refusal without TLS: a 404, as for any path the sidecar does not serve, saying why.
pub fn refused() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "the standard OAuth routes are served over TLS only: start the sidecar with \
         --tls-cert-file and --tls-key-file, or with --standard-routes-behind-tls-proxy when \
         TLS ends in front of it",
    )
}

/// The request as it came (the body within `--max-body-bytes`), the internal token added;
/// the answer as it came, whatever its status, headers and body. `path` may be a tenant's copy
/// of the route; `label` names the route in the metrics.
pub async fn pass(
    state: &AppState,
    path: &str,
    label: &str,
    request: Request,
    peer: Option<IpAddr>,
) -> Response {
    match forward(state, path, label, request, peer).await {
        Ok(response) => response,
        Err(error) => oauth_error(error),
    }
}

/// The sidecar's own errors on these routes, with RFC 6749 section 5.1's headers, as the API's.
pub fn oauth_error(error: ApiError) -> Response {
    let mut response = error.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn forward(
    state: &AppState,
    path: &str,
    label: &str,
    request: Request,
    peer: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    // Every header passes, the tenant headers too, but not a tenant header the identity API
    // would have to refuse: the same check as on the sealed routes, before the body is read.
    tenant_headers(&state.settings.tenant_headers, &parts.headers)?;
    // RFC 6749 section 5.2 has no code for a body over the limit or late: `invalid_request`,
    // the identity API's own answer to it.
    let body = read_body(&parts.headers, body, state.settings.max_body_bytes)
        .await
        .map_err(|err| ApiError::invalid_request(err.to_string()))?;
    let target = parts
        .uri
        .path_and_query()
        .map_or(path, |target| target.as_str());
    let timer = Timer::start();
    let answer = state
        .upstream
        .pass(parts.method, target, parts.headers, peer, body)
        .await;
    state.metrics.upstream_latency(label, timer.seconds());
    let answer = answer?;
    let status = StatusCode::from_u16(answer.status)
        .map_err(|_| ApiError::upstream_unavailable("the identity API answered a bad status"))?;
    let mut headers = answer.headers;
    end_to_end(&mut headers);
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Whether `path` is one of them.
pub fn is_standard(path: &str) -> bool {
    paths::STANDARD.contains(&path)
}

/// Whether `path` is a credentials route (docs/users.md): JSON, client authentication in the
/// Authorization header as on the token endpoint, so it passes here as the standard routes do
/// when it is not sealed.
pub fn is_credentials(path: &str) -> bool {
    paths::CREDENTIALS.contains(&path)
}
