//! The binary: `client create|list|rotate-secret|disable`, `keys rotate`, `migrate`,
//! `serve --dev` (key file 0600, seeded dev-client, graceful SIGTERM, restart), `serve` without a
//! key-encryption key, `--dev` on every command that touches the database, the README's quick
//! start as written, and `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{
    Backend, basic, cmd, database, new_kek_text, run, sigterm_and_wait, start_dev, state_on,
    until_listening,
};
use serde_json::Value;

both!(client_commands);

async fn issue_status(app: &axum::Router, id: &str, secret: &str) -> StatusCode {
    common::send(
        app,
        "POST",
        "/api/v1/token/issue",
        &[("authorization", &basic(id, secret))],
        br#"{"subject": "u"}"#.to_vec(),
    )
    .await
    .0
}

async fn client_commands(b: Backend) {
    let Some((url, _dir)) = database(b).await else {
        return;
    };
    let kek = new_kek_text();
    let with_kek = |args: &[&str]| {
        let mut c = cmd(args);
        c.env("IDENTITY_KEY_ENCRYPTION_KEY", &kek)
            .env("IDENTITY_DATABASE_URL", &url);
        c
    };
    assert!(run(&mut cmd(&["migrate", "--database-url", &url])).0);

    let (ok, out, err) = run(&mut with_kek(&[
        "client",
        "create",
        "cli-client",
        "--scope",
        "orders.read orders.write",
        "--audience",
        "orders-api",
        "--subject-policy",
        "any",
        "--json",
    ]));
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(created["client_id"], "cli-client");
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43, "256-bit secret as base64url");
    assert!(!err.contains(&secret), "the secret is not logged");

    let (ok, _, err) = run(&mut with_kek(&[
        "client",
        "create",
        "cli-client",
        "--scope",
        "orders.read",
        "--audience",
        "orders-api",
    ]));
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    // Without a key-encryption key, a clear refusal.
    let (ok, _, err) = run(&mut cmd(&[
        "client",
        "create",
        "x",
        "--scope",
        "a",
        "--audience",
        "b",
        "--database-url",
        &url,
    ]));
    assert!(!ok);
    assert!(err.contains("IDENTITY_KEY_ENCRYPTION_KEY"), "{err}");

    let state = state_on(&url, &kek, common::settings()).await;
    let app = identity_api::app(state.clone());
    assert_eq!(
        issue_status(&app, "cli-client", &secret).await,
        StatusCode::OK
    );

    let (ok, out, _) = run(&mut cmd(&[
        "client",
        "list",
        "--json",
        "--database-url",
        &url,
    ]));
    assert!(ok);
    let listed: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(listed["client_id"], "cli-client");
    assert_eq!(listed["scope"], "orders.read orders.write");
    assert_eq!(listed["enabled"], true);
    assert_eq!(listed["subject_policy"], "any");
    assert!(!out.contains(&secret) && !out.contains("client_secret"));
    assert_eq!(listed["previous_secret_expires_at"], Value::Null);

    let (ok, out, err) = run(&mut with_kek(&[
        "client",
        "rotate-secret",
        "cli-client",
        "--json",
    ]));
    assert!(ok, "{err}");
    let rotated: Value = serde_json::from_str(out.trim()).unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        issue_status(&app, "cli-client", &secret).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        issue_status(&app, "cli-client", &new_secret).await,
        StatusCode::OK
    );

    let (ok, _, err) = run(&mut cmd(&[
        "client",
        "disable",
        "cli-client",
        "--database-url",
        &url,
    ]));
    assert!(ok, "{err}");
    assert_eq!(
        issue_status(&app, "cli-client", &new_secret).await,
        StatusCode::UNAUTHORIZED
    );
    let (ok, _, _) = run(&mut cmd(&[
        "client",
        "disable",
        "nobody",
        "--database-url",
        &url,
    ]));
    assert!(!ok);

    let (ok, _, err) = run(&mut with_kek(&["keys", "rotate"]));
    assert!(ok, "{err}");
    assert!(state.reload_keys().await.unwrap());
    let (_, jwks) = common::send(&app, "GET", "/.well-known/jwks.json", &[], vec![]).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

#[test]
fn help_explains_every_flag() {
    let (ok, out, _) = run(&mut cmd(&["--help"]));
    assert!(ok);
    for word in ["serve", "migrate", "client", "keys"] {
        assert!(out.contains(word), "{out}");
    }
    let (_, out, _) = run(&mut cmd(&["serve", "--help"]));
    for flag in [
        "--listen",
        "--database-url",
        "--key-encryption-key",
        "--key-encryption-key-file",
        "--dev",
        "--issuer",
        "--internal-token",
        "--access-token-ttl-secs",
        "--refresh-token-ttl-secs",
        "--family-ttl-secs",
        "--log-format",
        "IDENTITY_DATABASE_URL",
        "IDENTITY_INTERNAL_TOKEN",
    ] {
        assert!(out.contains(flag), "serve --help lacks {flag}: {out}");
    }
    let (_, out, _) = run(&mut cmd(&["client", "create", "--help"]));
    for flag in ["--scope", "--audience", "--json", "--database-url"] {
        assert!(out.contains(flag), "{out}");
    }
}

