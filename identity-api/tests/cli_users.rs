//! The binary's user and role commands: `user create|list|show|disable|enable|set-roles|
//! delete|reset-mfa|unlock`, `role set|list|delete`, their refusals, their `--json` shapes, the
//! audit rows they write, and `serve` setting ROLE_DEFINITIONS at start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::cli::{cli, column};
use common::{Backend, ISSUER, cmd, exec, run, sigterm_and_wait};
use serde_json::Value;

both!(
    user_commands,
    credentials_reset,
    role_commands,
    role_definitions_at_start,
    changes_print_json
);

/// Every command that changes a user, a role or a key prints one JSON object with --json.
async fn changes_print_json(b: Backend) {
    let Some((cli, _dir)) = cli(b).await else {
        return;
    };
    let role = cli.json(&["role", "set", "viewer", "orders.read", "--json"]);
    assert_eq!(
        role,
        serde_json::json!({"role": "viewer", "tenant": "primary", "scopes": ["orders.read"],
                           "changed": true})
    );
    let id = cli.ok(&["user", "create", "dana", "--roles", "viewer"]);
    let id = id.trim();
    let roles = cli.json(&["user", "set-roles", "dana", "viewer other", "--json"]);
    assert_eq!(roles["roles"], serde_json::json!(["viewer", "other"]));
    assert_eq!(roles["before"], serde_json::json!(["viewer"]));
    let disabled = cli.json(&["user", "disable", "dana", "--json"]);
    assert_eq!(
        (
            &disabled["user_id"],
            &disabled["enabled"],
            &disabled["changed"]
        ),
        (&Value::from(id), &Value::Bool(false), &Value::Bool(true))
    );
    let again = cli.json(&["user", "disable", "dana", "--json"]);
    assert_eq!(again["changed"], false);
    assert_eq!(
        cli.json(&["user", "enable", "dana", "--json"])["enabled"],
        true
    );
    let mfa = cli.json(&["user", "reset-mfa", "dana", "--json"]);
    assert_eq!(mfa["totp_removed"], false);
    assert_eq!(mfa["pending_removed"], false);
    let unlocked = cli.json(&["user", "unlock", "dana", "--json"]);
    assert_eq!(unlocked["failures_cleared"], 0);
    let key = cli.json(&["api-key", "create", "--user", "dana", "--json"]);
    let key_id = key["key_id"].as_str().unwrap();
    let revoked = cli.json(&["api-key", "revoke", key_id, "--json"]);
    assert_eq!(revoked["revoked"], true);
    let deleted = cli.json(&["user", "delete", "dana", "--json"]);
    assert_eq!(
        (&deleted["deleted"], &deleted["families_revoked"]),
        (&Value::Bool(true), &Value::from(0))
    );
    let role = cli.json(&["role", "delete", "viewer", "--json"]);
    assert_eq!(
        (&role["deleted"], &role["holders"]),
        (&Value::Bool(true), &Value::from(0))
    );
}

