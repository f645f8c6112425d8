//! `--ops-listen`: health, readiness and metrics on an address of their own, and `/metrics` off
//! the public listener, which every client namespace reaches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Sidecar, Stub, http};
use identity_protocol::paths;
use serde_json::Value;

async fn get(url: &str) -> (u16, String) {
    let answer = http().get(url).send().await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

fn error_code(body: &str) -> String {
    let body: Value = serde_json::from_str(body).unwrap();
    body["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn probes_and_metrics_on_the_ops_listener_only() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |config| {
        config.ops_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let ops = sidecar.ops_url.clone().expect("an ops listener");

    let (status, metrics) = get(&format!("{ops}{}", paths::METRICS)).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("sidecar_sessions"), "{metrics}");
    assert_eq!(get(&format!("{ops}{}", paths::HEALTH)).await.0, 200);
    assert_eq!(get(&format!("{ops}{}", paths::READY)).await.0, 200);

    // Nothing else there: not the protocol, not the key document.
    for path in [paths::KEY_DOCUMENT, paths::SESSION_INIT, "/version"] {
        let (status, body) = get(&format!("{ops}{path}")).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
    let post = http()
        .post(format!("{ops}{}", paths::METRICS))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET");

    // The public listener keeps health and readiness, and no longer answers /metrics.
    let (status, body) = get(&sidecar.endpoint(paths::METRICS)).await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    assert_eq!(get(&sidecar.endpoint(paths::HEALTH)).await.0, 200);
    assert_eq!(get(&sidecar.endpoint(paths::READY)).await.0, 200);
}

#[tokio::test]
async fn without_an_ops_listener_metrics_stay_on_the_public_one() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    assert!(sidecar.ops_url.is_none());
    assert_eq!(get(&sidecar.endpoint(paths::METRICS)).await.0, 200);
}
