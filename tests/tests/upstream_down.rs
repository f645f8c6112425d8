//! The sidecar's answer while the identity API is down: encrypted requests get a plaintext
//! 502 upstream_unavailable, /health stays 200 while /health/ready stops being 200; after the
//! identity API is back, the sidecar recovers and the same session goes on. Over TCP and over
//! the Unix socket (which the identity API removes when it stops and binds again at start).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e_tests::{Env, StackConfig, calls, eventually, refusal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_api_down_is_502_and_the_sidecar_recovers() -> anyhow::Result<()> {
    down_and_back(StackConfig::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_over_the_unix_socket() -> anyhow::Result<()> {
    down_and_back(StackConfig {
        unix_socket: true,
        ..StackConfig::default()
    })
    .await
}

async fn down_and_back(config: StackConfig) -> anyhow::Result<()> {
    let unix_socket = config.unix_socket;
    let mut env = Env::with(config).await?;
    let session = env.anonymous().await?;
    let tokens = env.issue(&session, "outage-user").await?;

    env.stack.stop_api();
    if unix_socket {
        assert!(!env.stack.api_socket().exists(), "removed at shutdown");
    }
    let down = calls::introspect(
        &env.client,
        &session,
        &tokens.access_token,
        &tokens.access_token,
        None,
    )
    .await;
    assert_eq!(refusal(down)?, (502, "upstream_unavailable".into()));

    let http = reqwest::Client::new();
    let base = env.stack.sidecar_url();
    let live = http.get(format!("{base}/health")).send().await?;
    assert_eq!(
        live.status(),
        200,
        "liveness does not depend on the identity API"
    );
    let not_ready = eventually(100, || {
        let request = http.get(format!("{base}/health/ready")).send();
        async move { request.await.is_ok_and(|r| r.status() != 200) }
    })
    .await;
    assert!(
        not_ready,
        "/health/ready must stop being 200 while the identity API is down"
    );

    env.stack.start_api().await?;
    env.stack.wait_sidecar_ready().await?;
    let answer = env
        .introspect(&session, &tokens.access_token, &tokens.access_token)
        .await?;
    assert_eq!(answer.active(), Some(true), "{answer:?}");
    Ok(())
}
