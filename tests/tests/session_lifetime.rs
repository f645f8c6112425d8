//! Session lifetime: an anonymous session past its TTL is refused with 401 invalid_session (the
//! client runs step 1 again, which works at once), and the example client's hint for it says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e_tests::{Env, StackConfig, calls};
use identity_client::ClientError;
use identity_sidecar_examples::journey::{Failure, FailureKind};
use identity_sidecar_examples::output::hint;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_401_invalid_session() -> anyhow::Result<()> {
    let env = Env::with(StackConfig {
        sidecar_env: vec![("SIDECAR_ANONYMOUS_TTL_SECS".into(), "1".into())],
        ..StackConfig::default()
    })
    .await?;
    let session = env.anonymous().await?;
    let tokens = env.issue(&session, "short-lived").await?;

    // Poll (bounded) until the session has expired; no duration is asserted.
    let mut refusal = None;
    for _ in 0..100 {
        let answer = calls::introspect(
            &env.client,
            &session,
            &tokens.access_token,
            &tokens.access_token,
            None,
        )
        .await;
        if let Err(e @ ClientError::Sidecar { .. }) = answer {
            refusal = Some(e);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let refusal = refusal.expect("the session must expire");
    match &refusal {
        ClientError::Sidecar { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (401, "invalid_session"));
        }
        other => panic!("{other:?}"),
    }
    let failure = Failure {
        step: 3,
        name: "introspection",
        endpoint: "/api/v1/introspect",
        kind: FailureKind::Client(refusal),
    };
    assert!(hint(&failure).contains("expired"));

    // A new session works at once.
    let fresh = env.anonymous().await?;
    let answer = env
        .introspect(&fresh, &tokens.access_token, &tokens.access_token)
        .await?;
    assert_eq!(answer.active(), Some(true), "{answer:?}");
    Ok(())
}
