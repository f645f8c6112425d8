//! Sections 1 and 2: session init, anonymous, and authenticated by an access token of the
//! subject the session is bound to (journey steps 1 and 4).

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use identity_protocol::identity::bearer_token;
use identity_protocol::{
    ErrorCode, InitRequest, handshake, headers, is_valid_session_id, is_valid_subject, paths,
};
use identity_runtime::serve::read_body;

use super::message::{json_response, refuse_query, require_json_content_type, single_header};

use crate::error::ApiError;
use crate::forward::Timer;
use crate::sessions::{Session, new_session_id, unix_now};
use crate::state::AppState;

/// `POST /api/v1/session/init`, counted by kind and outcome.
pub async fn session_init(state: &AppState, request: Request, peer: Option<IpAddr>) -> Response {
    let headers = request.headers();
    let authenticated =
        headers.contains_key(header::AUTHORIZATION) || headers.contains_key(headers::SUBJECT);
    let result = accept(state, request, peer).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(err) => err.code.as_str(),
    };
    state.metrics.session_init(authenticated, outcome);
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn accept(
    state: &AppState,
    request: Request,
    peer: Option<IpAddr>,
) -> Result<Response, ApiError> {
    // ECDH and signing are the expensive part: the per-IP limit comes before anything else.
    let ip = peer.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    state
        .limiter
        .try_acquire(ip, Instant::now())
        .map_err(|wait| {
            ApiError::too_many_requests("too many session inits from this address", wait)
        })?;

    let (parts, body) = request.into_parts();
    refuse_query(&parts)?;
    require_json_content_type(&parts.headers)?;
    let body = read_body(&parts.headers, body, state.settings.max_body_bytes).await?;

    // "Checks run in this order: the public key (`400`), the headers (only one of the two
    // present: `400 invalid_request`), the token (not active, or not a Bearer [...]: `401
    // invalid_token`), the subject (`403 subject_mismatch`)."
    let client_public_key = InitRequest::parse(&body)?;
    let subject = bound_subject(state, &parts.headers, peer).await?;

    let slot = state.sessions.reserve().map_err(|_| {
        ApiError::too_many_requests(
            "the session table is full",
            state.settings.sweep_interval.as_secs().max(1),
        )
    })?;
    let ttl = match subject {
        Some(_) => state.settings.authenticated_ttl,
        None => state.settings.anonymous_ttl,
    };
    let session_id = new_session_id();
    let expires_at = unix_now().saturating_add(ttl);
    let deadline = Instant::now() + Duration::from_secs(ttl);
    let (answer, keys) = handshake::accept(
        &client_public_key,
        &session_id,
        ttl,
        expires_at,
        subject.as_deref(),
        &state.keys.signing,
    );
    state
        .sessions
        .insert(
            slot,
            session_id,
            Session::new(keys, subject.clone(), deadline),
            ttl,
            expires_at,
        )
        .await?;
    if let Some(subject) = subject.as_deref() {
        end_previous(state, &parts.headers, &answer.session_id, subject).await?;
    }

    let body = serde_json::to_vec(&answer)
        .map_err(|_| ApiError::invalid_request("cannot encode the answer"))?;
    let mut response = json_response(StatusCode::OK, Bytes::from(body));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Section 2: `None` for an anonymous init; else the subject the session binds, proven by an
/// active access token of that subject.
async fn bound_subject(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<String>, ApiError> {
    let authorization = single_header(headers, &header::AUTHORIZATION)?;
    let subject = single_header(headers, &HeaderName::from_static(headers::SUBJECT))?;
    let (authorization, subject) = match (authorization, subject) {
        (None, None) => return Ok(None),
        (Some(authorization), Some(subject)) => (authorization, subject),
        (Some(_), None) | (None, Some(_)) => {
            return Err(ApiError::invalid_request(
                "authenticated session init needs both Authorization and X-Subject",
            ));
        }
    };
    let token = bearer_token(authorization.as_bytes())
        .ok_or_else(|| ApiError::invalid_token("the Authorization header is not a Bearer token"))?;
    let timer = Timer::start();
    let sub = state.upstream.access_token_subject(token, peer).await;
    state
        .metrics
        .upstream_latency(paths::INTROSPECT, timer.seconds());
    let sub = sub?;
    // The token comes before the subject, so an X-Subject that is no valid subject at all (`-`,
    // not UTF-8, too long) is a mismatch too: no token carries it.
    let subject = std::str::from_utf8(subject.as_bytes())
        .ok()
        .filter(|s| is_valid_subject(s) && *s == sub)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::SubjectMismatch,
                "the access token's subject is not X-Subject",
            )
        })?;
    Ok(Some(subject.to_owned()))
}

/// "A live previous session named in `X-Session-Id` is ended once the new one exists, if it is
/// anonymous or bound to the same subject; otherwise, or if it is unknown, it is left alone."
/// A store that cannot say fails the init (503): the client retries rather than keep a session
/// that should have ended.
async fn end_previous(
    state: &AppState,
    headers: &HeaderMap,
    new_session_id: &str,
    subject: &str,
) -> Result<(), ApiError> {
    let previous = headers
        .get(headers::SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_valid_session_id(id) && *id != new_session_id);
    if let Some(previous) = previous {
        state.sessions.end_previous(previous, subject).await?;
    }
    Ok(())
}
