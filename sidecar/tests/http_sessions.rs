//! The sidecar's working paths over HTTP: signed session inits verified against
//! /.well-known/identity-sidecar, key rotation (a published key), forwarding (the headers the
//! identity API receives, the status bound into the response AAD), pass-throughs, health and
//! metrics, the expired-session sweep, concurrency (many sessions; one session from many tasks
//! with exact replay accounting), key loading at start, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use identity_client::{Client, Trust};
use identity_protocol::signing::{KeyDocument, init_signing_input};
use identity_protocol::{InitAnswer, PublicKey, SigningKey, TrustedKeys, b64, paths};
use identity_sidecar::StartError;
use serde_json::Value;

const TOKEN: &str = paths::TOKEN;

async fn key_document(sidecar: &Sidecar) -> KeyDocument {
    let answer = http()
        .get(sidecar.endpoint(paths::KEY_DOCUMENT))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

#[tokio::test]
async fn init_answers_are_signed_with_the_published_key() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let document = key_document(&sidecar).await;
    assert_eq!(document.protocol, "identity-sidecar/v1");
    assert_eq!(document.keys.len(), 1);
    assert_eq!(document.keys[0].key_id, sidecar.key_id);
    assert_eq!(document.keys[0].public_key, sidecar.public_key);

    // Trust on first use: the client fetches the document and verifies every answer with it.
    let client = Client::with_http(http(), &sidecar.url, None).await.unwrap();
    assert!(matches!(client.trust(), Trust::FirstUse { .. }));
    let anonymous = client.init_anonymous().await.unwrap();
    assert_eq!(
        client
            .send(&anonymous, TOKEN, None, b"{}")
            .await
            .unwrap()
            .status,
        200
    );
    let alice = client
        .init_authenticated(ALICE_TOKEN, "alice", None)
        .await
        .unwrap();
    assert_eq!(alice.subject(), Some("alice"));

    // And by hand, from the raw answer: the signing input of section 1.
    let handshake = identity_protocol::ClientHandshake::new();
    let body = serde_json::to_string(&handshake.request()).unwrap();
    let got = post_raw(&sidecar.endpoint(paths::SESSION_INIT), &[], body).await;
    assert_eq!(got.0, 200);
    assert_eq!(got.1["cache-control"], "no-store");
    let answer: InitAnswer = serde_json::from_slice(&got.2).unwrap();
    assert!(!answer.authenticated && answer.subject.is_none());
    assert_eq!(answer.expires_in, 300);
    assert_eq!(answer.session_id.len(), 43);
    assert_eq!(b64::decode(&answer.session_id).unwrap().len(), 32);
    let server_key = PublicKey::from_b64u("server_public_key", &answer.server_public_key).unwrap();
    let input = init_signing_input(
        handshake.public_key(),
        &server_key,
        &answer.session_id,
        answer.expires_at,
        None,
    );
    let trusted = TrustedKeys::from_document(&document).unwrap();
    let signature = b64::decode(&answer.signature).unwrap();
    trusted.verify(&answer.key_id, &input, &signature).unwrap();
    // Another subject in the input does not verify.
    let forged = init_signing_input(
        handshake.public_key(),
        &server_key,
        &answer.session_id,
        answer.expires_at,
        Some("alice"),
    );
    assert!(trusted.verify(&answer.key_id, &forged, &signature).is_err());
    // A client pinned to another key refuses the answer.
    let other = SigningKey::generate().public_key().to_b64u();
    let wrong = Client::with_http(http(), &sidecar.url, Some(&other))
        .await
        .unwrap();
    assert!(wrong.init_anonymous().await.is_err());
}

