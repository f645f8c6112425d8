//! The `journey` binary's own failures, without any service running: missing credentials (exit
//! 2 with what to set), no sidecar at the URL (non-zero exit, an explanation, and with --json a
//! document that says ok false with the step, the message and a hint).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn journey() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_journey"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SIDECAR_") || key.starts_with("CLIENT_") || key == "NO_COLOR" {
            command.env_remove(key);
        }
    }
    // No .env of the developer's may leak in.
    command.current_dir(std::env::temp_dir());
    command
}

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn missing_credentials_exit_2_and_say_what_to_set() {
    let output = journey().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CLIENT_ID and CLIENT_SECRET"), "{stderr}");
}

#[test]
fn no_sidecar_is_explained_and_fails() {
    let output = journey()
        .env("SIDECAR_URL", closed_port_url())
        .env("CLIENT_ID", "c")
        .env("CLIENT_SECRET", "s")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FAILED"), "{stderr}");
    assert!(stderr.contains("not running"), "{stderr}");
    // Not a terminal: no colour codes.
    assert!(!stderr.contains('\x1b'), "{stderr}");
}

#[test]
fn json_failure_document() {
    let output = journey()
        .args(["--json", "--client-id", "c", "--client-secret", "s"])
        .arg("--sidecar-url")
        .arg(closed_port_url())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["error"]["step"], 1);
    assert!(
        doc["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("not running")
    );
}

#[test]
fn client_secret_file_is_read_and_a_missing_one_is_explained() {
    let missing = journey()
        .env("CLIENT_ID", "c")
        .env("CLIENT_SECRET_FILE", "/nonexistent/client-secret")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("CLIENT_SECRET_FILE"), "{stderr}");

    // A readable file stands in for CLIENT_SECRET: the journey gets as far as the sidecar.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client-secret");
    std::fs::write(&file, "s\n").unwrap();
    let output = journey()
        .env("SIDECAR_URL", closed_port_url())
        .env("CLIENT_ID", "c")
        .env("CLIENT_SECRET_FILE", &file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not running"), "{stderr}");
}