async fn user_commands(b: Backend) {
    let Some((cli, _dir)) = cli(b).await else {
        return;
    };
    cli.ok(&["tenant", "create", "acme"]);
    cli.ok(&["role", "set", "admin", "orders.read orders.write"]);
    cli.ok(&["role", "set", "viewer", "orders.read"]);

    // Create: the id on stdout; --json the object the issue names, without any hash.
    let id = cli.ok(&[
        "user",
        "create",
        "Alice",
        "--roles",
        "admin, viewer",
        "--email",
        "alice@example.com",
        "--display-name",
        "Alice Ng",
    ]);
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 22, "{id}");
    let created = cli.json(&["user", "create", "bob", "--tenant", "acme", "--json"]);
    let keys: Vec<&str> = created.as_object().unwrap().keys().map(|k| &**k).collect();
    assert_eq!(
        keys,
        ["created_at", "roles", "tenant", "user_id", "username"]
    );
    assert_eq!(created["username"], "bob");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["roles"], serde_json::json!([]));

    // Refusals name what is wrong; nothing is printed on stdout.
    let err = cli.refused(&["user", "create", "ALICE"]);
    assert!(err.contains("already has a user ALICE"), "{err}");
    let err = cli.refused(&["user", "create", ".alice"]);
    assert!(err.contains("a username must be"), "{err}");
    let err = cli.refused(&["user", "create", "carol", "--tenant", "nope"]);
    assert!(err.contains("no tenant nope"), "{err}");
    let err = cli.refused(&["user", "create", "carol", "--roles", "ad min!"]);
    assert!(err.contains("not a role name"), "{err}");
    let err = cli.refused(&["user", "create", "carol", "--email", "no-at"]);
    assert!(err.contains("email"), "{err}");
    let err = cli.refused(&["user", "create", "carol", "--password", "x"]);
    assert!(err.contains("--password"), "no password flag: {err}");
    for verb in ["show", "disable", "enable", "delete", "reset-mfa", "unlock"] {
        let err = cli.refused(&["user", verb, "nobody"]);
        assert!(
            err.contains("tenant primary has no user nobody"),
            "{verb}: {err}"
        );
        let err = cli.refused(&["user", verb, "alice", "--tenant", "nope"]);
        assert!(err.contains("no tenant nope"), "{verb}: {err}");
        let err = cli.refused(&["user", verb, "bad name"]);
        assert!(err.contains("a username must be"), "{verb}: {err}");
    }
    let err = cli.refused(&["user", "set-roles", "nobody", "admin"]);
    assert!(err.contains("no user nobody"), "{err}");
    let err = cli.refused(&["user", "set-roles", "alice", "bad!"]);
    assert!(err.contains("not a role name"), "{err}");
    // bob is acme's: not found in the default tenant.
    let err = cli.refused(&["user", "show", "bob"]);
    assert!(err.contains("no user bob"), "{err}");

    // List: every tenant's without --tenant; text and JSON lines.
    let text = cli.ok(&["user", "list"]);
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, ["bob", "Alice"], "ordered by tenant: acme, primary");
    assert!(text.contains("roles=\"admin viewer\""), "{text}");
    let listed = cli.json_lines(&["user", "list", "--tenant", "primary", "--json"]);
    assert_eq!(listed.len(), 1);
    let alice = &listed[0];
    assert_eq!(alice["user_id"], id.as_str());
    assert_eq!(alice["roles"], serde_json::json!(["admin", "viewer"]));
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["display_name"], "Alice Ng");
    assert_eq!(alice["enabled"], true);
    assert_eq!(alice["password"], false);
    assert_eq!(alice["password_expires_at"], Value::Null);
    assert_eq!(alice["mfa_enrolled"], false);
    assert!(alice.get("password_hash").is_none());
    let err = cli.refused(&["user", "list", "--tenant", "nope"]);
    assert!(err.contains("no tenant nope"), "{err}");

    // Show: the scopes the roles grant, in any case of the username.
    let shown = cli.json(&["user", "show", "alice", "--json"]);
    assert_eq!(
        shown["scopes"],
        serde_json::json!(["orders.read", "orders.write"])
    );
    assert_eq!(shown["api_keys"], 0);
    assert_eq!(shown["recovery_codes_left"], 0);
    assert_eq!(shown["password_expired"], false);
    assert_eq!(shown["last_login_at"], Value::Null);
    let text = cli.ok(&["user", "show", "ALICE"]);
    assert!(
        text.contains("scopes:") && text.contains("orders.read orders.write"),
        "{text}"
    );
    assert!(text.contains("last_login:          never"), "{text}");

    // set-roles: normalized, audited with before and after; an undefined role is a note.
    let (ok, out, err) =
        run(&mut cli.command(&["user", "set-roles", "alice", "viewer ghost viewer"]));
    assert!(ok, "{err}");
    assert!(
        out.contains("\"viewer ghost\"") && out.contains("\"admin viewer\""),
        "{out}"
    );
    assert!(err.contains("no role ghost"), "{err}");
    let shown = cli.json(&["user", "show", "alice", "--json"]);
    assert_eq!(shown["roles"], serde_json::json!(["viewer", "ghost"]));
    assert_eq!(shown["scopes"], serde_json::json!(["orders.read"]));
    let updates = cli.audit("user_update");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["subject"], id.as_str());
    assert_eq!(
        updates[0]["actor"].as_str().unwrap().split('@').next(),
        Some("test-operator")
    );
    assert_eq!(updates[0]["detail"]["roles"], "viewer ghost");
    assert_eq!(updates[0]["detail"]["before"]["roles"], "admin viewer");

    // Disable revokes the user's live token families (here two, and one revoked before);
    // again is a no-op; enable leaves them revoked.
    cli.ok(&[
        "client",
        "create",
        "app",
        "--scope",
        "orders.read",
        "--audience",
        "orders-api",
    ]);
    let db = identity_api::Db::connect(&cli.url).await.unwrap();
    let now = identity_api::now();
    for (family, revoked) in [("f1", "NULL"), ("f2", "NULL"), ("f3", "1")] {
        exec(
            &db,
            &format!(
                "INSERT INTO token_families (family_id, client_id, subject, scope, audience, \
                 created_at, expires_at, last_used_at, revoked_at, tenant_id) VALUES \
                 ('{family}', 'app', '{id}', 'orders.read', 'orders-api', {now}, {}, {now}, \
                 {revoked}, 'primary')",
                now + 3600
            ),
        )
        .await;
    }
    let out = cli.ok(&["user", "disable", "alice"]);
    assert!(out.contains("disabled; 2 token families revoked"), "{out}");
    let out = cli.ok(&["user", "disable", "alice"]);
    assert!(out.contains("already disabled"), "{out}");
    assert_eq!(cli.audit("user_disable").len(), 1);
    assert_eq!(
        cli.json(&["user", "show", "alice", "--json"])["enabled"],
        false
    );
    let out = cli.ok(&["user", "enable", "alice"]);
    assert!(out.contains("enabled"), "{out}");
    assert_eq!(cli.audit("user_enable").len(), 1);
    let live = column(
        &db,
        "SELECT family_id FROM token_families WHERE revoked_at IS NULL",
    )
    .await;
    assert!(live.is_empty(), "{live:?}");

    // Delete: asks nothing, audited; then the user is gone and the name is free.
    let out = cli.ok(&["user", "delete", "alice"]);
    assert!(out.contains(&id), "{out}");
    let deleted = cli.audit("user_delete");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["subject"], id.as_str());
    assert_eq!(deleted[0]["detail"]["username"], "Alice");
    let err = cli.refused(&["user", "show", "alice"]);
    assert!(err.contains("no user alice"), "{err}");
    cli.ok(&["user", "create", "alice"]);
    db.close().await;
}

