//! The subject policy of a client at `POST /api/v1/token/issue`, over HTTP (in-process) on
//! SQLite and PostgreSQL: `any` issues for every subject, `none` only for the client's own id,
//! `match:PATTERN` for the subjects its pattern matches; a refusal is `403 unauthorized_client`
//! with a description saying which rule refused it, judged after the subject rule and before
//! the scope. A new client gets `none`, the seeded `dev-client` `any`. `client create/update
//! --subject-policy` sets it (validated, audited, shown by `client list`), at once on a server
//! that has the client's row cached, in either direction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, TestEnv, admin_rows, assert_error, basic, claims_of, cmd, run, s};
use identity_api::clients::{self, NewClient};
use identity_api::storage::{AdminEvent, Scope};
use serde_json::{Value, json};

both!(
    each_policy_permits_its_subjects_and_refuses_the_others,
    new_clients_get_none_and_the_dev_client_any,
    the_command_line_sets_shows_and_audits_the_policy,
    a_change_of_policy_acts_at_once_on_a_cached_row,
    an_unusable_stored_policy_is_a_server_error,
);

const OWN_ID_ONLY: &str =
    "this client may issue tokens only for itself: the subject must be its client id";
const REFUSED: &str =
    "this client may not issue tokens for this subject (its subject policy refuses it)";

/// Creates `id` with `policy` (`None`: the default) in the default tenant; its secret.
async fn create(env: &TestEnv, id: &str, policy: Option<&str>) -> String {
    let new = NewClient {
        subject_policy: policy,
        ..NewClient::new(common::primary(), "orders.read orders.write", "orders-api")
    };
    let state = &env.state;
    clients::create(
        state.db(),
        state.verifier_key(),
        id,
        new,
        &common::operator(),
        identity_api::now(),
    )
    .await
    .unwrap()
    .expose()
    .to_owned()
}

async fn issue(env: &TestEnv, id: &str, secret: &str, body: Value) -> (StatusCode, Value) {
    env.post(
        "/api/v1/token/issue",
        &[("authorization", &basic(id, secret))],
        &body.to_string(),
    )
    .await
}

async fn issue_for(env: &TestEnv, id: &str, secret: &str, subject: &str) -> (StatusCode, Value) {
    issue(env, id, secret, json!({ "subject": subject })).await
}

#[track_caller]
fn assert_refused(answer: &(StatusCode, Value), description: &str) {
    assert_error(answer, 403, "unauthorized_client");
    assert_eq!(answer.1["error_description"], description, "{}", answer.1);
}

async fn each_policy_permits_its_subjects_and_refuses_the_others(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let any = create(&env, "front", Some("any")).await;
    let own = create(&env, "svc", Some("none")).await;
    let users = create(&env, "portal", Some("match:user-*@example.com")).await;

    for subject in ["test-user", "svc", "anyone at all", "é"] {
        let (status, body) = issue_for(&env, "front", &any, subject).await;
        assert_eq!(status, StatusCode::OK, "{subject}: {body}");
        assert_eq!(claims_of(&s(&body, "access_token")).sub, subject);
    }

    // `none`: the subject is the client's id, and nothing else.
    let (status, body) = issue_for(&env, "svc", &own, "svc").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims_of(&s(&body, "access_token")).sub, "svc");
    for subject in ["test-user", "SVC", "svc ", "front"] {
        assert_refused(&issue_for(&env, "svc", &own, subject).await, OWN_ID_ONLY);
    }

    for subject in [
        "user-1@example.com",
        "user-@example.com",
        "user-a.b@example.com",
    ] {
        let (status, body) = issue_for(&env, "portal", &users, subject).await;
        assert_eq!(status, StatusCode::OK, "{subject}: {body}");
    }
    for subject in [
        "admin@example.com",
        "user-1@example.org",
        "user-1@example.com.evil",
        "xuser-1@example.com",
        "portal",
    ] {
        assert_refused(&issue_for(&env, "portal", &users, subject).await, REFUSED);
    }

    // The order of the checks: the subject rule first, the policy before the scope.
    let answer = issue_for(&env, "svc", &own, "-").await;
    assert_error(&answer, 400, "invalid_request");
    let answer = issue(&env, "svc", &own, json!({"subject": "u", "scope": "admin"})).await;
    assert_refused(&answer, OWN_ID_ONLY);
    let answer = issue(
        &env,
        "svc",
        &own,
        json!({"subject": "svc", "scope": "admin"}),
    )
    .await;
    assert_error(&answer, 400, "invalid_scope");
    // A wrong secret is still invalid_client, whatever the subject.
    let answer = issue_for(&env, "svc", "wrong", "test-user").await;
    assert_error(&answer, 401, "invalid_client");
    // Nothing was stored for a refusal: only the issues that succeeded opened families.
    let families: i64 = count(&env, "SELECT COUNT(*) FROM token_families").await;
    assert_eq!(families, 4 + 1 + 3);
}

