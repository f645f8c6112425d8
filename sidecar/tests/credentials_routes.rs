//! The routes of users' credentials (docs/users.md) through the sidecar: the password grant and
//! the five /credentials routes are sealed routes by default; over TLS the /credentials routes
//! also pass in the clear, as JSON, when a request names no session; the metrics, the body
//! limit and the refusals on those paths.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

mod common;

use axum::body::Bytes;
use axum::http::HeaderMap;
use common::tls::{TestCa, https, request};
use common::{INTERNAL_TOKEN, Sidecar, Stub, assert_error, http, parts, scratch_dir};
use identity_protocol::{ClientHandshake, InitAnswer, TrustedKeys, headers, paths};
use serde_json::{Value, json};

const JSON_TYPE: (&str, &str) = ("content-type", "application/json");
const BODY: &str = r#"{"api_key":"isk_AAAAAAAAAAAA_secret"}"#;

/// A sidecar with TLS, its body limit 1000 bytes; `tweak` changes the rest.
async fn start_tls(
    stub: &Stub,
    tweak: impl FnOnce(&mut identity_sidecar::Config),
) -> (Sidecar, TestCa) {
    let ca = TestCa::new("test CA").unwrap();
    let dir = scratch_dir("credentials");
    let (cert, key) = ca.leaf().unwrap().write(&dir).unwrap();
    let sidecar = Sidecar::start_with(&stub.url, |config| {
        config.tls.tls_cert_file = Some(cert);
        config.tls.tls_key_file = Some(key);
        config.max_body_bytes = 1000;
        tweak(config);
    })
    .await;
    (sidecar, ca)
}

async fn send_tls(
    sidecar: &Sidecar,
    ca: &TestCa,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, HeaderMap, Bytes) {
    https(&ca.pem, sidecar.addr, request(method, path, headers, body))
        .await
        .unwrap()
}

#[test]
fn the_new_routes_are_sealed_by_default() {
    let config = common::config("http://127.0.0.1:1");
    for path in std::iter::once(paths::TOKEN_PASSWORD).chain(paths::CREDENTIALS) {
        assert!(config.routes.iter().any(|r| r == path), "{path}");
        assert!(paths::DEFAULT_ENCRYPTED.contains(&path), "{path}");
    }
    for old in [
        paths::TOKEN_ISSUE,
        paths::INTROSPECT,
        paths::TOKEN,
        paths::REVOKE,
    ] {
        assert!(config.routes.iter().any(|r| r == old), "{old}");
    }
}

