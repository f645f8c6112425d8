//! The sidecar's answer while the identity API is down: encrypted requests get a plaintext
//! 502 upstream_unavailable, /health stays 200 while /health/ready stops being 200; after the
//! identity API is back, the sidecar recovers and the same session goes on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e_tests::{Env, calls, eventually, refusal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_api_down_is_502_and_the_sidecar_recovers() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let session = env.anonymous().await?;
    let tokens = env.issue(&session, "outage-user").await?;

    env.stack.stop_api();
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
