//! API keys: /credentials/api-key/validate and /credentials/api-key/rotate, every refusal, the
//! rotation window of the owner's password and the overlap of a rotation by a clock the test
//! moves, tenants kept apart, the operator's revoke and rotate, and `last_used_at` written in
//! batches rather than per validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, TestEnv, assert_error, basic, primary, send_raw};
use identity_api::clients::{self, NewClient};
use identity_api::storage::{RoleRow, TenantId, UserChange, UserRow};
use identity_api::users::api_keys::{self, ApiKey, KeyChangeError};
use identity_api::users::{self, NewUser};
use serde_json::{Value, json};

const VALIDATE: &str = "/credentials/api-key/validate";
const ROTATE: &str = "/credentials/api-key/rotate";
const DAY: i64 = 86_400;

both!(
    a_key_validates_to_its_owner,
    refused_keys_are_inactive_and_audited,
    client_and_body_errors,
    a_password_past_its_window_refuses_the_keys,
    rotation_without_overlap,
    rotation_with_overlap,
    rotation_with_a_supplied_key,
    operator_list_revoke_and_rotate,
    last_used_is_written_in_batches,
    a_revocation_elsewhere_reaches_the_cache_within_its_ttl,
);

async fn env(b: Backend, overlap: i64, rotation_days: Option<i64>) -> Option<TestEnv> {
    let env = TestEnv::with(b, |s| {
        s.api_key_overlap_secs = overlap;
        s.password_rotation_days = rotation_days;
    })
    .await?;
    let db = env.state.db();
    for (role, scopes) in [
        ("viewer", "orders.read"),
        ("admin", "orders.write orders.read"),
    ] {
        let row = RoleRow {
            tenant_id: primary().clone(),
            role: role.into(),
            scopes: scopes.into(),
            updated_at: 0,
        };
        db.set_role(&row, |_| audit_stub()).await.unwrap();
    }
    Some(env)
}

fn audit_stub() -> identity_api::storage::AuditRow {
    identity_api::storage::AuditRow::admin(
        0,
        identity_api::storage::AdminEvent::RoleSet,
        "test",
        primary(),
        None,
        json!({}),
    )
}

async fn user(env: &TestEnv, tenant: &TenantId, name: &str, roles: &str) -> UserRow {
    let new = NewUser {
        tenant,
        username: name,
        email: None,
        display_name: None,
        roles,
    };
    let now = env.state.settings().clock.now();
    users::create(
        env.state.db(),
        new,
        Some("$argon2id$stub".into()),
        &common::operator(),
        now,
    )
    .await
    .unwrap()
}

async fn key_for(env: &TestEnv, user: &UserRow) -> ApiKey {
    let now = env.state.settings().clock.now();
    api_keys::create(
        env.state.db(),
        env.state.credential_key(),
        user,
        &common::operator(),
        now,
    )
    .await
    .unwrap()
}

async fn call(env: &TestEnv, path: &str, auth: &str, body: Value) -> (StatusCode, Value) {
    env.post(path, &[("authorization", auth)], &body.to_string())
        .await
}

async fn validate(env: &TestEnv, key: &str) -> (StatusCode, Value) {
    call(
        env,
        VALIDATE,
        &basic("c1", &env.secret),
        json!({ "api_key": key }),
    )
    .await
}

