//! The binary's logs never hold a secret: with `RUST_LOG=trace` and JSON logs, an authenticated
//! session init, encrypted requests with an Authorization header and a marker in the body, and a
//! refused request leave no bearer token, Authorization value, internal token, plaintext body or
//! session id in stdout or stderr, every line of which is JSON. And a malformed internal token is
//! refused without echoing it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use common::{ALICE_TOKEN, Stub, http};
use identity_client::Client;
use identity_protocol::paths;

const BIN: &str = env!("CARGO_BIN_EXE_identity-sidecar");
const INTERNAL_TOKEN: &str = "internal-token-4f0c2a9e71b3";
const MARKER: &str = "plaintext-marker-9d41e6b07c";
const CLIENT_AUTH: &str = "Bearer authorization-value-51a7c3e2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_secret() {
    let stub = Stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .env("RUST_LOG", "trace")
        .env("IDENTITY_INTERNAL_TOKEN", INTERNAL_TOKEN)
        .args(["--dev", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .args(["--upstream", &stub.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // With JSON logs the address line is JSON too.
    let first: serde_json::Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("the first line is not JSON ({e}): {first:?}"));
    let url = first["url"].as_str().unwrap().to_owned();
    assert_eq!(
        first["message"],
        format!("identity-sidecar listening on {url}")
    );
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        BufReader::new(stderr).read_to_string(&mut text).unwrap();
        text
    });

    // Trust on first use is fine here: the test reads what this sidecar signs with.
    let client = Client::with_http(http(), &url, None).await.unwrap();
    let session = client
        .init_authenticated(ALICE_TOKEN, "alice", None)
        .await
        .unwrap();
    let body = format!(r#"{{"marker": "{MARKER}"}}"#);
    for _ in 0..3 {
        let answer = client
            .send(&session, paths::TOKEN, Some(CLIENT_AUTH), body.as_bytes())
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
    }
    // A refusal logs at info: the replay of the last seq.
    let replay = session
        .seal_request("POST", paths::TOKEN, Some(CLIENT_AUTH), body.as_bytes())
        .unwrap();
    let first = client
        .send_sealed(
            &session,
            paths::TOKEN,
            Some(CLIENT_AUTH),
            replay.seq,
            replay.body.clone(),
        )
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    let again = client
        .send_sealed(
            &session,
            paths::TOKEN,
            Some(CLIENT_AUTH),
            replay.seq,
            replay.body,
        )
        .await;
    assert!(again.is_err(), "a replay must be refused");
    // The stub saw the secrets, so they did travel (the test would prove nothing otherwise).
    let forwarded = stub.records_for(paths::TOKEN);
    assert_eq!(forwarded.len(), 4);
    assert_eq!(
        forwarded[0].header(identity_protocol::headers::INTERNAL_TOKEN),
        Some([INTERNAL_TOKEN.to_owned()].as_slice())
    );
    assert!(String::from_utf8_lossy(&forwarded[0].body).contains(MARKER));

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let logs = logs.join().unwrap() + &rest;

    // The logs are there (trace level, every line JSON) and mention the requests...
    assert!(logs.lines().count() > 10, "too few log lines:\n{logs}");
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(logs.contains(paths::TOKEN), "{logs}");
    assert!(logs.contains("409"), "{logs}");
    // ...but none of the secrets.
    for (what, secret) in [
        ("bearer token", ALICE_TOKEN),
        (
            "Authorization value",
            CLIENT_AUTH.trim_start_matches("Bearer "),
        ),
        ("internal token", INTERNAL_TOKEN),
        ("plaintext body", MARKER),
        ("session id", session.id()),
    ] {
        assert!(!logs.contains(secret), "the logs hold the {what}:\n{logs}");
    }
}

/// Tenants are not secret, but they stay out of the logs above debug: the info lines of tenant
/// paths and tenant headers, forwarded or refused, name the route with `{tenant}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_name_no_tenant() {
    const TENANT: &str = "tenant-marker-3a9f";
    const BAD: &str = "Tenant-Marker-3a9f";
    let stub = Stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .env("RUST_LOG", "info")
        .env("IDENTITY_INTERNAL_TOKEN", INTERNAL_TOKEN)
        .args(["--dev", "--listen", "127.0.0.1:0"])
        .args([
            "--standard-routes-behind-tls-proxy",
            "--upstream",
            &stub.url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_owned();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        BufReader::new(stderr).read_to_string(&mut text).unwrap();
        text
    });

    let jwks = format!("/t/{TENANT}{}", paths::JWKS);
    let token = format!("/t/{TENANT}{}", paths::OAUTH_TOKEN);
    let bad_token = format!("/t/{BAD}{}", paths::OAUTH_TOKEN);
    for (method, path, tenant, status) in [
        (reqwest::Method::GET, jwks.as_str(), TENANT, 200),
        (reqwest::Method::POST, token.as_str(), TENANT, 200),
        (reqwest::Method::GET, paths::JWKS, BAD, 400),
        (reqwest::Method::POST, bad_token.as_str(), TENANT, 400),
        (reqwest::Method::POST, token.as_str(), BAD, 400),
    ] {
        let answer = http()
            .request(method, format!("{url}{path}"))
            .header("x-tenant-id", tenant)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{path}");
    }
    assert_eq!(stub.records().len(), 2);

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let logs = logs.join().unwrap();
    assert!(logs.contains("/t/{tenant}/oauth/token"), "{logs}");
    assert!(
        !logs.to_ascii_lowercase().contains(TENANT),
        "the logs name the tenant:\n{logs}"
    );
}

#[test]
fn a_malformed_internal_token_is_refused_without_being_echoed() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["secret-with-newline-7b2e\n", "secret with spaces 7b2e"] {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .env_clear()
            .env("IDENTITY_INTERNAL_TOKEN", bad)
            .args(["--dev", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("IDENTITY_INTERNAL_TOKEN"), "{err}");
        assert!(!err.contains("7b2e"), "the error echoes the token: {err}");
    }
}
