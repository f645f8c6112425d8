//! The password grant (RFC 6749 section 4.3) at /oauth/token and /api/v1/token/password: the
//! user's id as subject, its roles and their scopes within the client's, refresh keeping the
//! roles; every error; no user enumeration (unknown, disabled, password-less and wrong answer
//! the same bytes, the unknown ones verified against the dummy hash); the rotation window by a
//! clock the test moves; the hash upgraded at login; password rotation. On SQLite and
//! PostgreSQL. The lockout: `login_lockout.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod login_common;

use common::oauth::{assert_no_store, claims, enc};
use common::{Backend, primary};
use login_common::{PASSWORD, assert_err, assert_ok, cheap_policy, hash_with, setup};
use serde_json::json;

const ROTATE: &str = "/credentials/password/rotate";

async fn grants_carry_the_user_its_roles_and_their_scopes(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let before = t.now();
    let answer = t.login("10.0.0.1", "Alice", PASSWORD).await;
    let body = assert_ok(&answer).clone();
    assert_no_store(&answer);
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c.sub, t.alice.user_id);
    assert_eq!(c.roles.as_deref().unwrap(), ["reader", "writer", "admin"]);
    // admin.all is the user's but not the client's.
    assert_eq!(body["scope"], "orders.read orders.write");
    assert!(t.user("alice").await.last_login_at.unwrap() >= before);
    // A refresh keeps the roles.
    let refresh = body["refresh_token"].as_str().unwrap();
    let answer = t
        .oauth(
            "10.0.0.1",
            &format!("grant_type=refresh_token&refresh_token={}", enc(refresh)),
        )
        .await;
    let rotated = claims(assert_ok(&answer)["access_token"].as_str().unwrap());
    assert_eq!(rotated.roles, c.roles);
    assert_eq!(rotated.sub, t.alice.user_id);

    // The sealed route: always a refresh token; the scope narrowed.
    let answer = t
        .sealed(
            "10.0.0.1",
            &json!({"username": "alice", "password": PASSWORD, "scope": "orders.read"}),
        )
        .await;
    let body = assert_ok(&answer);
    assert_eq!(body["scope"], "orders.read");
    assert!(body["refresh_token"].is_string());
    // The refresh of /api/v1/token keeps the roles too.
    let (status, refreshed) = t
        .env
        .post(
            "/api/v1/token",
            &[
                (
                    "authorization",
                    &format!("Bearer {}", body["access_token"].as_str().unwrap()),
                ),
                ("x-internal-token", login_common::TOKEN),
            ],
            &json!({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
                .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    let c = claims(refreshed["access_token"].as_str().unwrap());
    assert_eq!(c.roles.as_deref().unwrap(), ["reader", "writer", "admin"]);
    let rows = common::audit_rows(t.env.state.db()).await;
    assert!(rows.iter().any(|r| r.event == "login"
        && r.outcome == "success"
        && r.subject.as_deref() == Some(t.alice.user_id.as_str())));
}

async fn every_error_of_the_grant(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let ip = "10.0.1.1";
    let form = |extra: &str| {
        format!(
            "grant_type=password&username=alice&password={}{extra}",
            enc(PASSWORD)
        )
    };
    let verifications = t.env.state.logins().verifications();
    // A client without the password grant (c2), on both routes.
    let c2 = ("c2", t.env.secret2.as_str());
    let answer = t
        .json_as(
            c2,
            "/api/v1/token/password",
            ip,
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_err(&answer, 400, "unauthorized_client", "password grant");
    let answer = t.oauth_as(c2, ip, &form("")).await;
    assert_err(&answer, 400, "unauthorized_client", "password grant");
    // A wrong client secret.
    let answer = t
        .json_as(("c1", "wrong"), "/api/v1/token/password", ip, &json!({}))
        .await;
    assert_err(&answer, 401, "invalid_client", "");
    // Missing or malformed fields.
    for (body, says) in [
        (json!({"password": PASSWORD}), "username is required"),
        (json!({"username": "alice"}), "password is required"),
        (
            json!({"username": "alice", "password": ""}),
            "password is required",
        ),
        (
            json!({"username": "alice", "password": "x".repeat(1025)}),
            "longer than 1024",
        ),
        (json!({"username": 7, "password": PASSWORD}), "`username`"),
    ] {
        let answer = t.sealed(ip, &body).await;
        assert_err(&answer, 400, "invalid_request", says);
        assert!(!answer.2.to_string().contains(PASSWORD));
    }
    let answer = t.oauth(ip, "grant_type=password&password=x").await;
    assert_err(&answer, 400, "invalid_request", "username is required");
    // A scope beyond the client's, an audience not the client's: refused before any hash.
    let answer = t.oauth(ip, &form("&scope=admin.all")).await;
    assert_err(&answer, 400, "invalid_scope", "not allowed for this client");
    let answer = t.oauth(ip, &form("&resource=billing-api")).await;
    assert_err(&answer, 400, "invalid_target", "resource (or audience)");
    assert_eq!(t.env.state.logins().verifications(), verifications);
    // A scope of the client that the user's roles do not grant.
    let hash = hash_with(&t.env.state.settings().passwords, PASSWORD).await;
    login_common::create_user(&t.env, "rita", "reader", Some(hash)).await;
    let answer = t
        .oauth(
            ip,
            &format!(
                "grant_type=password&username=rita&password={}&scope=orders.write",
                enc(PASSWORD)
            ),
        )
        .await;
    assert_err(&answer, 400, "invalid_scope", "not granted to this user");
    // The sealed route needs the internal token, and honours the session's subject.
    let (status, body) = t
        .env
        .post(
            "/api/v1/token/password",
            &[("authorization", &common::basic("c1", &t.secret))],
            &json!({"username": "alice", "password": PASSWORD}).to_string(),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str()),
        (403, Some("access_denied"))
    );
    let body = json!({"username": "alice", "password": PASSWORD});
    assert_eq!(
        t.bound("/api/v1/token/password", "someone-else", &body)
            .await,
        (403, Some("subject_mismatch".into()))
    );
    // Not JSON.
    let answer = t.json("/api/v1/token/password", ip, &json!("text")).await;
    assert_err(&answer, 400, "invalid_request", "JSON object");
}

/// Unknown user, disabled user, user without a password, wrong password: the same status,
/// headers and body, each after one verification (the dummy one when there is no hash).
async fn no_user_enumeration(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let hash = hash_with(&t.env.state.settings().passwords, PASSWORD).await;
    let bob = login_common::create_user(&t.env, "bob", "reader", Some(hash)).await;
    t.env
        .state
        .db()
        .update_user(
            primary(),
            &bob.user_id,
            identity_api::storage::UserChange {
                enabled: Some(false),
                ..Default::default()
            },
            t.now(),
            |_| {
                identity_api::storage::AuditRow::user_admin(
                    0,
                    identity_api::storage::AdminEvent::UserDisable,
                    "test",
                    primary(),
                    &bob.user_id,
                    json!({}),
                )
            },
        )
        .await
        .unwrap();
    login_common::create_user(&t.env, "carol", "reader", None).await;
    let logins = t.env.state.logins();
    let mut answers = Vec::new();
    for (i, (user, password, dummy)) in [
        ("nobody", PASSWORD, true),
        ("bob", PASSWORD, true),
        ("carol", PASSWORD, true),
        ("alice", "wrong password!", false),
        ("not a valid name!", PASSWORD, true),
    ]
    .into_iter()
    .enumerate()
    {
        let (stored, dummies) = logins.verifications();
        let answer = t.login(&format!("10.0.2.{i}"), user, password).await;
        assert_eq!(
            logins.verifications(),
            if dummy {
                (stored, dummies + 1)
            } else {
                (stored + 1, dummies)
            },
            "{user}"
        );
        assert_err(
            &answer,
            400,
            "invalid_grant",
            "invalid username or password",
        );
        let mut headers = answer.1.clone();
        headers.remove("date");
        answers.push((answer.0, headers, answer.2.to_string()));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // The failures are audited: by user id when one matched, by username only when none did.
    let rows = common::audit_rows(t.env.state.db()).await;
    let failures: Vec<_> = rows
        .iter()
        .filter(|r| r.event == "login" && r.outcome != "success")
        .collect();
    let outcomes: Vec<&str> = failures.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "unknown_user",
            "user_disabled",
            "no_password",
            "wrong_password",
            "unknown_user"
        ]
    );
    assert!(failures[0].detail.as_deref().unwrap().contains("nobody"));
    assert_eq!(failures[1].subject.as_deref(), Some(bob.user_id.as_str()));
    assert!(!failures[1].detail.as_deref().unwrap().contains("bob"));
    assert!(
        rows.iter()
            .all(|r| !r.detail.as_deref().unwrap_or("").contains(PASSWORD))
    );
}

async fn the_rotation_window(b: Backend) {
    let Some(t) = setup(b, |s| s.password_rotation_days = Some(30)).await else {
        return;
    };
    assert_ok(&t.login("10.0.3.1", "alice", PASSWORD).await);
    t.advance(30 * 86_400);
    let answer = t.login("10.0.3.1", "alice", PASSWORD).await;
    assert_err(&answer, 400, "invalid_grant", "");
    let description = answer.2["error_description"].as_str().unwrap();
    assert!(description.starts_with("password_expired"), "{description}");
    // A wrong password learns nothing of the age.
    let answer = t.login("10.0.3.2", "alice", "not the password").await;
    assert_err(
        &answer,
        400,
        "invalid_grant",
        "invalid username or password",
    );
    // Rotating works past the window, and opens a new one.
    let new = "a brand new passphrase";
    let answer = t
        .json(
            ROTATE,
            "10.0.3.1",
            &json!({"username": "alice", "current_password": PASSWORD, "new_password": new}),
        )
        .await;
    let body = assert_ok(&answer);
    let changed = body["password_changed_at"].as_i64().unwrap();
    assert_eq!(changed, t.now());
    assert_eq!(
        body["password_expires_at"].as_i64().unwrap(),
        changed + 30 * 86_400
    );
    assert_ok(&t.login("10.0.3.1", "alice", new).await);
    assert_err(
        &t.login("10.0.3.3", "alice", PASSWORD).await,
        400,
        "invalid_grant",
        "invalid username",
    );
}

async fn rotation_errors_and_revocation(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let t = &t;
    let ip = "10.0.4.1";
    let pair = assert_ok(&t.login(ip, "alice", PASSWORD).await).clone();
    let rotate = |body: serde_json::Value| async move { t.json(ROTATE, ip, &body).await };
    for (body, says) in [
        (
            json!({"username": "alice", "current_password": PASSWORD}),
            "new_password is required",
        ),
        (
            json!({"username": "alice", "new_password": "a long enough one"}),
            "current_password is required",
        ),
        (
            json!({"username": "alice", "current_password": PASSWORD, "new_password": "short"}),
            "new_password: the password is shorter",
        ),
        (
            json!({"username": "alice", "current_password": PASSWORD, "new_password": "my name is ALICE ok"}),
            "contains the username",
        ),
        (
            json!({"current_password": PASSWORD, "new_password": "a long enough one"}),
            "username is required",
        ),
        // The same password again would only restart the rotation window.
        (
            json!({"username": "alice", "current_password": PASSWORD, "new_password": PASSWORD}),
            "new_password: the new password is the current one",
        ),
    ] {
        assert_err(&rotate(body).await, 400, "invalid_request", says);
    }
    // On a session bound to another subject, the rotation is refused (and nothing changes).
    let body = json!({"username": "alice", "current_password": PASSWORD, "new_password": "another long one"});
    assert_eq!(
        t.bound(ROTATE, "someone-else", &body).await,
        (403, Some("subject_mismatch".into()))
    );
    let answer = rotate(json!({"username": "alice", "current_password": "wrong", "new_password": "a long enough one"})).await;
    assert_err(
        &answer,
        400,
        "invalid_grant",
        "invalid username or password",
    );
    let answer = t
        .json_as(("c2", &t.env.secret2), ROTATE, ip, &json!({}))
        .await;
    assert_err(&answer, 400, "unauthorized_client", "password grant");
    let answer = t.json_as(("c1", "nope"), ROTATE, ip, &json!({})).await;
    assert_err(&answer, 401, "invalid_client", "");
    // Without revoke_sessions the tokens live on; with it, they are revoked.
    let new = "a brand new passphrase";
    assert_ok(
        &rotate(json!({"username": "alice", "current_password": PASSWORD, "new_password": new}))
            .await,
    );
    let refresh = |token: String| async move {
        t.oauth(
            ip,
            &format!("grant_type=refresh_token&refresh_token={}", enc(&token)),
        )
        .await
    };
    let pair =
        assert_ok(&refresh(pair["refresh_token"].as_str().unwrap().to_owned()).await).clone();
    let newer = "the newest passphrase";
    assert_ok(&rotate(json!({"username": "alice", "current_password": new, "new_password": newer, "revoke_sessions": true})).await);
    assert_err(
        &refresh(pair["refresh_token"].as_str().unwrap().to_owned()).await,
        400,
        "invalid_grant",
        "",
    );
    let rows = common::audit_rows(t.env.state.db()).await;
    let rotations: Vec<_> = rows
        .iter()
        .filter(|r| r.event == "password_rotate" && r.outcome == "success")
        .collect();
    assert_eq!(rotations.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r.event == "revoke" && r.outcome == "password_changed")
    );
}

/// A hash made with other Argon2id costs is replaced at login by one of the current costs.
async fn the_hash_is_upgraded_at_login(b: Backend) {
    let Some(t) = setup(b, |_| {}).await else {
        return;
    };
    let old = hash_with(&cheap_policy(), "an old-cost passphrase").await;
    login_common::create_user(&t.env, "olga", "reader", Some(old.clone())).await;
    assert_ok(&t.login("10.4.0.1", "olga", "an old-cost passphrase").await);
    let new = t.user("olga").await.password_hash.unwrap();
    assert_ne!(new, old);
    assert!(new.contains("m=19456,t=2,p=1"), "{new}");
    assert_ok(&t.login("10.4.0.1", "olga", "an old-cost passphrase").await);
    assert_eq!(t.user("olga").await.password_hash.unwrap(), new);
}

both!(
    grants_carry_the_user_its_roles_and_their_scopes,
    every_error_of_the_grant,
    no_user_enumeration,
    the_rotation_window,
    rotation_errors_and_revocation,
    the_hash_is_upgraded_at_login,
);
