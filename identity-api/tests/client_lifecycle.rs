//! The client lifecycle from the command line, against a server (the test's app) that has the
//! client's row cached: `client enable` lets a disabled client in again at once while the
//! families revoked by the disable stay revoked; `client update` changes what new issues may
//! ask for at once (a grant removed is refused, one added is allowed, the default scope follows),
//! validated as `client create` validates (grant types and the introspection right of the
//! standard endpoints too); each change is audited with what it changed, and a
//! refused command changes and audits nothing. Both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, TestEnv, admin_rows, assert_error, basic, cmd, run, s};
use identity_api::storage::Scope;
use serde_json::{Value, json};

both!(
    enable_lets_a_client_in_again_and_its_families_stay_revoked,
    update_changes_what_new_issues_may_ask_for_at_once,
    refused_updates_change_nothing,
    grant_types_and_the_introspection_right_from_the_command_line
);

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

/// An issue of c1 with `body`.
async fn issue(env: &TestEnv, body: Value) -> (StatusCode, Value) {
    env.post(
        "/api/v1/token/issue",
        &[("authorization", &basic("c1", &env.secret))],
        &body.to_string(),
    )
    .await
}

fn detail(row: &identity_api::storage::AuditRow) -> Value {
    serde_json::from_str(row.detail.as_deref().unwrap()).unwrap()
}

async fn enable_lets_a_client_in_again_and_its_families_stay_revoked(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let before = env.issue().await; // c1's row is cached from here on
    let (old_access, old_refresh) = (s(&before, "access_token"), s(&before, "refresh_token"));
    client_ok(&env, &["disable", "c1"]);
    assert_error(
        &issue(&env, json!({"subject": "u"})).await,
        401,
        "invalid_client",
    );

    let out = client_ok(&env, &["enable", "c1"]);
    assert!(out.contains("client c1 enabled"), "{out}");
    let (status, after) = issue(&env, json!({"subject": "u"})).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    // The family the disable revoked stays revoked.
    assert_error(
        &env.refresh(&old_access, &old_refresh).await,
        401,
        "invalid_token",
    );
    let bearer = s(&after, "access_token");
    let (status, answer) = env.introspect(&bearer, &old_refresh).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"active": false})));

    let (ok, _, err) = client_cli(&env, &["enable", "nobody"]);
    assert!(!ok);
    assert!(err.contains("no client nobody"), "{err}");
    let rows = admin_rows(env.state.db()).await;
    let last: Vec<_> = rows[rows.len() - 2..]
        .iter()
        .map(|r| (r.event.as_str(), r.client_id.as_deref(), detail(r)))
        .collect();
    assert_eq!(
        last,
        [
            ("client_disable", Some("c1"), json!({"families_revoked": 1})),
            ("client_enable", Some("c1"), json!({})),
        ]
    );
    assert!(
        rows[rows.len() - 1]
            .actor
            .as_deref()
            .unwrap()
            .starts_with("alice")
    );
}

