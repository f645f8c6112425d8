//! The sidecar and the identity API over a Unix socket, as in the pod: the journey goes
//! through with the sidecar's --upstream naming a host that resolves nowhere, so only the socket
//! can carry it, and with the sidecar on one thread, as its CPU limit of one gives it there. (The identity API going down and coming back over the socket: upstream_down.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::anyhow;
use e2e_tests::{Env, StackConfig};
use identity_sidecar_examples::journey;
use identity_sidecar_examples::output::hint;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_goes_through_a_unix_socket() -> anyhow::Result<()> {
    let env = Env::with(StackConfig {
        unix_socket: true,
        sidecar_env: vec![("SIDECAR_WORKER_THREADS".into(), "1".into())],
        ..StackConfig::default()
    })
    .await?;
    let outcome = journey::run(&env.journey_settings("socket-user"), &mut |_| {})
        .await
        .map_err(|f| anyhow!("{f}\nhint: {}", hint(&f)))?;
    assert_eq!(outcome.steps.len(), 7);
    for step in &outcome.steps {
        assert_eq!(step.status, 200, "step {step:?}");
    }
    Ok(())
}
