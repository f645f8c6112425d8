//! The `identity-sidecar` binary and its internal token at start: none is refused unless
//! `--insecure-no-internal-token` (`SIDECAR_INSECURE_NO_INTERNAL_TOKEN`) or `--dev`, both of which
//! start with a warning; a token under 128 bits of entropy (by length and alphabet) is refused;
//! no refusal echoes the token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use identity_protocol::SigningKey;

const BIN: &str = env!("CARGO_BIN_EXE_identity-sidecar");

/// The sidecar with a signing key file (so that only the token decides), on port 0, in `dir`,
/// with nothing inherited from the test's environment.
fn sidecar(dir: &tempfile::TempDir) -> Command {
    let key = dir.path().join("signing.pem");
    let pem = SigningKey::generate().to_pkcs8_pem().unwrap();
    std::fs::write(&key, pem.as_bytes()).unwrap();
    let mut c = Command::new(BIN);
    c.current_dir(dir.path())
        .env_clear()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .arg("--signing-key-file")
        .arg(key);
    c
}

/// Runs a command that must refuse to start: its stderr, once it has exited (non-zero).
fn refusal(c: &mut Command) -> String {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("identity-sidecar started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{status:?}: {err}");
    err
}

/// Runs a command that must start: its stderr up to its "listening" line, then it is stopped.
fn started(c: &mut Command) -> String {
    let mut child = c
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        line.starts_with("identity-sidecar listening on"),
        "did not start: {line:?} {err}"
    );
    err
}

#[test]
fn refuses_to_start_without_an_internal_token() {
    let dir = tempfile::tempdir().unwrap();
    let err = refusal(&mut sidecar(&dir));
    for says in [
        "no internal token",
        "IDENTITY_INTERNAL_TOKEN_FILE",
        "128 bits",
        "--insecure-no-internal-token (SIDECAR_INSECURE_NO_INTERNAL_TOKEN)",
        "--dev (SIDECAR_DEV)",
    ] {
        assert!(err.contains(says), "{says:?} not in {err}");
    }
}

#[test]
fn refuses_a_token_under_128_bits_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    // 21 base64url characters: 126 bits at most. One more would do.
    let weak = "Zm9vYmFyLWJhei1xdXV4L";
    let path = dir.path().join("token");
    std::fs::write(&path, weak).unwrap();
    for (var, value) in [
        ("IDENTITY_INTERNAL_TOKEN", weak),
        ("IDENTITY_INTERNAL_TOKEN_FILE", path.to_str().unwrap()),
    ] {
        let err = refusal(sidecar(&dir).env(var, value));
        assert!(err.contains(var) && err.contains("128 bits"), "{err}");
        assert!(!err.contains(weak), "the token is echoed: {err}");
    }
    // A single space is not a token either.
    let err = refusal(sidecar(&dir).env("IDENTITY_INTERNAL_TOKEN", " "));
    assert!(err.contains("visible ASCII"), "{err}");
}

#[test]
fn starts_without_a_token_only_when_told_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let flag = started(sidecar(&dir).arg("--insecure-no-internal-token"));
    let variable = started(sidecar(&dir).env("SIDECAR_INSECURE_NO_INTERNAL_TOKEN", "true"));
    let dev = started(Command::new(BIN).current_dir(dir.path()).env_clear().args([
        "--dev",
        "--listen",
        "127.0.0.1:0",
    ]));
    for err in [flag, variable, dev] {
        assert!(err.contains("no internal token"), "no warning: {err}");
    }
    // A strong token starts without the warning.
    let err = started(sidecar(&dir).env("IDENTITY_INTERNAL_TOKEN", "Zm9vYmFyLWJhei1xdXV4LWNvcmdl"));
    assert!(!err.contains("no internal token"), "{err}");
}

#[test]
fn help_describes_the_token_and_the_way_out() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for says in [
        "--insecure-no-internal-token",
        "SIDECAR_INSECURE_NO_INTERNAL_TOKEN",
        "128 bits",
    ] {
        assert!(help.contains(says), "{says:?} not in {help}");
    }
}