async fn active(env: &TestEnv, key: &str) -> bool {
    let (status, body) = validate(env, key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    match body["active"].as_bool().unwrap() {
        true => true,
        false => {
            assert_eq!(body, json!({ "active": false }));
            false
        }
    }
}

async fn refusals(env: &TestEnv, event: &str) -> Vec<Value> {
    common::audit_rows(env.state.db())
        .await
        .into_iter()
        .filter(|r| r.event == event && r.outcome == "refused")
        .map(|r| serde_json::from_str(r.detail.as_deref().unwrap()).unwrap())
        .collect()
}

async fn a_key_validates_to_its_owner(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "Alice", "viewer admin ghost").await;
    let key = key_for(&env, &alice).await;
    assert!(key.expose().starts_with("isk_"));
    for _ in 0..2 {
        // The second answer comes from the cache, and is the same.
        let (status, headers, body) = send_raw(
            &env.app,
            "POST",
            VALIDATE,
            &[
                ("content-type", "application/json"),
                ("authorization", &basic("c1", &env.secret)),
            ],
            json!({ "api_key": key.expose() }).to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(
            body,
            json!({
                "active": true, "user_id": alice.user_id, "username": "Alice",
                "tenant": "primary", "roles": ["viewer", "admin", "ghost"],
                "scopes": ["orders.read", "orders.write"], "password_expires_at": null,
                "key_id": key.key_id(), "expires_at": null,
            })
        );
    }
    // Any client of the tenant may ask; the tenant header may name it.
    let (status, body) = env
        .post(
            VALIDATE,
            &[
                ("authorization", &basic("c2", &env.secret2)),
                ("x-tenant-id", "primary"),
            ],
            &json!({ "api_key": key.expose() }).to_string(),
        )
        .await;
    assert_eq!((status, &body["active"]), (StatusCode::OK, &json!(true)));
    // A success writes no audit row.
    assert!(refusals(&env, "api_key_validate").await.is_empty());
}

async fn refused_keys_are_inactive_and_audited(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let bob = user(&env, primary(), "bob", "viewer").await;
    let key = key_for(&env, &alice).await;
    let secret_part = &key.expose()[17..];

    // Malformed, unknown, and a wrong secret for a key id that exists.
    assert!(!active(&env, "not a key").await);
    assert!(!active(&env, "").await);
    assert!(!active(&env, &format!("isk_AAAAAAAAAAAA_{secret_part}")).await);
    assert!(!active(&env, &format!("isk_AAAAAAAAAAAA_{secret_part}")).await);
    let other = ApiKey::generate();
    let wrong = format!("isk_{}_{}", key.key_id(), &other.expose()[17..]);
    assert!(!active(&env, &wrong).await);

    // A revoked key; a key of a disabled user.
    let revoked = key_for(&env, &alice).await;
    let now = env.state.settings().clock.now();
    api_keys::revoke(
        env.state.db(),
        primary(),
        revoked.key_id(),
        &common::operator(),
        now,
    )
    .await
    .unwrap();
    assert!(!active(&env, revoked.expose()).await);
    let bobs = key_for(&env, &bob).await;
    let change = UserChange {
        enabled: Some(false),
        ..UserChange::default()
    };
    env.state
        .db()
        .update_user(primary(), &bob.user_id, change, now, |_| audit_stub())
        .await
        .unwrap();
    assert!(!active(&env, bobs.expose()).await);

    // A key of another tenant is not found, with or without the tenant header.
    let acme = TenantId::new("acme").unwrap();
    common::create_tenant(
        &env.state,
        identity_api::service::state::default_tenant_row(&acme, now),
    )
    .await;
    let a1 = clients::create(
        env.state.db(),
        env.state.verifier_key(),
        "a1",
        NewClient::new(&acme, "orders.read", "orders-api"),
        &common::operator(),
        now,
    )
    .await
    .unwrap();
    // What `serve` does every second: the new tenant's clients can authenticate.
    env.state.reload_keys().await.unwrap();
    let acme_auth = basic("a1", a1.expose());
    let body = json!({ "api_key": key.expose() });
    assert_eq!(
        call(&env, VALIDATE, &acme_auth, body.clone()).await,
        (StatusCode::OK, json!({ "active": false }))
    );
    let carol = user(&env, &acme, "carol", "").await;
    let carols = key_for(&env, &carol).await;
    assert!(!active(&env, carols.expose()).await);
    let (status, body) = call(
        &env,
        VALIDATE,
        &acme_auth,
        json!({ "api_key": carols.expose() }),
    )
    .await;
    assert_eq!(
        (status, &body["username"]),
        (StatusCode::OK, &json!("carol"))
    );
    // c1 naming acme in the header is refused as an unknown client.
    let (status, body) = env
        .post(
            VALIDATE,
            &[
                ("authorization", &basic("c1", &env.secret)),
                ("x-tenant-id", "acme"),
            ],
            &json!({ "api_key": carols.expose() }).to_string(),
        )
        .await;
    assert_error(&(status, body), 401, "invalid_client");

    // Audited once per client, reason and key within the window, never with the key.
    let rows = refusals(&env, "api_key_validate").await;
    let reasons: Vec<&str> = rows.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        [
            "malformed",
            "unknown",
            "wrong_secret",
            "revoked",
            "user_disabled",
            "unknown" // a1's; c1's second unknown key is counted in its next row
        ],
        "{rows:?}"
    );
    assert_eq!(rows[2]["key_id"], key.key_id());
    assert_eq!(rows[1]["key_id"], Value::Null);
    assert_eq!(rows[5]["not_audited_before"], 0);
    let all = format!("{:?}", common::audit_rows(env.state.db()).await);
    for secret in [key.expose(), secret_part, revoked.expose(), bobs.expose()] {
        assert!(!all.contains(secret));
    }
    // Past the window, the next refusal is written with the count of those it skipped.
    env.state.settings().clock.advance(61);
    assert!(!active(&env, "still not a key").await);
    let rows = refusals(&env, "api_key_validate").await;
    assert_eq!(rows.last().unwrap()["reason"], "malformed");
    assert_eq!(rows.last().unwrap()["not_audited_before"], 1);
}