async fn count(env: &TestEnv, sql: &str) -> i64 {
    match env.state.db().pools() {
        identity_api::storage::Pools::Sqlite { write, .. } => {
            sqlx::query_scalar(sql).fetch_one(write).await.unwrap()
        }
        identity_api::storage::Pools::Postgres(pool) => {
            sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
        }
    }
}

async fn new_clients_get_none_and_the_dev_client_any(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db();
    let secret = create(&env, "fresh", None).await;
    let row = db.client(Scope::AnyTenant, "fresh").await.unwrap().unwrap();
    assert_eq!(row.subject_policy, "none");
    assert_refused(
        &issue_for(&env, "fresh", &secret, "test-user").await,
        OWN_ID_ONLY,
    );
    let (status, body) = issue_for(&env, "fresh", &secret, "fresh").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The journey's client asserts its user's subject, as before.
    let dev = env.state.seed_dev_client().await.unwrap().unwrap();
    let row = db
        .client(Scope::AnyTenant, "dev-client")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.subject_policy, "any");
    let (status, body) = issue_for(&env, "dev-client", dev.expose(), "test-user").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `identity-api client <args>` on the environment's database, as operator alice.
fn client_cli(env: &TestEnv, args: &[&str]) -> (bool, String, String) {
    run(cmd(&[&["client"], args].concat())
        .env("IDENTITY_DATABASE_URL", &env.url)
        .env("IDENTITY_KEY_ENCRYPTION_KEY", &env.kek)
        .env("USER", "alice"))
}

#[track_caller]
fn client_ok(env: &TestEnv, args: &[&str]) -> String {
    let (ok, out, err) = client_cli(env, args);
    assert!(ok, "client {args:?}: {err}");
    out
}

