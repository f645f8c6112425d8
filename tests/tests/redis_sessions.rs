//! Sidecar replicas that share sessions through Redis (`--session-store redis://`): two
//! sidecar processes on one identity API and one Redis, with the client's session moving
//! between them. One session's requests alternating between the replicas; one sealed request
//! sent to both at once (exactly one 200, the other 409); the authenticated refresh on one
//! replica ending the anonymous session on the other; a session past its lifetime refused by
//! both; Redis stopped under load (503 `session_store_unavailable`, never a 500, never a
//! replay accepted) and started again (the replicas recover without a restart).
//!
//! The shared Redis of SIDECAR_TEST_REDIS_URL (each test under its own key prefix), or for the
//! test that stops Redis, a private redis-server. Ignored, visibly, without the variable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e_tests::{Env, StackConfig, calls, ok_tokens};
use identity_client::{Client, ClientError};
use identity_launcher::RedisServer;
use identity_protocol::identity::bearer_header;
use identity_protocol::{ClientSession, ErrorCode, paths};

/// The store key every replica of a test shares.
const STORE_KEY: &str = "5d8f0c3a7b1e49d2a6c4e8f01b3d5a7c9e2f4a6b8c0d1e3f5a7b9c2d4e6f8a0b";

fn redis_url() -> String {
    std::env::var("SIDECAR_TEST_REDIS_URL").expect("SIDECAR_TEST_REDIS_URL is set")
}

