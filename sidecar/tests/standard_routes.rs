//! The standard OAuth routes (/oauth/token, /oauth/introspect, /oauth/revoke, their metadata at
//! /.well-known/oauth-authorization-server and /.well-known/openid-configuration) passed through to an in-process identity API stub:
//! over TLS, a form POST and its headers both ways, unchanged; the internal token added and the
//! client's internal headers dropped; the body limit and timeout, answered as RFC 6749 errors;
//! the metrics; without TLS a 404 that says why, unless --standard-routes-behind-tls-proxy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

mod common;

use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use common::tls::{TestCa, https, request};
use common::{
    INTERNAL_TOKEN, Sidecar, Stub, answer_to_unfinished_body, assert_error, parts, scratch_dir,
};
use identity_protocol::paths;
use serde_json::Value;

const FORM: &str = "grant_type=client_credentials&scope=orders.read+orders.write&resource=https%3A%2F%2Fapi.example";

/// A sidecar with TLS, and the test CA its certificate comes from.
struct Tls {
    sidecar: Sidecar,
    ca: TestCa,
}

impl Tls {
    /// One HTTPS request to the sidecar, trusting the test CA.
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, HeaderMap, Bytes) {
        https(
            &self.ca.pem,
            self.sidecar.addr,
            request(method, path, headers, body),
        )
        .await
        .unwrap()
    }
}

/// A sidecar with TLS from a fresh test CA, its body limit 1000 bytes.
async fn start_tls(stub: &Stub) -> Tls {
    let ca = TestCa::new("test CA").unwrap();
    let dir = scratch_dir("standard");
    let (cert, key) = ca.leaf().unwrap().write(&dir).unwrap();
    let sidecar = Sidecar::start_with(&stub.url, |config| {
        config.tls.tls_cert_file = Some(cert);
        config.tls.tls_key_file = Some(key);
        config.max_body_bytes = 1000;
    })
    .await;
    Tls { sidecar, ca }
}

const FORM_TYPE: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn header<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"][name]
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_form_post_and_its_headers_pass_both_ways_unchanged() {
    let stub = Stub::start().await;
    let tls = start_tls(&stub).await;
    let (status, headers, body) = tls
        .send(
            "POST",
            "/oauth/token?trace=1",
            &[
                FORM_TYPE,
                ("authorization", "Basic Y2xpZW50OnNlY3JldA=="),
                ("x-service-token", "a-gateway's-token"),
                ("accept", "application/json"),
                ("user-agent", "stock-oauth-client/1.0"),
                // The client's copies of the sidecar's own headers never reach the identity API.
                ("x-internal-token", "forged"),
                ("x-session-subject", "mallory"),
                ("x-forwarded-for", "203.0.113.9"),
                // Hop-by-hop: this connection's business only.
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "dropped"),
            ],
            FORM,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(headers["content-type"], "application/json");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["target"], "/oauth/token?trace=1");
    assert_eq!(echo["body"], FORM);
    assert_eq!(
        header(&echo, "content-type"),
        ["application/x-www-form-urlencoded"]
    );
    assert_eq!(
        header(&echo, "authorization"),
        ["Basic Y2xpZW50OnNlY3JldA=="]
    );
    assert_eq!(header(&echo, "x-service-token"), ["a-gateway's-token"]);
    assert_eq!(header(&echo, "accept"), ["application/json"]);
    assert_eq!(header(&echo, "user-agent"), ["stock-oauth-client/1.0"]);
    assert_eq!(header(&echo, "x-internal-token"), [INTERNAL_TOKEN]);
    assert_eq!(header(&echo, "x-session-subject"), Vec::<&str>::new());
    assert_eq!(header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header(&echo, "x-hop"), Vec::<&str>::new());
    assert_eq!(
        header(&echo, "content-length"),
        [FORM.len().to_string().as_str()]
    );

    // A bad client: RFC 6749's 401 with its challenge, as the identity API wrote it.
    let (status, headers, body) = tls
        .send(
            "POST",
            paths::OAUTH_INTROSPECT,
            &[FORM_TYPE, ("authorization", "Basic bad")],
            "token=t",
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], r#"Basic realm="identity-api""#);
    assert_eq!(headers["cache-control"], "no-store");
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"], "invalid_client");

    // RFC 7009's answer: 200 with an empty body.
    let (status, _, body) = tls
        .send(
            "POST",
            paths::OAUTH_REVOKE,
            &[FORM_TYPE],
            "token=t&token_type_hint=refresh_token",
        )
        .await;
    assert_eq!((status, body.len()), (200, 0));

    // The metadata is a GET.
    let (status, _, body) = tls
        .send("GET", paths::OAUTH_AUTHORIZATION_SERVER_METADATA, &[], "")
        .await;
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["method"], "GET");
    assert_eq!(header(&echo, "x-internal-token"), [INTERNAL_TOKEN]);
    // And the same document at OpenID Connect Discovery's address.
    let (status, _, body) = tls.send("GET", paths::OPENID_CONFIGURATION, &[], "").await;
    assert_eq!(status, 200);
    let metadata: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(metadata["issuer"], "http://stub.test");
    tls.sidecar.shutdown().await;
}

#[tokio::test]
async fn a_tenants_copy_passes_over_tls_with_its_path() {
    let stub = Stub::start().await;
    let tls = start_tls(&stub).await;
    let path = format!("{}acme{}", paths::TENANT_PREFIX, paths::OAUTH_TOKEN);
    let (status, _, body) = tls
        .send("POST", &path, &[FORM_TYPE, ("x-tenant-id", "acme")], FORM)
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let recorded = stub.records_for(&path);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].header("x-tenant-id").unwrap(), ["acme"]);
    assert_eq!(recorded[0].body, FORM.as_bytes());
    tls.sidecar.shutdown().await;
}

