//! Tenants (docs/OAUTH.md): the identity API serves each tenant's copy of its public routes under
//! `/t/{tenant}`, and its metadata also at RFC 8414 section 3.1's address,
//! `/.well-known/oauth-authorization-server/t/{tenant}`; a request without either names its
//! tenant in a header (`--tenant-headers`). The sidecar forwards both as they came, once it has
//! checked that the tenant is a slug: the identity API decides whether it exists.

use axum::http::HeaderValue;
use axum::http::header::{HeaderMap, HeaderName};
use identity_protocol::{is_valid_tenant_slug, paths};

use super::message::single_header;
use crate::error::ApiError;

/// What a slug is, for the error texts.
const SLUG_RULE: &str = "1 to 63 characters of a-z, 0-9 and -, neither first nor last a -";

/// A tenant's path to one of the public routes that have a tenant's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPath<'p> {
    /// The route without the tenant (`/oauth/token`), which decides how it is served.
    pub route: &'p str,
    /// Whether the tenant is a slug; a path with another tenant is refused, not forwarded.
    pub valid: bool,
    /// The metrics label: the path with `{tenant}` for the tenant, so that the label set stays
    /// bounded whatever tenants clients name.
    pub label: String,
}

/// Whether `route` has a tenant's copy: the standard routes and the JWKS.
fn has_tenant_copy(route: &str) -> bool {
    route == paths::JWKS || paths::STANDARD.contains(&route)
}

/// `path` as a tenant's copy of a public route, or `None` when it is none (then it is any other
/// path: served if it is a route of its own, else 404).
pub fn tenant_path(path: &str) -> Option<TenantPath<'_>> {
    // RFC 8414 section 3.1: the metadata of the issuer `{issuer}/t/{tenant}` lives at the
    // well-known path with the issuer's path appended; the slug is all the rest.
    if let Some(slug) = path
        .strip_prefix(paths::OAUTH_AUTHORIZATION_SERVER_METADATA)
        .and_then(|rest| rest.strip_prefix(paths::TENANT_PREFIX))
    {
        return (!slug.contains('/')).then(|| TenantPath {
            route: paths::OAUTH_AUTHORIZATION_SERVER_METADATA,
            valid: is_valid_tenant_slug(slug),
            label: format!(
                "{}{}{{tenant}}",
                paths::OAUTH_AUTHORIZATION_SERVER_METADATA,
                paths::TENANT_PREFIX
            ),
        });
    }
    let prefixed = |route, valid| {
        has_tenant_copy(route).then(|| TenantPath {
            route,
            valid,
            label: format!("{}{{tenant}}{route}", paths::TENANT_PREFIX),
        })
    };
    if let Some((_, route)) = paths::split_tenant(path) {
        return prefixed(route, true);
    }
    // `split_tenant` refuses the segment after the prefix: a bad slug on a route with a
    // tenant's copy is the client's mistake to explain, anything else an unknown path.
    let rest = path.strip_prefix(paths::TENANT_PREFIX)?;
    let route = &rest[rest.find('/')?..];
    prefixed(route, false)
}

/// The answer to a tenant path whose tenant is not a slug.
pub fn invalid_path_slug() -> ApiError {
    ApiError::invalid_request(format!(
        "the tenant in the path after {} is not a tenant slug ({SLUG_RULE})",
        paths::TENANT_PREFIX
    ))
}

/// A request's tenant headers, checked, as they are forwarded.
pub type TenantHeaders<'a> = Vec<(&'a HeaderName, &'a HeaderValue)>;

/// The headers of `names` the request carries, in that order: each at most once, its value a
/// slug; else `400 invalid_request`, which names the header but not its value.
pub fn tenant_headers<'a>(
    names: &'a [HeaderName],
    headers: &'a HeaderMap,
) -> Result<TenantHeaders<'a>, ApiError> {
    let mut found = Vec::new();
    for name in names {
        let Some(value) = single_header(headers, name)? else {
            continue;
        };
        let slug = value.to_str().ok().filter(|v| is_valid_tenant_slug(v));
        if slug.is_none() {
            return Err(ApiError::invalid_request(format!(
                "the {name} header is not a tenant slug ({SLUG_RULE})"
            )));
        }
        found.push((name, value));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic here is a failed test

    use super::*;

    fn route(path: &str) -> Option<(&str, bool, String)> {
        tenant_path(path).map(|t| (t.route, t.valid, t.label))
    }

    #[test]
    fn tenant_paths_of_the_public_routes_are_recognised() {
        for inner in paths::STANDARD.into_iter().chain([paths::JWKS]) {
            let path = format!("/t/acme-1{inner}");
            assert_eq!(
                route(&path),
                Some((inner, true, format!("/t/{{tenant}}{inner}")))
            );
        }
        assert_eq!(
            route("/.well-known/oauth-authorization-server/t/acme"),
            Some((
                paths::OAUTH_AUTHORIZATION_SERVER_METADATA,
                true,
                "/.well-known/oauth-authorization-server/t/{tenant}".to_owned()
            ))
        );
    }

    #[test]
    fn a_bad_slug_is_told_apart_from_an_unknown_route() {
        for bad in [
            "/t/Acme/oauth/token",
            "/t//oauth/token",
            "/t/a_b/.well-known/jwks.json",
        ] {
            assert!(matches!(tenant_path(bad), Some(t) if !t.valid), "{bad}");
        }
        assert!(
            !tenant_path("/.well-known/oauth-authorization-server/t/-x")
                .unwrap()
                .valid
        );
        for unknown in [
            "/t/acme",
            "/t/acme/",
            "/t/acme/oauth/token/",
            "/t/acme/api/v1/token",
            "/t/acme/.well-known/identity-sidecar",
            "/t/acme/t/acme/oauth/token",
            "/t/Acme/unknown",
            "/.well-known/oauth-authorization-server/t/acme/",
            "/.well-known/oauth-authorization-server/t/acme/x",
            "/.well-known/openid-configuration/t/acme",
            "/oauth/token",
        ] {
            assert_eq!(tenant_path(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn tenant_headers_are_single_slugs() {
        let names = [
            HeaderName::from_static("x-tenant-id"),
            HeaderName::from_static("x-realm"),
        ];
        let mut headers = HeaderMap::new();
        headers.insert("x-realm", HeaderValue::from_static("acme"));
        headers.insert("x-tenant", HeaderValue::from_static("not-listed"));
        let found = tenant_headers(&names, &headers).unwrap();
        assert_eq!(found, [(&names[1], &HeaderValue::from_static("acme"))]);

        headers.append("x-realm", HeaderValue::from_static("other"));
        let error = tenant_headers(&names, &headers).unwrap_err();
        assert!(
            error.description.contains("more than one x-realm"),
            "{error:?}"
        );

        headers.insert("x-realm", HeaderValue::from_static("Not A Slug"));
        let error = tenant_headers(&names, &headers).unwrap_err();
        assert!(
            error
                .description
                .contains("x-realm header is not a tenant slug")
        );
        assert!(!error.description.contains("Not A Slug"));
    }
}