async fn client_and_body_errors(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let key = key_for(&env, &alice).await;
    let body = json!({ "api_key": key.expose() }).to_string();
    for path in [VALIDATE, ROTATE] {
        // No client, a wrong secret, an unknown client: 401 with the Basic challenge.
        let (status, headers, answer) = send_raw(
            &env.app,
            "POST",
            path,
            &[("content-type", "application/json")],
            body.clone().into_bytes(),
        )
        .await;
        assert_error(&(status, answer), 401, "invalid_client");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        for auth in [
            basic("c1", "wrong"),
            basic("nobody", &env.secret),
            "Bearer x".into(),
        ] {
            assert_error(
                &env.post(path, &[("authorization", &auth)], &body).await,
                401,
                "invalid_client",
            );
        }
        let auth = basic("c1", &env.secret);
        // Bodies: not JSON, not an object, a field missing or of the wrong type (never quoted).
        let bad = env.post(path, &[("authorization", &auth)], "{").await;
        assert_error(&bad, 400, "invalid_request");
        let bad = env.post(path, &[("authorization", &auth)], "[]").await;
        assert_error(&bad, 400, "invalid_request");
        let bad = env.post(path, &[("authorization", &auth)], "{}").await;
        assert_error(&bad, 400, "invalid_request");
        assert!(
            bad.1["error_description"]
                .as_str()
                .unwrap()
                .contains("api_key")
        );
        let bad = call(&env, path, &auth, json!({ "api_key": 42 })).await;
        assert_error(&bad, 400, "invalid_request");
        assert!(!bad.1.to_string().contains("42"));
        // Too large; another method.
        let big = json!({ "api_key": "x".repeat(70_000) }).to_string();
        assert_error(
            &env.post(path, &[("authorization", &auth)], &big).await,
            413,
            "payload_too_large",
        );
        assert_error(&env.get(path).await, 405, "method_not_allowed");
    }
    let bad = call(
        &env,
        ROTATE,
        &basic("c1", &env.secret),
        json!({ "api_key": key.expose(), "new_key": 7 }),
    )
    .await;
    assert_error(&bad, 400, "invalid_request");
}

