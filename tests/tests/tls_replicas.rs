//! Replicas of a sidecar that serves TLS (`Stack::start_replica` with `sidecar_tls`): each on
//! its own port with the same certificate, its readiness read on an ops listener of its own,
//! its URL `https://`, reached in plain HTTP through [`TlsTunnel`] only when it trusts the test
//! authority. (Their clients over TLS: tests/tests/stock_node_tls.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e_tests::tls_tunnel::TlsTunnel;
use e2e_tests::{Signing, Stack, StackConfig, binaries};
use identity_launcher::test_ca::TestCa;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_sidecar_starts_replicas_that_serve_tls() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("identity-sidecar test CA").unwrap();
    let (cert, key) = ca.leaf().unwrap().write(certs.path()).unwrap();
    let mut stack = Stack::start(
        binaries().unwrap(),
        StackConfig {
            signing: Signing::KeyFile,
            sidecar_tls: Some((cert, key)),
            ..StackConfig::default()
        },
    )
    .await
    .unwrap();
    let first = stack.start_replica().await.unwrap();
    let second = stack.start_replica().await.unwrap();
    for url in [&first, &second] {
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        assert_ne!(*url, stack.sidecar_url());
        // TLS only there: a plain HTTP request gets no HTTP answer.
        let plain = url.replacen("https://", "http://", 1);
        let answer = reqwest::get(format!("{plain}/health")).await;
        assert!(
            answer.is_err(),
            "{plain} answered in plain HTTP: {answer:?}"
        );
    }
    assert_ne!(first, second);
    // The tunnel of the other TLS tests carries plain HTTP there, trusting the test authority
    // only.
    let tunnel = TlsTunnel::start(&first, &ca.pem).await.unwrap();
    let answer = reqwest::get(format!("{}/health", tunnel.url()))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let other = TestCa::new("another CA").unwrap();
    let tunnel = TlsTunnel::start(&first, &other.pem).await.unwrap();
    let answer = reqwest::get(format!("{}/health", tunnel.url())).await;
    assert!(
        answer.is_err(),
        "a certificate of another authority was trusted: {answer:?}"
    );
    for (name, status) in stack.shutdown() {
        assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}");
    }
}
