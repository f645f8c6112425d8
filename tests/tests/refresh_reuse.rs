//! Refresh-token reuse detection through the sidecar: presenting a spent refresh token revokes
//! the whole family (every access and refresh token of it, the newest pair included), leaves
//! other families alone, and of concurrent refreshes with one token exactly one succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e_tests::{Env, ok_tokens};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_refresh_token_revokes_the_family() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let session = env.anonymous().await?;
    let first = env.issue(&session, "alice").await?;
    let second = ok_tokens(
        &env.refresh(&session, &first.access_token, &first.refresh_token)
            .await?,
    )?;

    // The first refresh token is spent: presenting it again is reuse.
    let reuse = env
        .refresh(&session, &first.access_token, &first.refresh_token)
        .await?;
    assert_eq!(reuse.status, 400, "{reuse:?}");
    assert_eq!(reuse.error(), Some("invalid_grant"));

    // The newest pair went with the family.
    let after = env
        .refresh(&session, &second.access_token, &second.refresh_token)
        .await?;
    assert!(
        matches!(
            (after.status, after.error()),
            (400, Some("invalid_grant")) | (401, Some("invalid_token"))
        ),
        "{after:?}"
    );

    // Ask with a token of another family: every token of the revoked one is inactive.
    let other = env.issue(&session, "alice").await?;
    for token in [
        &first.access_token,
        &first.refresh_token,
        &second.access_token,
        &second.refresh_token,
    ] {
        let answer = env.introspect(&session, &other.access_token, token).await?;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body, serde_json::json!({ "active": false }));
    }
    // The other family is untouched.
    let answer = env
        .introspect(&session, &other.access_token, &other.refresh_token)
        .await?;
    assert_eq!(answer.active(), Some(true), "{answer:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_refreshes_exactly_one_wins_and_the_family_is_revoked() -> anyhow::Result<()>
{
    let env = std::sync::Arc::new(Env::start().await?);
    let session = std::sync::Arc::new(env.anonymous().await?);
    let first = env.issue(&session, "bob").await?;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (env, session, first) = (env.clone(), session.clone(), first.clone());
        tasks.push(tokio::spawn(async move {
            env.refresh(&session, &first.access_token, &first.refresh_token)
                .await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let answer = task.await??;
        match (answer.status, answer.error()) {
            (200, _) => winners.push(ok_tokens(&answer)?),
            (400, Some("invalid_grant")) | (401, Some("invalid_token")) => {}
            _ => panic!("unexpected answer {answer:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh succeeds");
    // The losers were reuse: the winner's pair is revoked too.
    let other = env.issue(&session, "bob").await?;
    let answer = env
        .introspect(&session, &other.access_token, &winners[0].refresh_token)
        .await?;
    assert_eq!(answer.body, serde_json::json!({ "active": false }));
    Ok(())
}