#[tokio::test]
async fn keys_load_from_files_and_a_further_key_is_published() {
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    let stub = Stub::start().await;
    let dir = scratch_dir("keys");
    let signing = SigningKey::generate();
    let signing_file = dir.join("signing.pem");
    std::fs::write(&signing_file, signing.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    // The next key, published before it signs: one as a private PEM, one as a public PEM.
    let next = SigningKey::generate();
    let next_file = dir.join("next.pem");
    std::fs::write(&next_file, next.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let third = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let third_pem = third
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let third_file = dir.join("third.pub.pem");
    std::fs::write(&third_file, third_pem).unwrap();

    let mut config = config(&stub.url);
    config.signing_key_file = Some(signing_file.clone());
    config.publish_key_files = vec![next_file.clone(), third_file, signing_file.clone()];
    let sidecar = Sidecar::run(identity_sidecar::bind(&config).await.unwrap());
    assert_eq!(sidecar.key_id, signing.key_id());
    let document = key_document(&sidecar).await;
    let ids: Vec<_> = document.keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "the signing key is listed once: {ids:?}");
    assert_eq!(ids[0], signing.key_id());
    assert_eq!(ids[1], next.key_id());
    // Answers are signed by the first; a client that pinned the next key accepts nothing yet.
    let client = Client::with_http(http(), &sidecar.url, None).await.unwrap();
    client.init_anonymous().await.unwrap();
    let pinned_next = Client::with_http(http(), &sidecar.url, Some(&next.public_key().to_b64u()))
        .await
        .unwrap();
    assert!(pinned_next.init_anonymous().await.is_err());

    // Rotation: the next key signs, the old one stays published.
    let mut rotated = common::config(&stub.url);
    rotated.signing_key_file = Some(next_file);
    rotated.publish_key_files = vec![signing_file];
    let sidecar2 = Sidecar::run(identity_sidecar::bind(&rotated).await.unwrap());
    pinned_next.init_anonymous().await.unwrap_err(); // still the first sidecar's URL
    let client2 = Client::with_http(http(), &sidecar2.url, Some(&next.public_key().to_b64u()))
        .await
        .unwrap();
    client2.init_anonymous().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn refuses_to_start_without_a_signing_key_and_dev_generates_one() {
    let stub = Stub::start().await;
    let config = config(&stub.url);
    let err = identity_sidecar::bind(&config).await.unwrap_err();
    assert!(matches!(err, StartError::NoSigningKey));
    let message = err.to_string();
    assert!(
        message.contains("--signing-key-file") && message.contains("--dev"),
        "{message}"
    );
    // A file that is not a key.
    let dir = scratch_dir("badkey");
    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let mut with_bad = common::config(&stub.url);
    with_bad.signing_key_file = Some(bad);
    assert!(matches!(
        identity_sidecar::bind(&with_bad).await.unwrap_err(),
        StartError::Key { .. }
    ));

    // --dev: generated once with mode 0600, then reused.
    let key = identity_sidecar::state::dev_signing_key(&dir).unwrap();
    let path = dir.join(identity_sidecar::state::DEV_SIGNING_KEY_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = identity_sidecar::state::dev_signing_key(&dir).unwrap();
    assert_eq!(key.key_id(), again.key_id());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn forwarding_headers_and_status_in_the_aad() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (client, anonymous) = sidecar.anonymous().await;

    // Anonymous: X-Internal-Token, X-Forwarded-For, Content-Type, Authorization unchanged; no
    // X-Session-Subject.
    let auth = "Basic Y2xpZW50OnNlY3JldA==";
    let answer = client
        .send(
            &anonymous,
            paths::TOKEN_ISSUE,
            Some(auth),
            br#"{"subject":"test-user"}"#,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let echo = echoed(&answer);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], paths::TOKEN_ISSUE);
    assert_eq!(echo["body"]["subject"], "test-user");
    let headers = &echo["headers"];
    assert_eq!(
        headers[identity_protocol::headers::INTERNAL_TOKEN],
        serde_json::json!([INTERNAL_TOKEN])
    );
    assert_eq!(headers["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(headers["authorization"], serde_json::json!([auth]));
    assert_eq!(
        headers["content-type"],
        serde_json::json!(["application/json"])
    );
    assert!(
        headers
            .get(identity_protocol::headers::SESSION_SUBJECT)
            .is_none()
    );
    assert!(
        headers
            .get(identity_protocol::headers::SESSION_ID)
            .is_none()
    );

    // Client-sent copies of X-Session-Subject and X-Internal-Token are dropped.
    let (_client, alice) = sidecar.alice().await;
    let sealed = alice
        .seal_request("POST", paths::REVOKE, None, b"{}")
        .unwrap();
    let answer = http()
        .post(sidecar.endpoint(paths::REVOKE))
        .header(identity_protocol::headers::SESSION_ID, alice.id())
        .header("content-type", "application/json")
        .header(identity_protocol::headers::SESSION_SUBJECT, "mallory")
        .header(identity_protocol::headers::INTERNAL_TOKEN, "forged")
        .header("x-forwarded-for", "203.0.113.9")
        .body(sealed.body)
        .send()
        .await
        .unwrap();
    let (status, answer_headers, body) = parts(answer).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer_headers[identity_protocol::headers::SESSION_ID],
        alice.id()
    );
    assert_eq!(answer_headers["content-type"], "application/json");
    let plain = alice
        .open_response("POST", paths::REVOKE, sealed.seq, 200, &body)
        .unwrap();
    let echo: Value = serde_json::from_slice(plain.as_bytes()).unwrap();
    let headers = &echo["headers"];
    assert_eq!(
        headers[identity_protocol::headers::SESSION_SUBJECT],
        serde_json::json!(["alice"])
    );
    assert_eq!(
        headers[identity_protocol::headers::INTERNAL_TOKEN],
        serde_json::json!([INTERNAL_TOKEN])
    );
    assert_eq!(headers["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert!(headers.get("authorization").is_none());

    // The identity API's status comes through, bound into the response AAD.
    let sealed = anonymous
        .seal_request("POST", TOKEN, None, br#"{"status":403}"#)
        .unwrap();
    let (status, headers, body) = sidecar
        .post_sealed(&anonymous, TOKEN, None, sealed.body)
        .await;
    assert_eq!(status, 403);
    assert!(headers.contains_key(identity_protocol::headers::SESSION_ID));
    let plain = anonymous
        .open_response("POST", TOKEN, sealed.seq, 403, &body)
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(plain.as_bytes()).unwrap()["body"]["status"],
        403
    );
    // A tampered status (or path, or seq) does not open.
    assert!(
        anonymous
            .open_response("POST", TOKEN, sealed.seq, 200, &body)
            .is_err()
    );
    assert!(
        anonymous
            .open_response("POST", paths::REVOKE, sealed.seq, 403, &body)
            .is_err()
    );
    assert!(
        anonymous
            .open_response("POST", TOKEN, sealed.seq + 1, 403, &body)
            .is_err()
    );
    // The client module surfaces the encrypted error statuses.
    let answer = client
        .send(&anonymous, TOKEN, None, br#"{"status":401}"#)
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
}

#[tokio::test]
async fn configured_routes_replace_the_default_list() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |c| {
        c.routes = vec!["/api/v1/echo".into(), TOKEN.into()];
    })
    .await;
    let (client, session) = sidecar.anonymous().await;
    let answer = client
        .send(&session, "/api/v1/echo", None, b"{}")
        .await
        .unwrap();
    assert_eq!(echoed(&answer)["path"], "/api/v1/echo");
    let got = post_raw(&sidecar.endpoint(paths::REVOKE), &[], "{}").await;
    assert_error(&got, 404, "not_found");
}

#[tokio::test]
async fn health_metrics_and_pass_throughs() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let get = |path: &'static str| {
        let url = sidecar.endpoint(path);
        async move { http().get(url).send().await.unwrap() }
    };
    assert_eq!(get("/health").await.status(), 200);
    assert_eq!(get("/health/ready").await.status(), 200);
    let jwks: Value = get(paths::JWKS).await.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "stub");

    let (client, session) = sidecar.anonymous().await;
    client.send(&session, TOKEN, None, b"{}").await.unwrap();
    let _ = client
        .init_authenticated("nope", "alice", None)
        .await
        .unwrap_err();
    let _ = post_raw(&sidecar.endpoint("/nope"), &[], "{}").await;
    let metrics = get("/metrics").await;
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("text")
    );
    let text = metrics.text().await.unwrap();
    for needle in [
        "sidecar_sessions_live 1",
        r#"sidecar_session_inits_total{kind="anonymous",outcome="ok"} 1"#,
        r#"sidecar_session_inits_total{kind="authenticated",outcome="invalid_token"} 1"#,
        r#"sidecar_requests_total{route="/api/v1/token",status="200"} 1"#,
        r#"sidecar_requests_total{route="other",status="404"} 1"#,
        "sidecar_decryption_failures_total 0",
        "sidecar_replays_refused_total 0",
        r#"sidecar_upstream_latency_seconds_count{route="/api/v1/token"} 1"#,
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    // Nothing secret in the metrics.
    assert!(!text.contains(INTERNAL_TOKEN) && !text.contains(session.id()));
}

#[tokio::test]
async fn sweep_drops_expired_sessions() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |c| {
        c.anonymous_ttl_secs = 1;
        c.authenticated_ttl_secs = 3600;
        c.sweep_interval_ms = 50;
    })
    .await;
    let client = sidecar.client().await;
    for _ in 0..5 {
        client.init_anonymous().await.unwrap();
    }
    let alice = client
        .init_authenticated(ALICE_TOKEN, "alice", None)
        .await
        .unwrap();
    assert_eq!(sidecar.state.sessions.len(), 6);
    // Bounded: 200 polls of 25 ms; the anonymous sessions live 1 s.
    let state = sidecar.state.clone();
    assert!(
        eventually(200, || state.sessions.len() == 1).await,
        "{}",
        state.sessions.len()
    );
    // The sweep, not a lookup, dropped them; the authenticated session lives on.
    assert_eq!(
        client
            .send(&alice, TOKEN, None, b"{}")
            .await
            .unwrap()
            .status,
        200
    );
    let text = http()
        .get(sidecar.endpoint("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("sidecar_sessions_live 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_on_many_sessions() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let client = Arc::new(sidecar.client().await);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let session = if i % 3 == 0 {
                client
                    .init_authenticated(ALICE_TOKEN, "alice", None)
                    .await
                    .unwrap()
            } else {
                client.init_anonymous().await.unwrap()
            };
            for n in 0..10 {
                let body = serde_json::json!({"client": i, "n": n}).to_string();
                let answer = client
                    .send(&session, TOKEN, None, body.as_bytes())
                    .await
                    .unwrap();
                assert_eq!(answer.status, 200);
                let echo = echoed(&answer);
                assert_eq!(echo["body"]["client"], i);
                assert_eq!(echo["body"]["n"], n);
                let subject = echo["headers"]
                    .get(identity_protocol::headers::SESSION_SUBJECT)
                    .cloned();
                assert_eq!(subject.is_some(), i % 3 == 0);
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(stub.records_for(TOKEN).len(), 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_session_from_many_tasks_accepts_every_seq_exactly_once() {
    const SEQS: u64 = 150;
    const TASKS: usize = 4;
    let stub = Stub::start().await;
    let sidecar = Arc::new(Sidecar::start(&stub.url).await);
    let (_client, session) = sidecar.anonymous().await;
    let session = Arc::new(session);
    // Every task holds its own envelope (fresh IV) for every seq and sends them in the same
    // order, all starting together: each seq reaches the sidecar from TASKS tasks at about the
    // same time, and exactly one of them may go on.
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let share: Vec<(u64, Vec<u8>)> = (1..=SEQS)
            .map(|seq| {
                let plaintext = format!("{{\"seq\":{seq},\"task\":{task}}}");
                let sealed = session
                    .seal_request_with_seq(seq, "POST", TOKEN, None, plaintext.as_bytes())
                    .unwrap();
                (seq, sealed.body)
            })
            .collect();
        let sidecar = Arc::clone(&sidecar);
        let session = Arc::clone(&session);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut outcomes = Vec::new();
            for (seq, body) in share {
                let (status, _, answer) = sidecar.post_sealed(&session, TOKEN, None, body).await;
                if status == 200 {
                    let plain = session
                        .open_response("POST", TOKEN, seq, 200, &answer)
                        .unwrap();
                    let echo: Value = serde_json::from_slice(plain.as_bytes()).unwrap();
                    assert_eq!(echo["body"]["seq"], seq);
                    assert_eq!(echo["body"]["task"], task);
                }
                outcomes.push((seq, status));
            }
            outcomes
        }));
    }
    let mut accepted: HashMap<u64, usize> = HashMap::new();
    let mut refused: HashMap<u64, usize> = HashMap::new();
    for task in tasks {
        let outcomes = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap();
        for (seq, status) in outcomes {
            match status {
                200 => *accepted.entry(seq).or_default() += 1,
                409 => *refused.entry(seq).or_default() += 1,
                other => panic!("seq {seq}: unexpected status {other}"),
            }
        }
    }
    for seq in 1..=SEQS {
        assert_eq!(accepted.get(&seq), Some(&1), "seq {seq} accepted once");
        assert_eq!(
            refused.get(&seq),
            Some(&(TASKS - 1)),
            "seq {seq} refused the other times"
        );
    }
    // Exactly one forwarded request per seq.
    assert_eq!(stub.records_for(TOKEN).len(), SEQS as usize);
    let refused_total = SEQS as usize * (TASKS - 1);
    let text = http()
        .get(sidecar.endpoint("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!("sidecar_replays_refused_total {refused_total}")),
        "{text}"
    );
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (client, session) = sidecar.anonymous().await;
    let url = sidecar.url.clone();
    let arrived = stub.state.arrived.notified();
    tokio::pin!(arrived);
    arrived.as_mut().enable();
    let in_flight = tokio::spawn(async move {
        client
            .send(&session, TOKEN, None, br#"{"sleep_ms":500}"#)
            .await
    });
    // Shut down once the request is with the identity API.
    tokio::time::timeout(Duration::from_secs(10), arrived)
        .await
        .unwrap();
    sidecar.shutdown().await;
    let answer = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, 200);
    // Stopped: no new connections.
    assert!(http().get(format!("{url}/health")).send().await.is_err());
}

#[tokio::test]
async fn app_answers_without_a_listener() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let stub = Stub::start().await;
    let config = config(&stub.url);
    let keys = identity_sidecar::Keys::new(SigningKey::generate(), Vec::new());
    let state = identity_sidecar::AppState::new(&config, keys).unwrap();
    let app = identity_sidecar::app(state);
    let answer = app
        .clone()
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Without connection info, session init still works (one shared rate-limit bucket).
    let answer = app
        .oneshot(
            Request::post(paths::SESSION_INIT)
                .header("content-type", "application/json")
                .body(Body::from(init_body()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}