/// `user reset-mfa` and `user unlock` on state the login would have left: a TOTP secret,
/// recovery codes, failed logins and a lock.
async fn credentials_reset(b: Backend) {
    let Some((cli, _dir)) = cli(b).await else {
        return;
    };
    let id = cli.ok(&["user", "create", "dave"]).trim().to_owned();
    let other = cli.ok(&["user", "create", "erin"]).trim().to_owned();
    let db = identity_api::Db::connect(&cli.url).await.unwrap();
    let blob = |hex: &str| match b {
        Backend::Sqlite => format!("X'{hex}'"),
        Backend::Postgres => format!("'\\x{hex}'::bytea"),
    };
    let now = identity_api::now();
    for user in [&id, &other] {
        exec(
            &db,
            &format!(
                "UPDATE users SET totp_secret_enc = {}, totp_confirmed_at = {now}, \
                 totp_last_step = 5 WHERE user_id = '{user}'",
                blob("0102")
            ),
        )
        .await;
        for code in ["aa", "bb", "cc"] {
            exec(
                &db,
                &format!(
                    "INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES \
                     ('{user}', {}, NULL)",
                    blob(code)
                ),
            )
            .await;
        }
    }
    exec(
        &db,
        &format!(
            "UPDATE recovery_codes SET used_at = {now} WHERE code_hash = {}",
            blob("aa")
        ),
    )
    .await;
    // dave started a re-enrolment and did not confirm it: a pending secret and code.
    exec(
        &db,
        &format!(
            "UPDATE users SET totp_pending_enc = {} WHERE user_id = '{id}'",
            blob("0304")
        ),
    )
    .await;
    exec(
        &db,
        &format!(
            "INSERT INTO recovery_codes (user_id, code_hash, used_at, pending) VALUES \
             ('{id}', {}, NULL, TRUE)",
            blob("dd")
        ),
    )
    .await;
    let shown = cli.json(&["user", "show", "dave", "--json"]);
    assert_eq!(shown["mfa_enrolled"], true);
    assert_eq!(shown["mfa_confirmed_at"], now);
    assert_eq!(shown["mfa_pending"], true);
    assert_eq!(shown["recovery_codes_left"], 2);
    assert_eq!(
        cli.json(&["user", "show", "erin", "--json"])["mfa_pending"],
        false
    );
    let text = cli.ok(&["user", "show", "dave"]);
    assert!(
        text.contains("a new enrolment awaits its confirmation"),
        "{text}"
    );
    let list = cli.ok(&["user", "list"]);
    assert!(
        list.contains("mfa=on+pending") && list.contains("mfa=on\t"),
        "{list}"
    );

    let out = cli.ok(&["user", "reset-mfa", "dave"]);
    assert!(
        out.contains("TOTP secret removed, pending enrolment removed, 4 recovery codes deleted"),
        "{out}"
    );
    let shown = cli.json(&["user", "show", "dave", "--json"]);
    assert_eq!(shown["mfa_enrolled"], false);
    assert_eq!(shown["mfa_pending"], false);
    assert_eq!(shown["mfa_confirmed_at"], Value::Null);
    assert_eq!(shown["recovery_codes_left"], 0);
    // erin's are untouched.
    assert_eq!(
        cli.json(&["user", "show", "erin", "--json"])["recovery_codes_left"],
        2
    );
    let reset = cli.audit("user_reset_mfa");
    assert_eq!(reset.len(), 1);
    assert_eq!(reset[0]["subject"], id.as_str());
    assert_eq!(reset[0]["detail"]["totp"], true);
    assert_eq!(reset[0]["detail"]["totp_pending"], true);
    assert_eq!(reset[0]["detail"]["recovery_codes"], 4);
    let out = cli.ok(&["user", "reset-mfa", "dave"]);
    assert!(
        out.contains("no TOTP secret was stored, 0 recovery codes"),
        "{out}"
    );

    // Unlock: the username's failed logins go (in any case of it); erin's stay.
    for key in ["dave", "erin"] {
        exec(
            &db,
            &format!(
                "INSERT INTO login_failures (tenant_id, username_key, failures, last_failure, \
                 locked_until) VALUES ('primary', '{key}', 7, {now}, {})",
                now + 900
            ),
        )
        .await;
    }
    let out = cli.ok(&["user", "unlock", "DAVE"]);
    assert!(
        out.contains("7 failed logins cleared (it was locked until"),
        "{out}"
    );
    let unlocked = cli.audit("user_unlock");
    assert_eq!(unlocked.len(), 1);
    assert_eq!(unlocked[0]["detail"]["failures"], 7);
    assert_eq!(unlocked[0]["detail"]["locked_until"], now + 900);
    let out = cli.ok(&["user", "unlock", "dave"]);
    assert!(out.contains("no failed logins"), "{out}");
    let left = column(&db, "SELECT username_key FROM login_failures").await;
    assert_eq!(left, [Some("erin".to_owned())]);

    // Delete takes the recovery codes with the user.
    cli.ok(&["user", "delete", "erin"]);
    db.close().await;
}

