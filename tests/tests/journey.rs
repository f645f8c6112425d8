//! The six-step journey end to end, through the real binaries: the example client's journey
//! (pinned key and trust on first use), the `journey` binary against a running stack (--json,
//! the first-use notice, exit codes), and the failures it must explain: wrong client secret (401 invalid_client from the identity API),
//! a pinned key that is not the sidecar's (signature mismatch), and no sidecar at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::anyhow;
use e2e_tests::{Env, profile_dir};
use identity_client::{ClientError, Trust};
use identity_launcher::free_port;
use identity_protocol::{Error as ProtocolError, SigningKey};
use identity_sidecar_examples::journey::{self, Event, Failure, FailureKind, Outcome, Settings};
use identity_sidecar_examples::output::hint;

async fn walk(settings: &Settings) -> Result<Outcome, Failure> {
    journey::run(settings, &mut |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_goes_through_with_a_pinned_key() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let mut seen = Vec::new();
    let outcome = journey::run(&env.journey_settings("test-user"), &mut |event| {
        if let Event::Step(step) = event {
            seen.push(step.number);
        }
    })
    .await
    .map_err(|f| anyhow!("{f}\nhint: {}", hint(&f)))?;
    assert_eq!(outcome.trust, Trust::Pinned);
    assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7]);
    for step in &outcome.steps {
        assert_eq!(step.status, 200, "step {step:?}");
    }
    // Step 4 bound the session to the subject; step 7 saw the revoked family inactive.
    assert_eq!(outcome.steps[3].answer["subject"], "test-user");
    for answer in outcome.steps[6].answer.as_object().unwrap().values() {
        assert_eq!(answer, &serde_json::json!({ "active": false }));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pin_the_key_is_trusted_on_first_use_and_said_so() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let settings = Settings {
        pinned_key: None,
        ..env.journey_settings("someone-else")
    };
    let outcome = walk(&settings).await.map_err(|f| anyhow!("{f}"))?;
    match outcome.trust {
        Trust::FirstUse { key_ids } => assert!(!key_ids.is_empty()),
        Trust::Pinned => panic!("no key was pinned"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_401_invalid_client_at_step_2() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let settings = Settings {
        client_secret: "not-the-secret".into(),
        ..env.journey_settings("test-user")
    };
    let failure = walk(&settings).await.expect_err("a wrong secret must fail");
    assert_eq!(failure.step, 2);
    assert_eq!(failure.status(), Some(401));
    assert_eq!(failure.code(), Some("invalid_client"));
    assert!(hint(&failure).contains("CLIENT_SECRET"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_that_is_not_the_sidecars_key_aborts_at_step_1() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let other = SigningKey::generate();
    let settings = Settings {
        pinned_key: Some(other.public_key().to_b64u()),
        ..env.journey_settings("test-user")
    };
    let failure = walk(&settings).await.expect_err("a foreign pin must fail");
    assert_eq!(failure.step, 1);
    assert!(
        matches!(
            failure.kind,
            FailureKind::Client(ClientError::Protocol(ProtocolError::BadSignature))
        ),
        "{failure:?}"
    );
    assert!(hint(&failure).contains("signature mismatch"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sidecar_is_explained() -> anyhow::Result<()> {
    let settings = without_a_stack(format!("http://127.0.0.1:{}", free_port()?));
    let failure = walk(&settings).await.expect_err("nothing listens there");
    assert_eq!(failure.step, 1);
    assert!(matches!(
        failure.kind,
        FailureKind::Client(ClientError::Unreachable { .. })
    ));
    assert!(hint(&failure).contains("not running"));
    Ok(())
}

#[tokio::test]
async fn a_sidecar_url_that_is_no_url_is_explained() -> anyhow::Result<()> {
    let settings = without_a_stack("127.0.0.1:8141");
    let failure = walk(&settings).await.expect_err("not a URL");
    assert_eq!(failure.step, 1);
    let FailureKind::Client(ClientError::InvalidUrl { url, .. }) = &failure.kind else {
        panic!("expected InvalidUrl, got {:?}", failure.kind);
    };
    assert_eq!(url, "127.0.0.1:8141");
    assert!(hint(&failure).contains("such as http://127.0.0.1:8141"));
    Ok(())
}

/// Settings for a journey that fails before it reaches any identity API.
fn without_a_stack(sidecar_url: impl Into<String>) -> Settings {
    Settings {
        sidecar_url: sidecar_url.into(),
        client_id: "c".into(),
        client_secret: "s".into(),
        subject: "test-user".into(),
        scope: None,
        audience: None,
        pinned_key: None,
    }
}

/// Runs the `journey` binary against `env` with the given extra environment; a clean
/// environment otherwise (no SIDECAR_*, CLIENT_*, SUBJECT of the developer's), bounded in time.
async fn run_journey_binary(
    env: &Env,
    args: &[&str],
    vars: &[(&str, &str)],
) -> anyhow::Result<std::process::Output> {
    let journey = profile_dir()?.join(format!("journey{}", std::env::consts::EXE_SUFFIX));
    if !journey.is_file() {
        anyhow::bail!(
            "{} not found: run `cargo test --workspace` (or `cargo build --workspace`) first",
            journey.display()
        );
    }
    let mut command = tokio::process::Command::new(&journey);
    for (key, _) in std::env::vars() {
        if key.starts_with("SIDECAR_") || key.starts_with("CLIENT_") || key == "SUBJECT" {
            command.env_remove(key);
        }
    }
    let output = command
        .args(args)
        .current_dir(env.stack.dir())
        .env("SIDECAR_URL", env.stack.sidecar_url())
        .env("CLIENT_ID", env.client_id())
        .envs(vars.iter().copied())
        .kill_on_drop(true)
        .output();
    Ok(tokio::time::timeout(std::time::Duration::from_secs(60), output).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_binary_prints_json() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let pin = env.stack.pinned_key.clone().unwrap();
    let output = run_journey_binary(
        &env,
        &["--json"],
        &[
            ("CLIENT_SECRET", env.client_secret()),
            ("SIDECAR_PUBLIC_KEY", &pin),
        ],
    )
    .await?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["trust"]["mode"], "pinned");
    assert_eq!(doc["steps"].as_array().map(Vec::len), Some(7));
    // Tokens are shortened, the secret never shown.
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains(env.client_secret()));
    Ok(())
}

/// The binary itself, as a user runs it: without a pin it says it trusted the key on first use;
/// a wrong secret and a foreign pin fail with exit 1, FAILED at the right step and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_binary_explains_trust_and_failures() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let tofu = run_journey_binary(&env, &[], &[("CLIENT_SECRET", env.client_secret())]).await?;
    assert!(tofu.status.success(), "{}", text(&tofu));
    assert!(text(&tofu).contains("NOTICE:"), "{}", text(&tofu));
    assert!(text(&tofu).contains("first use"), "{}", text(&tofu));

    let wrong = run_journey_binary(&env, &[], &[("CLIENT_SECRET", "not-the-secret")]).await?;
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(text(&wrong).contains("FAILED"), "{}", text(&wrong));
    assert!(text(&wrong).contains("invalid_client"), "{}", text(&wrong));
    assert!(text(&wrong).contains("CLIENT_SECRET"), "{}", text(&wrong));

    let foreign = SigningKey::generate().public_key().to_b64u();
    let mismatch = run_journey_binary(
        &env,
        &[],
        &[
            ("CLIENT_SECRET", env.client_secret()),
            ("SIDECAR_PUBLIC_KEY", &foreign),
        ],
    )
    .await?;
    assert_eq!(mismatch.status.code(), Some(1), "{}", text(&mismatch));
    assert!(
        text(&mismatch).contains("signature mismatch"),
        "{}",
        text(&mismatch)
    );
    // Neither failure prints the secret.
    assert!(!text(&mismatch).contains(env.client_secret()));
    Ok(())
}
