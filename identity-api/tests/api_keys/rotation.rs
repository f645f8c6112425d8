//! Rotation by the key's owner: without and with an overlap, with a supplied key, at once.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::common::{self, Backend, TestEnv, assert_error, basic, primary, send_raw};
use super::{ROTATE, active, call, env, key_for, refusals, user, validate};
use identity_api::users::api_keys::ApiKey;

crate::both!(
    rotation_without_overlap,
    rotation_with_overlap,
    rotation_with_a_supplied_key,
    concurrent_rotations_of_one_key,
);

async fn rotation_without_overlap(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let old = key_for(&env, &alice).await;
    assert!(active(&env, old.expose()).await); // cached now
    let auth = basic("c1", &env.secret);
    let (status, headers, body) = send_raw(
        &env.app,
        "POST",
        ROTATE,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        json!({ "api_key": old.expose() }).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let new = body["api_key"].as_str().unwrap().to_owned();
    assert_eq!(ApiKey::parse(&new).unwrap().key_id(), body["key_id"]);
    assert_eq!(body["previous_key_expires_at"], Value::Null);
    assert_ne!(body["key_id"], old.key_id());
    // The old key stops at once, though it was cached; the new one works.
    assert!(!active(&env, old.expose()).await);
    assert!(active(&env, &new).await);
    let again = call(&env, ROTATE, &auth, json!({ "api_key": old.expose() })).await;
    assert_error(&again, 401, "invalid_api_key");
    let garbage = call(&env, ROTATE, &auth, json!({ "api_key": "garbage" })).await;
    assert_error(&garbage, 401, "invalid_api_key");
    let rows = common::audit_rows(env.state.db()).await;
    let rotated = rows
        .iter()
        .find(|r| r.event == "api_key_rotate" && r.outcome == "rotated")
        .unwrap();
    assert_eq!(rotated.client_id.as_deref(), Some("c1"));
    assert_eq!(rotated.subject.as_deref(), Some(alice.user_id.as_str()));
    assert!(!format!("{rows:?}").contains(&new[17..]));
    let reasons: Vec<Value> = refusals(&env, "api_key_rotate")
        .await
        .into_iter()
        .map(|r| r["reason"].clone())
        .collect();
    assert_eq!(reasons, [json!("revoked"), json!("malformed")]);
}

async fn rotation_with_overlap(b: Backend) {
    let Some(env) = env(b, 600, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let old = key_for(&env, &alice).await;
    let auth = basic("c1", &env.secret);
    let now = env.state.settings().clock.now();
    let (status, body) = call(&env, ROTATE, &auth, json!({ "api_key": old.expose() })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let until = body["previous_key_expires_at"].as_i64().unwrap();
    assert!((now + 600..=now + 601).contains(&until), "{until}");
    let new = body["api_key"].as_str().unwrap().to_owned();
    // Both work during the overlap; the old one says until when.
    let (_, answer) = validate(&env, old.expose()).await;
    assert_eq!(
        (answer["active"].clone(), answer["expires_at"].as_i64()),
        (json!(true), Some(until))
    );
    assert!(active(&env, &new).await);
    // The old key cannot be rotated again: its successor is the one to rotate.
    let again = call(&env, ROTATE, &auth, json!({ "api_key": old.expose() })).await;
    assert_error(&again, 400, "invalid_request");
    // Past the overlap only the new one works.
    env.state.settings().clock.advance(until - now);
    assert!(!active(&env, old.expose()).await);
    assert!(active(&env, &new).await);
    assert_eq!(
        refusals(&env, "api_key_validate").await[0]["reason"],
        "expired"
    );
}

async fn rotation_with_a_supplied_key(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let old = key_for(&env, &alice).await;
    let auth = basic("c1", &env.secret);
    // Too short, guessable, of another form, or the key being replaced (whoever holds it would
    // hold the new one too: its key_id is public).
    let held = old.expose()[17..].to_owned();
    for weak in [
        "short",
        &"a".repeat(40),
        &"aB".repeat(30),
        "abcdefghijklmnopqrstuvwxyzABCDEF",
        "isk_AAAAAAAAAAAA_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        &held,
        old.expose(),
    ] {
        let refused = call(
            &env,
            ROTATE,
            &auth,
            json!({ "api_key": old.expose(), "new_key": weak }),
        )
        .await;
        assert_error(&refused, 400, "invalid_request");
        assert!(!refused.1.to_string().contains(weak), "{}", refused.1);
        assert!(
            active(&env, old.expose()).await,
            "a refused rotation changes nothing"
        );
    }
    // 32 random hex digits (128 bits) are enough.
    let chosen = "9f86d081884c7d659a2feaa0c55ad015";
    let (status, body) = call(
        &env,
        ROTATE,
        &auth,
        json!({ "api_key": old.expose(), "new_key": chosen }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = body["api_key"].as_str().unwrap();
    assert!(
        new.starts_with("isk_") && new.ends_with(&format!("_{chosen}")),
        "{new}"
    );
    assert!(active(&env, new).await);
    assert!(!active(&env, old.expose()).await);
}

async fn concurrent_rotations_of_one_key(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let old = key_for(&env, &alice).await;
    let auth = basic("c1", &env.secret);
    let body = json!({ "api_key": old.expose() });
    let answers = futures_join(&env, &auth, &body).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| s.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{answers:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 400, 401].contains(s)),
        "{answers:?}"
    );
    let live: Vec<_> = env
        .state
        .db()
        .api_keys_of(primary(), &alice.user_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .collect();
    assert_eq!(live.len(), 1);
}

/// Four rotations of the same key at once.
async fn futures_join(env: &TestEnv, auth: &str, body: &Value) -> Vec<(StatusCode, Value)> {
    let calls = (0..4).map(|_| {
        let app = env.app.clone();
        let headers = [("authorization".to_owned(), auth.to_owned())];
        let body = body.to_string().into_bytes();
        tokio::spawn(async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            common::send(&app, "POST", ROTATE, &headers, body).await
        })
    });
    let mut answers = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        answers.push(call.await.unwrap());
    }
    answers
}
