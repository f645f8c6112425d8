//! Timing-relevant paths, without timing assertions (no test here measures a duration):
//! an unknown client, a wrong secret, a disabled client, a secret replaced without an overlap
//! and one whose overlap has ended get byte-identical answers (status,
//! headers, body), as do a missing, wrong, shorter and longer internal token; the comparisons
//! themselves (`clients::verifier_matches`, `InternalToken::matches`) are exact whatever the
//! lengths. That the unknown-client path computes the same HMAC verifier as the known-client path
//! (against a dummy verifier, `service::AppState::authenticate_client`) is documented in
//! docs/crypto-audit.md; it has no observable counter to assert on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{Backend, TestEnv, basic};
use identity_api::clients::{verifier, verifier_matches};
use identity_api::secret::Key32;
use identity_api::storage::Scope;
use identity_runtime::InternalToken;
use tower::ServiceExt as _;

/// Status, headers (sorted, without `date`) and body bytes of one answer.
async fn raw(
    app: &axum::Router,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, Vec<u8>)>, Vec<u8>) {
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let mut headers: Vec<_> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    headers.sort();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_wrong_secret_and_disabled_client_answer_identically() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let issue = "/api/v1/token/issue";
    let body = r#"{"subject": "test-user"}"#;
    // A wrong secret of the right shape (43 base64url characters), and of other lengths.
    let wrong = "A".repeat(43);
    let cases = [
        ("unknown client", basic("no-such-client", &env.secret)),
        ("unknown client, empty id", basic("", &env.secret)),
        ("wrong secret", basic("c1", &wrong)),
        ("wrong secret, short", basic("c1", "x")),
        ("wrong secret, long", basic("c1", &"B".repeat(500))),
        ("another client's secret", basic("c1", &env.secret2)),
    ];
    let reference = raw(
        &env.app,
        issue,
        &[("authorization", &basic("c1", &wrong))],
        body,
    )
    .await;
    assert_eq!(reference.0, 401);
    for (what, authorization) in &cases {
        let got = raw(&env.app, issue, &[("authorization", authorization)], body).await;
        assert_eq!(got, reference, "{what}");
    }
    // A disabled client with its right secret: the same answer too.
    identity_api::clients::set_enabled(
        env.state.db(),
        Scope::AnyTenant,
        "c2",
        false,
        &common::operator(),
    )
    .await
    .unwrap();
    let got = raw(
        &env.app,
        issue,
        &[("authorization", &basic("c2", &env.secret2))],
        body,
    )
    .await;
    assert_eq!(got, reference, "disabled client");
    // And the right secret still works (the cases above were refused for their credential).
    let ok = raw(
        &env.app,
        issue,
        &[("authorization", &basic("c1", &env.secret))],
        body,
    )
    .await;
    assert_eq!(ok.0, 200);
    // A secret replaced with an overlap that has ended, and one replaced without an overlap
    // (the first read from the cache, which still takes it: the write refuses the issue).
    let (db, key, by) = (env.state.db(), env.state.verifier_key(), common::operator());
    let overlap = Some(identity_api::clients::Overlap::from_secs(600).unwrap());
    let now = identity_api::now();
    let second =
        identity_api::clients::rotate_secret(db, key, Scope::AnyTenant, "c1", overlap, &by, now)
            .await
            .unwrap();
    common::exec(
        db,
        &format!("UPDATE clients SET previous_verifier_expires_at = {now} WHERE client_id = 'c1'"),
    )
    .await;
    let got = raw(
        &env.app,
        issue,
        &[("authorization", &basic("c1", &env.secret))],
        body,
    )
    .await;
    assert_eq!(got, reference, "a previous secret after its overlap");
    let second = second.expose().to_owned();
    let ok = raw(
        &env.app,
        issue,
        &[("authorization", &basic("c1", &second))],
        body,
    )
    .await;
    assert_eq!(ok.0, 200);
    identity_api::clients::rotate_secret(db, key, Scope::AnyTenant, "c1", None, &by, now)
        .await
        .unwrap();
    let got = raw(
        &env.app,
        issue,
        &[("authorization", &basic("c1", &second))],
        body,
    )
    .await;
    assert_eq!(got, reference, "a secret replaced without an overlap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wrong_internal_token_answers_identically() {
    const TOKEN: &str = "the-internal-token-0123456789";
    let env = TestEnv::with(Backend::Sqlite, |settings| {
        settings.internal_token = Some(InternalToken::new(TOKEN).unwrap());
    })
    .await
    .unwrap();
    let issue = "/api/v1/token/issue";
    let body = r#"{"subject": "test-user"}"#;
    let authorization = basic("c1", &env.secret);
    let reference = raw(&env.app, issue, &[("authorization", &authorization)], body).await;
    assert_eq!(reference.0, 403);
    let prefix = &TOKEN[..TOKEN.len() - 1];
    let longer = format!("{TOKEN}x");
    let mut flipped = TOKEN.to_owned().into_bytes();
    flipped[0] ^= 1;
    let flipped = String::from_utf8(flipped).unwrap();
    for wrong in ["", "x", prefix, longer.as_str(), flipped.as_str()] {
        let got = raw(
            &env.app,
            issue,
            &[
                ("authorization", &authorization),
                (identity_protocol::headers::INTERNAL_TOKEN, wrong),
            ],
            body,
        )
        .await;
        assert_eq!(got, reference, "internal token {wrong:?}");
    }
    let ok = raw(
        &env.app,
        issue,
        &[
            ("authorization", &authorization),
            (identity_protocol::headers::INTERNAL_TOKEN, TOKEN),
        ],
        body,
    )
    .await;
    assert_eq!(ok.0, 200);
}

#[test]
fn internal_token_comparison_is_exact_whatever_the_length() {
    const TOKEN: &str = "s3cret-token-4b8e1f7a0c92d635";
    let token = InternalToken::new(TOKEN).unwrap();
    assert!(token.matches(TOKEN.as_bytes()));
    let prefix = &TOKEN[..TOKEN.len() - 1];
    let (spaced, nul, upper) = (
        format!("{TOKEN} "),
        format!("{TOKEN}\0"),
        TOKEN.replacen('s', "S", 1),
    );
    for wrong in ["", "s", prefix, &spaced, &nul, &upper] {
        assert!(!token.matches(wrong.as_bytes()), "{wrong:?}");
    }
}

#[test]
fn verifier_comparison_is_exact_and_bound_to_the_client() {
    let key = Key32::random();
    let v = verifier(&key, "c1", "secret");
    assert!(verifier_matches(&v, &v));
    // Bound to the client id and to the key; a verifier of another length never matches.
    assert!(!verifier_matches(&verifier(&key, "c2", "secret"), &v));
    assert!(!verifier_matches(&verifier(&key, "c1", "secreT"), &v));
    assert!(!verifier_matches(
        &verifier(&Key32::random(), "c1", "secret"),
        &v
    ));
    assert!(!verifier_matches(&v, &v[..31]));
    assert!(!verifier_matches(&v, &[]));
    let mut longer = v.to_vec();
    longer.push(0);
    assert!(!verifier_matches(&v, &longer));
    // "c1" + 0x00 + "secret" is not "c1\0s" + 0x00 + "ecret": the separator cannot be forged
    // by a client id, which may not contain 0x00 (clients::valid_client_id).
    assert!(!identity_api::clients::valid_client_id("c1\0s"));
}
