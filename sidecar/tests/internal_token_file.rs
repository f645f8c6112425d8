//! `--internal-token-file` / `IDENTITY_INTERNAL_TOKEN_FILE`: read while parsing, one trailing
//! newline trimmed, mutually exclusive with `--internal-token` / `IDENTITY_INTERNAL_TOKEN`
//! (flags and environment), errors that name the variable and never the value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use std::process::Command;

use clap::Parser as _;
use identity_sidecar::Config;

const BIN: &str = env!("CARGO_BIN_EXE_identity-sidecar");
const SECRET: &str = "s3cret-Internal.token";

fn parse(args: &[&str]) -> Result<Config, clap::Error> {
    Config::try_parse_from(std::iter::once("identity-sidecar").chain(args.iter().copied()))
}

fn file_with(dir: &tempfile::TempDir, content: &str) -> String {
    let path = dir.path().join("token");
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

#[test]
fn the_file_is_read_and_one_trailing_newline_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    for content in [
        SECRET.to_owned(),
        format!("{SECRET}\n"),
        format!("{SECRET}\r\n"),
    ] {
        let path = file_with(&dir, &content);
        let config = parse(&["--internal-token-file", &path]).unwrap();
        assert_eq!(config.internal_token.get().unwrap(), SECRET);
    }
    // Only one newline: a second one is part of the value, which then is not visible ASCII.
    let path = file_with(&dir, &format!("{SECRET}\n\n"));
    let err = parse(&["--internal-token-file", &path])
        .unwrap_err()
        .to_string();
    assert!(err.contains("IDENTITY_INTERNAL_TOKEN_FILE"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    // Empty file.
    let path = file_with(&dir, "\n");
    let err = parse(&["--internal-token-file", &path])
        .unwrap_err()
        .to_string();
    assert!(err.contains("IDENTITY_INTERNAL_TOKEN_FILE"), "{err}");
}

#[test]
fn flag_and_file_flag_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(&dir, SECRET);
    let err = parse(&["--internal-token", "other", "--internal-token-file", &path]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    // The plain flag alone still works, and neither is required.
    let config = parse(&["--internal-token", SECRET]).unwrap();
    assert_eq!(config.internal_token.get().unwrap(), SECRET);
}

#[test]
fn a_token_that_starts_with_a_hyphen_is_a_value() {
    // One base64url secret in 64 starts with '-'.
    let config = parse(&["--internal-token", "-Z9_token-Qm4xV7pL2sK8wR3n"]).unwrap();
    assert_eq!(
        config.internal_token.get().unwrap(),
        "-Z9_token-Qm4xV7pL2sK8wR3n"
    );
}

#[test]
fn missing_file_names_the_variable_not_the_value() {
    let err = parse(&["--internal-token-file", "/nonexistent/identity-token"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("IDENTITY_INTERNAL_TOKEN_FILE"), "{err}");
    assert!(err.contains("/nonexistent/identity-token"), "{err}");
}

fn sidecar(env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(BIN);
    c.current_dir(dir.path())
        .env_clear()
        // An upstream that only fails after parsing: the process exits either way.
        .args(["--dev", "--listen", "127.0.0.1:0", "--upstream", "ftp://x"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn environment_variables_conflict_and_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(&dir, SECRET);
    // Both variables: refused, whatever else is on the command line.
    let (ok, err) = sidecar(&[
        ("IDENTITY_INTERNAL_TOKEN", SECRET),
        ("IDENTITY_INTERNAL_TOKEN_FILE", &path),
    ]);
    assert!(!ok);
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    // A missing file from the environment.
    let (ok, err) = sidecar(&[(
        "IDENTITY_INTERNAL_TOKEN_FILE",
        "/nonexistent/identity-token",
    )]);
    assert!(!ok);
    assert!(err.contains("IDENTITY_INTERNAL_TOKEN_FILE"), "{err}");
    // The file alone parses: the process gets as far as checking the upstream.
    let (ok, err) = sidecar(&[("IDENTITY_INTERNAL_TOKEN_FILE", &path)]);
    assert!(!ok);
    assert!(err.contains("--upstream must be an http"), "{err}");
}