/// The sidecar's environment for `redis_url`, under a key prefix of this test's own.
fn store_env(redis_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let prefix = format!("e2e:{}:", &identity_launcher::random_b64u_32()[..12]);
    [
        ("SIDECAR_SESSION_STORE", redis_url),
        ("SIDECAR_SESSION_STORE_KEY", STORE_KEY),
        ("SIDECAR_SESSION_STORE_PREFIX", prefix.as_str()),
        ("SIDECAR_SESSION_STORE_TIMEOUT_MS", "300"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// The stack (identity API and replica A) and a client of replica B.
async fn two_replicas(redis_url: &str, extra: &[(&str, &str)]) -> (Env, Client) {
    let mut env = Env::with(StackConfig {
        sidecar_env: store_env(redis_url, extra),
        ..StackConfig::default()
    })
    .await
    .unwrap();
    let url_b = env.stack.start_replica().await.unwrap();
    let b = Client::connect(&url_b, env.stack.pinned_key.as_deref())
        .await
        .unwrap();
    (env, b)
}

fn refused_with(result: &Result<identity_client::Response, ClientError>, code: ErrorCode) -> bool {
    matches!(result, Err(err) if err.code() == Some(code))
}

/// An introspection of `token`, sealed once, so that it can be sent twice.
fn sealed_introspect(session: &ClientSession, bearer: &str, token: &str) -> (u64, Vec<u8>) {
    let body = serde_json::to_vec(&serde_json::json!({ "token": token })).unwrap();
    let sealed = session
        .seal_request(
            "POST",
            paths::INTROSPECT,
            Some(&bearer_header(bearer)),
            &body,
        )
        .unwrap();
    (sealed.seq, sealed.body)
}

async fn send(
    client: &Client,
    session: &ClientSession,
    bearer: &str,
    (seq, envelope): &(u64, Vec<u8>),
) -> Result<identity_client::Response, ClientError> {
    client
        .send_sealed(
            session,
            paths::INTROSPECT,
            Some(&bearer_header(bearer)),
            *seq,
            envelope.clone(),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn one_session_alternates_between_replicas_and_a_refresh_on_one_ends_it_on_the_other() {
    let (env, b) = two_replicas(&redis_url(), &[]).await;
    let a = &env.client;
    // Step 1 on A, step 2 on B, then introspections alternating.
    let session = a.init_anonymous().await.unwrap();
    let tokens = ok_tokens(
        &calls::issue(
            &b,
            &session,
            env.client_id(),
            env.client_secret(),
            "alice",
            None,
            None,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    for (i, client) in [a, &b].into_iter().cycle().take(10).enumerate() {
        let answer = calls::introspect(
            client,
            &session,
            &tokens.access_token,
            &tokens.access_token,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(answer.active(), Some(true), "request {i}: {answer:?}");
    }
    // Step 4 on A names the anonymous session: it ends on B too, which holds its keys.
    let authenticated = a
        .init_authenticated(&tokens.access_token, "alice", Some(session.id()))
        .await
        .unwrap();
    let after = b
        .send(
            &session,
            paths::INTROSPECT,
            Some(&bearer_header(&tokens.access_token)),
            b"{}",
        )
        .await;
    assert!(refused_with(&after, ErrorCode::InvalidSession), "{after:?}");
    // The authenticated session works on both.
    for client in [&b, a] {
        let refreshed = calls::introspect(
            client,
            &authenticated,
            &tokens.access_token,
            &tokens.access_token,
            None,
        )
        .await
        .unwrap();
        assert_eq!(refreshed.active(), Some(true), "{refreshed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn one_sealed_request_sent_to_both_replicas_at_once_is_accepted_once() {
    let (env, b) = two_replicas(&redis_url(), &[]).await;
    let a = &env.client;
    let session = a.init_anonymous().await.unwrap();
    let tokens = env.issue(&session, "alice").await.unwrap();
    let bearer = tokens.access_token.as_str();
    for round in 0..20 {
        let sealed = sealed_introspect(&session, bearer, bearer);
        let (on_a, on_b) = tokio::join!(
            send(a, &session, bearer, &sealed),
            send(&b, &session, bearer, &sealed)
        );
        let accepted = [&on_a, &on_b]
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.status == 200))
            .count();
        let replayed = [&on_a, &on_b]
            .iter()
            .filter(|r| {
                matches!(r, Err(ClientError::Sidecar { status: 409, code, .. }) if code == "replayed_request")
            })
            .count();
        assert_eq!(
            (accepted, replayed),
            (1, 1),
            "round {round}: {:?} / {:?}",
            on_a.map(|r| r.status),
            on_b.map(|r| r.status)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn a_session_past_its_lifetime_is_refused_by_both_replicas() {
    let (env, b) = two_replicas(&redis_url(), &[("SIDECAR_ANONYMOUS_TTL_SECS", "2")]).await;
    let a = &env.client;
    let session = a.init_anonymous().await.unwrap();
    let tokens = env.issue(&session, "alice").await.unwrap();
    let bearer = tokens.access_token.as_str();
    // Both replicas hold the session's keys now.
    let on_b = calls::introspect(&b, &session, bearer, bearer, None)
        .await
        .unwrap();
    assert_eq!(on_b.active(), Some(true));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for client in [a, &b] {
        let late = send(
            client,
            &session,
            bearer,
            &sealed_introspect(&session, bearer, bearer),
        )
        .await;
        assert!(refused_with(&late, ErrorCode::InvalidSession), "{late:?}");
    }
}

/// What one sealed request, sent to A and then again to B, came to.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    unavailable: usize,
    ended: usize,
    inits_refused: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn redis_stopped_under_load_gives_503s_and_the_replicas_recover_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path()).await.unwrap();
    let (env, b) = two_replicas(&redis.url(), &[]).await;
    let env = Arc::new(env);
    let b = Arc::new(b);
    let stop = Arc::new(AtomicBool::new(false));

    // Three clients, each sending every sealed request to A and the same envelope to B: at most
    // one of the two may be accepted, whatever Redis does. A lost session is opened again.
    let mut load = Vec::new();
    for _ in 0..3 {
        let (env, b, stop) = (Arc::clone(&env), Arc::clone(&b), Arc::clone(&stop));
        load.push(tokio::spawn(async move {
            let a = &env.client;
            let mut tally = Tally::default();
            let mut current: Option<(ClientSession, String)> = None;
            // Paced, so that it is still running when Redis stops however fast the machine
            // is; bounded: at most 4,000 rounds (20 s and more), and the test stops it sooner.
            for _ in 0..4_000 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Some((session, bearer)) = &current else {
                    match a.init_anonymous().await {
                        Ok(session) => {
                            let issued = calls::issue(
                                a,
                                &session,
                                env.client_id(),
                                env.client_secret(),
                                "load",
                                None,
                                None,
                            )
                            .await;
                            match issued.map(|answer| ok_tokens(&answer)) {
                                Ok(Ok(tokens)) => current = Some((session, tokens.access_token)),
                                Ok(Err(e)) => panic!("issue answered {e}"),
                                Err(e) => check_refusal(&e, &mut tally),
                            }
                        }
                        Err(e) => {
                            check_refusal(&e, &mut tally);
                            tally.inits_refused += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    continue;
                };
                let sealed = sealed_introspect(session, bearer, bearer);
                let mut accepted_here = 0;
                for client in [a, &*b] {
                    match send(client, session, bearer, &sealed).await {
                        Ok(answer) => {
                            assert_eq!(answer.status, 200);
                            accepted_here += 1;
                            tally.accepted += 1;
                        }
                        Err(e) => {
                            check_refusal(&e, &mut tally);
                            if e.code() == Some(ErrorCode::InvalidSession) {
                                tally.ended += 1;
                                current = None;
                                break;
                            }
                        }
                    }
                }
                assert!(accepted_here <= 1, "a sealed request was accepted twice");
            }
            tally
        }));
    }

    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    redis.resume().await.unwrap();
    // Recovery without restarting the sidecars: a new session works on both within seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recovered = async {
            let session = env.client.init_anonymous().await.ok()?;
            let tokens = env.issue(&session, "alice").await.ok()?;
            let bearer = tokens.access_token;
            let on_b = calls::introspect(&b, &session, &bearer, &bearer, None)
                .await
                .ok()?;
            (on_b.active() == Some(true)).then_some(())
        };
        if recovered.await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the replicas did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for task in load {
        let tally = task.await.unwrap();
        total.accepted += tally.accepted;
        total.unavailable += tally.unavailable;
        total.ended += tally.ended;
        total.inits_refused += tally.inits_refused;
    }
    eprintln!("{total:?}");
    assert!(total.accepted > 0, "{total:?}");
    assert!(
        total.unavailable > 0,
        "Redis was down and nobody noticed: {total:?}"
    );

    // Counted in the metrics and said in the logs of both replicas.
    let metrics = reqwest::get(format!("{}/metrics", env.stack.sidecar_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sidecar_session_store_errors_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    for log in std::iter::once(env.stack.sidecar_log()).chain(env.stack.replica_logs()) {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("session store unavailable"),
            "{}",
            log.display()
        );
        assert!(
            text.contains("the session store answers again"),
            "{}",
            log.display()
        );
    }
}

/// The sidecar's refusals under a Redis outage: 503 `session_store_unavailable`, 409 (the
/// second copy), or 401 (a session lost with Redis' memory). Never a 500 or anything else.
fn check_refusal(error: &ClientError, tally: &mut Tally) {
    match error {
        ClientError::Sidecar {
            status: 503, code, ..
        } if code == "session_store_unavailable" => tally.unavailable += 1,
        ClientError::Sidecar { status: 409, .. } | ClientError::Sidecar { status: 401, .. } => {}
        other => panic!("unexpected answer under a Redis outage: {other}"),
    }
}
