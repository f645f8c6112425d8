//! Signing keys referenced as AWS Secrets Manager secrets (`aws-sm:`), against moto's server
//! (PyPI `moto[server]`), which this test starts on a free loopback port when
//! IDENTITY_TEST_MOTO_SERVER names its `moto_server` executable.
#![cfg(feature = "aws-secrets-manager")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use aws_sdk_secretsmanager::config::{Credentials, Region};
use base64::Engine as _;
use identity_api::signing::{Algorithm, KeyReference, ReferenceError, SigningKey, Watched};
use serde_json::json;

/// moto's server, killed when dropped (also when an assertion fails).
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto(executable: &str) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(executable)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("IDENTITY_TEST_MOTO_SERVER={executable} does not start: {e}"));
    let mut moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = moto.child.try_wait().unwrap() {
            panic!("moto_server exited before it answered: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// The endpoint, region and (fake) credentials given to the SDK, not put in the process's
/// environment.
async fn aws_config(moto: &Moto) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A new key pair as the secret's PEMs: (private PKCS#8, public SPKI).
fn key_pair(alg: Algorithm) -> (String, String) {
    let (private, public) = match alg {
        Algorithm::Es256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            let private = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
            (
                private,
                pair.public_key().as_der().unwrap().as_ref().to_vec(),
            )
        }
        Algorithm::Rs256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let private = pair.as_der().unwrap().as_ref().to_vec();
            (
                private,
                pair.public_key().as_der().unwrap().as_ref().to_vec(),
            )
        }
        Algorithm::EdDsa => {
            let pair = Ed25519KeyPair::generate().unwrap();
            let private = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
            (
                private,
                pair.public_key().as_der().unwrap().as_ref().to_vec(),
            )
        }
    };
    (pem("PRIVATE KEY", &private), pem("PUBLIC KEY", &public))
}

fn document(alg: &str, private: &str, public: &str) -> String {
    json!({"algorithm": alg, "private_key": private, "public_key": public}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(moto_tests),
    ignore = "needs moto: set IDENTITY_TEST_MOTO_SERVER to moto_server"
)]
async fn secrets_manager_references() {
    let Some(executable) = std::env::var("IDENTITY_TEST_MOTO_SERVER")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        eprintln!("IDENTITY_TEST_MOTO_SERVER is not set: skipping the AWS Secrets Manager test");
        return;
    };
    let moto = start_moto(&executable);
    let aws = aws_config(&moto).await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    let create = |name: &'static str, text: String| {
        let client = client.clone();
        async move {
            client
                .create_secret()
                .name(name)
                .secret_string(text)
                .send()
                .await
                .unwrap()
                .arn()
                .unwrap()
                .to_owned()
        }
    };
    let reference = |name: &str| format!("aws-sm:{name}").parse::<KeyReference>().unwrap();

    // Each algorithm loads, by name and by ARN, and signs what its public key verifies.
    for (alg, name) in [
        (Algorithm::Es256, "tenant/es256"),
        (Algorithm::Rs256, "tenant/rs256"),
        (Algorithm::EdDsa, "tenant/eddsa"),
    ] {
        let (private, public) = key_pair(alg);
        let arn = create(name, document(alg.as_str(), &private, &public)).await;
        let expected = SigningKey::from_pem(&private).unwrap();
        let key = reference(name).load_with(&aws).await.unwrap();
        assert_eq!((key.algorithm(), key.kid()), (alg, expected.kid()));
        let by_arn = reference(&arn).load_with(&aws).await.unwrap();
        assert_eq!(by_arn.kid(), expected.kid());
        let token = key.sign_jws(br#"{"sub":"s"}"#).unwrap();
        let decoding = key.public_jwk().decoding_key().unwrap();
        let mut validation = jsonwebtoken::Validation::new(alg.jwt());
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
    }

    let (es_private, es_public) = key_pair(Algorithm::Es256);
    let (_, other_public) = key_pair(Algorithm::Es256);
    create(
        "bad/json",
        "{\"algorithm\": \"ES256\", \"private_key\": ".into(),
    )
    .await;
    create(
        "bad/mismatch",
        document("ES256", &es_private, &other_public),
    )
    .await;
    create("bad/alg", document("RS256", &es_private, &es_public)).await;
    create("bad/hmac", document("HS256", &es_private, &es_public)).await;
    create(
        "bad/missing-field",
        json!({"algorithm": "ES256", "private_key": es_private}).to_string(),
    )
    .await;
    create(
        "bad/private",
        document(
            "ES256",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            &es_public,
        ),
    )
    .await;
    for (name, want) in [
        ("bad/json", "not valid JSON"),
        ("bad/mismatch", "public_key does not match its private_key"),
        ("bad/alg", "the key is an ES256 key, not an RS256 one"),
        ("bad/hmac", "cannot be published in a JWKS"),
        ("bad/missing-field", "no field `public_key`"),
        ("bad/private", "not a P-256"),
        ("missing/name", "no such secret"),
    ] {
        let err = reference(name).load_with(&aws).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("signing key aws-sm:{name}: ")),
            "{name}: {text}"
        );
        assert!(text.contains(want), "{name}: {text}");
        // No key material in any message.
        assert!(!text.contains("BEGIN"), "{name}: {text}");
        assert!(
            !text.contains(&es_private.lines().nth(1).unwrap()[..24]),
            "{name}: {text}"
        );
        if name == "missing/name" {
            assert!(matches!(err, ReferenceError::NotFound { .. }), "{err:?}");
        }
    }

    // Watched: loaded once, then only when the secret's version changes.
    let mut watched = Watched::new(reference("tenant/watched"))
        .with_interval(Duration::ZERO)
        .with_aws_config(aws.clone());
    assert!(matches!(
        watched.load_if_changed().await,
        Err(ReferenceError::NotFound { .. })
    ));
    create("tenant/watched", document("ES256", &es_private, &es_public)).await;
    let first = watched.load_if_changed().await.unwrap().unwrap();
    assert!(watched.load_if_changed().await.unwrap().is_none());
    let (rs_private, rs_public) = key_pair(Algorithm::Rs256);
    client
        .put_secret_value()
        .secret_id("tenant/watched")
        .secret_string(document("RS256", &rs_private, &rs_public))
        .send()
        .await
        .unwrap();
    let second = watched.load_if_changed().await.unwrap().unwrap();
    assert_ne!(second.kid(), first.kid());
    assert_eq!(second.algorithm(), Algorithm::Rs256);
    assert!(watched.load_if_changed().await.unwrap().is_none());
    // Within the interval nothing is asked.
    let mut slow = Watched::new(reference("tenant/watched"))
        .with_interval(Duration::from_secs(3600))
        .with_aws_config(aws.clone());
    assert!(slow.load_if_changed().await.unwrap().is_some());
    assert!(slow.load_if_changed().await.unwrap().is_none());

    // An endpoint that does not answer: the error names the reference.
    drop(moto);
    let err = reference("tenant/es256").load_with(&aws).await.unwrap_err();
    assert!(matches!(err, ReferenceError::Aws { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("signing key aws-sm:tenant/es256: AWS Secrets Manager: "),
        "{err}"
    );
}
