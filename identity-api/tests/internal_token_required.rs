//! `identity-api serve` and its internal token at start: none is refused unless
//! `--insecure-no-internal-token` (`IDENTITY_INSECURE_NO_INTERNAL_TOKEN`) or `--dev`, both of
//! which start with a warning; a token under 128 bits of entropy (by length and alphabet) is
//! refused; no refusal echoes the token. The service token of /oauth/introspect
//! (`IDENTITY_SERVICE_TOKEN[_FILE]`) meets the same rule and must differ from the internal
//! token; its header must be a header name that means nothing else on the way to the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cmd;

/// `serve` on port 0 with a key-encryption key and a fresh SQLite database in `dir`, so that
/// only the internal token decides.
fn serve(dir: &tempfile::TempDir) -> Command {
    let url = format!("sqlite://{}", dir.path().join("identity.db").display());
    let mut c = cmd(&["serve", "--listen", "127.0.0.1:0", "--database-url", &url]);
    c.current_dir(dir.path())
        .env("IDENTITY_KEY_ENCRYPTION_KEY", common::new_kek_text());
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
            panic!("identity-api serve started instead of refusing");
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

/// Runs a command that must start: its stderr up to its "listening on" line, then it is
/// stopped.
fn started(c: &mut Command) -> String {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut listening = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if line.unwrap().starts_with("identity-api listening on") {
            listening = true;
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(listening, "did not start: {err}");
    err
}

#[test]
fn refuses_to_start_without_an_internal_token() {
    let dir = tempfile::tempdir().unwrap();
    let err = refusal(&mut serve(&dir));
    for says in [
        "no internal token",
        "IDENTITY_INTERNAL_TOKEN_FILE",
        "128 bits",
        "--insecure-no-internal-token (IDENTITY_INSECURE_NO_INTERNAL_TOKEN)",
        "--dev (IDENTITY_DEV)",
    ] {
        assert!(err.contains(says), "{says:?} not in {err}");
    }
}

#[test]
fn refuses_a_token_under_128_bits_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    // 31 hex digits: 124 bits. One more would do.
    let weak = "3f9a0c5be17d4286a9c0f1e2d3b4a59";
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{weak}\n")).unwrap();
    for (var, value) in [
        ("IDENTITY_INTERNAL_TOKEN", weak),
        ("IDENTITY_INTERNAL_TOKEN_FILE", path.to_str().unwrap()),
    ] {
        let err = refusal(serve(&dir).env(var, value));
        assert!(err.contains(var) && err.contains("128 bits"), "{err}");
        assert!(!err.contains(weak), "the token is echoed: {err}");
    }
    // With --dev too: a token that is given must be strong.
    let err = refusal(
        serve(&dir)
            .arg("--dev")
            .env("IDENTITY_INTERNAL_TOKEN", weak),
    );
    assert!(err.contains("128 bits"), "{err}");
    // A single space is not a token either.
    let err = refusal(serve(&dir).env("IDENTITY_INTERNAL_TOKEN", " "));
    assert!(err.contains("visible ASCII"), "{err}");
}

#[test]
fn starts_without_a_token_only_when_told_and_warns() {
    // A directory (a database and its key-encryption key) per start.
    let dir = || tempfile::tempdir().unwrap();
    let flag = started(serve(&dir()).arg("--insecure-no-internal-token"));
    let variable = started(serve(&dir()).env("IDENTITY_INSECURE_NO_INTERNAL_TOKEN", "true"));
    let dev = started(serve(&dir()).arg("--dev"));
    for err in [flag, variable, dev] {
        assert!(
            err.contains("IDENTITY_INTERNAL_TOKEN is not set"),
            "no warning: {err}"
        );
    }
    // A strong token (32 hex digits) starts without the warning.
    let err = started(serve(&dir()).env(
        "IDENTITY_INTERNAL_TOKEN",
        "3f9a0c5be17d4286a9c0f1e2d3b4a596",
    ));
    assert!(!err.contains("IDENTITY_INTERNAL_TOKEN is not set"), "{err}");
}

#[test]
fn serve_help_describes_the_token_and_the_way_out() {
    let (_, help, _) = common::run(&mut cmd(&["serve", "--help"]));
    for says in [
        "--insecure-no-internal-token",
        "IDENTITY_INSECURE_NO_INTERNAL_TOKEN",
        "128 bits",
    ] {
        assert!(help.contains(says), "{says:?} not in {help}");
    }
}

#[test]
fn the_service_token_meets_the_internal_tokens_rule() {
    let dir = tempfile::tempdir().unwrap();
    let strong = "3f9a0c5be17d4286a9c0f1e2d3b4a596";
    let weak = "3f9a0c5be17d4286a9c0f1e2d3b4a59";
    let path = dir.path().join("service-token");
    std::fs::write(&path, format!("{weak}\n")).unwrap();
    for (var, value) in [
        ("IDENTITY_SERVICE_TOKEN", weak),
        ("IDENTITY_SERVICE_TOKEN_FILE", path.to_str().unwrap()),
    ] {
        let err = refusal(
            serve(&dir)
                .env("IDENTITY_INTERNAL_TOKEN", strong)
                .env(var, value),
        );
        assert!(err.contains(var) && err.contains("128 bits"), "{err}");
        assert!(!err.contains(weak), "the token is echoed: {err}");
    }
    let err = refusal(
        serve(&dir)
            .env("IDENTITY_INTERNAL_TOKEN", strong)
            .env("IDENTITY_SERVICE_TOKEN_HEADER", "x service"),
    );
    assert!(err.contains("not a valid header name"), "{err}");
    // A strong one, in a header of the operator's naming, starts.
    started(
        serve(&tempfile::tempdir().unwrap())
            .env("IDENTITY_INTERNAL_TOKEN", strong)
            .env("IDENTITY_SERVICE_TOKEN", "Aa0-Bb1_Cc2Dd3Ee4Ff5Gg6Hh7")
            .env("IDENTITY_SERVICE_TOKEN_HEADER", "X-Gateway-Token"),
    );
}

#[test]
fn the_service_token_header_is_none_of_the_reserved_ones() {
    let dir = tempfile::tempdir().unwrap();
    let strong = "3f9a0c5be17d4286a9c0f1e2d3b4a596";
    for (name, why) in [
        ("Authorization", "credentials"),
        ("cookie", "credentials"),
        ("Host", "the request itself"),
        ("content-type", "the request itself"),
        ("content-length", "the request itself"),
        ("X-Internal-Token", "the sidecar"),
        ("x-session-subject", "the sidecar"),
        ("x-session-id", "the sidecar"),
        ("x-subject", "the sidecar"),
        ("connection", "hop-by-hop"),
        ("Transfer-Encoding", "hop-by-hop"),
        ("proxy-authorization", "hop-by-hop"),
    ] {
        let err = refusal(
            serve(&dir)
                .env("IDENTITY_INTERNAL_TOKEN", strong)
                .env("IDENTITY_SERVICE_TOKEN", "Aa0-Bb1_Cc2Dd3Ee4Ff5Gg6Hh7")
                .env("IDENTITY_SERVICE_TOKEN_HEADER", name),
        );
        assert!(
            err.contains("is reserved") && err.contains(why) && err.contains("x-service-token"),
            "{name}: {err}"
        );
    }
}

#[test]
fn the_service_token_is_not_the_internal_token() {
    let dir = tempfile::tempdir().unwrap();
    let strong = "3f9a0c5be17d4286a9c0f1e2d3b4a596";
    let err = refusal(
        serve(&dir)
            .env("IDENTITY_INTERNAL_TOKEN", strong)
            .env("IDENTITY_SERVICE_TOKEN", strong),
    );
    assert!(
        err.contains("IDENTITY_SERVICE_TOKEN") && err.contains("IDENTITY_INTERNAL_TOKEN"),
        "{err}"
    );
    assert!(!err.contains(strong), "the token is echoed: {err}");
}
