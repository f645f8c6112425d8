//! Signing-key rotation (old tokens stay verifiable, the JWKS keeps their keys; a running `serve`
//! takes up a key rotated by the CLI within its one-second reload), state surviving
//! a restart, and refusing to start with the wrong key-encryption key. Both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, TestEnv, s, state_on};
use identity_api::kek::Kek;
use identity_api::keys;
use serde_json::json;

both!(
    key_rotation_keeps_old_tokens_valid,
    a_running_server_signs_with_a_rotated_key_at_once,
    state_survives_restart,
    wrong_kek_refuses_to_start
);

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn key_rotation_keeps_old_tokens_valid(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let old = env.issue().await;
    let old_access = s(&old, "access_token");
    // A second instance that will not be told about the rotation.
    let other = state_on(&env.url, &env.kek, common::settings()).await;
    let other_app = identity_api::app(other);

    let new_kid = keys::rotate(
        env.state.db(),
        &Kek::parse(&env.kek).unwrap(),
        &common::primary_row(env.state.db()).await,
        identity_api::now(),
        &common::operator(),
    )
    .await
    .unwrap();
    assert!(env.state.reload_keys().await.unwrap());
    let new = env.issue().await;
    let new_access = s(&new, "access_token");
    assert_eq!(kid(&new_access), new_kid);
    assert_ne!(kid(&old_access), new_kid);

    let (_, jwks) = env.get("/.well-known/jwks.json").await;
    let kids: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kids.contains(&new_kid) && kids.contains(&kid(&old_access)),
        "{kids:?}"
    );

    // Old tokens still verify, as bearer and as subject of introspection; refresh works.
    assert_eq!(
        env.introspect(&new_access, &old_access).await.1["active"],
        true
    );
    assert_eq!(
        env.introspect(&old_access, &new_access).await.1["active"],
        true
    );
    let (status, _) = env.refresh(&old_access, &s(&old, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);

    // The instance that missed the rotation picks the new key up on first sight of its kid
    // (reloads are spaced by 200 ms; bounded retries).
    let mut seen = false;
    for _ in 0..50 {
        let (status, body) = common::send(
            &other_app,
            "POST",
            "/api/v1/introspect",
            &[("authorization", &format!("Bearer {new_access}"))],
            json!({"token": new_access}).to_string().into_bytes(),
        )
        .await;
        if status == StatusCode::OK {
            assert_eq!(body["active"], true);
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the second instance never accepted the new key");

    // Retired longer than an access-token lifetime ago: gone from the JWKS, but bearers signed
    // with it (possibly expired, as refresh allows) still verify within the family lifetime.
    let long_ago = identity_api::now() - 1000;
    common::exec(
        env.state.db(),
        &format!("UPDATE signing_keys SET retired_at = {long_ago} WHERE retired_at IS NOT NULL"),
    )
    .await;
    assert!(env.state.reload_keys().await.unwrap());
    let (_, jwks) = env.get("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], new_kid.as_str());
    let fresh = env.issue().await;
    let (status, _) = env.revoke(&old_access, &s(&fresh, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "old-key bearer still verifies");
}

async fn state_survives_restart(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let pair = env.issue().await;
    let access = s(&pair, "access_token");
    let (_, jwks_before) = env.get("/.well-known/jwks.json").await;
    let TestEnv {
        state,
        url,
        kek,
        secret,
        dir,
        ..
    } = env;
    state.db().close().await;
    drop(state);

    let state = state_on(&url, &kek, common::settings()).await;
    let app = identity_api::app(state);
    let (_, jwks_after) = common::send(&app, "GET", "/.well-known/jwks.json", &[], vec![]).await;
    assert_eq!(
        jwks_before, jwks_after,
        "the signing key is reused, not regenerated"
    );
    let (status, body) = common::send(
        &app,
        "POST",
        "/api/v1/token",
        &[("authorization", &format!("Bearer {access}"))],
        json!({"grant_type": "refresh_token", "refresh_token": s(&pair, "refresh_token")})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The client secret still works.
    let (status, _) = common::send(
        &app,
        "POST",
        "/api/v1/token/issue",
        &[("authorization", &common::basic("c1", &secret))],
        br#"{"subject": "u"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    drop(dir);
}

async fn wrong_kek_refuses_to_start(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let other = Kek::parse(&common::new_kek_text()).unwrap();
    let err = identity_api::AppState::open(&env.url, other, common::settings())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be decrypted"), "{err}");
}

/// `identity-api keys rotate` from another process while `serve` runs: new tokens carry the new
/// key within the server's one-second reload, and the JWKS publishes both.
async fn a_running_server_signs_with_a_rotated_key_at_once(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let server = common::ServeProcess::start(&env).await;
    let issue = || async {
        kid(&s(
            &common::issue_over_http(&server.base, &env.secret).await,
            "access_token",
        ))
    };
    let before = issue().await;
    let (ok, _, err) = common::run(
        common::cmd(&["keys", "rotate", "--database-url", &env.url])
            .env("IDENTITY_KEY_ENCRYPTION_KEY", &env.kek),
    );
    assert!(ok, "{err}");
    let mut after = before.clone();
    for _ in 0..100 {
        after = issue().await;
        if after != before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_ne!(
        after, before,
        "the server still signs with the retired key after 5 s"
    );
    let jwks: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&before.as_str()) && kids.contains(&after.as_str()),
        "{kids:?}"
    );
}
