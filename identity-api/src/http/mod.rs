//! Routes: PROTOCOL.md section 5 under /api/v1 (behind the internal token), the standard OAuth
//! 2.0 endpoints under /oauth ([`oauth`]: they authenticate their clients themselves), the
//! password grant and the /credentials routes of passwords and MFA ([`login`]), health,
//! version, metrics, the JWKS and discovery.

mod api_keys;
mod form;
mod login;
mod oauth;
mod tenant;

use std::time::Instant;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use identity_protocol::{headers, paths};
use identity_runtime::serve::{BodyError, read_body};
use serde::Deserialize;
use serde_json::json;
use tower::Layer as _;

use crate::error::ApiError;
use crate::metrics::RouteLabel;
use crate::service::tenancy::named_id;
use crate::service::{AppState, BearerUse, NamedTenant, Parsed};
use crate::tokens::Verified;

/// The tenant the request named, if any (set by [`tenant::name_tenant`]).
type Named = Option<axum::Extension<NamedTenant>>;

fn named(named: &Named) -> Option<&NamedTenant> {
    named.as_ref().map(|axum::Extension(n)| n)
}

/// The routes, behind [`tenant::name_tenant`]: it takes a tenant's path prefix off before
/// routing, so that every route is also served under `/t/{tenant}`.
pub fn app(state: AppState) -> Router {
    let routes = routes(state.clone());
    Router::new()
        .fallback_service(middleware::from_fn_with_state(state, tenant::name_tenant).layer(routes))
}

fn routes(state: AppState) -> Router {
    let api = Router::new()
        .route(paths::TOKEN_ISSUE, post(issue))
        .route(paths::INTROSPECT, post(introspect))
        .route(paths::TOKEN, post(refresh))
        .route(paths::REVOKE, post(revoke))
        .merge(login::api_routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_internal_token,
        ));
    Router::new()
        .merge(api)
        .merge(ops_routes())
        .merge(login::routes())
        .merge(api_keys::routes())
        .route(paths::OAUTH_TOKEN, post(oauth::token))
        .route(paths::OAUTH_INTROSPECT, post(oauth::introspect))
        .route(paths::OAUTH_REVOKE, post(oauth::revoke))
        .route(paths::JWKS, get(jwks))
        .route(
            paths::OAUTH_AUTHORIZATION_SERVER_METADATA,
            get(oauth::metadata),
        )
        .route(paths::OPENID_CONFIGURATION, get(oauth::metadata))
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// The operational routes: the only ones [`ops_app`] serves.
fn ops_routes() -> Router<AppState> {
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::READY, get(ready))
        .route("/version", get(version))
        .route(paths::METRICS, get(metrics))
}

/// Health, version and metrics alone, for `--ops-listen`: nothing there takes a credential or
/// a body, so it may listen where the API must not.
pub fn ops_app(state: AppState) -> Router {
    ops_routes()
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// /api/v1/* need the sidecar's internal token when one is configured (constant-time compare).
async fn require_internal_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if !internal_token_ok(&state, req.headers()) {
        return ApiError::InternalTokenRequired.into_response();
    }
    next.run(req).await
}

/// Whether a request may reach /api/v1: it carries the internal token, or none is configured.
fn internal_token_ok(state: &AppState, request_headers: &HeaderMap) -> bool {
    state
        .settings()
        .internal_token
        .as_ref()
        .is_none_or(|expected| {
            request_headers
                .get(headers::INTERNAL_TOKEN)
                .is_some_and(|v| expected.matches(v.as_bytes()))
        })
}

async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Applied with route_layer: only matched routes get here, and none has path parameters,
    // so the path is the route (bounded label cardinality).
    let route = req.uri().path().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    state
        .metrics()
        .latency
        .get_or_create(&RouteLabel {
            route,
            status: response.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
    response
}

/// A route's body, read whole (at most `--max-body-bytes`, within the body-read timeout). Its
/// error is kept, not answered at once, so that a route decides the order of its errors.
struct RequestBody(Result<Bytes, BodyError>);

impl FromRequest<AppState> for RequestBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let limit = state.settings().max_body_bytes;
        Ok(Self(read_body(&parts.headers, body, limit).await))
    }
}

