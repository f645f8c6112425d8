//! `identity-api serve` against slow and oversized clients: a silent connection is closed after
//! `--header-read-timeout-secs`, a body that stops arriving gets `408 request_timeout`, a
//! declared body over `--max-body-bytes` gets `413 payload_too_large` without being waited for,
//! and SIGTERM ends after `--shutdown-grace-secs` even with a half-sent request open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, basic, sigterm_and_wait, start_dev};

/// `serve --dev` in a fresh directory with `args`, and the dev-client's Basic credentials.
fn start(args: &[&str]) -> (Server, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("identity.db").display());
    let server = start_dev(dir.path(), &url, args);
    let secret = server
        .stdout
        .iter()
        .find_map(|l| l.split("client_secret=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("serve --dev prints dev-client's secret")
        .to_owned();
    (server, basic("dev-client", &secret), dir)
}

fn connect(server: &Server) -> TcpStream {
    let socket = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

/// Everything the server sends until it closes the connection; panics if it has not in 5 s.
fn until_closed(mut socket: TcpStream) -> String {
    let mut all = Vec::new();
    match socket.read_to_end(&mut all) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection stayed open: {e} (read so far: {all:?})"),
    }
    String::from_utf8(all).unwrap()
}

#[test]
fn silent_connections_and_slow_bodies_are_cut_off() {
    let (server, auth, _dir) = start(&[
        "--header-read-timeout-secs",
        "1",
        "--body-read-timeout-secs",
        "1",
    ]);
    assert_eq!(until_closed(connect(&server)), "");

    let mut slow = connect(&server);
    write!(
        slow,
        "POST /api/v1/token/issue HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"subj"
    )
    .unwrap();
    let answer = until_closed(slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");
    sigterm_and_wait(server);
}

#[test]
fn a_declared_body_over_the_limit_is_refused_without_waiting_for_it() {
    // A body deadline far away: the answer must not come from it.
    let (server, auth, _dir) = start(&["--body-read-timeout-secs", "60"]);
    let mut big = connect(&server);
    write!(
        big,
        "POST /api/v1/token/issue HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n\
         content-type: application/json\r\ncontent-length: 65537\r\n\r\n"
    )
    .unwrap();
    let answer = until_closed(big);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#""error":"payload_too_large""#),
        "{answer}"
    );
    assert!(answer.contains("65536 bytes"), "{answer}");
    sigterm_and_wait(server);
}

#[test]
fn sigterm_ends_the_drain_after_the_grace_period() {
    // A header deadline far away: only the grace period can end this connection.
    let (server, _, _dir) = start(&[
        "--header-read-timeout-secs",
        "600",
        "--shutdown-grace-secs",
        "1",
    ]);
    let mut half = connect(&server);
    half.write_all(b"POST /api/v1/token/issue HTTP/1.1\r\nhost:")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sigterm_and_wait(server);
    until_closed(half);
}