async fn role_commands(b: Backend) {
    let Some((cli, _dir)) = cli(b).await else {
        return;
    };
    cli.ok(&["tenant", "create", "acme"]);
    let out = cli.ok(&[
        "role",
        "set",
        "admin",
        "orders.write, orders.read orders.write",
    ]);
    assert!(out.contains("grants \"orders.write orders.read\""), "{out}");
    let out = cli.ok(&["role", "set", "admin", "orders.write orders.read"]);
    assert!(out.contains("(unchanged)"), "{out}");
    cli.ok(&["role", "set", "viewer", "orders.read", "--tenant", "acme"]);
    cli.ok(&["role", "set", "nothing", ""]);

    let all = cli.json_lines(&["role", "list", "--json"]);
    let names: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r["tenant"].as_str().unwrap(), r["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("acme", "viewer"),
            ("primary", "admin"),
            ("primary", "nothing")
        ]
    );
    assert_eq!(
        all[1]["scopes"],
        serde_json::json!(["orders.write", "orders.read"])
    );
    assert!(all[1]["updated_at"].is_i64());
    let acme = cli.ok(&["role", "list", "--tenant", "acme"]);
    assert_eq!(acme.lines().count(), 1);
    assert!(
        acme.starts_with("viewer\ttenant=acme\tscopes=\"orders.read\""),
        "{acme}"
    );

    // Audited when it changes, with the scopes before.
    let sets = cli.audit("role_set");
    assert_eq!(sets.len(), 3, "the unchanged set writes nothing");
    assert_eq!(sets[0]["detail"]["role"], "admin");
    assert_eq!(sets[0]["detail"]["before"], Value::Null);
    cli.ok(&["role", "set", "admin", "orders.read"]);
    let last = cli.audit("role_set").pop().unwrap();
    assert_eq!(last["detail"]["before"], "orders.write orders.read");
    assert_eq!(last["detail"]["scopes"], "orders.read");

    // Refusals.
    let err = cli.refused(&["role", "set", "bad role", "x"]);
    assert!(err.contains("not a role name"), "{err}");
    let err = cli.refused(&["role", "set", "r", "ok bad\"scope"]);
    assert!(err.contains("invalid scope list"), "{err}");
    let err = cli.refused(&["role", "set", "r", "x", "--tenant", "nope"]);
    assert!(err.contains("no tenant nope"), "{err}");
    let err = cli.refused(&["role", "list", "--tenant", "nope"]);
    assert!(err.contains("no tenant nope"), "{err}");
    let err = cli.refused(&["role", "delete", "viewer"]);
    assert!(err.contains("tenant primary has no role viewer"), "{err}");
    let err = cli.refused(&["role", "delete", "bad role"]);
    assert!(err.contains("not a role name"), "{err}");

    // Delete: the holders keep the name, which grants nothing; audited.
    cli.ok(&["user", "create", "frank", "--roles", "admin"]);
    let out = cli.ok(&["role", "delete", "admin"]);
    assert!(out.contains("1 users hold it"), "{out}");
    assert_eq!(
        cli.json(&["user", "show", "frank", "--json"])["scopes"],
        serde_json::json!([])
    );
    let deleted = cli.audit("role_delete");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["detail"]["role"], "admin");
    assert_eq!(deleted[0]["detail"]["before"], "orders.read");
}

