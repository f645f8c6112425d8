//! Subject binding of authenticated sessions (PROTOCOL.md section 2): step 4 with a token of
//! another subject than X-Subject is 403 subject_mismatch; on a session bound to a subject the
//! identity API refuses (403 subject_mismatch, encrypted) a bearer of another subject and a token
//! issue for another subject, and introspection answers `{"active": false}` for another
//! subject's token (an anonymous session still sees it active); client-sent X-Session-Subject
//! and X-Internal-Token are dropped; the previous session named in X-Session-Id ends only when
//! anonymous or of the same subject; and a revoked token cannot open an authenticated session
//! (401 invalid_token).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e_tests::{Env, calls, raw_post, refusal};
use identity_protocol::identity::basic_header;
use identity_protocol::paths;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_subject_must_be_the_tokens_subject() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let anonymous = env.anonymous().await?;
    let alice = env.issue(&anonymous, "alice").await?;
    let refused = env
        .client
        .init_authenticated(&alice.access_token, "bob", None)
        .await;
    assert_eq!(refusal(refused)?, (403, "subject_mismatch".into()));
    let bound = env
        .client
        .init_authenticated(&alice.access_token, "alice", None)
        .await?;
    assert_eq!(bound.subject(), Some("alice"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_session_refuses_other_subjects() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let anonymous = env.anonymous().await?;
    let alice = env.issue(&anonymous, "alice").await?;
    let bob = env.issue(&anonymous, "bob").await?;
    let session = env
        .client
        .init_authenticated(&alice.access_token, "alice", None)
        .await?;

    // A bearer of another subject.
    let answer = env
        .introspect(&session, &bob.access_token, &bob.access_token)
        .await?;
    assert_eq!(
        (answer.status, answer.error()),
        (403, Some("subject_mismatch")),
        "{answer:?}"
    );
    let answer = env
        .refresh(&session, &bob.access_token, &bob.refresh_token)
        .await?;
    assert_eq!(
        (answer.status, answer.error()),
        (403, Some("subject_mismatch")),
        "{answer:?}"
    );

    // A token issue for another subject.
    let answer = calls::issue(
        &env.client,
        &session,
        env.client_id(),
        env.client_secret(),
        "bob",
        None,
        None,
    )
    .await?;
    assert_eq!(
        (answer.status, answer.error()),
        (403, Some("subject_mismatch")),
        "{answer:?}"
    );

    // The session's own subject goes through.
    let answer = env
        .introspect(&session, &alice.access_token, &alice.access_token)
        .await?;
    assert_eq!(answer.active(), Some(true), "{answer:?}");
    env.issue(&session, "alice").await?;
    // Bob's refresh token was not spent by the refused attempt.
    let answer = env
        .refresh(&anonymous, &bob.access_token, &bob.refresh_token)
        .await?;
    assert_eq!(answer.status, 200, "{answer:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_session_introspects_only_its_subjects_tokens() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let anonymous = env.anonymous().await?;
    let alice = env.issue(&anonymous, "alice").await?;
    let bob = env.issue(&anonymous, "bob").await?;
    let session = env
        .client
        .init_authenticated(&alice.access_token, "alice", None)
        .await?;

    // Alice's bearer, bob's tokens of the same client: not active on alice's session...
    for token in [&bob.access_token, &bob.refresh_token] {
        let answer = env.introspect(&session, &alice.access_token, token).await?;
        assert_eq!(
            (answer.status, &answer.body),
            (200, &json!({ "active": false })),
            "{answer:?}"
        );
        // ...and active, with bob's subject, on an anonymous session.
        let answer = env
            .introspect(&anonymous, &alice.access_token, token)
            .await?;
        assert_eq!(answer.active(), Some(true), "{answer:?}");
        assert_eq!(answer.body["sub"], "bob", "{answer:?}");
    }
    // Alice's own refresh token is active on her session.
    let answer = env
        .introspect(&session, &alice.access_token, &alice.refresh_token)
        .await?;
    assert_eq!(answer.active(), Some(true), "{answer:?}");
    assert_eq!(answer.body["sub"], "alice", "{answer:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_subject_and_internal_token_headers_are_dropped() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let anonymous = env.anonymous().await?;
    let alice = env.issue(&anonymous, "alice").await?;
    let session = env
        .client
        .init_authenticated(&alice.access_token, "alice", None)
        .await?;
    let auth = basic_header(env.client_id(), env.client_secret());

    // On an anonymous session a forged X-Session-Subject must not bind anything, and a forged
    // X-Internal-Token must not replace the sidecar's.
    let body = serde_json::to_vec(&json!({ "subject": "alice" }))?;
    let sealed = anonymous.seal_request("POST", paths::TOKEN_ISSUE, Some(&auth), &body)?;
    let (status, encrypted, _) = raw_post(
        &env,
        &anonymous,
        paths::TOKEN_ISSUE,
        Some(&auth),
        sealed.body,
        &[
            (identity_protocol::headers::SESSION_SUBJECT, "bob"),
            (identity_protocol::headers::INTERNAL_TOKEN, "forged"),
        ],
    )
    .await?;
    assert_eq!((status, encrypted), (200, true));

    // On alice's session a forged X-Session-Subject must not rebind it to bob.
    let body = serde_json::to_vec(&json!({ "subject": "bob" }))?;
    let sealed = session.seal_request("POST", paths::TOKEN_ISSUE, Some(&auth), &body)?;
    let (status, encrypted, answer) = raw_post(
        &env,
        &session,
        paths::TOKEN_ISSUE,
        Some(&auth),
        sealed.body,
        &[(identity_protocol::headers::SESSION_SUBJECT, "bob")],
    )
    .await?;
    assert_eq!((status, encrypted), (403, true));
    let plaintext =
        session.open_response("POST", paths::TOKEN_ISSUE, sealed.seq, status, &answer)?;
    let answer: serde_json::Value = serde_json::from_slice(plaintext.as_bytes())?;
    assert_eq!(answer["error"], "subject_mismatch");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_session_ends_only_if_anonymous_or_of_the_same_subject() -> anyhow::Result<()>
{
    let env = Env::start().await?;
    let anonymous = env.anonymous().await?;
    let alice = env.issue(&anonymous, "alice").await?;
    let bob = env.issue(&anonymous, "bob").await?;
    let bobs_session = env
        .client
        .init_authenticated(&bob.access_token, "bob", None)
        .await?;

    // Naming bob's session as alice's previous one leaves it alone.
    let alices = env
        .client
        .init_authenticated(&alice.access_token, "alice", Some(bobs_session.id()))
        .await?;
    let answer = env
        .introspect(&bobs_session, &bob.access_token, &bob.access_token)
        .await?;
    assert_eq!(answer.active(), Some(true), "{answer:?}");

    // Naming the anonymous session ends it.
    let _alices_again = env
        .client
        .init_authenticated(&alice.access_token, "alice", Some(anonymous.id()))
        .await?;
    let ended = calls::introspect(
        &env.client,
        &anonymous,
        &alice.access_token,
        &alice.access_token,
        None,
    )
    .await;
    assert_eq!(refusal(ended)?, (401, "invalid_session".into()));

    // Naming alice's first session from a new alice session ends it too (same subject).
    let _third = env
        .client
        .init_authenticated(&alice.access_token, "alice", Some(alices.id()))
        .await?;
    let ended = calls::introspect(
        &env.client,
        &alices,
        &alice.access_token,
        &alice.access_token,
        None,
    )
    .await;
    assert_eq!(refusal(ended)?, (401, "invalid_session".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_cannot_open_an_authenticated_session() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let anonymous = env.anonymous().await?;
    let alice = env.issue(&anonymous, "alice").await?;
    let revoked = calls::revoke(
        &env.client,
        &anonymous,
        &alice.access_token,
        &alice.refresh_token,
        Some("refresh_token"),
    )
    .await?;
    assert_eq!(revoked.body, json!({ "revoked": true }));
    let refused = env
        .client
        .init_authenticated(&alice.access_token, "alice", None)
        .await;
    assert_eq!(refusal(refused)?, (401, "invalid_token".into()));
    let garbage = env
        .client
        .init_authenticated("not-a-token", "alice", None)
        .await;
    assert_eq!(refusal(garbage)?, (401, "invalid_token".into()));
    Ok(())
}