async fn update_changes_what_new_issues_may_ask_for_at_once(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    // Issued (and c1's row cached) under the first grants.
    let (status, before) = issue(&env, json!({"subject": "u", "scope": "orders.write"})).await;
    assert_eq!(status, StatusCode::OK, "{before}");

    let out = client_ok(&env, &["update", "c1", "--scope", "orders.read"]);
    assert!(
        out.contains(r#"scope="orders.read" audience="orders-api""#),
        "{out}"
    );
    // A scope taken away is refused at once, and the default follows the new grants (the
    // cached row would give both scopes: the write refuses it, a fresh read decides).
    assert_error(
        &issue(&env, json!({"subject": "u", "scope": "orders.write"})).await,
        400,
        "invalid_scope",
    );
    let (status, pair) = issue(&env, json!({"subject": "u"})).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(pair["scope"], "orders.read");
    // A family issued before keeps the scope it was issued with.
    let (status, refreshed) = env
        .refresh(&s(&before, "access_token"), &s(&before, "refresh_token"))
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(refreshed["scope"], "orders.write");

    // A scope given is allowed at once, though the cached row lacks it.
    client_ok(
        &env,
        &["update", "c1", "--scope", "orders.read orders.admin"],
    );
    let (status, pair) = issue(&env, json!({"subject": "u", "scope": "orders.admin"})).await;
    assert_eq!(status, StatusCode::OK, "{pair}");

    // Audiences: with two, an issue must name one.
    client_ok(
        &env,
        &[
            "update",
            "c1",
            "--audience",
            "billing-api",
            "--audience",
            "orders-api",
        ],
    );
    assert_error(
        &issue(&env, json!({"subject": "u"})).await,
        400,
        "invalid_request",
    );
    let (status, pair) = issue(&env, json!({"subject": "u", "audience": "billing-api"})).await;
    assert_eq!(status, StatusCode::OK, "{pair}");

    let rows = admin_rows(env.state.db()).await;
    let updates: Vec<Value> = rows
        .iter()
        .filter(|r| r.event == "client_update")
        .map(detail)
        .collect();
    assert_eq!(
        updates,
        [
            json!({"scope": "orders.read", "previous_scope": "orders.read orders.write"}),
            json!({"scope": "orders.read orders.admin", "previous_scope": "orders.read"}),
            json!({"audience": "billing-api orders-api", "previous_audience": "orders-api"}),
        ]
    );
}

/// Updates refused for their arguments or their client: a clear error each, the client as it
/// was, no audit row.
async fn refused_updates_change_nothing(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db();
    let rows = admin_rows(db).await.len();
    let c1 = db.client(Scope::AnyTenant, "c1").await.unwrap().unwrap();
    for (args, expected) in [
        (
            &["update", "c1"][..],
            "--scope <SCOPE>|--audience <AUDIENCE>",
        ),
        (
            &["update", "c1", "--scope", ""],
            "invalid scope list: empty",
        ),
        (
            &["update", "c1", "--scope", "orders.read bad\"scope"],
            "invalid scope list: \"bad\\\"scope\" has characters that are not allowed",
        ),
        (
            &["update", "c1", "--audience", " "],
            "invalid audience list: empty",
        ),
        (&["update", "nobody", "--scope", "a"], "no client nobody"),
        (
            &["update", "c1", "--grant-types", "implicit"],
            "invalid grant types: \"implicit\" is not one of client_credentials, refresh_token, \
             password",
        ),
        (
            &["update", "c1", "--subject-policy", "some"],
            "invalid subject policy: \"some\" is not one of any, none, match:PATTERN",
        ),
        (
            &["update", "c1", "--subject-policy", "match:"],
            "invalid subject policy: the pattern of match:PATTERN: ",
        ),
        (
            &["update", "c1", "--may-introspect", "maybe"],
            "invalid value 'maybe'",
        ),
    ] {
        let (ok, out, err) = client_cli(&env, args);
        assert!(!ok, "{args:?}: {out}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // The library refuses an update that changes nothing as clearly.
    let err = identity_api::clients::update(
        db,
        Scope::AnyTenant,
        "c1",
        identity_api::storage::ClientChange::default(),
        &common::operator(),
        identity_api::now(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("nothing to change"), "{err}");
    let after = db.client(Scope::AnyTenant, "c1").await.unwrap().unwrap();
    assert_eq!((after.scopes, after.audiences), (c1.scopes, c1.audiences));
    assert_eq!(admin_rows(db).await.len(), rows);
}

/// `client create --grant-types --may-introspect`, `client update` of both, `client list`: what
/// the standard endpoints read (tests/oauth_token.rs and oauth_introspect_revoke.rs have what
/// they do with it).
async fn grant_types_and_the_introspection_right_from_the_command_line(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db();
    client_ok(
        &env,
        &[
            "create",
            "gw",
            "--scope",
            "a",
            "--audience",
            "x",
            "--grant-types",
            "refresh_token,client_credentials",
            "--may-introspect",
            "--json",
        ],
    );
    let gw = db.client(Scope::AnyTenant, "gw").await.unwrap().unwrap();
    assert_eq!(gw.grant_types, "refresh_token client_credentials");
    assert!(gw.may_introspect);
    // The defaults, for a client made without them and for one made before the migration.
    let c1 = db.client(Scope::AnyTenant, "c1").await.unwrap().unwrap();
    assert_eq!(
        (c1.grant_types.as_str(), c1.may_introspect),
        ("client_credentials", false)
    );
    let (ok, _, err) = client_cli(
        &env,
        &[
            "create",
            "bad",
            "--scope",
            "a",
            "--audience",
            "x",
            "--grant-types",
            "authorization_code",
        ],
    );
    assert!(
        !ok && err.contains("\"authorization_code\" is not one of"),
        "{err}"
    );
    assert!(db.client(Scope::AnyTenant, "bad").await.unwrap().is_none());
    // A client may be given the password grant (a user's login).
    client_ok(
        &env,
        &[
            "create",
            "login",
            "--scope",
            "a",
            "--audience",
            "x",
            "--grant-types",
            "password refresh_token",
        ],
    );
    let login = db.client(Scope::AnyTenant, "login").await.unwrap().unwrap();
    assert_eq!(login.grant_types, "password refresh_token");

    let out = client_ok(
        &env,
        &[
            "update",
            "gw",
            "--grant-types",
            "client_credentials",
            "--may-introspect",
            "false",
        ],
    );
    assert!(
        out.contains(r#"grant_types="client_credentials" may_introspect=false"#),
        "{out}"
    );
    let out = client_ok(&env, &["list", "--json"]);
    let gw: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|c| c["client_id"] == "gw")
        .unwrap();
    assert_eq!(gw["grant_types"], "client_credentials");
    assert_eq!(gw["may_introspect"], false);
    let out = client_ok(&env, &["list"]);
    assert!(
        out.contains("grant_types=\"client_credentials\"\tmay_introspect=false"),
        "{out}"
    );
}
