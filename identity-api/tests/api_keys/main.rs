//! API keys: /credentials/api-key/validate and /credentials/api-key/rotate, every refusal, the
//! rotation window of the owner's password and the overlap of a rotation by a clock the test
//! moves, tenants kept apart, the operator's commands, and `last_used_at` written in batches
//! rather than per validation. Here the validation; [`rotation`] and [`operator`] the rest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
mod operator;
mod rotation;

use axum::http::StatusCode;
use common::{Backend, TestEnv, assert_error, basic, primary, send_raw};
use identity_api::clients::{self, NewClient};
use identity_api::storage::{RoleRow, TenantId, UserChange, UserRow};
use identity_api::users::api_keys::{self, ApiKey};
use identity_api::users::{self, NewUser};
use serde_json::{Value, json};

pub(crate) const VALIDATE: &str = "/credentials/api-key/validate";
pub(crate) const ROTATE: &str = "/credentials/api-key/rotate";
const DAY: i64 = 86_400;

both!(
    a_key_validates_to_its_owner,
    refused_keys_are_inactive_and_audited,
    client_and_body_errors,
    a_password_past_its_window_refuses_the_keys,
);

pub(crate) async fn env(b: Backend, overlap: i64, rotation_days: Option<i64>) -> Option<TestEnv> {
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

pub(crate) fn audit_stub() -> identity_api::storage::AuditRow {
    identity_api::storage::AuditRow::admin(
        0,
        identity_api::storage::AdminEvent::RoleSet,
        "test",
        primary(),
        None,
        json!({}),
    )
}

pub(crate) async fn user(env: &TestEnv, tenant: &TenantId, name: &str, roles: &str) -> UserRow {
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

pub(crate) async fn key_for(env: &TestEnv, user: &UserRow) -> ApiKey {
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

pub(crate) async fn call(
    env: &TestEnv,
    path: &str,
    auth: &str,
    body: Value,
) -> (StatusCode, Value) {
    env.post(path, &[("authorization", auth)], &body.to_string())
        .await
}

pub(crate) async fn validate(env: &TestEnv, key: &str) -> (StatusCode, Value) {
    call(
        env,
        VALIDATE,
        &basic("c1", &env.secret),
        json!({ "api_key": key }),
    )
    .await
}

pub(crate) async fn active(env: &TestEnv, key: &str) -> bool {
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

pub(crate) async fn refusals(env: &TestEnv, event: &str) -> Vec<Value> {
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
    // On a session bound to a user (the sidecar's X-Session-Subject), another user's key is
    // inactive and cannot be rotated; the user's own is as above.
    for (subject, active) in [(alice.user_id.as_str(), true), ("someone-else", false)] {
        let (status, body) = env
            .post(
                VALIDATE,
                &[
                    ("authorization", &basic("c1", &env.secret)),
                    ("x-session-subject", subject),
                ],
                &json!({ "api_key": key.expose() }).to_string(),
            )
            .await;
        assert_eq!((status, &body["active"]), (StatusCode::OK, &json!(active)));
    }
    let (status, body) = env
        .post(
            ROTATE,
            &[
                ("authorization", &basic("c1", &env.secret)),
                ("x-session-subject", "someone-else"),
            ],
            &json!({ "api_key": key.expose() }).to_string(),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (403, Some("subject_mismatch"))
    );
    assert!(active(&env, key.expose()).await);
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
    // A refusal of a key that exists names its owner as the subject; of one that does not, none.
    let rows = common::audit_rows(env.state.db()).await;
    let subjects: Vec<Option<&str>> = rows
        .iter()
        .filter(|r| r.event == "api_key_validate")
        .map(|r| r.subject.as_deref())
        .collect();
    let (a, b) = (Some(alice.user_id.as_str()), Some(bob.user_id.as_str()));
    assert_eq!(subjects, [None, None, a, a, b, None]);
    let all = format!("{rows:?}");
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
    // A tenant header naming no tenant, or not a slug.
    for (tenant, status, code) in [
        ("nope", 404, "unknown_tenant"),
        ("Not A Slug", 400, "invalid_request"),
    ] {
        let headers = [
            ("authorization", basic("c1", &env.secret)),
            ("x-tenant-id", tenant.to_owned()),
        ];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_error(&env.post(VALIDATE, &headers, &body).await, status, code);
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