#[test]
fn serve_refuses_without_a_key_encryption_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db").display());
    let (ok, _, err) = run(
        cmd(&["serve", "--listen", "127.0.0.1:0", "--database-url", &url]).current_dir(dir.path()),
    );
    assert!(!ok);
    assert!(err.contains("IDENTITY_KEY_ENCRYPTION_KEY"), "{err}");
    assert!(!dir.path().join("identity-dev.kek").exists());
}

/// The words of a shell command line as README.md writes them: spaces separate, double quotes
/// group, `#` starts a comment.
fn shell_words(line: &str) -> Vec<String> {
    let line = line.split(" #").next().unwrap_or(line);
    let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// identity-api/README.md's quick start, run as written in an empty directory: `serve` (on a
/// free port, through IDENTITY_LISTEN, the one thing added), then every other command while it
/// runs. A command the README names that fails, fails this test.
#[test]
fn the_readme_quick_start_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("## Quick start").expect("a quick start");
    let block = readme[start..]
        .split("```sh")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a sh block in the quick start");
    let commands: Vec<Vec<String>> = block
        .lines()
        .filter(|l| l.starts_with("identity-api "))
        .map(|l| shell_words(l).split_off(1))
        .collect();
    assert!(commands.iter().any(|c| c[0] == "serve"), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let mut server = None;
    for words in &commands {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let mut command = cmd(&words);
        command.current_dir(dir.path());
        if words[0] == "serve" {
            command.env("IDENTITY_LISTEN", "127.0.0.1:0");
            server = Some(until_listening(command));
            continue;
        }
        let (ok, out, err) = run(&mut command);
        assert!(ok, "`identity-api {}` failed: {err}", words.join(" "));
        if words.contains(&"--json") {
            let _: Value =
                serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        }
    }
    sigterm_and_wait(server.expect("serve ran"));
}

/// `--dev` on every command that touches the database, with the same meaning on each.
#[test]
fn dev_is_accepted_by_every_command_that_touches_the_database() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["migrate", "--dev"][..],
        &[
            "client",
            "create",
            "c1",
            "--scope",
            "a",
            "--audience",
            "x",
            "--dev",
        ],
        &["client", "list", "--dev"],
        &["client", "rotate-secret", "c1", "--dev"],
        &["client", "disable", "c1", "--dev"],
        &["client", "enable", "c1", "--dev"],
        &["client", "update", "c1", "--scope", "b", "--dev"],
        &["audit", "list", "--dev"],
        &["audit", "export", "--dev"],
        &["keys", "rotate", "--dev"],
        &["kek", "rewrap", "--dev"],
    ] {
        let (ok, _, err) = run(cmd(args).current_dir(dir.path()));
        assert!(ok, "{args:?}: {err}");
    }
    assert!(dir.path().join("identity-dev.kek").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_dev_quick_start_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("identity.db").display());
    let server = start_dev(dir.path(), &url, &[]);
    let kek_file = dir.path().join("identity-dev.kek");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kek_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let secret = server
        .stdout
        .iter()
        .find_map(|l| l.split("client_secret=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the dev-client secret is printed")
        .to_owned();
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let issue = |base: String, secret: String| {
        let http = http.clone();
        async move {
            http.post(format!("{base}/api/v1/token/issue"))
                .header("authorization", basic("dev-client", &secret))
                .json(&serde_json::json!({"subject": "test-user", "scope": "orders.read"}))
                .send()
                .await
                .unwrap()
        }
    };
    let r = issue(server.base.clone(), secret.clone()).await;
    assert_eq!(r.status(), 200);
    let pair: Value = r.json().await.unwrap();
    assert_eq!(pair["scope"], "orders.read");
    sigterm_and_wait(server);

    // Restart: same key file, same client, the earlier refresh token still works.
    let server = start_dev(dir.path(), &url, &[]);
    assert!(
        !server.stdout.iter().any(|l| l.contains("client_secret=")),
        "dev-client is seeded only once"
    );
    let r = issue(server.base.clone(), secret.clone()).await;
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/api/v1/token", server.base))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .json(&serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": pair["refresh_token"].as_str().unwrap(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "refresh across a restart");
    sigterm_and_wait(server);
}

/// With `--log-format json` every line `serve` writes is JSON, on stdout (the secret shown once,
/// the addresses) and on stderr (the logs, and the error that ends the process).
#[test]
fn json_logs_make_every_line_json() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("identity.db").display());
    let mut child = cmd(&["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(["--database-url", &url, "--log-format", "json"])
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let logs = std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines: Vec<Value> = Vec::new();
    let base = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "{lines:?}");
        let object: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if let Some(url) = object["url"].as_str() {
            assert_eq!(
                object["message"],
                format!("identity-api listening on {url}")
            );
            break url.to_owned();
        }
        lines.push(object);
    };
    assert_eq!(lines[0]["client_id"], "dev-client", "{lines:?}");
    sigterm_and_wait(common::Server {
        child,
        base,
        stdout: Vec::new(),
    });
    let logs = logs.join().unwrap();
    assert!(logs.len() >= 2, "{logs:?}");
    for line in &logs {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }

    // Refused at start (no key-encryption key): the error that ends it is JSON too.
    let (ok, out, err) = run(cmd(&["serve", "--log-format", "json"]).current_dir(dir.path()));
    assert!(!ok);
    assert_eq!(out, "");
    let last: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    let message = last["message"].as_str().unwrap();
    assert!(message.starts_with("identity-api: error: "), "{err}");
}