#[tokio::test]
async fn they_are_counted_as_the_sealed_routes_are() {
    let stub = Stub::start().await;
    let tls = start_tls(&stub).await;
    for authorization in ["Basic ok", "Basic bad"] {
        tls.send(
            "POST",
            paths::OAUTH_TOKEN,
            &[FORM_TYPE, ("authorization", authorization)],
            "grant_type=client_credentials",
        )
        .await;
    }
    let text = tls.sidecar.state.metrics.encode(0).unwrap();
    for series in [
        r#"sidecar_requests_total{route="/oauth/token",status="200"} 1"#,
        r#"sidecar_requests_total{route="/oauth/token",status="401"} 1"#,
        r#"sidecar_upstream_latency_seconds_count{route="/oauth/token"} 2"#,
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    tls.sidecar.shutdown().await;
}

#[tokio::test]
async fn the_body_limit_holds_and_other_methods_get_405() {
    let stub = Stub::start().await;
    let tls = start_tls(&stub).await;
    let (status, _, _) = tls
        .send("POST", paths::OAUTH_TOKEN, &[FORM_TYPE], &"a".repeat(1000))
        .await;
    assert_eq!(status, 200);
    // Over the limit: RFC 6749's answer, as the identity API itself gives it (docs/OAUTH.md).
    let got = tls
        .send("POST", paths::OAUTH_TOKEN, &[FORM_TYPE], &"a".repeat(1001))
        .await;
    assert_oauth_error(&got, 400, "invalid_request");
    let text = String::from_utf8_lossy(&got.2);
    assert!(text.contains("over the limit of 1000 bytes"), "{text}");
    assert_eq!(stub.records_for(paths::OAUTH_TOKEN).len(), 1);

    let got = tls.send("GET", paths::OAUTH_TOKEN, &[], "").await;
    assert_error(&got, 405, "method_not_allowed");
    assert_eq!(got.1["allow"], "POST");
    let got = tls
        .send("POST", paths::OAUTH_AUTHORIZATION_SERVER_METADATA, &[], "")
        .await;
    assert_error(&got, 405, "method_not_allowed");
    assert_eq!(got.1["allow"], "GET");
    tls.sidecar.shutdown().await;
}

/// An RFC 6749 section 5.2 error with section 5.1's headers.
fn assert_oauth_error(got: &(u16, HeaderMap, Bytes), status: u16, code: &str) {
    assert_error(got, status, code);
    assert_eq!(got.1["cache-control"], "no-store");
    assert_eq!(got.1["pragma"], "no-cache");
}

#[tokio::test]
async fn a_body_too_large_or_too_late_is_an_oauth_invalid_request() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |config| {
        config.tls.standard_routes_behind_tls_proxy = true;
        config.max_body_bytes = 1000;
        config.server.limits.body_read_timeout = Duration::from_millis(300);
    })
    .await;
    let head = |length: usize| {
        format!(
            "POST {} HTTP/1.1\r\nhost: sidecar\r\n\
             content-type: application/x-www-form-urlencoded\r\ncontent-length: {length}\r\n\r\n",
            paths::OAUTH_TOKEN
        )
    };
    // A declared length over the limit is refused before the body is read; a body that stops
    // arriving, once the body-read timeout has passed.
    for (length, description) in [
        (1_000_000_000, "over the limit of 1000 bytes"),
        (100, "did not arrive in time"),
    ] {
        let answer = answer_to_unfinished_body(sidecar.addr, &head(length), b"grant").await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 400"), "{answer}");
        assert!(head.contains("\r\ncache-control: no-store"), "{answer}");
        assert!(head.contains("\r\npragma: no-cache"), "{answer}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "invalid_request", "{answer}");
        let text = body["error_description"].as_str().unwrap();
        assert!(text.contains(description), "{answer}");
    }
    assert!(
        stub.records().is_empty(),
        "a request reached the identity API"
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn without_tls_they_are_refused_with_a_reason() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    // The metadata at both its addresses too: it advertises routes that answer 404 here.
    for path in paths::STANDARD {
        let request = if path.starts_with("/.well-known/") {
            common::http().get(sidecar.endpoint(path))
        } else {
            common::http()
                .post(sidecar.endpoint(path))
                .header("authorization", "Basic Y2xpZW50OnNlY3JldA==")
                .body("grant_type=client_credentials")
        };
        let got = parts(request.send().await.unwrap()).await;
        assert_error(&got, 404, "not_found");
        let text = String::from_utf8_lossy(&got.2);
        assert!(text.contains("--tls-cert-file"), "{text}");
    }
    assert!(
        stub.records().is_empty(),
        "a request reached the identity API"
    );
    // The JWKS stays a public document.
    let (status, _, _) = parts(
        common::http()
            .get(sidecar.endpoint(paths::JWKS))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn behind_a_tls_proxy_they_pass_in_plain_http() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |config| {
        config.tls.standard_routes_behind_tls_proxy = true;
    })
    .await;
    let answer = common::http()
        .post(sidecar.endpoint(paths::OAUTH_TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-internal-token", "forged")
        .body(FORM)
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(answer).await;
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["body"], FORM);
    assert_eq!(header(&echo, "x-internal-token"), [INTERNAL_TOKEN]);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn an_identity_api_that_does_not_answer_is_a_502() {
    let sidecar = Sidecar::start_with(&common::closed_port_url().await, |config| {
        config.tls.standard_routes_behind_tls_proxy = true;
    })
    .await;
    let got = parts(
        common::http()
            .post(sidecar.endpoint(paths::OAUTH_TOKEN))
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&got, 502, "upstream_unavailable");
    sidecar.shutdown().await;
}