/// `serve` with ROLE_DEFINITIONS sets them in the default tenant before it listens; a
/// malformed value fails the start with the reason.
async fn role_definitions_at_start(b: Backend) {
    let Some((cli, dir)) = cli(b).await else {
        return;
    };
    let work = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let serve = |definitions: &str| {
        let mut c = cmd(&[
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &cli.url,
            "--issuer",
            ISSUER,
        ]);
        c.env("ROLE_DEFINITIONS", definitions)
            .current_dir(work.path());
        c
    };
    cli.ok(&["role", "set", "kept", "k"]);
    cli.ok(&["role", "set", "viewer", "old.scope"]);
    let definitions = r#"{"admin": ["orders.read", "orders.write"], "viewer": ["orders.read"]}"#;
    sigterm_and_wait(common::until_listening(serve(definitions)));
    let roles: Vec<(String, Value)> = cli
        .json_lines(&["role", "list", "--json"])
        .into_iter()
        .map(|r| (r["role"].as_str().unwrap().to_owned(), r["scopes"].clone()))
        .collect();
    assert_eq!(
        roles,
        [
            (
                "admin".into(),
                serde_json::json!(["orders.read", "orders.write"])
            ),
            ("kept".into(), serde_json::json!(["k"])),
            ("viewer".into(), serde_json::json!(["orders.read"])),
        ]
    );
    let sets = cli.audit("role_set");
    assert_eq!(sets.len(), 4, "{sets:?}");
    assert_eq!(sets[3]["detail"]["before"], "old.scope");
    // The same definitions again change nothing, and write nothing.
    sigterm_and_wait(common::until_listening(serve(definitions)));
    assert_eq!(cli.audit("role_set").len(), 4);

    for (bad, says) in [
        ("[]", "must be a JSON object"),
        (r#"{"a b": []}"#, "not a role name"),
        (r#"{"a": ["x\"y"]}"#, "not a valid scope"),
    ] {
        let (ok, _, err) = run(&mut serve(bad));
        assert!(!ok, "{bad}");
        assert!(
            err.contains(says) && err.contains("ROLE_DEFINITIONS"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn help_tells_how() {
    for verb in ["create", "rotate-password"] {
        let (ok, out, _) = run(&mut cmd(&["user", verb, "--help"]));
        assert!(ok);
        for flag in [
            "--password-stdin",
            "--password-min-length",
            "--argon2-memory-kib",
        ] {
            assert!(out.contains(flag), "{verb}: {out}");
        }
    }
    let (ok, out, _) = run(&mut cmd(&["serve", "--help"]));
    assert!(ok);
    assert!(
        out.contains("--role-definitions") && out.contains("ROLE_DEFINITIONS"),
        "{out}"
    );
    let (ok, out, _) = run(&mut cmd(&["role", "--help"]));
    assert!(ok);
    for verb in ["set", "list", "delete"] {
        assert!(out.contains(verb), "{out}");
    }
}

#[test]
fn dev_is_accepted_by_the_user_and_role_commands() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["user", "create", "u1", "--dev"][..],
        &["user", "list", "--dev"],
        &["user", "show", "u1", "--dev"],
        &["user", "set-roles", "u1", "r", "--dev"],
        &["user", "disable", "u1", "--dev"],
        &["user", "enable", "u1", "--dev"],
        &["user", "reset-mfa", "u1", "--dev"],
        &["user", "unlock", "u1", "--dev"],
        &["role", "set", "r", "s", "--dev"],
        &["role", "list", "--dev"],
        &["role", "delete", "r", "--dev"],
        &["user", "delete", "u1", "--dev"],
    ] {
        let (ok, _, err) = run(cmd(args).current_dir(dir.path()));
        assert!(ok, "{args:?}: {err}");
    }
}
