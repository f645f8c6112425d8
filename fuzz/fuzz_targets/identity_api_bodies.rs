//! The identity API's request bodies (PROTOCOL.md section 5, and the form bodies of the standard
//! endpoints, docs/OAUTH.md): the request structs' deserialisation, then the whole router
//! (`identity_api::app`, through `tower::ServiceExt::oneshot`) on a SQLite database in a
//! temporary directory, with valid credentials so that the body is parsed and validated. The
//! first input byte picks the route and the credential; the rest is the body. Whatever the
//! input: no panic, never a 5xx, and every answer is JSON.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use identity_api::kek::Kek;
use identity_api::{AppState, Settings, clients};
use identity_protocol::identity::{
    IssueRequest, RefreshRequest, TokenRequest, basic_header, bearer_header,
};
use identity_protocol::paths;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: Router,
    basic: String,
    bearer: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
        let (app, basic, bearer) = runtime.block_on(async {
            let (kek, _) = Kek::generate();
            // The fixture's bearer must stay active however long the fuzzer runs: with the
            // default 900 s, every route but issue would answer 401 before reading the body.
            let settings = Settings {
                access_ttl: 365 * 24 * 3600,
                ..Settings::new("https://identity.fuzz")
            };
            let state = AppState::open(&url, kek, settings).await.expect("state");
            // Both grants, so that /oauth/token's refresh_token grant reaches its parameters;
            // any subject, so that issue's bodies reach past the subject policy.
            let tenant = identity_api::storage::TenantId::primary();
            let new = clients::NewClient {
                grant_types: Some("client_credentials refresh_token"),
                subject_policy: Some("any"),
                ..clients::NewClient::new(&tenant, "orders.read orders.write", "orders-api")
            };
            let secret = clients::create(
                state.db(),
                state.verifier_key(),
                "c1",
                new,
                &identity_api::operator::Operator::new("fuzz", None),
                identity_api::now(),
            )
            .await
            .expect("client");
            let basic = basic_header("c1", secret.expose()).to_string();
            let app = identity_api::app(state);
            let answer = send(
                &app,
                paths::TOKEN_ISSUE,
                "application/json",
                &basic,
                br#"{"subject":"fuzz"}"#.to_vec(),
            )
            .await;
            assert_eq!(answer.0, 200, "issue for the fixture");
            let body: serde_json::Value = serde_json::from_slice(&answer.1).expect("JSON");
            let bearer = bearer_header(body["access_token"].as_str().expect("token"));
            (app, basic, bearer)
        });
        Fixture {
            runtime,
            app,
            basic,
            bearer,
            _dir: dir,
        }
    })
}

async fn send(
    app: &Router,
    path: &str,
    content_type: &str,
    authorization: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", content_type)
        .header("authorization", authorization)
        .body(Body::from(body))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, body.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    // The request structs alone.
    let _ = serde_json::from_slice::<IssueRequest<'_>>(body);
    let _ = serde_json::from_slice::<RefreshRequest<'_>>(body);
    let _ = serde_json::from_slice::<TokenRequest<'_>>(body);

    let fixture = fixture();
    let (path, content_type) = match selector % 7 {
        0 => (paths::TOKEN_ISSUE, "application/json"),
        1 => (paths::INTROSPECT, "application/json"),
        2 => (paths::TOKEN, "application/json"),
        3 => (paths::REVOKE, "application/json"),
        4 => (paths::OAUTH_TOKEN, "application/x-www-form-urlencoded"),
        5 => (paths::OAUTH_INTROSPECT, "application/x-www-form-urlencoded"),
        _ => (paths::OAUTH_REVOKE, "application/x-www-form-urlencoded"),
    };
    // Mostly the credential the route takes, so that the body is reached; sometimes the other.
    let (right, other) = if matches!(selector % 7, 1..=3) {
        (&fixture.bearer, &fixture.basic)
    } else {
        (&fixture.basic, &fixture.bearer)
    };
    let authorization = if selector & 0x80 != 0 { other } else { right };
    let (status, answer) = fixture.runtime.block_on(send(
        &fixture.app,
        path,
        content_type,
        authorization,
        body.to_vec(),
    ));
    assert!(status < 500, "{path} answered {status}");
    assert!(
        serde_json::from_slice::<serde_json::Value>(&answer).is_ok(),
        "{path} answered {status} with a body that is not JSON"
    );
});
