//! Error texts of the identity API must not carry request content: a token or secret sent by
//! mistake in the wrong place must not come back in `error_description` (the sidecar's own
//! errors follow the same rule, docs/PROTOCOL.md Appendix B.5).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{Backend, TestEnv};
use tower::ServiceExt as _;

async fn post(app: &axum::Router, path: &str, authorization: &str, body: &str) -> (u16, String) {
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", authorization)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Error texts do not echo the request: a body that is a JSON string (a token pasted as the whole
/// body, say) or a token in a field of the wrong type never comes back in `error_description`,
/// which still names the field at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_texts_do_not_echo_the_body() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let pair = env.issue().await;
    let bearer = format!("Bearer {}", common::s(&pair, "access_token"));
    let secret_like = "rt-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
    let (status, text) = post(
        &env.app,
        "/api/v1/introspect",
        &bearer,
        &format!("\"{secret_like}\""),
    )
    .await;
    assert_eq!(status, 400);
    assert!(!text.contains(secret_like), "the body is echoed: {text}");
    assert!(text.contains("JSON object"), "{text}");

    let (status, text) = post(
        &env.app,
        "/api/v1/introspect",
        &bearer,
        &format!("{{\"token\": [\"{secret_like}\"]}}"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(!text.contains(secret_like), "the body is echoed: {text}");
    assert!(text.contains("`token`"), "the field is named: {text}");

    let (status, text) = post(&env.app, "/api/v1/revoke", &bearer, "{}").await;
    assert_eq!(status, 400);
    assert!(text.contains("token"), "{text}");
}
