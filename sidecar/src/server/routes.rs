//! The sidecar's routes (PROTOCOL.md sections 1 to 4), dispatched by exact path.
//!
//! "`path` is the raw path as received, matched exactly (a trailing slash is another path)": one
//! table maps the raw path to a route; an unknown path is `404`, a known path with another method
//! `405` with `Allow`. Every answer is counted by route and status.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;

use super::error::ApiError;
use super::forward::{Forward, Timer};
use super::sessions::{Refusal, Session, new_session_id};
use super::state::AppState;
use crate::protocol::{
    Envelope, ErrorCode, InitRequest, handshake, headers, is_valid_session_id, is_valid_subject,
    paths,
};

pub const HEALTH: &str = "/health";
pub const READY: &str = "/health/ready";
pub const METRICS: &str = "/metrics";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    SessionInit,
    Encrypted,
    Health,
    Ready,
    Metrics,
    KeyDocument,
    PassThrough,
}

impl Route {
    fn of(state: &AppState, path: &str) -> Option<Self> {
        Some(match path {
            paths::SESSION_INIT => Self::SessionInit,
            HEALTH => Self::Health,
            READY => Self::Ready,
            METRICS => Self::Metrics,
            paths::KEY_DOCUMENT => Self::KeyDocument,
            paths::OPENID_CONFIGURATION | paths::JWKS => Self::PassThrough,
            _ if state.settings.routes.contains(path) => Self::Encrypted,
            _ => return None,
        })
    }

    fn method(self) -> Method {
        match self {
            Self::SessionInit | Self::Encrypted => Method::POST,
            _ => Method::GET,
        }
    }

    fn allow(self) -> &'static str {
        match self {
            Self::SessionInit | Self::Encrypted => "POST",
            _ => "GET",
        }
    }
}

/// The sidecar as a router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`
/// so that the rate limit and X-Forwarded-For see the client's address.
pub fn app(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let route = Route::of(&state, &path);
    let response = match route {
        None => ApiError::not_found().into_response(),
        Some(route) if method != route.method() => {
            ApiError::method_not_allowed(route.allow()).into_response()
        }
        Some(route) => handle(&state, route, &path, request).await,
    };
    // Route labels come from the route table only, so the label set stays bounded.
    let label = if route.is_some() {
        path.as_str()
    } else {
        "other"
    };
    let status = response.status().as_u16();
    state.metrics.request(label, status);
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Successful answers are counted in the metrics and log at debug, sparing the hot path a
    // formatted write per request; refusals and failures log at info.
    if status < 400 {
        tracing::debug!(method = %method, route = label, status, elapsed_ms, "request");
    } else {
        tracing::info!(method = %method, route = label, status, elapsed_ms, "request");
    }
    response
}

