//! API-key validation beside introspection, in the same run, in process (the axum app over
//! SQLite in a temporary directory, no sockets): `POST /credentials/api-key/validate` with a key
//! that validated lately (the usual case: answered from memory), with one that did not (its
//! row and its owner read by primary key, the roles read), and `POST /api/v1/introspect` of an
//! access token by its own bearer. The issue asks validation to be at least as fast as
//! introspection.
//!
//! `cargo bench -p identity-api --bench api_keys`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{Criterion, criterion_group, criterion_main};
use identity_api::clients::{self, NewClient};
use identity_api::kek::Kek;
use identity_api::operator::Operator;
use identity_api::service::api_keys::ApiKeys;
use identity_api::storage::TenantId;
use identity_api::users::{self, NewUser, api_keys};
use identity_api::{AppState, Settings};
use tower::ServiceExt as _;

struct Setup {
    app: Router,
    state: AppState,
    basic: String,
    bearer: String,
    access_token: String,
    api_key: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (kek, _) = Kek::generate();
    let state = AppState::open(&url, kek, Settings::new("http://bench.test"))
        .await
        .unwrap();
    let tenant = TenantId::primary();
    let by = Operator::new("bench", None);
    let now = identity_api::now();
    let secret = clients::create(
        state.db(),
        state.verifier_key(),
        "bench",
        NewClient {
            subject_policy: Some("any"),
            ..NewClient::new(&tenant, "orders.read", "orders-api")
        },
        &by,
        now,
    )
    .await
    .unwrap();
    let new = NewUser {
        tenant: &tenant,
        username: "alice",
        email: None,
        display_name: None,
        roles: "viewer",
    };
    let alice = users::create(state.db(), new, None, &by, now)
        .await
        .unwrap();
    let key = api_keys::create(state.db(), state.credential_key(), &alice, &by, now)
        .await
        .unwrap();
    let app = identity_api::app(state.clone());
    let basic = identity_protocol::identity::basic_header("bench", secret.expose()).to_string();
    let (status, pair) = post(
        &app,
        "/api/v1/token/issue",
        &basic,
        r#"{"subject": "alice"}"#.into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let pair: serde_json::Value = serde_json::from_slice(&pair).unwrap();
    let access_token = pair["access_token"].as_str().unwrap().to_owned();
    Setup {
        app,
        state,
        basic,
        bearer: format!("Bearer {access_token}"),
        access_token,
        api_key: key.expose().to_owned(),
        _dir: dir,
    }
}

async fn post(app: &Router, path: &str, auth: &str, body: String) -> (StatusCode, Vec<u8>) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

fn validation_and_introspection(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = runtime.block_on(setup());
    let validate = serde_json::json!({ "api_key": s.api_key }).to_string();
    let introspect = serde_json::json!({ "token": s.access_token }).to_string();
    let run = |path: &'static str, auth: &str, body: &str, expect: &str| {
        let (status, answer) = runtime.block_on(post(&s.app, path, auth, body.to_owned()));
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&answer).contains(expect));
    };
    let mut group = c.benchmark_group("credentials");
    group.bench_function("introspect", |b| {
        b.iter(|| {
            run(
                "/api/v1/introspect",
                &s.bearer,
                black_box(&introspect),
                r#""active":true"#,
            )
        })
    });
    group.bench_function("api_key_validate", |b| {
        b.iter(|| {
            run(
                "/credentials/api-key/validate",
                &s.basic,
                black_box(&validate),
                r#""active":true"#,
            )
        })
    });
    // The credential clock moved past the cache's lifetime before each: a read every time.
    group.bench_function("api_key_validate_uncached", |b| {
        b.iter(|| {
            s.state.settings().clock.advance(ApiKeys::TTL_SECS);
            run(
                "/credentials/api-key/validate",
                &s.basic,
                black_box(&validate),
                r#""active":true"#,
            )
        })
    });
    group.finish();
    runtime.block_on(s.state.db().close());
}

criterion_group!(benches, validation_and_introspection);
criterion_main!(benches);
