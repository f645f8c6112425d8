//! The audit rows of administrative changes: `client create`, `client rotate-secret`,
//! `client disable`, `keys rotate` and `kek rewrap` each write one, naming the operator (`$USER`,
//! else `$LOGNAME`, at the host) and what changed, never a secret; a command that changes nothing
//! writes none; and a change commits with its audit row or not at all. Both databases.
//! (`client enable` and `client update`: tests/client_lifecycle.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, TestEnv, admin_rows, basic, cmd, new_kek_text, run};
use identity_api::kek::{self, Kek, Keks};
use identity_api::storage::AuditRow;
use identity_api::storage::Scope;
use identity_api::{clients, keys};
use serde_json::{Value, json};

both!(
    cli_changes_are_audited_with_their_operator,
    a_change_commits_with_its_audit_row_or_not_at_all
);

async fn issue_status(env: &TestEnv, id: &str, secret: &str) -> StatusCode {
    env.post(
        "/api/v1/token/issue",
        &[("authorization", &basic(id, secret))],
        r#"{"subject": "u"}"#,
    )
    .await
    .0
}

fn detail(row: &AuditRow) -> Value {
    serde_json::from_str(row.detail.as_deref().unwrap()).unwrap()
}

#[track_caller]
fn assert_actor(row: &AuditRow, user: &str) {
    let actor = row.actor.as_deref().unwrap();
    assert!(
        actor == user || actor.starts_with(&format!("{user}@")),
        "{actor} is not {user}"
    );
}

async fn cli_changes_are_audited_with_their_operator(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db();
    let before = admin_rows(db).await.len();
    let as_alice = |args: &[&str]| {
        let mut c = cmd(args);
        c.env("IDENTITY_KEY_ENCRYPTION_KEY", &env.kek)
            .env("IDENTITY_DATABASE_URL", &env.url)
            .env("USER", "alice")
            .env("RUST_LOG", "trace");
        c
    };
    let mut stderr = String::new();
    let mut ok = |args: &[&str]| {
        let (ok, out, err) = run(&mut as_alice(args));
        assert!(ok, "{args:?}: {err}");
        stderr.push_str(&err);
        out
    };

    let out = ok(&[
        "client",
        "create",
        "audited",
        "--scope",
        "orders.read  orders.write orders.read",
        "--audience",
        "orders-api",
        "--subject-policy",
        "match:u*",
        "--json",
    ]);
    let first: Value = serde_json::from_str(out.trim()).unwrap();
    let first = first["client_secret"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(issue_status(&env, "audited", &first).await, StatusCode::OK);
    }
    let out = ok(&["client", "rotate-secret", "audited", "--json"]);
    let second: Value = serde_json::from_str(out.trim()).unwrap();
    let second = second["client_secret"].as_str().unwrap().to_owned();
    ok(&["client", "disable", "audited"]);
    let out = ok(&["keys", "rotate"]);
    let kid = out
        .strip_prefix("new signing key ")
        .and_then(|rest| rest.split(" of tenant primary;").next())
        .unwrap()
        .to_owned();
    // Without $USER, $LOGNAME names the operator.
    let new_kek = new_kek_text();
    let (ok_rewrap, out, err) = run(cmd(&["kek", "rewrap"])
        .env("IDENTITY_DATABASE_URL", &env.url)
        .env("IDENTITY_KEY_ENCRYPTION_KEY", &new_kek)
        .env("IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY", &env.kek)
        .env_remove("USER")
        .env("LOGNAME", "bob")
        .env("RUST_LOG", "trace"));
    assert!(ok_rewrap, "{err}");
    stderr.push_str(&err);
    let rewrapped: u64 = out
        .strip_prefix("rewrapped ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(rewrapped >= 3, "{out}");

    // Commands that change nothing write nothing.
    for args in [
        &["client", "rotate-secret", "nobody"][..],
        &["client", "disable", "nobody"],
        &[
            "client",
            "create",
            "audited",
            "--scope",
            "a",
            "--audience",
            "b",
        ],
    ] {
        let mut c = as_alice(args);
        c.env("IDENTITY_KEY_ENCRYPTION_KEY", &new_kek);
        let (ok, _, err) = run(&mut c);
        assert!(!ok, "{args:?}");
        stderr.push_str(&err);
    }

    let rows = admin_rows(db).await.split_off(before);
    let events: Vec<_> = rows.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "client_create",
            "client_rotate_secret",
            "client_disable",
            "keys_rotate",
            "kek_rewrap"
        ],
        "{rows:?}"
    );
    let outcomes: Vec<_> = rows.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["created", "rotated", "disabled", "rotated", "rewrapped"]
    );
    let clients: Vec<_> = rows.iter().map(|r| r.client_id.as_deref()).collect();
    assert_eq!(
        clients,
        [
            Some("audited"),
            Some("audited"),
            Some("audited"),
            None,
            None
        ]
    );
    for row in &rows[..4] {
        assert_actor(row, "alice");
    }
    assert_actor(&rows[4], "bob");
    let now = identity_api::now();
    for row in &rows {
        assert!((now - 60..=now).contains(&row.at), "{row:?}");
        assert_eq!((&row.subject, &row.family_id), (&None, &None));
    }
    // What changed: the scopes as stored (normalised), the families the disable revoked, the
    // new key's id, the rows re-sealed and under which key.
    assert_eq!(
        detail(&rows[0]),
        json!({
            "scope": "orders.read orders.write", "audience": "orders-api",
            "grant_types": "client_credentials", "may_introspect": false,
            "subject_policy": "match:u*",
        })
    );
    assert_eq!(
        detail(&rows[1]),
        json!({"overlap_secs": 0, "previous_secret_expires_at": null})
    );
    assert_eq!(detail(&rows[2]), json!({"families_revoked": 2}));
    assert_eq!(
        detail(&rows[3]),
        json!({"kid": kid, "kek_id": Kek::parse(&env.kek).unwrap().id(), "algorithm": "ES256"})
    );
    assert_eq!(
        detail(&rows[4]),
        json!({"rows": rewrapped, "kek_id": Kek::parse(&new_kek).unwrap().id()})
    );

    // No secret in the trail, nor in anything the commands logged (at trace level).
    let trail = format!("{:?}", common::audit_rows(db).await);
    for secret in [&first, &second, &env.kek, &new_kek, &env.secret] {
        assert!(!trail.contains(secret.as_str()), "a secret in the trail");
        assert!(!stderr.contains(secret.as_str()), "a secret in the logs");
    }
}