async fn handle(state: &AppState, route: Route, path: &str, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match route {
        Route::SessionInit => session_init(state, request, peer).await,
        Route::Encrypted => encrypted(state, path, request, peer)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Route::Health => json_response(StatusCode::OK, br#"{"status":"ok"}"#.as_slice().into()),
        Route::Ready => ready(state).await,
        Route::Metrics => metrics(state),
        Route::KeyDocument => {
            let mut response =
                json_response(StatusCode::OK, Bytes::from(state.keys.document.clone()));
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            );
            response
        }
        Route::PassThrough => pass_through(state, path)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
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

// ---------------------------------------------------------------------------------------------
// Checks shared by the POST routes.

/// At most one copy of a header: "A request carries at most one Authorization header (more:
/// `400 invalid_request`)"; the same for the protocol's own headers.
fn single_header<'a>(
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
fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
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
fn refuse_query(parts: &Parts) -> Result<(), ApiError> {
    if parts.uri.query().is_some() {
        return Err(ApiError::invalid_request(
            "query strings are not allowed on this route",
        ));
    }
    Ok(())
}

/// Reads the body, at most `limit` bytes: a declared Content-Length over it is refused before
/// reading anything, a streamed body as soon as it passes the limit; the rest is never read.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------------
// Sections 1 and 2: session init.

async fn session_init(state: &AppState, request: Request, peer: Option<IpAddr>) -> Response {
    let headers = request.headers();
    let authenticated =
        headers.contains_key(header::AUTHORIZATION) || headers.contains_key(headers::SUBJECT);
    let result = session_init_inner(state, request, peer).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(err) => err.code.as_str(),
    };
    state.metrics.session_init(authenticated, outcome);
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn session_init_inner(
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
    let authorization = single_header(&parts.headers, &header::AUTHORIZATION)?;
    let subject = single_header(&parts.headers, &HeaderName::from_static(headers::SUBJECT))?;
    let subject = match (authorization, subject) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(ApiError::invalid_request(
                "authenticated session init needs both Authorization and X-Subject",
            ));
        }
        (Some(authorization), Some(subject)) => {
            let token = bearer_token(authorization).ok_or_else(|| {
                ApiError::invalid_token("the Authorization header is not a Bearer token")
            })?;
            let sub = validate_token(state, token, peer).await?;
            // The token comes before the subject, so an X-Subject that is no valid subject at
            // all (`-`, not UTF-8, too long) is a mismatch too: no token carries it.
            let subject = std::str::from_utf8(subject.as_bytes())
                .ok()
                .filter(|s| is_valid_subject(s) && *s == sub)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::SubjectMismatch,
                        "the access token's subject is not X-Subject",
                    )
                })?;
            Some(subject.to_owned())
        }
    };

    let reservation = state.sessions.reserve().map_err(|_| {
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
    reservation.insert(session_id, Session::new(keys, subject.clone(), deadline));

    // "A live previous session named in `X-Session-Id` is ended once the new one exists, if it
    // is anonymous or bound to the same subject; otherwise, or if it is unknown, it is left
    // alone."
    if let Some(subject) = subject.as_deref() {
        let previous = parts
            .headers
            .get(headers::SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|id| is_valid_session_id(id) && *id != answer.session_id);
        let ends =
            previous.and_then(|id| state.sessions.get(id, Instant::now()).map(|old| (id, old)));
        if let Some((previous, old)) = ends
            && old.subject().is_none_or(|s| s == subject)
        {
            state.sessions.remove(previous);
        }
    }

    let body = serde_json::to_vec(&answer)
        .map_err(|_| ApiError::invalid_request("cannot encode the answer"))?;
    let mut response = json_response(StatusCode::OK, Bytes::from(body));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `Bearer <token>`, the scheme compared case-insensitively.
fn bearer_token(authorization: &HeaderValue) -> Option<&str> {
    let value = authorization.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// The part of the identity API's introspection answer the sidecar reads (section 5, step 3).
#[derive(Deserialize)]
struct Introspection {
    active: bool,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    token_use: Option<String>,
}

/// "The sidecar validates the access token with the identity API (it must be active)": `POST
/// /api/v1/introspect` with the token as both bearer and body, through the internal path
/// (X-Internal-Token). Returns the token's `sub`, for the caller's subject check.
async fn validate_token(
    state: &AppState,
    token: &str,
    peer: Option<IpAddr>,
) -> Result<String, ApiError> {
    let authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        .map(|mut v| {
            v.set_sensitive(true);
            v
        })
        .map_err(|_| ApiError::invalid_token("the bearer token is not a header value"))?;
    let body = serde_json::to_vec(&serde_json::json!({ "token": token }))
        .map_err(|_| ApiError::invalid_token("the bearer token cannot be encoded"))?;
    let forward = Forward {
        path: paths::INTROSPECT,
        authorization: Some(&authorization),
        session_subject: None,
        forwarded_for: peer,
    };
    let timer = Timer::start();
    let answer = state.upstream.post_json(&forward, body).await;
    state
        .metrics
        .upstream_latency(paths::INTROSPECT, timer.seconds());
    let answer = answer?;
    match answer.status {
        200 => {}
        401 => return Err(ApiError::invalid_token("the access token is not active")),
        status => {
            tracing::warn!(
                status,
                "identity API introspection answered an unexpected status"
            );
            return Err(ApiError::upstream_unavailable(
                "the identity API could not validate the token",
            ));
        }
    }
    let introspection: Introspection = serde_json::from_slice(&answer.body).map_err(|_| {
        ApiError::upstream_unavailable("the identity API's introspection answer is malformed")
    })?;
    if !introspection.active
        || introspection
            .token_use
            .as_deref()
            .is_some_and(|u| u != "access_token")
    {
        return Err(ApiError::invalid_token("the access token is not active"));
    }
    // An active access token without a subject matches no X-Subject.
    Ok(introspection.sub.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Section 3: encrypted requests.

async fn encrypted(
    state: &AppState,
    path: &str,
    request: Request,
    peer: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    refuse_query(&parts)?;
    let authorization = single_header(&parts.headers, &header::AUTHORIZATION)?;
    require_json_content_type(&parts.headers)?;

    let session_id = single_header(
        &parts.headers,
        &HeaderName::from_static(headers::SESSION_ID),
    )?
    .ok_or_else(|| ApiError::invalid_session("X-Session-Id is missing"))?
    .to_str()
    .ok()
    .filter(|id| is_valid_session_id(id))
    .ok_or_else(|| ApiError::invalid_session("unknown, ended or expired session"))?;
    let session = state
        .sessions
        .get(session_id, Instant::now())
        .ok_or_else(|| ApiError::invalid_session("unknown, ended or expired session"))?;

    let body = read_body(&parts.headers, body, state.settings.max_body_bytes).await?;
    let envelope = Envelope::from_json(&body)?;
    let seq = envelope.seq;
    let method = parts.method.as_str();
    let limit = state.settings.max_requests_per_session;

    // "A request consumes its `seq` once it has decrypted successfully, whatever happens
    // after; one that fails earlier consumes nothing": check, decrypt, then accept.
    session
        .check(seq, limit)
        .map_err(|r| refusal(state, session_id, r))?;
    let plaintext = session
        .keys()
        .open_request(
            session_id,
            method,
            path,
            authorization.map(HeaderValue::as_bytes),
            &envelope,
        )
        .map_err(|err| {
            state.metrics.decryption_failures.inc();
            ApiError::from(err)
        })?;
    session
        .accept(seq, limit)
        .map_err(|r| refusal(state, session_id, r))?;

    let forward = Forward {
        path,
        authorization,
        session_subject: session.subject(),
        forwarded_for: peer,
    };
    let timer = Timer::start();
    let answer = state
        .upstream
        .post_json(&forward, plaintext.as_bytes().to_vec())
        .await;
    drop(plaintext);
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
            state.sessions.remove(session_id);
            ApiError::invalid_session("the session has carried its limit of requests")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Section 4: the unencrypted routes.

async fn ready(state: &AppState) -> Response {
    match state.upstream.get_status(HEALTH).await {
        Ok(status) if (200..300).contains(&status) => {
            json_response(StatusCode::OK, br#"{"status":"ready"}"#.as_slice().into())
        }
        _ => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"status":"unavailable","error_description":"the identity API does not answer /health"}"#
                .as_slice()
                .into(),
        ),
    }
}

fn metrics(state: &AppState) -> Response {
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

/// `GET /.well-known/openid-configuration` and `/.well-known/jwks.json`, from the identity API.
async fn pass_through(state: &AppState, path: &str) -> Result<Response, ApiError> {
    let timer = Timer::start();
    let answer = state.upstream.get(path).await;
    state.metrics.upstream_latency(path, timer.seconds());
    let answer = answer?;
    let status = StatusCode::from_u16(answer.status)
        .map_err(|_| ApiError::upstream_unavailable("the identity API answered a bad status"))?;
    let mut response = json_response(status, answer.body);
    if let Some(content_type) = answer.content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    Ok(response)
}
