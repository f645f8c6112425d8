//! The standard OAuth 2.0 routes of the identity API (RFC 6749's token endpoint, RFC 7662
//! introspection, RFC 7009 revocation, RFC 8414 metadata), passed through in the clear inside
//! the pod. Their clients authenticate on every request, with secrets and tokens in the form
//! body or the Authorization header, so the sidecar serves them only over TLS, its own or a
//! proxy's in front of it (`--standard-routes-behind-tls-proxy`).

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use identity_protocol::{ErrorCode, paths};
use identity_runtime::serve::read_body;

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
/// the answer as it came, whatever its status, headers and body.
pub async fn pass(
    state: &AppState,
    path: &str,
    request: Request,
    peer: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body, state.settings.max_body_bytes).await?;
    let target = parts
        .uri
        .path_and_query()
        .map_or(path, |target| target.as_str());
    let timer = Timer::start();
    let answer = state
        .upstream
        .pass(parts.method, target, parts.headers, peer, body)
        .await;
    state.metrics.upstream_latency(path, timer.seconds());
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
