//! The sidecar and the identity API over a Unix socket, as in the pod: the journey goes
//! through with the sidecar's --upstream naming a host that resolves nowhere (so only the socket
//! can carry it), the API removes its socket when it stops (the sidecar answers 502) and binds
//! it again when it starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::anyhow;
use e2e_tests::{Env, StackConfig, calls, refusal};
use identity_sidecar_examples::journey;
use identity_sidecar_examples::output::hint;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_goes_through_a_unix_socket() -> anyhow::Result<()> {
    let mut env = Env::with(StackConfig {
        unix_socket: true,
        ..StackConfig::default()
    })
    .await?;
    let outcome = journey::run(&env.journey_settings("socket-user"), &mut |_| {})
        .await
        .map_err(|f| anyhow!("{f}\nhint: {}", hint(&f)))?;
    for step in &outcome.steps {
        assert_eq!(step.status, 200, "step {step:?}");
    }

    let socket = env.stack.api_socket();
    let session = env.anonymous().await?;
    let tokens = env.issue(&session, "socket-user").await?;
    env.stack.stop_api();
    assert!(!socket.exists(), "the socket is removed at shutdown");
    let down = calls::introspect(
        &env.client,
        &session,
        &tokens.access_token,
        &tokens.access_token,
        None,
    )
    .await;
    assert_eq!(refusal(down)?, (502, "upstream_unavailable".into()));

    env.stack.start_api().await?;
    env.stack.wait_sidecar_ready().await?;
    let answer = env
        .introspect(&session, &tokens.access_token, &tokens.access_token)
        .await?;
    assert_eq!(answer.active(), Some(true), "{answer:?}");
    Ok(())
}
