//! The `identity-sidecar` binary itself: `--help`, the stdout address line, refusal to start
//! without a signing key, SIGTERM draining a request in flight (on one thread and on two), and
//! SIGTERM with a request stuck mid-body (the drain deadline), and the deadlines for slow
//! clients (`--header-read-timeout-secs`, `--body-read-timeout-secs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_identity-sidecar");

/// `identity-sidecar --dev` on 127.0.0.1:0 in `dir`, with no inherited environment: the child
/// and the `host:port` that its first stdout line names.
fn start_dev(dir: &std::path::Path, upstream: &str, grace_secs: &str) -> (Child, String) {
    start_dev_with(dir, upstream, grace_secs, &[])
}

/// [`start_dev`] with further arguments.
fn start_dev_with(
    dir: &std::path::Path,
    upstream: &str,
    grace_secs: &str,
    args: &[&str],
) -> (Child, String) {
    let (child, line) = spawn_dev(dir, upstream, grace_secs, args, Stdio::null());
    let addr = line
        .trim()
        .strip_prefix("identity-sidecar listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

/// The `--dev` binary with `args` and its stderr to `stderr`: the child and its first stdout line.
fn spawn_dev(
    dir: &std::path::Path,
    upstream: &str,
    grace_secs: &str,
    args: &[&str],
    stderr: Stdio,
) -> (Child, String) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .args(["--dev", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .args(["--shutdown-grace-secs", grace_secs])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn help_names_every_flag_with_its_environment_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for name in [
        "SIDECAR_LISTEN",
        "SIDECAR_UPSTREAM",
        "SIDECAR_SIGNING_KEY_FILE",
        "SIDECAR_PUBLISH_KEY_FILES",
        "SIDECAR_DEV",
        "IDENTITY_INTERNAL_TOKEN",
        "SIDECAR_MAX_SESSIONS",
        "SIDECAR_SHUTDOWN_GRACE_SECS",
        "SIDECAR_ANONYMOUS_TTL_SECS",
        "SIDECAR_AUTHENTICATED_TTL_SECS",
        "SIDECAR_MAX_BODY_BYTES",
        "SIDECAR_MAX_UPSTREAM_BODY_BYTES",
        "SIDECAR_UPSTREAM_TIMEOUT_MS",
        "SIDECAR_INIT_RATE_PER_SEC",
        "SIDECAR_ROUTES",
        "SIDECAR_LOG_FORMAT",
        "SIDECAR_UPSTREAM_SOCKET",
        "SIDECAR_WORKER_THREADS",
        "SIDECAR_HEADER_READ_TIMEOUT_SECS",
        "SIDECAR_BODY_READ_TIMEOUT_SECS",
        "SIDECAR_IDLE_TIMEOUT_SECS",
        "SIDECAR_MAX_CONNECTIONS",
        "SIDECAR_OPS_LISTEN",
        "SIDECAR_TLS_CERT_FILE",
        "SIDECAR_TLS_KEY_FILE",
        "SIDECAR_TLS_RELOAD_INTERVAL_SECS",
        "SIDECAR_TLS_HANDSHAKE_TIMEOUT_SECS",
        "SIDECAR_STANDARD_ROUTES_BEHIND_TLS_PROXY",
        "SIDECAR_TENANT_HEADERS",
    ] {
        assert!(
            help.contains(name),
            "--help does not mention {name}:\n{help}"
        );
    }
    // The default as the flag takes it: comma-separated, not clap's space-separated list.
    let routes = identity_protocol::paths::DEFAULT_ENCRYPTED.join(",");
    assert!(
        help.contains(&format!("[default: {routes}]")),
        "--routes' default is not shown as {routes}:\n{help}"
    );
    // --tenant-headers says what it is for and what it must match.
    let tenant_headers = identity_protocol::headers::TENANT_CANDIDATES.join(",");
    assert!(
        help.contains(&format!("[default: {tenant_headers}]")),
        "--tenant-headers' default is not shown as {tenant_headers}:\n{help}"
    );
    for words in [
        "IDENTITY_TENANT_HEADER_CANDIDATES",
        "tenant slug",
        "sealed routes",
    ] {
        assert!(
            help.contains(words),
            "--tenant-headers' help does not mention {words}:\n{help}"
        );
    }
}

/// The binary with `args`: its first stdout line, then its log once stopped.
fn first_line_and_log(dir: &std::path::Path, args: &[&str]) -> (String, String) {
    let (child, line) = spawn_dev(dir, "http://127.0.0.1:9", "1", args, Stdio::piped());
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    (line, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn tls_and_the_tls_proxy_flag_say_so_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = identity_launcher::test_ca::TestCa::new("test CA").unwrap();
    let (cert, key) = ca.leaf().unwrap().write(dir.path()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (line, log) = first_line_and_log(
        dir.path(),
        &["--tls-cert-file", cert, "--tls-key-file", key],
    );
    assert!(
        line.starts_with("identity-sidecar listening on https://127.0.0.1:"),
        "{line}"
    );
    assert!(!log.contains("in the clear"), "{log}");

    let (line, log) = first_line_and_log(dir.path(), &["--standard-routes-behind-tls-proxy"]);
    assert!(
        line.starts_with("identity-sidecar listening on http://"),
        "{line}"
    );
    assert!(
        log.contains("standard OAuth routes are served in plain HTTP"),
        "no warning at start:\n{log}"
    );
}

#[test]
fn refuses_zero_worker_threads() {
    let out = Command::new(BIN)
        .env_clear()
        .args(["--dev", "--worker-threads", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--worker-threads"), "{err}");
}

#[test]
fn refuses_to_start_without_a_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--signing-key-file") || err.contains("SIDECAR_SIGNING_KEY_FILE"),
        "{err}"
    );
}

#[test]
fn sigterm_exits_after_the_grace_period_even_with_a_stuck_request() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_dev(dir.path(), "http://127.0.0.1:9", "1");

    // A request that announces 100 bytes and sends 10: the handler waits for the rest.
    let mut stuck = TcpStream::connect(&addr).unwrap();
    write!(
        stuck,
        "POST /api/v1/session/init HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"client_p"
    )
    .unwrap();
    stuck.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    sigterm(&child);
    // Bounded wait: without the deadline the drain would wait for the stuck body forever.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("the sidecar did not exit after SIGTERM with a stuck request");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    drop(stuck);
}

/// Reads what the sidecar sends until it closes the connection; panics if it has not within 5 s.
fn until_closed(mut socket: TcpStream) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut all = Vec::new();
    match std::io::Read::read_to_end(&mut socket, &mut all) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection stayed open: {e} (read so far: {all:?})"),
    }
    String::from_utf8(all).unwrap()
}

#[test]
fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_dev_with(
        dir.path(),
        "http://127.0.0.1:9",
        "20",
        &[
            "--header-read-timeout-secs",
            "1",
            "--body-read-timeout-secs",
            "1",
        ],
    );

    // A connection that never sends a request is closed, with nothing said.
    let silent = TcpStream::connect(&addr).unwrap();
    assert_eq!(until_closed(silent), "");

    // A body that stops arriving is answered 408 request_timeout, then closed.
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /api/v1/session/init HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"client_p"
    )
    .unwrap();
    let answer = until_closed(slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");

    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn ops_listen_prints_its_address_and_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .args([
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
        ])
        .args(["--upstream", "http://127.0.0.1:9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = [String::new(), String::new()];
    for line in &mut lines {
        stdout.read_line(line).unwrap();
    }
    assert!(
        lines[0].starts_with("identity-sidecar listening on http://"),
        "{lines:?}"
    );
    let ops = lines[1]
        .trim()
        .strip_prefix("identity-sidecar ops listening on http://")
        .unwrap_or_else(|| panic!("unexpected second line {:?}", lines[1]));
    let mut socket = TcpStream::connect(ops).unwrap();
    write!(
        socket,
        "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let answer = until_closed(socket);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("sidecar_sessions_live"), "{answer}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// On one thread (the pod's shape: a limit of one CPU) and on several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_request_in_flight() {
    for threads in ["1", "2"] {
        drains_a_request_in_flight(threads).await;
    }
}

async fn drains_a_request_in_flight(worker_threads: &str) {
    let stub = common::Stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_dev_with(
        dir.path(),
        &stub.url,
        "20",
        &["--worker-threads", worker_threads],
    );
    let url = format!("http://{addr}");
    let client = identity_client::Client::with_http(common::http(), &url, None)
        .await
        .unwrap();
    let session = client.init_anonymous().await.unwrap();

    // The identity API takes 1.5 s to answer; SIGTERM arrives while the sidecar waits for it.
    let in_flight = tokio::spawn(async move {
        client
            .send(&session, "/api/v1/token", None, br#"{"sleep_ms":1500}"#)
            .await
    });
    assert!(
        common::eventually(200, || !stub.records_for("/api/v1/token").is_empty()).await,
        "the request reaches the identity API"
    );
    sigterm(&child);
    let answer = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the drained request is answered")
        .unwrap()
        .expect("answered, not cut off");
    assert_eq!(answer.status, 200);
    // And then the process exits by itself, successfully.
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the sidecar exits after draining")
    .unwrap()
    .unwrap();
    assert!(status.success(), "{status:?}");
}