/// A change whose audit row the database refuses does not happen: each command's change and
/// its row are one transaction. The refusal is a rule on `audit_events` that only
/// administrative rows (with an actor) break; once it is gone, the same changes go through.
async fn a_change_commits_with_its_audit_row_or_not_at_all(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db();
    let key = env.state.verifier_key();
    let by = common::operator();
    let pair = env.issue().await;
    let access = common::s(&pair, "access_token");
    let (refuse, allow) = match b {
        Backend::Sqlite => (
            "CREATE TRIGGER refuse_admin_audit BEFORE INSERT ON audit_events \
             WHEN NEW.actor IS NOT NULL BEGIN SELECT RAISE(ABORT, 'refused'); END",
            "DROP TRIGGER refuse_admin_audit",
        ),
        Backend::Postgres => (
            "ALTER TABLE audit_events ADD CONSTRAINT refuse_admin_audit \
             CHECK (actor IS NULL) NOT VALID",
            "ALTER TABLE audit_events DROP CONSTRAINT refuse_admin_audit",
        ),
    };
    let rows_before = admin_rows(db).await.len();
    let c1 = db.client(Scope::AnyTenant, "c1").await.unwrap().unwrap();
    let keys_before = db.signing_keys(Scope::AnyTenant, 0).await.unwrap().len();
    let kek = Kek::parse(&env.kek).unwrap();
    let next_kek = new_kek_text();
    let keks = || Keks::new(Kek::parse(&next_kek).unwrap(), Some(kek_copy(&env.kek)));
    let now = identity_api::now();

    common::exec(db, refuse).await;
    assert!(
        clients::create(
            db,
            key,
            "c9",
            clients::NewClient::new(common::primary(), "a", "b"),
            &by,
            now
        )
        .await
        .is_err()
    );
    assert!(
        db.client(Scope::AnyTenant, "c9").await.unwrap().is_none(),
        "created anyway"
    );
    assert!(
        clients::rotate_secret(db, key, Scope::AnyTenant, "c1", None, &by, now)
            .await
            .is_err()
    );
    let after = db.client(Scope::AnyTenant, "c1").await.unwrap().unwrap();
    assert_eq!(after.secret_verifier, c1.secret_verifier, "rotated anyway");
    assert!(
        clients::set_enabled(db, Scope::AnyTenant, "c1", false, &by)
            .await
            .is_err()
    );
    assert!(
        db.client(Scope::AnyTenant, "c1")
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    assert_eq!(
        env.introspect(&access, &access).await.1["active"],
        true,
        "the family was revoked anyway"
    );
    assert!(
        keys::rotate(db, &kek, &common::primary_row(db).await, now, &by)
            .await
            .is_err()
    );
    assert_eq!(
        db.signing_keys(Scope::AnyTenant, 0).await.unwrap().len(),
        keys_before
    );
    assert!(kek::rewrap(db, &keks(), &by).await.is_err());
    let opened = kek::verifier_key(db, &Keks::from(kek_copy(&env.kek))).await;
    assert!(opened.is_ok(), "rewrapped anyway");
    assert_eq!(admin_rows(db).await.len(), rows_before);
    assert_eq!(issue_status(&env, "c1", &env.secret).await, StatusCode::OK);

    common::exec(db, allow).await;
    clients::create(
        db,
        key,
        "c9",
        clients::NewClient::new(common::primary(), "a", "b"),
        &by,
        now,
    )
    .await
    .unwrap();
    clients::rotate_secret(db, key, Scope::AnyTenant, "c1", None, &by, now)
        .await
        .unwrap();
    clients::set_enabled(db, Scope::AnyTenant, "c1", false, &by)
        .await
        .unwrap();
    keys::rotate(db, &kek, &common::primary_row(db).await, now, &by)
        .await
        .unwrap();
    kek::rewrap(db, &keks(), &by).await.unwrap();
    let rows = admin_rows(db).await.split_off(rows_before);
    let events: Vec<_> = rows.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "client_create",
            "client_rotate_secret",
            "client_disable",
            "keys_rotate",
            "kek_rewrap"
        ]
    );
    for row in &rows {
        assert_eq!(row.actor.as_deref(), Some(by.as_str()));
    }
}

fn kek_copy(text: &str) -> Kek {
    Kek::parse(text).unwrap()
}