/// The client `id` of `client list --json`.
fn listed(env: &TestEnv, id: &str) -> Value {
    client_ok(env, &["list", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|c| c["client_id"] == id)
        .unwrap()
}

fn secret_of(out: &str) -> String {
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    s(&created, "client_secret")
}

async fn the_command_line_sets_shows_and_audits_the_policy(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db();
    let create_args = |id: &'static str| ["create", id, "--scope", "a", "--audience", "x"];
    let out = client_ok(
        &env,
        &[
            &create_args("jobs")[..],
            &["--subject-policy", "match:job-*", "--json"],
        ]
        .concat(),
    );
    let jobs = secret_of(&out);
    let out = client_ok(&env, &[&create_args("plain")[..], &["--json"]].concat());
    let plain = secret_of(&out);
    assert_eq!(listed(&env, "jobs")["subject_policy"], "match:job-*");
    assert_eq!(listed(&env, "plain")["subject_policy"], "none");
    assert_eq!(listed(&env, "c1")["subject_policy"], "any");
    let out = client_ok(&env, &["list"]);
    let line = out.lines().find(|l| l.starts_with("jobs\t")).unwrap();
    assert!(line.contains("\tsubject_policy=\"match:job-*\""), "{line}");

    let (status, body) = issue_for(&env, "jobs", &jobs, "job-42").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_refused(&issue_for(&env, "jobs", &jobs, "user-1").await, REFUSED);
    assert_refused(
        &issue_for(&env, "plain", &plain, "user-1").await,
        OWN_ID_ONLY,
    );

    // Audited: the policy given at creation, the old and new one at an update.
    let out = client_ok(&env, &["update", "plain", "--subject-policy", "any"]);
    assert!(out.contains("subject_policy=\"any\""), "{out}");
    let rows = admin_rows(db).await;
    let created = rows
        .iter()
        .find(|r| {
            r.event == AdminEvent::ClientCreate.name() && r.client_id.as_deref() == Some("jobs")
        })
        .unwrap();
    let detail: Value = serde_json::from_str(created.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["subject_policy"], "match:job-*");
    let updated = rows.last().unwrap();
    assert_eq!(updated.event, AdminEvent::ClientUpdate.name());
    let detail: Value = serde_json::from_str(updated.detail.as_deref().unwrap()).unwrap();
    assert_eq!(
        detail,
        json!({"subject_policy": "any", "previous_subject_policy": "none"})
    );
    let (status, body) = issue_for(&env, "plain", &plain, "user-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Refused policies: a clear error, nothing created or changed, no audit row.
    let rows = rows.len();
    for (args, expected) in [
        (
            [&create_args("bad")[..], &["--subject-policy", "all"]].concat(),
            "invalid subject policy: \"all\" is not one of any, none, match:PATTERN",
        ),
        (
            [&create_args("bad")[..], &["--subject-policy", "match:"]].concat(),
            "invalid subject policy: the pattern of match:PATTERN",
        ),
        (
            ["update", "jobs", "--subject-policy", "match:-"].to_vec(),
            "invalid subject policy: the pattern of match:PATTERN",
        ),
        (
            ["update", "jobs", "--subject-policy", "match:a\tb"].to_vec(),
            "invalid subject policy: the pattern of match:PATTERN",
        ),
    ] {
        let (ok, out, err) = client_cli(&env, &args);
        assert!(!ok, "{args:?}: {out}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let long = format!("match:{}", "a".repeat(256));
    let (ok, _, err) = client_cli(&env, &["update", "jobs", "--subject-policy", &long]);
    assert!(!ok && err.contains("the pattern of match:PATTERN"), "{err}");
    assert!(db.client(Scope::AnyTenant, "bad").await.unwrap().is_none());
    let jobs_row = db.client(Scope::AnyTenant, "jobs").await.unwrap().unwrap();
    assert_eq!(jobs_row.subject_policy, "match:job-*");
    assert_eq!(admin_rows(db).await.len(), rows);

    // `--help` names the three forms and the default.
    let (_, out, _) = run(&mut cmd(&["client", "create", "--help"]));
    assert!(out.contains("--subject-policy <POLICY>"), "{out}");
    assert!(
        out.contains("match:PATTERN") && out.contains("[default: none]"),
        "{out}"
    );
}

async fn a_change_of_policy_acts_at_once_on_a_cached_row(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    // c1 (`any`) issues, so its row is cached from here on.
    let (status, body) = issue_for(&env, "c1", &env.secret, "test-user").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Narrowed: the cached row would allow the subject; the write that stores the family
    // refuses it, and the row read afresh answers.
    client_ok(&env, &["update", "c1", "--subject-policy", "none"]);
    assert_refused(
        &issue_for(&env, "c1", &env.secret, "test-user").await,
        OWN_ID_ONLY,
    );
    let (status, body) = issue_for(&env, "c1", &env.secret, "c1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Widened: the cached row (`none`) would refuse; the refusal is judged again afresh.
    client_ok(&env, &["update", "c1", "--subject-policy", "match:test-*"]);
    let (status, body) = issue_for(&env, "c1", &env.secret, "test-user").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_refused(&issue_for(&env, "c1", &env.secret, "c1").await, REFUSED);
}

async fn an_unusable_stored_policy_is_a_server_error(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    // Written into the database by hand: no subject is issued for, the answer says nothing of
    // why (the log does).
    common::exec(
        env.state.db(),
        "UPDATE clients SET subject_policy = 'some' WHERE client_id = 'c1'",
    )
    .await;
    let answer = issue_for(&env, "c1", &env.secret, "test-user").await;
    assert_error(&answer, 500, "server_error");
    assert_eq!(answer.1["error_description"], "internal error");
    let answer = issue_for(&env, "c1", &env.secret, "c1").await;
    assert_error(&answer, 500, "server_error");
}
