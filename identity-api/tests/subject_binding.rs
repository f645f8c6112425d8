//! Subject binding over HTTP (in-process, `oneshot`), on SQLite and on PostgreSQL: on a session
//! the sidecar bound to a subject (it sends `X-Session-Subject`, PROTOCOL.md section 2), a bearer
//! or a token issue of another subject is `403 subject_mismatch`, and introspection answers
//! `{"active": false}` for another subject's token (section 5, step 3); without the header,
//! a client still introspects the tokens of every subject it issued for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, TestEnv, assert_error, basic, s};
use identity_protocol::headers::{INTERNAL_TOKEN, SESSION_SUBJECT};
use identity_runtime::InternalToken;
use serde_json::{Value, json};

both!(
    a_bound_session_refuses_other_subjects,
    introspection_on_a_bound_session_sees_only_its_subject,
);

/// The sidecar's token: the API is set up as in a pod, where only the sidecar sends the header.
const TOKEN: &str = "subject-binding-test-token-8f3a2c71d9e4b605";

async fn env(b: Backend) -> Option<TestEnv> {
    TestEnv::with(b, |s| {
        s.internal_token = Some(InternalToken::new(TOKEN).unwrap());
    })
    .await
}

/// `POST path` as the sidecar forwards it: with a bearer and, on a bound session, its subject.
async fn forwarded(
    env: &TestEnv,
    path: &str,
    bearer: &str,
    session_subject: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let bearer = format!("Bearer {bearer}");
    let mut headers = vec![("authorization", bearer.as_str()), (INTERNAL_TOKEN, TOKEN)];
    if let Some(subject) = session_subject {
        headers.push((SESSION_SUBJECT, subject));
    }
    env.post(path, &headers, &body.to_string()).await
}

/// A pair of `c1` for `subject`, issued on an anonymous session.
async fn pair(env: &TestEnv, subject: &str) -> (String, String) {
    let (status, pair) = env
        .post(
            "/api/v1/token/issue",
            &[
                ("authorization", &basic("c1", &env.secret)),
                (INTERNAL_TOKEN, TOKEN),
            ],
            &json!({ "subject": subject }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    (s(&pair, "access_token"), s(&pair, "refresh_token"))
}

async fn a_bound_session_refuses_other_subjects(b: Backend) {
    let Some(env) = env(b).await else {
        return;
    };
    let issue = |session_subject: &'static str, subject: &'static str| {
        let env = &env;
        async move {
            env.post(
                "/api/v1/token/issue",
                &[
                    ("authorization", &basic("c1", &env.secret)),
                    (INTERNAL_TOKEN, TOKEN),
                    (SESSION_SUBJECT, session_subject),
                ],
                &json!({ "subject": subject }).to_string(),
            )
            .await
        }
    };
    assert_error(&issue("alice", "bob").await, 403, "subject_mismatch");
    let (status, pair) = issue("alice", "alice").await;
    assert_eq!(status, StatusCode::OK);
    let access = s(&pair, "access_token");
    let refresh = s(&pair, "refresh_token");
    let token_body = json!({ "token": access });
    let refresh_body = json!({"grant_type": "refresh_token", "refresh_token": refresh});
    // Alice's bearer on a session bound to bob.
    for (path, body) in [
        ("/api/v1/introspect", &token_body),
        ("/api/v1/token", &refresh_body),
        ("/api/v1/revoke", &token_body),
    ] {
        let answer = forwarded(&env, path, &access, Some("bob"), body).await;
        assert_error(&answer, 403, "subject_mismatch");
    }
    // Nothing was spent or revoked by the refused requests.
    let answer = forwarded(
        &env,
        "/api/v1/introspect",
        &access,
        Some("alice"),
        &token_body,
    )
    .await;
    assert_eq!(answer.1["active"], true);
    let answer = forwarded(&env, "/api/v1/token", &access, Some("alice"), &refresh_body).await;
    assert_eq!(answer.0, StatusCode::OK);
}

async fn introspection_on_a_bound_session_sees_only_its_subject(b: Backend) {
    let Some(env) = env(b).await else {
        return;
    };
    let (alice_access, alice_refresh) = pair(&env, "alice").await;
    let (bob_access, bob_refresh) = pair(&env, "bob").await;
    let introspect = |session_subject: Option<&'static str>, token: String| {
        let env = &env;
        let bearer = alice_access.clone();
        async move {
            let body = json!({ "token": token });
            forwarded(env, "/api/v1/introspect", &bearer, session_subject, &body).await
        }
    };

    // On alice's session, bob's tokens (of the same client, all active) are not active.
    for token in [&bob_access, &bob_refresh] {
        let (status, answer) = introspect(Some("alice"), token.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer, json!({ "active": false }));
    }
    // Alice's own tokens are.
    for (token, token_use) in [
        (&alice_access, "access_token"),
        (&alice_refresh, "refresh_token"),
    ] {
        let (status, answer) = introspect(Some("alice"), token.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["active"], true, "{answer}");
        assert_eq!(answer["sub"], "alice");
        assert_eq!(answer["token_use"], token_use);
    }
    // Without a bound session the client sees every subject's tokens, as before.
    for token in [&bob_access, &bob_refresh] {
        let (status, answer) = introspect(None, token.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["active"], true, "{answer}");
        assert_eq!(answer["sub"], "bob");
    }
}