/// The body as the route's JSON type (the bodies are the protocol's, `identity::*Request`).
fn parse_body<'a, T: Deserialize<'a>>(body: &'a RequestBody) -> Parsed<T> {
    let body = body.0.as_ref().map_err(|&err| ApiError::from(err))?;
    let mut json = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| body_error(&e.path().to_string(), &e.into_inner()))?;
    json.end()
        .map_err(|_| ApiError::invalid_request("the request body is not valid JSON"))?;
    Ok(parsed)
}

/// serde's messages quote the offending value, which may be a token sent in the wrong place:
/// name the field and the kind of fault, never the value.
fn body_error(path: &str, error: &serde_json::Error) -> ApiError {
    if !error.is_data() {
        return ApiError::invalid_request("the request body is not valid JSON");
    }
    let message = error.to_string();
    if let Some(field) = message.strip_prefix("missing field ") {
        let field = field.split(" at line").next().unwrap_or(field);
        ApiError::invalid_request(format!("invalid request body: missing field {field}"))
    } else if path == "." {
        ApiError::invalid_request("invalid request body: it must be a JSON object")
    } else {
        ApiError::invalid_request(format!(
            "invalid request body: field `{path}` has the wrong type or value"
        ))
    }
}

/// At most one Authorization header.
fn authorization(headers: &HeaderMap) -> Result<Option<&[u8]>, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next().map(HeaderValue::as_bytes);
    if values.next().is_some() {
        return Err(ApiError::invalid_request(
            "more than one Authorization header",
        ));
    }
    Ok(first)
}

/// X-Session-Subject, set by the sidecar on authenticated sessions. It can only narrow what a
/// request may do, so it is honoured whenever present (with an internal token configured,
/// requests without the token never get here).
fn session_subject(headers: &HeaderMap) -> Parsed<Option<&str>> {
    let mut values = headers.get_all(headers::SESSION_SUBJECT).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::invalid_request(
            "more than one X-Session-Subject header",
        ));
    }
    match std::str::from_utf8(first.as_bytes()) {
        Ok(s) if !s.is_empty() => Ok(Some(s)),
        _ => Err(ApiError::invalid_request("X-Session-Subject is not valid")),
    }
}

fn no_store<T: serde::Serialize>(value: T) -> Response {
    let mut response = Json(value).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn issue(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let answer = state
        .issue(
            authorization(&headers)?,
            session_subject(&headers),
            parse_body(&body),
            named_id(named(&tenant)),
        )
        .await?;
    Ok(no_store(answer))
}

/// The caller of a route that takes `Authorization: Bearer`.
async fn bearer(
    state: &AppState,
    tenant: &Named,
    headers: &HeaderMap,
    usage: BearerUse,
) -> Result<Arc<Verified>, ApiError> {
    state
        .authenticate_bearer(
            authorization(headers)?,
            session_subject(headers),
            usage,
            named_id(named(tenant)),
        )
        .await
}

async fn introspect(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let bearer = bearer(&state, &tenant, &headers, BearerUse::Active).await?;
    let answer = state
        .introspect(&bearer, session_subject(&headers)?, parse_body(&body)?)
        .await?;
    Ok(no_store(answer))
}

async fn refresh(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let bearer = bearer(&state, &tenant, &headers, BearerUse::MayBeExpired).await?;
    let answer = state.refresh(&bearer, parse_body(&body)?).await?;
    Ok(no_store(answer))
}

async fn revoke(
    State(state): State<AppState>,
    tenant: Named,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let bearer = bearer(&state, &tenant, &headers, BearerUse::MayBeExpired).await?;
    let answer = state.revoke(&bearer, parse_body(&body)?).await?;
    Ok(no_store(answer))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.db().ping().await {
        Ok(()) => Json(json!({ "status": "ready", "database": state.db().kind() })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": state.db().kind() })),
            )
                .into_response()
        }
    }
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({ "name": env!("CARGO_PKG_NAME"), "version": env!("CARGO_PKG_VERSION") }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(),
    )
        .into_response()
}

/// The JWKS of the tenant the request names (else the default tenant's): its keys only.
async fn jwks(State(state): State<AppState>, tenant: Named) -> Result<Response, ApiError> {
    let body = state.request_tenant(named(&tenant))?.jwks.to_vec();
    let max_age = format!("max-age={}", state.settings().jwks_cache_secs);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, max_age.as_str()),
        ],
        body,
    )
        .into_response())
}
