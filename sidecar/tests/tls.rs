//! TLS on the sidecar's listener, against the in-process server and an in-process identity API
//! stub: the handshake with a test CA (and its refusal by a client that trusts another), ALPN,
//! the sealed protocol over TLS, the reload of rotated files (a broken pair keeps the old one),
//! the handshake deadline, and the refusal to start with files that make no pair.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

mod common;

use std::time::Duration;

use common::tls::{Pair, TestCa, connect, https, request};
use common::{Sidecar, Stub, eventually, scratch_dir};
use identity_protocol::{ClientHandshake, InitAnswer, SigningKey, TrustedKeys, headers};
use identity_sidecar::{Keys, StartError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A sidecar serving `pair` from files in a fresh directory, checked every second.
async fn start_tls(
    stub: &Stub,
    pair: &Pair,
    tweak: impl FnOnce(&mut identity_sidecar::Config),
) -> (Sidecar, std::path::PathBuf) {
    let dir = scratch_dir("tls");
    let (cert, key) = pair.write(&dir).unwrap();
    let sidecar = Sidecar::start_with(&stub.url, |config| {
        config.tls.tls_cert_file = Some(cert);
        config.tls.tls_key_file = Some(key);
        config.tls.tls_reload_interval_secs = 1;
        tweak(config);
    })
    .await;
    (sidecar, dir)
}

/// GET /health over HTTPS trusting `ca`: the status, or the error's text.
async fn health(sidecar: &Sidecar, ca: &TestCa) -> Result<u16, String> {
    https(&ca.pem, sidecar.addr, request("GET", "/health", &[], ""))
        .await
        .map(|(status, _, _)| status)
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_is_served_and_one_that_does_not_is_refused() {
    let stub = Stub::start().await;
    let ca = TestCa::new("test CA").unwrap();
    let (sidecar, _dir) = start_tls(&stub, &ca.leaf().unwrap(), |_| {}).await;
    assert!(sidecar.url.starts_with("https://"), "{}", sidecar.url);
    assert_eq!(health(&sidecar, &ca).await, Ok(200));

    let stranger = TestCa::new("another CA").unwrap();
    let refused = health(&sidecar, &stranger).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // The server's check too: a client that does not trust it is not served by accident.
    assert!(health(&sidecar, &ca).await.is_ok());

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = common::http()
        .get(format!("http://{}/health", sidecar.addr))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn alpn_offers_http_1_1_only() {
    let stub = Stub::start().await;
    let ca = TestCa::new("test CA").unwrap();
    let (sidecar, _dir) = start_tls(&stub, &ca.leaf().unwrap(), |_| {}).await;
    let stream = connect(&ca.pem, sidecar.addr, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // A client that speaks h2 only finds no protocol in common (RFC 7301: the handshake fails).
    let h2_only = connect(&ca.pem, sidecar.addr, &[b"h2"]).await;
    assert!(h2_only.is_err(), "an h2-only client was accepted");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn the_sealed_protocol_works_over_tls() {
    let stub = Stub::start().await;
    let ca = TestCa::new("test CA").unwrap();
    let (sidecar, _dir) = start_tls(&stub, &ca.leaf().unwrap(), |_| {}).await;
    // Journey step 4 (an init bound to alice) and an encrypted call, over TLS, with the
    // sidecar's key pinned.
    let handshake = ClientHandshake::new();
    let init = serde_json::to_string(&handshake.request()).unwrap();
    let bearer = format!("Bearer {}", common::ALICE_TOKEN);
    let (status, _, body) = https(
        &ca.pem,
        sidecar.addr,
        request(
            "POST",
            "/api/v1/session/init",
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
                (headers::SUBJECT, "alice"),
            ],
            &init,
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: InitAnswer = serde_json::from_slice(&body).unwrap();
    let trusted = TrustedKeys::pinned(&sidecar.public_key).unwrap();
    let session = handshake.finish(&answer, &trusted, Some("alice")).unwrap();

    let path = "/api/v1/token";
    let sealed = session
        .seal_request("POST", path, None, br#"{"refresh_token":"r"}"#)
        .unwrap();
    let (status, _, body) = https(
        &ca.pem,
        sidecar.addr,
        request(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                (headers::SESSION_ID, session.id()),
            ],
            std::str::from_utf8(&sealed.body).unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let opened = session
        .open_response("POST", path, sealed.seq, status, &body)
        .unwrap();
    let echoed: serde_json::Value = serde_json::from_slice(opened.as_bytes()).unwrap();
    assert_eq!(echoed["path"], path);
    assert_eq!(echoed["headers"]["x-session-subject"][0], "alice");
    assert_eq!(
        echoed["headers"]["x-internal-token"][0],
        common::INTERNAL_TOKEN
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_rotated_pair_is_served_without_a_restart_and_a_broken_one_keeps_the_old() {
    let stub = Stub::start().await;
    let first = TestCa::new("first CA").unwrap();
    let (sidecar, dir) = start_tls(&stub, &first.leaf().unwrap(), |_| {}).await;
    assert_eq!(health(&sidecar, &first).await, Ok(200));

    // cert-manager rotates: a certificate of another CA in the same files.
    let second = TestCa::new("second CA").unwrap();
    let rotated = second.leaf().unwrap();
    rotated.write(&dir).unwrap();
    let mut served = false;
    for _ in 0..40 {
        if health(&sidecar, &second).await == Ok(200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(served, "the rotated certificate was not served within 10 s");
    assert!(health(&sidecar, &first).await.is_err());

    // A broken rotation: the certificate of one pair with the key of another.
    let other = second.leaf().unwrap();
    Pair {
        cert: other.cert,
        key: rotated.key.clone(),
    }
    .write(&dir)
    .unwrap();
    let errors = || metric(&sidecar, r#"sidecar_tls_reloads_total{outcome="error"}"#);
    assert!(
        eventually(400, || errors() == Some(1)).await,
        "the broken pair was not counted: {:?}",
        errors()
    );
    assert_eq!(health(&sidecar, &second).await, Ok(200));
    // Unchanged broken files are not counted again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(errors(), Some(1));
    // Garbage in place of the certificate: still the old pair.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    assert!(eventually(400, || errors() == Some(2)).await);
    assert_eq!(health(&sidecar, &second).await, Ok(200));
    assert_eq!(
        metric(&sidecar, r#"sidecar_tls_reloads_total{outcome="ok"}"#),
        Some(1)
    );
    sidecar.shutdown().await;
}

/// A counter's value in the sidecar's metrics.
fn metric(sidecar: &Sidecar, series: &str) -> Option<u64> {
    let text = sidecar.state.metrics.encode(0).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn a_client_that_never_completes_the_handshake_is_closed() {
    let stub = Stub::start().await;
    let ca = TestCa::new("test CA").unwrap();
    let (sidecar, _dir) = start_tls(&stub, &ca.leaf().unwrap(), |config| {
        config.tls.tls_handshake_timeout_secs = 1;
        // The header deadline is not what closes it.
        config.server.limits.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    for hello in [&b""[..], &b"\x16\x03\x01"[..]] {
        let mut socket = TcpStream::connect(sidecar.addr).await.unwrap();
        socket.write_all(hello).await.unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a half-open handshake was kept past its deadline"
        );
    }
    sidecar.shutdown().await;
}

#[tokio::test]
async fn files_that_make_no_pair_stop_the_start_with_a_clear_error() {
    let stub = Stub::start().await;
    let ca = TestCa::new("test CA").unwrap();
    let (a, b) = (ca.leaf().unwrap(), ca.leaf().unwrap());
    let dir = scratch_dir("tls-bad");
    let cases = [
        (
            Pair {
                cert: a.cert.clone(),
                key: b.key.clone(),
            },
            "is not the key of the certificate",
        ),
        (
            Pair {
                cert: "nothing here".into(),
                key: a.key.clone(),
            },
            "no PEM CERTIFICATE",
        ),
        (
            Pair {
                cert: a.cert.clone(),
                key: a.cert.clone(),
            },
            "no PEM private key",
        ),
    ];
    for (pair, expected) in cases {
        let (cert, key) = pair.write(&dir).unwrap();
        let mut config = common::config(&stub.url);
        config.tls.tls_cert_file = Some(cert);
        config.tls.tls_key_file = Some(key.clone());
        let keys = Keys::new(SigningKey::generate(), Vec::new());
        let err = identity_sidecar::bind_with_keys(&config, keys)
            .await
            .unwrap_err();
        assert!(matches!(err, StartError::Tls(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(expected), "{text}");
        // Nothing of the key in the error.
        let body = pair.key.lines().nth(1).unwrap_or_default();
        assert!(body.is_empty() || !text.contains(body), "{text}");
    }
    let mut config = common::config(&stub.url);
    config.tls.tls_cert_file = Some(dir.join("missing.pem"));
    config.tls.tls_key_file = Some(dir.join("key.pem"));
    let keys = Keys::new(SigningKey::generate(), Vec::new());
    let err = identity_sidecar::bind_with_keys(&config, keys)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[test]
fn the_certificate_and_the_key_come_together() {
    use clap::Parser as _;
    for args in [["--tls-cert-file", "c.pem"], ["--tls-key-file", "k.pem"]] {
        let err = identity_sidecar::Config::try_parse_from(
            std::iter::once("identity-sidecar").chain(args),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--tls-"), "{err}");
    }
}
