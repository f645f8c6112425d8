//! `_FILE` variants of the secrets: `--database-url-file` / `IDENTITY_DATABASE_URL_FILE` on every
//! command that takes `--database-url`, and `--internal-token-file` / `IDENTITY_INTERNAL_TOKEN_FILE`
//! on `serve`: one trailing newline trimmed, mutually exclusive with the plain variant, errors
//! that name the variable and never the value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{cmd, run};

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Duration;

use clap::Parser as _;
use common::{Backend, database, new_kek_text};
use identity_api::config::{Cli, Command as Sub};

both!(database_url_file_on_every_command);

fn write(dir: &std::path::Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

async fn database_url_file_on_every_command(b: Backend) {
    let Some((url, _db_dir)) = database(b).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url_file = write(dir.path(), "url", &format!("{url}\n"));
    let kek = new_kek_text();
    let with_file = |args: &[&str]| {
        let mut c = cmd(args);
        c.env("IDENTITY_DATABASE_URL_FILE", &url_file)
            .env("IDENTITY_KEY_ENCRYPTION_KEY", &kek);
        c
    };
    for args in [
        &["migrate"][..],
        &["client", "create", "f1", "--scope", "a", "--audience", "x"],
        &["client", "rotate-secret", "f1"],
        &["client", "disable", "f1"],
        &["keys", "rotate"],
        &["kek", "rewrap"],
    ] {
        let (ok, out, err) = run(&mut with_file(args));
        assert!(ok, "{args:?}: {err}");
        assert!(!out.contains(&url) && !err.contains(&url), "{args:?}");
    }
    // The flag works too, and the data went to the database the file names.
    let (ok, out, err) = run(&mut cmd(&[
        "client",
        "list",
        "--database-url-file",
        &url_file,
    ]));
    assert!(ok, "{err}");
    assert!(out.contains("f1\ttenant=primary\tenabled=false"), "{out}");
    // The plain variable and the file conflict, from the environment as well as from flags.
    let (ok, _, err) = run(with_file(&["client", "list"]).env("IDENTITY_DATABASE_URL", &url));
    assert!(!ok);
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(!err.contains(&url), "{err}");
    let (ok, _, err) = run(&mut cmd(&[
        "migrate",
        "--database-url",
        &url,
        "--database-url-file",
        &url_file,
    ]));
    assert!(!ok);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn database_url_file_errors_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(&mut cmd(&[
        "migrate",
        "--database-url-file",
        "/nonexistent/identity-db-url",
    ]));
    assert!(!ok);
    assert!(
        err.contains("IDENTITY_DATABASE_URL_FILE: cannot read /nonexistent/identity-db-url"),
        "{err}"
    );
    let empty = write(dir.path(), "empty", "\n");
    let (ok, _, err) = run(cmd(&["client", "list"]).env("IDENTITY_DATABASE_URL_FILE", &empty));
    assert!(!ok);
    assert!(
        err.contains("IDENTITY_DATABASE_URL_FILE") && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn internal_token_file_is_parsed_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let serve_with =
        |path: &str| Cli::try_parse_from(["identity-api", "serve", "--internal-token-file", path]);
    const TOKEN: &str = "tok-1-Xq7Lm2Vb9Nc4Rd8Hs3";
    for content in [
        TOKEN.to_owned(),
        format!("{TOKEN}\n"),
        format!("{TOKEN}\r\n"),
    ] {
        let path = write(dir.path(), "t", &content);
        let Sub::Serve(args) = serve_with(&path).unwrap().command else {
            panic!("serve")
        };
        let token = args.internal_token().unwrap().unwrap();
        assert!(token.matches(TOKEN.as_bytes()));
        assert!(!token.matches(format!("{TOKEN}\n").as_bytes()));
    }
    // Only one newline is trimmed: the second is part of the value, which then is not visible
    // ASCII, and the error names the variable, not the value.
    let path = write(dir.path(), "t", &format!("{TOKEN}\n\n"));
    let err = serve_with(&path).unwrap_err().to_string();
    assert!(err.contains("IDENTITY_INTERNAL_TOKEN_FILE"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    // Conflict with the plain flag.
    let err = Cli::try_parse_from([
        "identity-api",
        "serve",
        "--internal-token",
        "x",
        "--internal-token-file",
        &path,
    ])
    .unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    // Missing and empty files: the file is read while parsing.
    let err = serve_with("/nonexistent/identity-token")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("IDENTITY_INTERNAL_TOKEN_FILE: cannot read"),
        "{err}"
    );
    let empty = write(dir.path(), "empty", "");
    let err = serve_with(&empty).unwrap_err().to_string();
    assert!(
        err.contains("IDENTITY_INTERNAL_TOKEN_FILE") && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn serve_reads_the_internal_token_file_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("identity.db").display());
    let kek = new_kek_text();
    let serve = || {
        let mut c = cmd(&["serve", "--listen", "127.0.0.1:0", "--database-url", &url]);
        c.env("IDENTITY_KEY_ENCRYPTION_KEY", &kek);
        c
    };
    // Both variables: refused before anything starts.
    let token_file = write(dir.path(), "token", "the-internal-token-2c9f4e7b1a06d853\n");
    let (ok, _, err) = run(serve()
        .env(
            "IDENTITY_INTERNAL_TOKEN",
            "the-internal-token-2c9f4e7b1a06d853",
        )
        .env("IDENTITY_INTERNAL_TOKEN_FILE", &token_file));
    assert!(!ok);
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(
        !err.contains("the-internal-token-2c9f4e7b1a06d853\n") && !err.contains("=the-internal"),
        "{err}"
    );
    // Missing file.
    let (ok, _, err) = run(serve().env("IDENTITY_INTERNAL_TOKEN_FILE", "/nonexistent/tok"));
    assert!(!ok);
    assert!(
        err.contains("IDENTITY_INTERNAL_TOKEN_FILE: cannot read"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // The file: /api/v1/* need exactly its content (without the newline).
    let mut child = serve()
        .env("IDENTITY_INTERNAL_TOKEN_FILE", &token_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let base = loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not report its address");
        };
        if let Some(base) = line.strip_prefix("identity-api listening on ") {
            break base.to_owned();
        }
    };
    let status = |token: Option<&'static str>| {
        let url = format!("{base}/api/v1/introspect");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut req = reqwest::Client::new().post(url).body("{}");
                if let Some(token) = token {
                    req = req.header(identity_protocol::headers::INTERNAL_TOKEN, token);
                }
                req.send().await.unwrap().status().as_u16()
            })
        })
        .join()
        .unwrap()
    };
    let without = status(None);
    let wrong = status(Some("the-internal-token-2c9f4e7b1a06d85"));
    let right = status(Some("the-internal-token-2c9f4e7b1a06d853"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(without, 403);
    assert_eq!(wrong, 403);
    assert_eq!(right, 401, "past the internal token, no bearer");
}

/// The previous KEK's file may be absent (an optional Secret key in Kubernetes): that means no
/// previous key. A present file must still hold a valid key.
#[test]
fn previous_kek_file_may_be_absent_but_not_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let current = new_kek_text();
    let serve_with_previous = |path: &str| {
        let cli = Cli::try_parse_from([
            "identity-api",
            "serve",
            "--key-encryption-key",
            &current,
            "--previous-key-encryption-key-file",
            path,
        ])
        .unwrap();
        let Sub::Serve(args) = cli.command else {
            panic!("serve")
        };
        args.kek.resolve(args.db.dev)
    };
    let missing = dir.path().join("not-mounted").display().to_string();
    let keks = serve_with_previous(&missing).unwrap();
    assert!(keks.previous.is_none());

    let present = write(dir.path(), "previous", &format!("{}\n", new_kek_text()));
    assert!(serve_with_previous(&present).unwrap().previous.is_some());

    let malformed = write(dir.path(), "bad", "not a key");
    let err = serve_with_previous(&malformed).unwrap_err().to_string();
    assert!(err.to_lowercase().contains("previous"), "{err}");
}

/// One base64url secret in 64 starts with '-': as a flag's value it is still a value, not an
/// unknown flag (this test file once failed on a random key that did).
#[test]
fn secrets_that_start_with_a_hyphen_are_values() {
    use base64::Engine as _;
    let b64u = |byte| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([byte; 32]);
    let (current, previous) = (b64u(0xF8), b64u(0xFB));
    assert!(current.starts_with('-') && previous.starts_with('-'));
    let cli = Cli::try_parse_from([
        "identity-api",
        "serve",
        "--key-encryption-key",
        &current,
        "--previous-key-encryption-key",
        &previous,
        "--internal-token",
        "-token-Xq7Lm2Vb9Nc4Rd8Hs3",
    ])
    .unwrap();
    let Sub::Serve(args) = cli.command else {
        panic!("serve")
    };
    let keks = args.kek.resolve(args.db.dev).unwrap();
    assert!(keks.previous.is_some());
    assert!(
        args.internal_token()
            .unwrap()
            .unwrap()
            .matches(b"-token-Xq7Lm2Vb9Nc4Rd8Hs3")
    );
}
