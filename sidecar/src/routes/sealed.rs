//! Section 3: encrypted requests (journey steps 2, 3, 5 and 6). Open the request under `k_c2s`,
//! forward the plaintext to the identity API, seal its answer under `k_s2c`, whatever its status.

use std::net::IpAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use identity_protocol::{Envelope, ErrorCode, Plaintext, headers, is_valid_session_id};
use identity_runtime::serve::read_body;

use super::message::{json_response, refuse_query, require_json_content_type, single_header};
use super::tenant::tenant_headers;

use crate::error::ApiError;
use crate::forward::{Forward, Timer};
use crate::sessions::{Live, Refusal};
use crate::state::AppState;

pub async fn sealed(
    state: &AppState,
    path: &str,
    request: Request,
    peer: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    refuse_query(&parts)?;
    let authorization = single_header(&parts.headers, &header::AUTHORIZATION)?;
    // Checked before decryption, so that a refused tenant header consumes no `seq`.
    let tenant = tenant_headers(&state.settings.tenant_headers, &parts.headers)?;
    require_json_content_type(&parts.headers)?;
    let (session_id, live) = live_session(state, &parts.headers).await?;
    let body = read_body(&parts.headers, body, state.settings.max_body_bytes).await?;
    let method = parts.method.as_str();
    let envelope = Envelope::from_json(&body)?;
    let seq = envelope.seq;
    let plaintext = open(
        state,
        &live,
        session_id,
        method,
        path,
        authorization,
        &envelope,
    )
    .await?;
    let session = live.session();

    let forward = Forward {
        path,
        authorization,
        session_subject: session.subject(),
        forwarded_for: peer,
        tenant_headers: &tenant,
    };
    let timer = Timer::start();
    // The plaintext goes to the identity API as it is, without a copy; it is wiped when the
    // upstream request lets go of it.
    let answer = state
        .upstream
        .post_json(&forward, Bytes::from_owner(plaintext))
        .await;
    state.metrics.upstream_latency(path, timer.seconds());
    let answer = answer?;

    // "[The sidecar] encrypts the identity API's answer, whatever its status, under `k_s2c`."
    let status = StatusCode::from_u16(answer.status)
        .map_err(|_| ApiError::upstream_unavailable("the identity API answered a bad status"))?;
    let sealed =
        session
            .keys()
            .seal_response(session_id, method, path, seq, answer.status, &answer.body);
    let mut response = json_response(status, Bytes::from(sealed.to_json()));
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(session_id) {
        headers.insert(headers::SESSION_ID, id);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `X-Session-Id`, once, naming a live session: else `401 invalid_session`.
async fn live_session<'h>(
    state: &AppState,
    headers: &'h HeaderMap,
) -> Result<(&'h str, Live), ApiError> {
    let session_id = single_header(headers, &HeaderName::from_static(headers::SESSION_ID))?
        .ok_or_else(|| ApiError::invalid_session("X-Session-Id is missing"))?
        .to_str()
        .ok()
        .filter(|id| is_valid_session_id(id))
        .ok_or_else(|| ApiError::invalid_session("unknown, ended or expired session"))?;
    let session = state
        .sessions
        .get(session_id, Instant::now())
        .await?
        .ok_or_else(|| ApiError::invalid_session("unknown, ended or expired session"))?;
    Ok((session_id, session))
}

/// "A request consumes its `seq` once it has decrypted successfully, whatever happens after; one
/// that fails earlier consumes nothing": check, decrypt, then accept. With the Redis store the
/// check is part of the accept, one atomic script.
async fn open(
    state: &AppState,
    live: &Live,
    session_id: &str,
    method: &str,
    path: &str,
    authorization: Option<&HeaderValue>,
    envelope: &Envelope,
) -> Result<Plaintext, ApiError> {
    let limit = state.settings.max_requests_per_session;
    state
        .sessions
        .check(live, envelope.seq, limit)
        .map_err(|r| refusal(state, session_id, r))?;
    let plaintext = live
        .session()
        .keys()
        .open_request(
            session_id,
            method,
            path,
            authorization.map(HeaderValue::as_bytes),
            envelope,
        )
        .map_err(|err| {
            state.metrics.decryption_failures.inc();
            ApiError::from(err)
        })?;
    state
        .sessions
        .accept(session_id, live, envelope.seq, limit)
        .await
        .map_err(|r| refusal(state, session_id, r))?;
    Ok(plaintext)
}

fn refusal(state: &AppState, session_id: &str, refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Replayed => {
            state.metrics.replays_refused.inc();
            ApiError::new(
                ErrorCode::ReplayedRequest,
                "seq already used, or below the replay window",
            )
        }
        Refusal::Exhausted => {
            // "after that it answers `401 invalid_session` and the client starts a new one."
            state.sessions.forget(session_id);
            ApiError::invalid_session("the session has carried its limit of requests")
        }
        Refusal::Ended => {
            state.sessions.forget(session_id);
            ApiError::invalid_session("unknown, ended or expired session")
        }
        Refusal::Unavailable(unavailable) => unavailable.into(),
    }
}
