//! node openid-client v6 (tests/stock-clients/node) against the real identity API and sidecar,
//! over TLS with a certificate of a test CA that Node trusts through NODE_EXTRA_CA_CERTS:
//! discovery (OpenID and RFC 8414), clientCredentialsGrant with client_secret_basic and
//! client_secret_post, refreshTokenGrant, tokenIntrospection, tokenRevocation.
//!
//! Needs Node 20+ and `npm ci` in tests/stock-clients/node: `.ci/run` does both, then runs this
//! test with `--ignored`; by hand:
//!
//! ```sh
//! (cd tests/stock-clients/node && npm ci)
//! cargo build --workspace && cargo test --workspace --test stock_node_tls -- --ignored
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e_tests::{SCOPE, Signing, Stack, StackConfig, binaries};
use identity_launcher::test_ca::TestCa;

const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/stock-clients/node");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by .ci/run after `npm ci` in tests/stock-clients/node (node openid-client)"]
async fn node_openid_client_over_tls_through_the_sidecar() {
    let client_dir = Path::new(CLIENT_DIR);
    assert!(
        client_dir.join("node_modules/openid-client").is_dir(),
        "run `npm ci` in {CLIENT_DIR} first"
    );
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("identity-sidecar test CA").unwrap();
    let (cert, key) = ca.leaf().unwrap().write(certs.path()).unwrap();
    let ca_file = certs.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();

    let stack = Stack::start(
        binaries().unwrap(),
        StackConfig {
            signing: Signing::KeyFile,
            sidecar_tls: Some((cert, key)),
            client_args: vec![
                "--grant-types".into(),
                "client_credentials refresh_token".into(),
            ],
            ..StackConfig::default()
        },
    )
    .await
    .unwrap();

    let mut node = tokio::process::Command::from({
        let mut command = Command::new("node");
        command
            .current_dir(client_dir)
            .args(["--test", "--test-reporter=tap", "oauth.test.mjs"])
            .env("ISSUER", stack.sidecar_url())
            .env("CLIENT_ID", &stack.client.client_id)
            .env("CLIENT_SECRET", &stack.client.client_secret)
            .env("SCOPE", SCOPE)
            .env("NODE_EXTRA_CA_CERTS", &ca_file);
        command
    });
    node.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), node.output())
        .await
        .expect("node finished within 120 s")
        .expect("node runs (Node 20+ on PATH)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node openid-client failed ({}):\n{stdout}\n{stderr}\nsidecar log:\n{}\nidentity-api log:\n{}",
        output.status,
        identity_launcher::log_tail(&stack.sidecar_log(), 30),
        identity_launcher::log_tail(&stack.api_log(), 30),
    );
    // Every test ran: node's runner says how many passed.
    assert!(
        stdout.contains("# pass 3") && stdout.contains("# fail 0"),
        "{stdout}"
    );
    stack.shutdown();
}
