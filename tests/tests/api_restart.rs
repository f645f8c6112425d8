//! The identity API restarted between token issue and refresh: its state (clients, signing keys
//! encrypted under the key-encryption key, refresh tokens, families) survives on SQLite, so the
//! refresh and introspection of tokens issued before the restart go through, and the sidecar's
//! session outlives the restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e_tests::{Env, ok_tokens};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_restart_refresh() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    let session = env.anonymous().await?;
    let first = env.issue(&session, "restart-user").await?;

    env.stack.restart_api().await?;
    env.stack.wait_sidecar_ready().await?;

    // Same session, tokens from before the restart.
    let answer = env
        .introspect(&session, &first.access_token, &first.access_token)
        .await?;
    assert_eq!(answer.active(), Some(true), "{answer:?}");
    let second = ok_tokens(
        &env.refresh(&session, &first.access_token, &first.refresh_token)
            .await?,
    )?;

    // And once more across a second restart: the spent token is still known as spent.
    env.stack.restart_api().await?;
    env.stack.wait_sidecar_ready().await?;
    let reuse = env
        .refresh(&session, &first.access_token, &first.refresh_token)
        .await?;
    assert_eq!(
        (reuse.status, reuse.error()),
        (400, Some("invalid_grant")),
        "{reuse:?}"
    );
    let other = env.issue(&session, "restart-user").await?;
    let answer = env
        .introspect(&session, &other.access_token, &second.refresh_token)
        .await?;
    assert_eq!(answer.body, serde_json::json!({ "active": false }));
    Ok(())
}
