//! `user create --password-stdin` and `user rotate-password`: the password read from stdin
//! only, checked by the policy `serve` uses (the same flags), stored as an Argon2id hash that
//! verifies, the sessions revoked on request, and neither the password nor its hash ever
//! printed or audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::cli::{cli, column};
use common::{Backend, exec, run};
use identity_api::users::password::{Hasher, Password, PasswordPolicy, Verdict};
use serde_json::Value;

both!(passwords);

async fn stored_hash(db: &identity_api::Db, username: &str) -> String {
    let sql = format!("SELECT password_hash FROM users WHERE username = '{username}'");
    column(db, &sql).await.pop().flatten().unwrap()
}

/// `user create --password-stdin` and `user rotate-password`: the password read from stdin,
/// checked by the server's policy, stored as an Argon2id hash that verifies, and never printed
/// nor audited.
async fn passwords(b: Backend) {
    let Some((cli, _dir)) = cli(b).await else {
        return;
    };
    const FIRST: &str = "correct horse battery staple";
    const SECOND: &str = "another long passphrase, reset";
    let mut printed = String::new();
    let mut with_stdin = |args: &[&str], input: &str| {
        let (ok, out, err) = cli.with_stdin(args, input);
        printed.push_str(&out);
        printed.push_str(&err);
        (ok, out, err)
    };

    let (ok, out, err) = with_stdin(
        &["user", "create", "gina", "--password-stdin", "--json"],
        &format!("{FIRST}\n"),
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(created.as_object().unwrap().len(), 5, "{created}");
    let shown = cli.json(&["user", "show", "gina", "--json"]);
    assert_eq!(shown["password"], true);
    let changed = shown["password_changed_at"].as_i64().unwrap();
    assert_eq!(shown["password_expires_at"], Value::Null);
    // The rotation window: the flag or the variable of `serve`.
    let shown = cli.json(&[
        "user",
        "show",
        "gina",
        "--json",
        "--password-rotation-days",
        "30",
    ]);
    assert_eq!(shown["password_expires_at"], changed + 30 * 86_400);
    assert_eq!(shown["password_expired"], false);
    let (ok, out, _) = run(cli
        .command(&["user", "list", "--json"])
        .env("IDENTITY_PASSWORD_ROTATION_DAYS", "1"));
    assert!(ok);
    let listed: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(listed["password_expires_at"], changed + 86_400);

    // What is stored is an Argon2id hash of the password, with the costs given.
    let db = identity_api::Db::connect(&cli.url).await.unwrap();
    let hash = stored_hash(&db, "gina").await;
    // Past the window: said so, in JSON and in text.
    exec(
        &db,
        &format!(
            "UPDATE users SET password_changed_at = {} WHERE username = 'gina'",
            changed - 31 * 86_400
        ),
    )
    .await;
    let rotation = ["--password-rotation-days", "30"];
    let shown = cli.json(&[&["user", "show", "gina", "--json"][..], &rotation].concat());
    assert_eq!(shown["password_expired"], true);
    let text = cli.ok(&[&["user", "show", "gina"][..], &rotation].concat());
    assert!(text.contains("EXPIRED since"), "{text}");
    assert!(hash.starts_with("$argon2id$v=19$m=256,t=1,"), "{hash}");
    let policy = PasswordPolicy {
        memory_kib: 256,
        iterations: 1,
        ..PasswordPolicy::default()
    };
    let hasher = Hasher::new(&policy).unwrap();
    let verdict = |hash: String, password: &str| {
        let hasher = hasher.clone();
        let password = Password::new(password.to_owned()).unwrap();
        async move { hasher.verify(Some(&hash), &password).await }
    };
    assert!(matches!(
        verdict(hash.clone(), FIRST).await,
        Verdict::Match { .. }
    ));
    assert_eq!(verdict(hash.clone(), "wrong").await, Verdict::NoMatch);

    // Refusals: nothing read, the policy, too long; no user made.
    for (input, says) in [
        ("", "stdin held no password"),
        ("\n", "stdin held no password"),
        ("short\n", "shorter than 12"),
        ("my name is hank, ok\n", "contains the username"),
        (&"x".repeat(1100), "longer than 1024 bytes"),
    ] {
        let (ok, out, err) = with_stdin(&["user", "create", "hank", "--password-stdin"], input);
        assert!(!ok, "{input:?}: {out}");
        assert!(err.contains(says), "{input:?}: {err}");
    }
    cli.refused(&["user", "show", "hank"]);
    let (ok, _, err) = with_stdin(
        &[
            "user",
            "create",
            "hank",
            "--password-stdin",
            "--argon2-parallelism",
            "0",
        ],
        "a good long password\n",
    );
    assert!(!ok && err.contains("--argon2-parallelism"), "{err}");

    // rotate-password: stdin only; the sessions kept unless --revoke-sessions.
    let err = cli.refused(&["user", "rotate-password", "gina"]);
    assert!(err.contains("--password-stdin"), "{err}");
    let (ok, _, err) = with_stdin(
        &["user", "rotate-password", "nobody", "--password-stdin"],
        &format!("{SECOND}\n"),
    );
    assert!(!ok && err.contains("no user nobody"), "{err}");
    let (ok, _, err) = with_stdin(
        &["user", "rotate-password", "gina", "--password-stdin"],
        "short\n",
    );
    assert!(!ok && err.contains("shorter than 12"), "{err}");
    assert_eq!(stored_hash(&db, "gina").await, hash, "unchanged");
    cli.ok(&["client", "create", "app", "--scope", "s", "--audience", "a"]);
    let user_id = created["user_id"].as_str().unwrap();
    let now = identity_api::now();
    exec(
        &db,
        &format!(
            "INSERT INTO token_families (family_id, client_id, subject, scope, audience, \
             created_at, expires_at, last_used_at, tenant_id) VALUES ('f1', 'app', '{user_id}', \
             's', 'a', {now}, {}, {now}, 'primary')",
            now + 3600
        ),
    )
    .await;
    let (ok, out, err) = with_stdin(
        &["user", "rotate-password", "gina", "--password-stdin"],
        &format!("{SECOND}\r\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("token families kept"), "{out}");
    let hash2 = stored_hash(&db, "gina").await;
    assert!(matches!(
        verdict(hash2.clone(), SECOND).await,
        Verdict::Match { .. }
    ));
    assert_eq!(verdict(hash2, FIRST).await, Verdict::NoMatch);
    let (ok, out, err) = with_stdin(
        &[
            "user",
            "rotate-password",
            "GINA",
            "--password-stdin",
            "--revoke-sessions",
        ],
        &format!("{FIRST}\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("1 token families revoked"), "{out}");
    let set = cli.audit("user_set_password");
    assert_eq!(set.len(), 2);
    assert_eq!(set[0]["subject"], user_id);
    assert_eq!(set[0]["detail"]["revoke_sessions"], false);
    assert_eq!(set[1]["detail"]["revoke_sessions"], true);

    // Neither a password nor a hash is ever printed or audited.
    printed.push_str(&cli.ok(&["audit", "export"]));
    printed.push_str(&cli.ok(&["user", "list", "--json"]));
    printed.push_str(&cli.ok(&["user", "show", "gina"]));
    for secret in [FIRST, SECOND, "$argon2"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    db.close().await;
}