async fn a_password_past_its_window_refuses_the_keys(b: Backend) {
    let Some(env) = env(b, 0, Some(30)).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let key = key_for(&env, &alice).await;
    let changed = alice.password_changed_at.unwrap();
    let (status, body) = validate(&env, key.expose()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["password_expires_at"], changed + 30 * DAY);

    // A user without a password: its keys never expire by it.
    let svc = users::create(
        env.state.db(),
        NewUser {
            tenant: primary(),
            username: "svc",
            email: None,
            display_name: None,
            roles: "",
        },
        None,
        &common::operator(),
        changed,
    )
    .await
    .unwrap();
    let svc_key = key_for(&env, &svc).await;

    env.state.settings().clock.advance(30 * DAY);
    let auth = basic("c1", &env.secret);
    let refused = validate(&env, key.expose()).await;
    assert_error(&refused, 403, "password_expired");
    let refused = call(&env, ROTATE, &auth, json!({ "api_key": key.expose() })).await;
    assert_error(&refused, 403, "password_expired");
    assert!(active(&env, svc_key.expose()).await);
    let rows = refusals(&env, "api_key_validate").await;
    assert_eq!(rows[0]["reason"], "password_expired");
    assert_eq!(
        refusals(&env, "api_key_rotate").await[0]["reason"],
        "password_expired"
    );

    // A new password opens them again.
    let now = env.state.settings().clock.now();
    env.state
        .db()
        .set_user_password(
            primary(),
            &alice.user_id,
            "$argon2id$new",
            now,
            false,
            &audit_stub(),
        )
        .await
        .unwrap();
    env.state
        .settings()
        .clock
        .advance(identity_api::service::api_keys::ApiKeys::TTL_SECS);
    assert!(active(&env, key.expose()).await);
}

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
    for weak in [
        "short",
        &"a".repeat(40),
        &"aB".repeat(30),
        "isk_AAAAAAAAAAAA_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
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
    let chosen = "Zq3_vW9-kLmN2pR7sT1uXy4zAb6cDe8fGh0jK5";
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

async fn operator_list_revoke_and_rotate(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let db = env.state.db();
    let by = common::operator();
    let alice = user(&env, primary(), "alice", "viewer").await;
    let first = key_for(&env, &alice).await;
    let second = key_for(&env, &alice).await;
    let now = env.state.settings().clock.now();
    let listed = db.api_keys_of(primary(), &alice.user_id).await.unwrap();
    let mut ids: Vec<&str> = listed.iter().map(|k| k.key_id.as_str()).collect();
    ids.sort_unstable();
    let mut want = [first.key_id(), second.key_id()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(!format!("{listed:?}").contains(&first.expose()[17..]));

    api_keys::revoke(db, primary(), first.key_id(), &by, now)
        .await
        .unwrap();
    let err = api_keys::revoke(db, primary(), first.key_id(), &by, now)
        .await
        .unwrap_err();
    assert!(matches!(err, KeyChangeError::Revoked(_)), "{err}");
    let err = api_keys::revoke(db, primary(), "AAAAAAAAAAAA", &by, now)
        .await
        .unwrap_err();
    assert!(matches!(err, KeyChangeError::NotFound { .. }), "{err}");
    let err = api_keys::revoke(
        db,
        &TenantId::new("acme").unwrap(),
        second.key_id(),
        &by,
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KeyChangeError::NotFound { .. }), "{err}");
    let err = api_keys::rotate(
        db,
        env.state.credential_key(),
        primary(),
        first.key_id(),
        None,
        &by,
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KeyChangeError::Revoked(_)), "{err}");

    let third = api_keys::rotate(
        db,
        env.state.credential_key(),
        primary(),
        second.key_id(),
        Some(600),
        &by,
        now,
    )
    .await
    .unwrap();
    assert!(active(&env, third.expose()).await);
    assert!(active(&env, second.expose()).await);
    let err = api_keys::rotate(
        db,
        env.state.credential_key(),
        primary(),
        second.key_id(),
        None,
        &by,
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KeyChangeError::Replaced(_)), "{err}");
    let row = db
        .api_key(primary(), second.key_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.expires_at, Some(now + 600));
    let events: Vec<String> = common::audit_rows(db)
        .await
        .into_iter()
        .filter(|r| r.event.starts_with("api_key_") && r.actor.is_some())
        .map(|r| r.event)
        .collect();
    assert_eq!(
        events,
        [
            "api_key_create",
            "api_key_create",
            "api_key_revoke",
            "api_key_rotate"
        ]
    );
}

async fn last_used_is_written_in_batches(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let db = env.state.db();
    let alice = user(&env, primary(), "alice", "viewer").await;
    let keys = [key_for(&env, &alice).await, key_for(&env, &alice).await];
    let last_used = async |key: &ApiKey| {
        db.api_key(primary(), key.key_id())
            .await
            .unwrap()
            .unwrap()
            .last_used_at
    };
    let t0 = env.state.settings().clock.now();
    for _ in 0..3 {
        assert!(active(&env, keys[0].expose()).await);
    }
    assert!(active(&env, keys[1].expose()).await);
    // No write per validation: nothing is in the database until the batch is written.
    assert_eq!(last_used(&keys[0]).await, None);
    assert_eq!(db.flush_api_key_uses().await.unwrap(), 2);
    assert!(last_used(&keys[0]).await.unwrap() >= t0);
    assert!(last_used(&keys[1]).await.is_some());
    assert_eq!(db.flush_api_key_uses().await.unwrap(), 0);

    // A later use moves it on; an earlier one written late never moves it back.
    env.state.settings().clock.advance(100);
    assert!(active(&env, keys[0].expose()).await);
    db.flush_api_key_uses().await.unwrap();
    let later = last_used(&keys[0]).await.unwrap();
    assert!(later >= t0 + 100);
    db.record_api_key_use(keys[0].key_id(), t0);
    db.flush_api_key_uses().await.unwrap();
    assert_eq!(last_used(&keys[0]).await, Some(later));

    // Closing the database writes what is pending.
    env.state.settings().clock.advance(100);
    assert!(active(&env, keys[1].expose()).await);
    db.close().await;
    let reopened = identity_api::Db::connect(&env.url).await.unwrap();
    let row = reopened
        .api_key(primary(), keys[1].key_id())
        .await
        .unwrap()
        .unwrap();
    assert!(row.last_used_at.unwrap() >= t0 + 200);
    reopened.close().await;
}

