//! Which tenant a request names: a `/t/{tenant}` path prefix (or RFC 8414's
//! `/.well-known/oauth-authorization-server/t/{tenant}`), else the first present header of
//! `IDENTITY_TENANT_HEADER_CANDIDATES`. The prefix is taken off before routing.

use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use identity_protocol::{is_valid_tenant_slug, paths};

use crate::error::ApiError;
use crate::service::AppState;

/// RFC 8414 section 3.1: the well-known segment goes between the host and the issuer's path.
const METADATA_INSERTED: &str = "/.well-known/oauth-authorization-server/t/";

/// Resolves the tenant the request names into a [`crate::service::NamedTenant`] extension: 400
/// for a name that is not a slug, 404 for an unknown tenant, 403 for a disabled one; a path
/// and a header that name different tenants are refused.
pub(super) async fn name_tenant(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    match named(&state, &mut req).await {
        Ok(Some(tenant)) => {
            req.extensions_mut().insert(tenant);
            next.run(req).await
        }
        Ok(None) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn named(
    state: &AppState,
    req: &mut Request,
) -> Result<Option<crate::service::NamedTenant>, ApiError> {
    let by_path = strip_tenant(req)?;
    // /api/v1 without the internal token is refused by its routes: no tenant is looked up for
    // it, so that such a caller learns nothing of the tenants and causes no reload.
    if req.uri().path().starts_with("/api/") && !super::internal_token_ok(state, req.headers()) {
        return Ok(None);
    }
    let by_header = header_tenant(state, req)?;
    let slug = match (by_path, by_header) {
        (Some(p), Some(h)) if p != h => {
            return Err(ApiError::invalid_request(
                "the path and a tenant header name different tenants",
            ));
        }
        (Some(slug), _) | (None, Some(slug)) => slug,
        (None, None) => return Ok(None),
    };
    state.named_tenant(&slug).await.map(Some)
}

/// Takes the tenant's prefix off the path, returning the tenant it named.
fn strip_tenant(req: &mut Request) -> Result<Option<String>, ApiError> {
    let path = req.uri().path();
    let (tenant, route) = if let Some(slug) = path.strip_prefix(METADATA_INSERTED) {
        (slug, paths::OAUTH_AUTHORIZATION_SERVER_METADATA)
    } else if let Some(rest) = path.strip_prefix(paths::TENANT_PREFIX) {
        match paths::split_tenant(path) {
            Some(split) => split,
            // `/t/<not a slug>/...`: a tenant was named, badly.
            None if rest.contains('/') => return Err(ApiError::InvalidTenant),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    if !is_valid_tenant_slug(tenant) {
        return Err(ApiError::InvalidTenant);
    }
    let tenant = tenant.to_owned();
    let rewritten = match req.uri().query() {
        Some(q) => format!("{route}?{q}"),
        None => route.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(rewritten.parse().map_err(|_| ApiError::InvalidTenant)?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| ApiError::InvalidTenant)?;
    Ok(Some(tenant))
}

/// The first configured tenant header present; exactly one value, a slug.
fn header_tenant(state: &AppState, req: &Request) -> Result<Option<String>, ApiError> {
    for name in &state.settings().tenant_headers {
        let mut values = req.headers().get_all(name).iter();
        let Some(value) = values.next() else { continue };
        if values.next().is_some() {
            return Err(ApiError::invalid_request(format!(
                "more than one {name} header"
            )));
        }
        return match value.to_str() {
            Ok(slug) if is_valid_tenant_slug(slug) => Ok(Some(slug.to_owned())),
            _ => Err(ApiError::InvalidTenant),
        };
    }
    Ok(None)
}
