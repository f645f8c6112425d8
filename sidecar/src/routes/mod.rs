//! The sidecar's routes, dispatched by exact path, one module per section of PROTOCOL.md:
//! [`init`] (sections 1 and 2), [`sealed`] (section 3), [`plain`] (section 4's unencrypted
//! routes); [`standard`], the identity API's standard OAuth routes, over TLS only; [`message`]
//! holds what they all read and write of an HTTP message.
//!
//! "`path` is the raw path as received, matched exactly (a trailing slash is another path)": one
//! table maps the raw path to a route; an unknown path is `404`, a known path with another method
//! `405` with `Allow`. A credentials route ([`standard::is_credentials`]) is either: sealed when
//! the request names a session, else passed in the clear as the standard routes are. A tenant's copy of a public route ([`tenant`]) is served as the route
//! itself, forwarded with its path intact; with a tenant that is no slug it is `400`. Every
//! answer is counted by route and status.

mod init;
mod message;
mod plain;
mod sealed;
mod standard;
mod tenant;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use identity_protocol::paths;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    SessionInit,
    Encrypted,
    Health,
    Ready,
    Metrics,
    KeyDocument,
    PassThrough,
    /// The standard OAuth routes: the POST endpoints, and the GET metadata.
    Standard,
    StandardMetadata,
    /// The credentials routes: sealed, or in the clear over TLS (see [`credentials`]).
    Credentials,
}

impl Route {
    fn of(state: &AppState, path: &str) -> Option<Self> {
        Some(match path {
            paths::SESSION_INIT => Self::SessionInit,
            paths::HEALTH => Self::Health,
            paths::READY => Self::Ready,
            paths::METRICS if state.settings.public_metrics => Self::Metrics,
            paths::KEY_DOCUMENT => Self::KeyDocument,
            paths::JWKS => Self::PassThrough,
            paths::OAUTH_AUTHORIZATION_SERVER_METADATA | paths::OPENID_CONFIGURATION => {
                Self::StandardMetadata
            }
            _ if standard::is_standard(path) => Self::Standard,
            _ if standard::is_credentials(path) => Self::Credentials,
            _ if state.settings.routes.contains(path) => Self::Encrypted,
            _ => return None,
        })
    }

    fn method(self) -> Method {
        match self {
            Self::SessionInit | Self::Encrypted | Self::Standard | Self::Credentials => {
                Method::POST
            }
            _ => Method::GET,
        }
    }

    fn allow(self) -> &'static str {
        match self {
            Self::SessionInit | Self::Encrypted | Self::Standard | Self::Credentials => "POST",
            _ => "GET",
        }
    }

    fn is_standard(self) -> bool {
        matches!(self, Self::Standard | Self::StandardMetadata)
    }
}

/// Where a path leads.
struct Target<'p> {
    route: Route,
    /// The metrics label: the path, or a tenant path's with `{tenant}` for the tenant.
    label: Cow<'p, str>,
    /// False for a tenant path whose tenant is no slug: refused.
    valid_tenant: bool,
}

impl<'p> Target<'p> {
    fn of(state: &AppState, path: &'p str) -> Option<Self> {
        if let Some(route) = Route::of(state, path) {
            return Some(Self {
                route,
                label: Cow::Borrowed(path),
                valid_tenant: true,
            });
        }
        let tenant = tenant::tenant_path(path)?;
        // Only the public routes have a tenant's copy, and they are no `--routes` of their own.
        Some(Self {
            route: Route::of(state, tenant.route)?,
            label: Cow::Owned(tenant.label),
            valid_tenant: tenant.valid,
        })
    }
}

/// The sidecar as a router. `identity_runtime::serve::serve` gives each request its peer as
/// `ConnectInfo<SocketAddr>`, which the rate limit and X-Forwarded-For use.
pub fn app(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

/// The ops listener's router (`--ops-listen`): health, readiness and metrics, nothing else.
pub fn ops_app(state: AppState) -> Router {
    Router::new()
        .route(paths::HEALTH, get(|| async { plain::health() }))
        .route(
            paths::READY,
            get(|State(state): State<AppState>| async move { plain::ready(&state).await }),
        )
        .route(
            paths::METRICS,
            get(|State(state): State<AppState>| async move { plain::metrics(&state) }),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed("GET") })
        .with_state(state)
}

async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let target = Target::of(&state, &path);
    let response = match &target {
        None => ApiError::not_found().into_response(),
        Some(target) if target.route.is_standard() && !state.settings.standard_routes => {
            standard::refused().into_response()
        }
        Some(target) if method != target.route.method() => {
            ApiError::method_not_allowed(target.route.allow()).into_response()
        }
        Some(target) if !target.valid_tenant => {
            let error = tenant::invalid_path_slug();
            if target.route.is_standard() {
                standard::oauth_error(error)
            } else {
                error.into_response()
            }
        }
        Some(target) => handle(&state, target, &path, request).await,
    };
    // Route labels come from the route table only, so the label set stays bounded.
    let label = target.as_ref().map_or("other", |target| &target.label);
    let status = response.status().as_u16();
    state.metrics.request(label, status);
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Successful answers are counted in the metrics and log at debug, sparing the hot path a
    // formatted write per request; refusals and failures log at info. A tenant is named in the
    // path only at debug: the label has `{tenant}` in its place.
    if status < 400 {
        tracing::debug!(method = %method, route = label, path, status, elapsed_ms, "request");
    } else {
        tracing::info!(method = %method, route = label, status, elapsed_ms, "request");
    }
    response
}

async fn handle(state: &AppState, target: &Target<'_>, path: &str, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let label = &target.label;
    match target.route {
        Route::SessionInit => init::session_init(state, request, peer).await,
        Route::Encrypted => sealed::sealed(state, path, request, peer)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Route::Health => plain::health(),
        Route::Ready => plain::ready(state).await,
        Route::Metrics => plain::metrics(state),
        Route::KeyDocument => plain::key_document(state),
        Route::PassThrough => plain::pass_through(state, path, label, request.headers())
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Route::Standard | Route::StandardMetadata => {
            standard::pass(state, path, label, request, peer).await
        }
        Route::Credentials => credentials(state, path, label, request, peer).await,
    }
}

/// A credentials route (JSON either way): sealed (section 3) when the request carries
/// `X-Session-Id` and the route is one of `--routes`; without it, passed in the clear as the
/// standard routes are, where they are served (TLS, or behind a TLS proxy). A request without
/// a session where they are not is answered as a sealed route answers it (`401
/// invalid_session`) when the route is sealed, else refused as the standard routes are.
async fn credentials(
    state: &AppState,
    path: &str,
    label: &str,
    request: Request,
    peer: Option<std::net::IpAddr>,
) -> Response {
    let has_session = request
        .headers()
        .contains_key(identity_protocol::headers::SESSION_ID);
    let sealed = state.settings.routes.contains(path);
    match (has_session, sealed, state.settings.standard_routes) {
        (true, true, _) | (false, true, false) => sealed::sealed(state, path, request, peer)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        (false, _, true) => standard::pass(state, path, label, request, peer).await,
        (true, false, _) => ApiError::not_found().into_response(),
        (false, false, false) => standard::refused().into_response(),
    }
}