async fn a_revocation_elsewhere_reaches_the_cache_within_its_ttl(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let key = key_for(&env, &alice).await;
    assert!(active(&env, key.expose()).await);
    // Revoked by the command line (another process): this instance's cache still answers
    // for at most ApiKeys::TTL_SECS.
    let now = env.state.settings().clock.now();
    api_keys::revoke(
        env.state.db(),
        primary(),
        key.key_id(),
        &common::operator(),
        now,
    )
    .await
    .unwrap();
    assert!(active(&env, key.expose()).await);
    env.state
        .settings()
        .clock
        .advance(identity_api::service::api_keys::ApiKeys::TTL_SECS);
    assert!(!active(&env, key.expose()).await);
}

both!(cli);

async fn cli(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let with = |args: &[&str]| {
        let mut c = common::cmd(args);
        c.env("IDENTITY_KEY_ENCRYPTION_KEY", &env.kek)
            .env("IDENTITY_DATABASE_URL", &env.url);
        c
    };
    let ok = |args: &[&str]| {
        let (ok, out, err) = common::run(&mut with(args));
        assert!(ok, "{args:?}: {err}");
        assert!(!err.contains("isk_"), "{err}");
        out
    };
    let refused = |args: &[&str]| {
        let (ok, out, err) = common::run(&mut with(args));
        assert!(!ok, "{args:?} succeeded: {out}");
        err
    };

    let created: Value =
        serde_json::from_str(ok(&["api-key", "create", "--user", "ALICE", "--json"]).trim())
            .unwrap();
    let key = created["api_key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    assert_eq!(created["user_id"], alice.user_id);
    assert_eq!(created["tenant"], "primary");
    assert!(active(&env, &key).await);
    let text = ok(&["api-key", "create", "--user", "alice"]);
    assert!(
        text.contains("api_key: isk_") && text.contains("shown once"),
        "{text}"
    );

    let listed = ok(&["api-key", "list", "--user", "alice", "--json"]);
    assert!(!listed.contains(&key[17..]));
    let first: Value = listed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|k| k["key_id"] == key_id.as_str())
        .unwrap();
    assert_eq!(listed.lines().count(), 2);
    assert_eq!(first["state"], "active");
    assert_eq!(first["last_used_at"], Value::Null);

    let rotated: Value = serde_json::from_str(
        ok(&["api-key", "rotate", &key_id, "--overlap", "10m", "--json"]).trim(),
    )
    .unwrap();
    let new = rotated["api_key"].as_str().unwrap();
    assert!(rotated["previous_key_expires_at"].as_i64().unwrap() > identity_api::now() + 590);
    assert!(active(&env, new).await);
    let text = ok(&["api-key", "list", "--user", "alice"]);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&key_id) && l.contains("\treplaced\t")),
        "{text}"
    );

    let new_id = rotated["key_id"].as_str().unwrap();
    let out = ok(&["api-key", "revoke", new_id]);
    assert!(out.contains("revoked"), "{out}");
    let err = refused(&["api-key", "revoke", new_id]);
    assert!(
        err.contains(&format!("API key {new_id} is revoked")),
        "{err}"
    );
    let err = refused(&["api-key", "rotate", &key_id]);
    assert!(err.contains("replaced by a rotation"), "{err}");
    let err = refused(&["api-key", "rotate", "AAAAAAAAAAAA"]);
    assert!(
        err.contains("tenant primary has no API key AAAAAAAAAAAA"),
        "{err}"
    );
    let err = refused(&["api-key", "create", "--user", "nobody"]);
    assert!(err.contains("has no user nobody"), "{err}");
    let err = refused(&["api-key", "list", "--user", "alice", "--tenant", "nope"]);
    assert!(err.contains("has no user alice"), "{err}");
    let err = refused(&["api-key", "rotate", &key_id, "--overlap", "0"]);
    assert!(err.contains("at least 1 second"), "{err}");
    let events: Vec<String> = common::audit_rows(env.state.db())
        .await
        .into_iter()
        .filter(|r| r.event.starts_with("api_key_"))
        .map(|r| r.event)
        .collect();
    assert_eq!(
        events,
        [
            "api_key_create",
            "api_key_create",
            "api_key_rotate",
            "api_key_revoke"
        ]
    );
}
