//! Tenants through the sidecar, against the in-process identity API stub: a tenant's copies of
//! the standard routes and the JWKS (`/t/{tenant}/...`, and RFC 8414's
//! `/.well-known/oauth-authorization-server/t/{tenant}`) forwarded with their path intact and
//! under their route's rules; a tenant that is no slug refused before anything is forwarded; the
//! tenant headers of `--tenant-headers` forwarded on the sealed routes, the standard routes and
//! the JWKS, checked, and no other on the sealed routes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

mod common;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName};
use clap::Parser as _;
use common::{INTERNAL_TOKEN, Sidecar, Stub, assert_error, parts, post_raw};
use identity_protocol::{ClientSession, headers, paths};
use identity_sidecar::Config;
use serde_json::Value;

const FORM_TYPE: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// A sidecar that serves the standard routes in plain HTTP (TLS in front of it), its tweaks.
async fn behind_proxy(stub: &Stub, tweak: impl FnOnce(&mut Config)) -> Sidecar {
    Sidecar::start_with(&stub.url, |config| {
        config.tls.standard_routes_behind_tls_proxy = true;
        tweak(config);
    })
    .await
}

async fn send(
    sidecar: &Sidecar,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Bytes) {
    let method = method.parse().unwrap();
    let mut request = common::http().request(method, sidecar.endpoint(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if headers.contains(&FORM_TYPE) {
        request = request.body("grant_type=client_credentials");
    }
    parts(request.send().await.unwrap()).await
}

/// The header's values as the stub's echo lists them.
fn header<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"][name]
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// An RFC 6749 section 5.2 error with section 5.1's headers.
fn assert_oauth_error(got: &(u16, HeaderMap, Bytes), status: u16, code: &str) {
    assert_error(got, status, code);
    assert_eq!(got.1["cache-control"], "no-store");
    assert_eq!(got.1["pragma"], "no-cache");
}

fn description(got: &(u16, HeaderMap, Bytes)) -> String {
    let body: Value = serde_json::from_slice(&got.2).unwrap();
    body["error_description"].as_str().unwrap().to_owned()
}

/// `POST /api/v1/token` sealed on `session`, the outer request carrying `extra` headers: the
/// status, and the stub's echo when it answered.
async fn sealed(
    sidecar: &Sidecar,
    session: &ClientSession,
    extra: &[(&str, &str)],
) -> (u16, Option<Value>, Bytes) {
    let request = session
        .seal_request("POST", paths::TOKEN, None, b"{}")
        .unwrap();
    let mut headers = vec![(headers::SESSION_ID, session.id())];
    headers.extend_from_slice(extra);
    let (status, _, body) = post_raw(&sidecar.endpoint(paths::TOKEN), &headers, request.body).await;
    let echo = (status == 200).then(|| {
        let plain = session
            .open_response("POST", paths::TOKEN, request.seq, status, &body)
            .unwrap();
        serde_json::from_slice(plain.as_bytes()).unwrap()
    });
    (status, echo, body)
}

#[tokio::test]
async fn a_tenants_copies_of_the_public_routes_pass_with_their_path_intact() {
    let stub = Stub::start().await;
    let sidecar = behind_proxy(&stub, |_| {}).await;
    for route in paths::STANDARD.into_iter().chain([paths::JWKS]) {
        let path = format!("/t/acme-eu-1{route}");
        let method = if route.starts_with("/.well-known/") {
            "GET"
        } else {
            "POST"
        };
        let (status, _, body) = send(
            &sidecar,
            method,
            &format!("{path}?trace=1"),
            &[FORM_TYPE, ("authorization", "Basic Y2xpZW50OnNlY3JldA==")],
        )
        .await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let echo: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["path"], path.as_str());
        assert_eq!(echo["method"], method);
        let recorded = stub.records_for(&path);
        assert_eq!(recorded.len(), 1, "{path}");
        assert_eq!(
            recorded[0].header("x-internal-token").unwrap(),
            [INTERNAL_TOKEN]
        );
        if method == "POST" {
            // Every header passes, as on the route without the tenant.
            assert_eq!(
                recorded[0].header("authorization").unwrap(),
                ["Basic Y2xpZW50OnNlY3JldA=="]
            );
            assert_eq!(recorded[0].body, b"grant_type=client_credentials");
        }
    }
    // The route's method rules hold for its tenant's copy.
    let got = send(&sidecar, "GET", "/t/acme/oauth/token", &[]).await;
    assert_error(&got, 405, "method_not_allowed");
    assert_eq!(got.1["allow"], "POST");
    let got = send(&sidecar, "POST", "/t/acme/.well-known/jwks.json", &[]).await;
    assert_error(&got, 405, "method_not_allowed");
    assert_eq!(got.1["allow"], "GET");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn rfc_8414_path_insertion_reaches_the_tenants_metadata() {
    let stub = Stub::start().await;
    let sidecar = behind_proxy(&stub, |_| {}).await;
    let path = format!(
        "{}{}acme",
        paths::OAUTH_AUTHORIZATION_SERVER_METADATA,
        paths::TENANT_PREFIX
    );
    assert_eq!(path, "/.well-known/oauth-authorization-server/t/acme");
    let (status, _, body) = send(&sidecar, "GET", &path, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["path"], path.as_str());
    assert_eq!(stub.records_for(&path).len(), 1);

    // Metrics and the info log name the route, never the tenant.
    let text = sidecar.state.metrics.encode(0).unwrap();
    let series = r#"sidecar_requests_total{route="/.well-known/oauth-authorization-server/t/{tenant}",status="200"} 1"#;
    assert!(text.contains(series), "{series} missing from:\n{text}");
    assert!(!text.contains("acme"), "{text}");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_tenant_that_is_no_slug_is_a_400_and_nothing_is_forwarded() {
    let stub = Stub::start().await;
    let sidecar = behind_proxy(&stub, |_| {}).await;
    for (method, path) in [
        ("POST", "/t/Acme/oauth/token"),
        ("POST", "/t/a_b/oauth/introspect"),
        ("POST", "/t/-acme/oauth/revoke"),
        ("GET", "/t/acme./.well-known/openid-configuration"),
        ("GET", "/.well-known/oauth-authorization-server/t/ACME"),
    ] {
        let got = send(&sidecar, method, path, &[FORM_TYPE]).await;
        assert_oauth_error(&got, 400, "invalid_request");
        let text = description(&got);
        assert!(text.contains("not a tenant slug"), "{path}: {text}");
    }
    // The JWKS is no OAuth route: the sidecar's own error shape, without Pragma.
    let got = send(&sidecar, "GET", "/t/a%20b/.well-known/jwks.json", &[]).await;
    assert_error(&got, 400, "invalid_request");
    // Other paths under /t/ are no routes, whatever their tenant.
    for (method, path) in [
        ("POST", "/t/acme/oauth/unknown"),
        ("POST", "/t/acme/api/v1/token"),
        ("POST", "/t/acme/api/v1/session/init"),
        ("GET", "/t/acme/.well-known/identity-sidecar"),
        ("GET", "/t/acme/health"),
        ("POST", "/t/acme/oauth/token/"),
        ("POST", "/t/acme"),
        ("GET", "/t/Acme/unknown"),
        ("GET", "/.well-known/oauth-authorization-server/t/acme/x"),
        ("GET", "/.well-known/openid-configuration/t/acme"),
    ] {
        let got = send(&sidecar, method, path, &[FORM_TYPE]).await;
        assert_error(&got, 404, "not_found");
    }
    assert!(
        stub.records().is_empty(),
        "a request reached the identity API: {:?}",
        stub.records()
    );
    let text = sidecar.state.metrics.encode(0).unwrap();
    let series = r#"sidecar_requests_total{route="/t/{tenant}/oauth/token",status="400"} 1"#;
    assert!(text.contains(series), "{series} missing from:\n{text}");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn without_tls_a_tenants_standard_routes_are_refused_as_the_routes_are() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    for (method, path) in [
        ("POST", "/t/acme/oauth/token"),
        ("GET", "/t/acme/.well-known/openid-configuration"),
        ("GET", "/.well-known/oauth-authorization-server/t/acme"),
        // Refused for want of TLS before its tenant is looked at.
        ("POST", "/t/Acme/oauth/token"),
    ] {
        let got = send(&sidecar, method, path, &[FORM_TYPE]).await;
        assert_error(&got, 404, "not_found");
        assert!(description(&got).contains("--tls-cert-file"), "{path}");
    }
    assert!(stub.records().is_empty());
    // A tenant's JWKS is a public document, as the JWKS is.
    let path = "/t/acme/.well-known/jwks.json";
    let (status, _, _) = send(&sidecar, "GET", path, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(stub.records_for(path).len(), 1);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn tenant_headers_reach_the_identity_api_on_every_forwarded_route() {
    let stub = Stub::start().await;
    let sidecar = behind_proxy(&stub, |_| {}).await;
    let tenant = [
        ("x-tenant-id", "acme"),
        ("X-Tenant", "acme"),
        ("x-realm", "eu-1"),
    ];

    // Sealed: the outer request's headers, forwarded beside the plaintext.
    let (_client, session) = sidecar.anonymous().await;
    let (status, echo, body) = sealed(&sidecar, &session, &tenant).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let echo = echo.unwrap();
    assert_eq!(header(&echo, "x-tenant-id"), ["acme"]);
    assert_eq!(header(&echo, "x-tenant"), ["acme"]);
    assert_eq!(header(&echo, "x-realm"), ["eu-1"]);
    assert_eq!(header(&echo, "x-internal-token"), [INTERNAL_TOKEN]);

    // Standard, with and without a tenant in the path too (the identity API reconciles them).
    for path in [paths::OAUTH_TOKEN, "/t/acme/oauth/token"] {
        let mut headers = vec![FORM_TYPE];
        headers.extend_from_slice(&tenant);
        let (status, _, _) = send(&sidecar, "POST", path, &headers).await;
        assert_eq!(status, 200);
        let recorded = stub.records_for(path);
        assert_eq!(recorded[0].header("x-tenant-id").unwrap(), ["acme"]);
        assert_eq!(recorded[0].header("x-realm").unwrap(), ["eu-1"]);
    }

    // The JWKS, through the sidecar's own GET.
    let path = "/t/acme/.well-known/jwks.json";
    let (status, _, _) = send(&sidecar, "GET", path, &[("x-tenant-id", "acme")]).await;
    assert_eq!(status, 200);
    assert_eq!(
        stub.records_for(path)[0].header("x-tenant-id").unwrap(),
        ["acme"]
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn only_the_configured_tenant_headers_pass_on_the_sealed_routes() {
    let stub = Stub::start().await;
    let sidecar = behind_proxy(&stub, |config| {
        config.tenant_headers = vec![HeaderName::from_static("x-org")];
    })
    .await;
    let (_client, session) = sidecar.anonymous().await;
    // A header outside the list is neither checked nor forwarded.
    let (status, echo, _) = sealed(
        &sidecar,
        &session,
        &[
            ("x-org", "acme"),
            ("x-tenant-id", "Not A Slug"),
            ("x-realm", "eu"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let echo = echo.unwrap();
    assert_eq!(header(&echo, "x-org"), ["acme"]);
    assert_eq!(header(&echo, "x-tenant-id"), Vec::<&str>::new());
    assert_eq!(header(&echo, "x-realm"), Vec::<&str>::new());

    // The standard routes pass every header, as a reverse proxy does; the listed ones checked.
    let got = send(
        &sidecar,
        "POST",
        paths::OAUTH_TOKEN,
        &[FORM_TYPE, ("x-org", "A_B")],
    )
    .await;
    assert_oauth_error(&got, 400, "invalid_request");
    let (status, _, body) = send(
        &sidecar,
        "POST",
        paths::OAUTH_TOKEN,
        &[FORM_TYPE, ("x-realm", "Anything")],
    )
    .await;
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(header(&echo, "x-realm"), ["Anything"]);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_tenant_header_that_is_no_slug_is_a_400_and_nothing_is_forwarded() {
    let stub = Stub::start().await;
    let sidecar = behind_proxy(&stub, |_| {}).await;
    let (_client, session) = sidecar.anonymous().await;

    let request = session
        .seal_request("POST", paths::TOKEN, None, b"{}")
        .unwrap();
    let session_id = (headers::SESSION_ID, session.id());
    for bad in [
        vec![("x-tenant-id", "Acme")],
        vec![("x-realm", "")],
        vec![("x-tenant", "a b")],
        vec![("x-tenant", "acme"), ("x-tenant", "other")],
    ] {
        let mut headers = vec![session_id];
        headers.extend_from_slice(&bad);
        let got = post_raw(
            &sidecar.endpoint(paths::TOKEN),
            &headers,
            request.body.clone(),
        )
        .await;
        assert_error(&got, 400, "invalid_request");
        let text = description(&got);
        assert!(text.contains(bad[0].0), "{bad:?}: {text}");
        assert!(!text.contains("Acme"), "the value is not echoed: {text}");
    }
    assert!(stub.records_for(paths::TOKEN).is_empty());
    // The refused requests consumed no seq: the same envelope, with a slug, goes through.
    let got = post_raw(
        &sidecar.endpoint(paths::TOKEN),
        &[session_id, ("x-tenant-id", "acme")],
        request.body,
    )
    .await;
    assert_eq!(got.0, 200, "{}", String::from_utf8_lossy(&got.2));

    // On the standard routes and the JWKS too.
    let got = send(
        &sidecar,
        "POST",
        "/t/acme/oauth/introspect",
        &[FORM_TYPE, ("x-tenant-id", "-acme")],
    )
    .await;
    assert_oauth_error(&got, 400, "invalid_request");
    let got = send(&sidecar, "GET", paths::JWKS, &[("x-realm", "EU")]).await;
    assert_error(&got, 400, "invalid_request");
    assert_eq!(
        stub.records().len(),
        1,
        "only the good sealed request passed"
    );
    sidecar.shutdown().await;
}

#[test]
fn tenant_headers_are_configured_as_header_names() {
    let parse = |value: &str| {
        Config::try_parse_from(["identity-sidecar", "--tenant-headers", value])
            .map(|config| config.tenant_headers)
    };
    let default = Config::try_parse_from(["identity-sidecar"])
        .unwrap()
        .tenant_headers;
    assert_eq!(default, headers::TENANT_CANDIDATES);
    assert_eq!(parse("X-Org, X-Realm").unwrap(), ["x-org", "x-realm"]);
    for bad in [
        "x org",
        "authorization",
        "x-internal-token",
        "connection",
        "host",
    ] {
        let error = parse(bad).unwrap_err().to_string();
        assert!(error.contains("--tenant-headers"), "{bad}: {error}");
    }
}
