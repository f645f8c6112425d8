//! What the tests of the password grant and of MFA share (`password_grant.rs`, `mfa.rs`): a
//! client allowed the password grant, roles, users, and requests from a chosen source address.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use identity_api::Settings;
use identity_api::storage::{AdminEvent, AuditRow, ClientChange, RoleRow, Scope, UserRow};
use identity_api::users::password::{Hasher, Password, PasswordPolicy};
use identity_api::users::{self, NewUser};
use identity_runtime::InternalToken;
use serde_json::{Value, json};

use crate::common::oauth::{Answer, FORM, enc};
use crate::common::{Backend, TestEnv, basic, operator, primary, send_raw};

/// The sidecar's token: its requests' `X-Forwarded-For` names the source.
pub const TOKEN: &str = "itok-3Jq8Zr2Lm5Vx9Nc4Rd7Tf0Yg6Kh1WaPe";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct Login {
    pub env: TestEnv,
    /// roles reader, writer, admin (admin's scope is not the client's).
    pub alice: UserRow,
    /// A client of the tenant allowed the password grant (and refresh_token): c1's secret.
    pub secret: String,
}

/// Argon2id costs far below the defaults: hashes made with them are upgraded at login.
pub fn cheap_policy() -> PasswordPolicy {
    PasswordPolicy {
        memory_kib: 1024,
        iterations: 1,
        ..PasswordPolicy::default()
    }
}

pub async fn hash_with(policy: &PasswordPolicy, password: &str) -> String {
    Hasher::new(policy)
        .unwrap()
        .hash(&Password::new(password.to_owned()).unwrap())
        .await
        .unwrap()
}

pub async fn setup(b: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Login> {
    let env = TestEnv::with(b, |s| {
        s.internal_token = Some(InternalToken::new(TOKEN).unwrap());
        tweak(s);
    })
    .await?;
    let db = env.state.db();
    let now = identity_api::now();
    let change = ClientChange {
        grant_types: Some("password refresh_token client_credentials"),
        ..ClientChange::default()
    };
    db.update_client(Scope::AnyTenant, "c1", change, |row| {
        AuditRow::admin(
            now,
            AdminEvent::ClientUpdate,
            "test",
            &row.tenant_id,
            Some("c1"),
            json!({}),
        )
    })
    .await
    .unwrap()
    .unwrap();
    for (role, scopes) in [
        ("reader", "orders.read"),
        ("writer", "orders.write"),
        ("admin", "admin.all"),
    ] {
        let row = RoleRow {
            tenant_id: primary().clone(),
            role: role.into(),
            scopes: scopes.into(),
            updated_at: now,
        };
        db.set_role(&row, |_| {
            AuditRow::user_admin(now, AdminEvent::RoleSet, "test", primary(), role, json!({}))
        })
        .await
        .unwrap();
    }
    let hash = hash_with(&env.state.settings().passwords, PASSWORD).await;
    let alice = create_user(&env, "alice", "reader writer admin", Some(hash)).await;
    let secret = env.secret.clone();
    Some(Login { env, alice, secret })
}

pub async fn create_user(env: &TestEnv, name: &str, roles: &str, hash: Option<String>) -> UserRow {
    let new = NewUser {
        tenant: primary(),
        username: name,
        email: None,
        display_name: None,
        roles,
    };
    users::create(
        env.state.db(),
        new,
        hash,
        &operator(),
        env.state.settings().clock.now(),
    )
    .await
    .unwrap()
}

impl Login {
    pub fn now(&self) -> i64 {
        self.env.state.settings().clock.now()
    }

    pub fn advance(&self, secs: i64) {
        self.env.state.settings().clock.advance(secs);
    }

    /// `POST /oauth/token` by c1 (Basic), from `ip` as the sidecar forwards it.
    pub async fn oauth(&self, ip: &str, form: &str) -> Answer {
        self.oauth_as(("c1", &self.secret), ip, form).await
    }

    pub async fn oauth_as(&self, client: (&str, &str), ip: &str, form: &str) -> Answer {
        let auth = basic(client.0, client.1);
        let headers = [
            ("content-type", FORM),
            ("authorization", auth.as_str()),
            ("x-internal-token", TOKEN),
            ("x-forwarded-for", ip),
        ];
        send_raw(
            &self.env.app,
            "POST",
            "/oauth/token",
            &headers,
            form.as_bytes().to_vec(),
        )
        .await
    }

    /// A password grant at /oauth/token for `username` with `password`.
    pub async fn login(&self, ip: &str, username: &str, password: &str) -> Answer {
        self.oauth(
            ip,
            &format!(
                "grant_type=password&username={}&password={}",
                enc(username),
                enc(password)
            ),
        )
        .await
    }

    /// A JSON route by `client` (Basic), through the sidecar from `ip`.
    pub async fn json_as(
        &self,
        client: (&str, &str),
        path: &str,
        ip: &str,
        body: &Value,
    ) -> Answer {
        let auth = basic(client.0, client.1);
        let headers = [
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
            ("x-internal-token", TOKEN),
            ("x-forwarded-for", ip),
        ];
        send_raw(
            &self.env.app,
            "POST",
            path,
            &headers,
            body.to_string().into_bytes(),
        )
        .await
    }

    /// A JSON route by c1 on a sidecar session bound to `subject`: the status and the error.
    pub async fn bound(&self, path: &str, subject: &str, body: &Value) -> (u16, Option<String>) {
        let (status, body) = self
            .env
            .post(
                path,
                &[
                    ("authorization", &basic("c1", &self.secret)),
                    ("x-internal-token", TOKEN),
                    ("x-session-subject", subject),
                ],
                &body.to_string(),
            )
            .await;
        (status.as_u16(), body["error"].as_str().map(str::to_owned))
    }

    /// A JSON route by c1.
    pub async fn json(&self, path: &str, ip: &str, body: &Value) -> Answer {
        self.json_as(("c1", &self.secret), path, ip, body).await
    }

    /// `POST /api/v1/token/password` by c1.
    pub async fn sealed(&self, ip: &str, body: &Value) -> Answer {
        self.json("/api/v1/token/password", ip, body).await
    }

    pub async fn user(&self, name: &str) -> UserRow {
        self.env
            .state
            .db()
            .user_by_username(primary(), name)
            .await
            .unwrap()
            .unwrap()
    }

    /// The failures counted for `name`, 0 without a row.
    pub async fn failures(&self, name: &str) -> i64 {
        self.env
            .state
            .db()
            .login_failures(primary(), name)
            .await
            .unwrap()
            .map_or(0, |r| r.failures)
    }
}

#[track_caller]
pub fn assert_ok(answer: &Answer) -> &Value {
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    &answer.2
}

#[track_caller]
pub fn assert_err(answer: &Answer, status: u16, code: &str, says: &str) {
    assert_eq!(answer.0.as_u16(), status, "{}", answer.2);
    assert_eq!(answer.2["error"], code, "{}", answer.2);
    let description = answer.2["error_description"].as_str().unwrap();
    assert!(
        description.contains(says),
        "{description:?} should say {says:?}"
    );
}