#[tokio::test]
async fn each_new_route_passes_sealed() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (client, session) = sidecar.anonymous().await;
    for path in std::iter::once(paths::TOKEN_PASSWORD).chain(paths::CREDENTIALS) {
        let answer = client
            .send(&session, path, Some("Basic Yzp4"), BODY.as_bytes())
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{path}");
        let echo: Value = answer.json().unwrap();
        assert_eq!(echo["path"], path);
        assert_eq!(echo["body"]["api_key"], "isk_AAAAAAAAAAAA_secret");
        let recorded = stub.records_for(path);
        assert_eq!(recorded.len(), 1, "{path}");
        assert_eq!(
            recorded[0].header("x-internal-token").unwrap(),
            [INTERNAL_TOKEN]
        );
        assert_eq!(recorded[0].header("authorization").unwrap(), ["Basic Yzp4"]);
    }
    // Without a session and without TLS, a credentials route is a sealed route: the plaintext
    // is refused and nothing is forwarded.
    let answer = http()
        .post(sidecar.endpoint(paths::CREDENTIALS_API_KEY_VALIDATE))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    let got = parts(answer).await;
    assert_error(&got, 401, "invalid_session");
    assert_eq!(
        stub.records_for(paths::CREDENTIALS_API_KEY_VALIDATE).len(),
        1
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn over_tls_they_also_pass_in_the_clear() {
    let stub = Stub::start().await;
    let (sidecar, ca) = start_tls(&stub, |_| {}).await;
    for path in paths::CREDENTIALS {
        let (status, headers, body) = send_tls(
            &sidecar,
            &ca,
            "POST",
            path,
            &[
                JSON_TYPE,
                ("authorization", "Basic Yzp4"),
                ("x-tenant-id", "acme"),
                // The client's copies of the sidecar's own headers never reach the API.
                ("x-internal-token", "forged"),
                ("x-session-subject", "mallory"),
            ],
            BODY,
        )
        .await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        assert_eq!(headers["content-type"], "application/json");
        let echo: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["path"], path);
        assert_eq!(echo["body"], serde_json::from_str::<Value>(BODY).unwrap());
        let recorded = stub.records_for(path);
        let r = recorded.last().unwrap();
        assert_eq!(r.header("content-type").unwrap(), ["application/json"]);
        assert_eq!(r.header("authorization").unwrap(), ["Basic Yzp4"]);
        assert_eq!(r.header("x-tenant-id").unwrap(), ["acme"]);
        assert_eq!(r.header("x-internal-token").unwrap(), [INTERNAL_TOKEN]);
        assert_eq!(r.header("x-session-subject"), None);
    }
    // The identity API's status and body come back as they are.
    let (status, _, body) = send_tls(
        &sidecar,
        &ca,
        "POST",
        paths::CREDENTIALS_API_KEY_VALIDATE,
        &[JSON_TYPE],
        &json!({ "status": 403 }).to_string(),
    )
    .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));

    // Sealed requests still work over TLS (a session named: the sealed route).
    let handshake = ClientHandshake::new();
    let init = serde_json::to_string(&handshake.request()).unwrap();
    let (status, _, body) = send_tls(
        &sidecar,
        &ca,
        "POST",
        paths::SESSION_INIT,
        &[JSON_TYPE],
        &init,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: InitAnswer = serde_json::from_slice(&body).unwrap();
    let trusted = TrustedKeys::pinned(&sidecar.public_key).unwrap();
    let session = handshake.finish(&answer, &trusted, None).unwrap();
    let path = paths::CREDENTIALS_API_KEY_ROTATE;
    let sealed = session
        .seal_request("POST", path, None, BODY.as_bytes())
        .unwrap();
    let (status, headers, body) = send_tls(
        &sidecar,
        &ca,
        "POST",
        path,
        &[JSON_TYPE, (headers::SESSION_ID, session.id())],
        std::str::from_utf8(&sealed.body).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[headers::SESSION_ID], session.id());
    let opened = session
        .open_response("POST", path, sealed.seq, status, &body)
        .unwrap();
    let echo: Value = serde_json::from_slice(opened.as_bytes()).unwrap();
    assert_eq!(echo["body"]["api_key"], "isk_AAAAAAAAAAAA_secret");
    let text = sidecar.state.metrics.encode(0).unwrap();
    let series = format!(
        r#"sidecar_requests_total{{route="{}",status="200"}} 2"#,
        paths::CREDENTIALS_API_KEY_ROTATE
    );
    assert!(text.contains(&series), "{series} missing from:\n{text}");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn the_clear_pass_keeps_the_limits_and_refusals() {
    let stub = Stub::start().await;
    let (sidecar, ca) = start_tls(&stub, |config| {
        config.routes.retain(|r| r != paths::CREDENTIALS_MFA_ENROLL);
    })
    .await;
    let path = paths::CREDENTIALS_API_KEY_VALIDATE;
    // Over the limit: the standard routes' answer, and nothing forwarded.
    let pad = json!({ "api_key": "x".repeat(1000) }).to_string();
    let got = send_tls(&sidecar, &ca, "POST", path, &[JSON_TYPE], &pad).await;
    assert_error(&got, 400, "invalid_request");
    assert_eq!(got.1["cache-control"], "no-store");
    assert!(String::from_utf8_lossy(&got.2).contains("over the limit of 1000 bytes"));
    assert!(stub.records_for(path).is_empty());
    // Another method; a path beside them; a tenant header that is no slug.
    let got = send_tls(&sidecar, &ca, "GET", path, &[], "").await;
    assert_error(&got, 405, "method_not_allowed");
    assert_eq!(got.1["allow"], "POST");
    let got = send_tls(
        &sidecar,
        &ca,
        "POST",
        "/credentials/api-key",
        &[JSON_TYPE],
        BODY,
    )
    .await;
    assert_error(&got, 404, "not_found");
    let got = send_tls(
        &sidecar,
        &ca,
        "POST",
        path,
        &[JSON_TYPE, ("x-tenant-id", "Not A Slug")],
        BODY,
    )
    .await;
    assert_error(&got, 400, "invalid_request");
    assert!(stub.records_for(path).is_empty());
    // A route left out of --routes: not sealed (404), still passed in the clear over TLS.
    let enroll = paths::CREDENTIALS_MFA_ENROLL;
    let got = send_tls(
        &sidecar,
        &ca,
        "POST",
        enroll,
        &[JSON_TYPE, ("x-session-id", "s1")],
        BODY,
    )
    .await;
    assert_error(&got, 404, "not_found");
    let got = send_tls(&sidecar, &ca, "POST", enroll, &[JSON_TYPE], BODY).await;
    assert_eq!(got.0, 200);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn without_tls_a_route_left_out_of_the_sealed_ones_is_refused_with_a_reason() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |config| {
        config
            .routes
            .retain(|r| r != paths::CREDENTIALS_API_KEY_VALIDATE);
    })
    .await;
    let answer = http()
        .post(sidecar.endpoint(paths::CREDENTIALS_API_KEY_VALIDATE))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    let got = parts(answer).await;
    assert_error(&got, 404, "not_found");
    assert!(String::from_utf8_lossy(&got.2).contains("TLS"));
    assert!(stub.records().is_empty());
    sidecar.shutdown().await;
}
