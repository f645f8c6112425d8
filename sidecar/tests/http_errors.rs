//! Every error row of PROTOCOL.md section 4, driven over HTTP against the running sidecar (bound
//! to port 0) in front of an in-process stub of the identity API: status, code, plaintext body
//! without X-Session-Id, `Allow` on 405 and `Retry-After` on 429 and 503. Also the check order of
//! authenticated session init (section 2) and the body limit's exact edge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use identity_protocol::paths;
use serde_json::{Value, json};

const TOKEN: &str = paths::TOKEN;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../docs/protocol-vectors.json")).unwrap()
}

// ----- 400 invalid_request ---------------------------------------------------------------------

#[tokio::test]
async fn invalid_request_on_session_init() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let init = sidecar.endpoint(paths::SESSION_INIT);
    // Malformed JSON, wrong field type, missing field.
    for body in ["{", r#"{"client_public_key": 5}"#, "{}", "[]"] {
        assert_error(&post_raw(&init, &[], body).await, 400, "invalid_request");
    }
    // Query string.
    let with_query = format!("{init}?x=1");
    assert_error(
        &post_raw(&with_query, &[], init_body()).await,
        400,
        "invalid_request",
    );
    // Only one of Authorization and X-Subject.
    let only_auth = [("authorization", "Bearer alice-access-token")];
    assert_error(
        &post_raw(&init, &only_auth, init_body()).await,
        400,
        "invalid_request",
    );
    let only_subject = [(identity_protocol::headers::SUBJECT, "alice")];
    assert_error(
        &post_raw(&init, &only_subject, init_body()).await,
        400,
        "invalid_request",
    );
    // Two Authorization headers.
    let two = [
        ("authorization", "Bearer alice-access-token"),
        ("authorization", "Bearer alice-access-token"),
        (identity_protocol::headers::SUBJECT, "alice"),
    ];
    assert_error(
        &post_raw(&init, &two, init_body()).await,
        400,
        "invalid_request",
    );
    // None of these reached the identity API.
    assert!(stub.records_for(paths::INTROSPECT).is_empty());
    // The token is checked before the subject: `-` (never a subject) with an active token is a
    // subject mismatch, with a token that is not active an invalid token.
    let dash = [
        ("authorization", "Bearer alice-access-token"),
        (identity_protocol::headers::SUBJECT, "-"),
    ];
    assert_error(
        &post_raw(&init, &dash, init_body()).await,
        403,
        "subject_mismatch",
    );
    let dash_bad_token = [
        ("authorization", "Bearer inactive-access-token"),
        (identity_protocol::headers::SUBJECT, "-"),
    ];
    assert_error(
        &post_raw(&init, &dash_bad_token, init_body()).await,
        401,
        "invalid_token",
    );
}

#[tokio::test]
async fn invalid_request_on_encrypted_routes() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (_client, session) = sidecar.anonymous().await;
    let good = session.seal_request("POST", TOKEN, None, b"{}").unwrap();
    let good: Value = serde_json::from_slice(&good.body).unwrap();
    let iv = good["iv"].as_str().unwrap();
    let ct = good["ciphertext"].as_str().unwrap();
    let bodies = [
        "{".to_owned(),
        "[1,2]".to_owned(),
        json!({"seq": "1", "iv": iv, "ciphertext": ct}).to_string(),
        json!({"seq": 1, "iv": 12, "ciphertext": ct}).to_string(),
        json!({"iv": iv, "ciphertext": ct}).to_string(),
        // Bad base64url: padding, standard alphabet, whitespace.
        json!({"seq": 1, "iv": format!("{iv}=="), "ciphertext": ct}).to_string(),
        json!({"seq": 1, "iv": iv, "ciphertext": format!("{ct}+/")}).to_string(),
        json!({"seq": 1, "iv": format!(" {iv}"), "ciphertext": ct}).to_string(),
        // iv not 12 bytes.
        json!({"seq": 1, "iv": "AAAAAAAAAAAAAAAA-A", "ciphertext": ct}).to_string(),
        json!({"seq": 1, "iv": "AAAAAAAAAAA", "ciphertext": ct}).to_string(),
        // seq out of range.
        json!({"seq": 0, "iv": iv, "ciphertext": ct}).to_string(),
        json!({"seq": -1, "iv": iv, "ciphertext": ct}).to_string(),
        json!({"seq": 1.5, "iv": iv, "ciphertext": ct}).to_string(),
        json!({"seq": 9_007_199_254_740_992_u64, "iv": iv, "ciphertext": ct}).to_string(),
        r#"{"seq": 1e400, "iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAAAAAAAAAAAAAAAAAAAA"}"#
            .to_owned(),
    ];
    for body in bodies {
        let got = sidecar
            .post_sealed(&session, TOKEN, None, body.clone().into_bytes())
            .await;
        assert_error(&got, 400, "invalid_request");
    }
    // Query strings, even an empty one.
    for target in [format!("{TOKEN}?a=b"), format!("{TOKEN}?")] {
        let sealed = session.seal_request("POST", TOKEN, None, b"{}").unwrap();
        let got = post_raw(
            &sidecar.endpoint(&target),
            &[(identity_protocol::headers::SESSION_ID, session.id())],
            sealed.body,
        )
        .await;
        assert_error(&got, 400, "invalid_request");
    }
    // Two Authorization headers.
    let sealed = session
        .seal_request("POST", TOKEN, Some("Bearer a"), b"{}")
        .unwrap();
    let got = post_raw(
        &sidecar.endpoint(TOKEN),
        &[
            (identity_protocol::headers::SESSION_ID, session.id()),
            ("authorization", "Bearer a"),
            ("authorization", "Bearer b"),
        ],
        sealed.body,
    )
    .await;
    assert_error(&got, 400, "invalid_request");
    // Nothing was consumed: seq 1 still works.
    let sealed = session
        .seal_request_with_seq(1, "POST", TOKEN, None, b"{}")
        .unwrap();
    let got = sidecar
        .post_sealed(&session, TOKEN, None, sealed.body)
        .await;
    assert_eq!(got.0, 200);
}

// ----- 400 invalid_public_key (and the other negative vectors) --------------------------------

#[tokio::test]
async fn negative_vectors_over_http() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let init = sidecar.endpoint(paths::SESSION_INIT);
    let vectors = vectors();
    let negative = vectors["negative"].as_array().unwrap();
    assert!(negative.len() >= 7);
    let mut public_key_rows = 0;
    for vector in negative {
        let body = json!({"client_public_key": vector["client_public_key"]}).to_string();
        let got = post_raw(&init, &[], body).await;
        let status = vector["expected_status"].as_u64().unwrap() as u16;
        let code = vector["expected_error"].as_str().unwrap();
        public_key_rows += usize::from(code == "invalid_public_key");
        assert_error(&got, status, code);
    }
    assert!(public_key_rows >= 4);
    // The public key is checked before the headers and the token (section 2).
    let bad_key = json!({"client_public_key": negative[0]["client_public_key"]}).to_string();
    let got = post_raw(
        &init,
        &[(identity_protocol::headers::SUBJECT, "alice")],
        bad_key,
    )
    .await;
    assert_error(&got, 400, "invalid_public_key");
}

// ----- 400 decryption_failed -----------------------------------------------------------------

#[tokio::test]
async fn decryption_failed() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (_client, session) = sidecar.anonymous().await;
    let (_other_client, other) = sidecar.anonymous().await;
    let seal = |seq, path, auth| {
        session
            .seal_request_with_seq(seq, "POST", path, auth, b"{\"a\":1}")
            .unwrap()
            .body
    };
    // Tampered ciphertext.
    let mut tampered: Value = serde_json::from_slice(&seal(1, TOKEN, None)).unwrap();
    let ct = tampered["ciphertext"].as_str().unwrap().to_owned();
    let flipped = if ct.starts_with('A') { "B" } else { "A" };
    tampered["ciphertext"] = Value::from(format!("{flipped}{}", &ct[1..]));
    let got = sidecar
        .post_sealed(&session, TOKEN, None, tampered.to_string().into_bytes())
        .await;
    assert_error(&got, 400, "decryption_failed");
    // Sealed for another path.
    let got = sidecar
        .post_sealed(&session, TOKEN, None, seal(1, paths::REVOKE, None))
        .await;
    assert_error(&got, 400, "decryption_failed");
    // Another seq in the envelope than the one sealed.
    let mut moved: Value = serde_json::from_slice(&seal(1, TOKEN, None)).unwrap();
    moved["seq"] = Value::from(2);
    let got = sidecar
        .post_sealed(&session, TOKEN, None, moved.to_string().into_bytes())
        .await;
    assert_error(&got, 400, "decryption_failed");
    // Another Authorization header than the one sealed, or none.
    let got = sidecar
        .post_sealed(
            &session,
            TOKEN,
            Some("Bearer other"),
            seal(1, TOKEN, Some("Bearer one")),
        )
        .await;
    assert_error(&got, 400, "decryption_failed");
    let got = sidecar
        .post_sealed(&session, TOKEN, None, seal(1, TOKEN, Some("Bearer one")))
        .await;
    assert_error(&got, 400, "decryption_failed");
    // Another session's key.
    let got = sidecar
        .post_sealed(&other, TOKEN, None, seal(1, TOKEN, None))
        .await;
    assert_error(&got, 400, "decryption_failed");
    // A failure consumes nothing: seq 1 and 2 still go through on both sessions.
    for seq in [1, 2] {
        let got = sidecar
            .post_sealed(&session, TOKEN, None, seal(seq, TOKEN, None))
            .await;
        assert_eq!(got.0, 200);
    }
    let body = other
        .seal_request_with_seq(1, "POST", TOKEN, None, b"{}")
        .unwrap()
        .body;
    assert_eq!(sidecar.post_sealed(&other, TOKEN, None, body).await.0, 200);
    let metrics = http()
        .get(sidecar.endpoint("/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("sidecar_decryption_failures_total 6"),
        "{metrics}"
    );
    // Nothing that failed reached the identity API.
    assert_eq!(stub.records_for(TOKEN).len(), 3);
}

// ----- 401 invalid_session -------------------------------------------------------------------

#[tokio::test]
async fn invalid_session_missing_and_unknown() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (_client, session) = sidecar.anonymous().await;
    let sealed = session.seal_request("POST", TOKEN, None, b"{}").unwrap();
    let got = post_raw(&sidecar.endpoint(TOKEN), &[], sealed.body.clone()).await;
    assert_error(&got, 401, "invalid_session");
    let unknown = [(
        identity_protocol::headers::SESSION_ID,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )];
    let got = post_raw(&sidecar.endpoint(TOKEN), &unknown, sealed.body.clone()).await;
    assert_error(&got, 401, "invalid_session");
    // Not even a valid session id (a space; over 512 characters).
    let long = "a".repeat(513);
    for id in ["a b", long.as_str()] {
        let got = post_raw(
            &sidecar.endpoint(TOKEN),
            &[(identity_protocol::headers::SESSION_ID, id)],
            sealed.body.clone(),
        )
        .await;
        assert_error(&got, 401, "invalid_session");
    }
}

#[tokio::test]
async fn invalid_session_expired() {
    let stub = Stub::start().await;
    // A sweep interval far longer than the test: expiry is enforced on use, not only by the sweep.
    let sidecar = Sidecar::start_with(&stub.url, |c| {
        c.anonymous_ttl_secs = 1;
        c.sweep_interval_ms = 3_600_000;
    })
    .await;
    let (client, session) = sidecar.anonymous().await;
    client.send(&session, TOKEN, None, b"{}").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut expired = false;
    for _ in 0..40 {
        let sealed = session.seal_request("POST", TOKEN, None, b"{}").unwrap();
        let got = sidecar
            .post_sealed(&session, TOKEN, None, sealed.body)
            .await;
        if got.0 == 401 {
            assert_error(&got, 401, "invalid_session");
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(expired);
}

#[tokio::test]
async fn invalid_session_ended_by_newer_authenticated_init() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let client = sidecar.client().await;
    // An anonymous previous session ends.
    let anonymous = client.init_anonymous().await.unwrap();
    let alice = client
        .init_authenticated(ALICE_TOKEN, "alice", Some(anonymous.id()))
        .await
        .unwrap();
    let err = client
        .send(&anonymous, TOKEN, None, b"{}")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.as_str()), Some("invalid_session"));
    // A previous session of the same subject ends.
    let alice2 = client
        .init_authenticated(ALICE_TOKEN, "alice", Some(alice.id()))
        .await
        .unwrap();
    let err = client.send(&alice, TOKEN, None, b"{}").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.as_str()), Some("invalid_session"));
    // A previous session of another subject is left alone.
    let _bob = client
        .init_authenticated(BOB_TOKEN, "bob", Some(alice2.id()))
        .await
        .unwrap();
    assert_eq!(
        client
            .send(&alice2, TOKEN, None, b"{}")
            .await
            .unwrap()
            .status,
        200
    );
    // An anonymous init names nothing to end.
    let anonymous = client.init_anonymous().await.unwrap();
    let got = post_raw(
        &sidecar.endpoint(paths::SESSION_INIT),
        &[(identity_protocol::headers::SESSION_ID, alice2.id())],
        init_body(),
    )
    .await;
    assert_eq!(got.0, 200);
    assert_eq!(
        client
            .send(&alice2, TOKEN, None, b"{}")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        client
            .send(&anonymous, TOKEN, None, b"{}")
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn invalid_session_exhausted() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |c| c.max_requests_per_session = 3).await;
    let (client, session) = sidecar.anonymous().await;
    // A request that fails to decrypt does not count.
    let bad = session
        .seal_request_with_seq(99, "POST", paths::REVOKE, None, b"{}")
        .unwrap();
    let got = sidecar.post_sealed(&session, TOKEN, None, bad.body).await;
    assert_error(&got, 400, "decryption_failed");
    for _ in 0..3 {
        assert_eq!(
            client
                .send(&session, TOKEN, None, b"{}")
                .await
                .unwrap()
                .status,
            200
        );
    }
    for _ in 0..2 {
        let sealed = session.seal_request("POST", TOKEN, None, b"{}").unwrap();
        let got = sidecar
            .post_sealed(&session, TOKEN, None, sealed.body)
            .await;
        assert_error(&got, 401, "invalid_session");
    }
    // A new session works.
    let fresh = client.init_anonymous().await.unwrap();
    assert_eq!(
        client
            .send(&fresh, TOKEN, None, b"{}")
            .await
            .unwrap()
            .status,
        200
    );
}

// ----- 401 invalid_token, 403 subject_mismatch, and the order of section 2 ---------------------

#[tokio::test]
async fn invalid_token_and_subject_mismatch() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let init = sidecar.endpoint(paths::SESSION_INIT);
    let try_init = |auth: &'static str, subject: &'static str| {
        let init = init.clone();
        async move {
            post_raw(
                &init,
                &[
                    ("authorization", auth),
                    (identity_protocol::headers::SUBJECT, subject),
                ],
                init_body(),
            )
            .await
        }
    };
    // Not active: the identity API says 401, or 200 {"active": false}; a refresh token.
    assert_error(
        &try_init("Bearer unknown-token", "alice").await,
        401,
        "invalid_token",
    );
    assert_error(
        &try_init("Bearer inactive-access-token", "alice").await,
        401,
        "invalid_token",
    );
    assert_error(
        &try_init("Bearer alice-refresh-token", "alice").await,
        401,
        "invalid_token",
    );
    // Not a Bearer.
    assert_error(
        &try_init("Basic YWxpY2U6c2VjcmV0", "alice").await,
        401,
        "invalid_token",
    );
    assert_error(&try_init("Bearer", "alice").await, 401, "invalid_token");
    assert_error(
        &try_init("alice-access-token", "alice").await,
        401,
        "invalid_token",
    );
    // The token before the subject: an inactive token with another subject is 401.
    assert_error(
        &try_init("Bearer unknown-token", "bob").await,
        401,
        "invalid_token",
    );
    // Active, but the subject differs.
    assert_error(
        &try_init("Bearer alice-access-token", "bob").await,
        403,
        "subject_mismatch",
    );
    // The scheme is case-insensitive.
    let got = try_init("bEaReR alice-access-token", "alice").await;
    assert_eq!(got.0, 200, "{:?}", got.2);
    let answer: Value = serde_json::from_slice(&got.2).unwrap();
    assert_eq!(answer["authenticated"], true);
    assert_eq!(answer["subject"], "alice");
    assert_eq!(answer["expires_in"], 3600);
    // Introspection went through the internal path: bearer, body token, internal token.
    let calls = stub.records_for(paths::INTROSPECT);
    assert!(!calls.is_empty());
    for call in &calls {
        assert_eq!(
            call.header(identity_protocol::headers::INTERNAL_TOKEN),
            Some(&[INTERNAL_TOKEN.to_owned()][..])
        );
        let bearer = call.header("authorization").unwrap()[0].clone();
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(
            format!("Bearer {}", body["token"].as_str().unwrap()),
            bearer
        );
    }
    // Bad headers are refused before the token is looked at: no introspection for them.
    let before = stub.records_for(paths::INTROSPECT).len();
    let got = post_raw(
        &init,
        &[("authorization", "Bearer unknown-token")],
        init_body(),
    )
    .await;
    assert_error(&got, 400, "invalid_request");
    assert_eq!(stub.records_for(paths::INTROSPECT).len(), before);
}

// ----- 404, 405 ------------------------------------------------------------------------------

#[tokio::test]
async fn not_found_and_method_not_allowed() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    for path in [
        "/nope",
        "/api/v1/token/",
        "/api/v1/session/init/",
        "/API/v1/token",
        "/health/",
    ] {
        let got = post_raw(&sidecar.endpoint(path), &[], "{}").await;
        assert_error(&got, 404, "not_found");
        let got = parts(http().get(sidecar.endpoint(path)).send().await.unwrap()).await;
        assert_error(&got, 404, "not_found");
    }
    for path in [TOKEN, paths::INTROSPECT, paths::SESSION_INIT] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let got = parts(
                http()
                    .request(method, sidecar.endpoint(path))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_error(&got, 405, "method_not_allowed");
            assert_eq!(got.1["allow"], "POST");
        }
    }
    for path in [
        "/health",
        "/health/ready",
        "/metrics",
        paths::KEY_DOCUMENT,
        paths::JWKS,
    ] {
        let got = post_raw(&sidecar.endpoint(path), &[], "{}").await;
        assert_error(&got, 405, "method_not_allowed");
        assert_eq!(got.1["allow"], "GET");
    }
}

// ----- 409 replayed_request ------------------------------------------------------------------

#[tokio::test]
async fn replayed_request() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (_client, session) = sidecar.anonymous().await;
    let send = |seq: u64| {
        let body = session
            .seal_request_with_seq(seq, "POST", TOKEN, None, b"{}")
            .unwrap()
            .body;
        sidecar.post_sealed(&session, TOKEN, None, body)
    };
    assert_eq!(send(1).await.0, 200);
    // The same seq again, freshly sealed or the very same bytes.
    assert_error(&send(1).await, 409, "replayed_request");
    let body = session
        .seal_request_with_seq(2, "POST", TOKEN, None, b"{}")
        .unwrap()
        .body;
    assert_eq!(
        sidecar
            .post_sealed(&session, TOKEN, None, body.clone())
            .await
            .0,
        200
    );
    assert_error(
        &sidecar.post_sealed(&session, TOKEN, None, body).await,
        409,
        "replayed_request",
    );
    // A gap, then the window: H-1023 unseen is accepted, H-1024 is refused.
    assert_eq!(send(3000).await.0, 200);
    assert_error(&send(3000 - 1024).await, 409, "replayed_request");
    assert_error(&send(2).await, 409, "replayed_request");
    assert_eq!(send(3000 - 1023).await.0, 200);
    assert_error(&send(3000 - 1023).await, 409, "replayed_request");
    assert_eq!(send(2999).await.0, 200);
    let metrics = http()
        .get(sidecar.endpoint("/metrics"))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("sidecar_replays_refused_total 5"),
        "{metrics}"
    );
}

// ----- 413 payload_too_large -----------------------------------------------------------------

/// A sealed envelope padded with JSON whitespace to exactly `len` bytes.
fn padded(session: &identity_protocol::ClientSession, len: usize) -> Vec<u8> {
    let mut body = session
        .seal_request("POST", TOKEN, None, b"{}")
        .unwrap()
        .body;
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

#[tokio::test]
async fn payload_too_large_edge() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (_client, session) = sidecar.anonymous().await;
    let got = sidecar
        .post_sealed(&session, TOKEN, None, padded(&session, 65_536))
        .await;
    assert_eq!(got.0, 200, "{:?}", got.2);
    let got = sidecar
        .post_sealed(&session, TOKEN, None, padded(&session, 65_537))
        .await;
    assert_error(&got, 413, "payload_too_large");
    // Session init has the same limit.
    let init = sidecar.endpoint(paths::SESSION_INIT);
    let mut body = init_body().into_bytes();
    body.resize(65_536, b' ');
    assert_eq!(post_raw(&init, &[], body.clone()).await.0, 200);
    body.push(b' ');
    assert_error(&post_raw(&init, &[], body).await, 413, "payload_too_large");
}

#[tokio::test]
async fn payload_too_large_without_reading_the_rest() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (_client, session) = sidecar.anonymous().await;
    // Chunked, never terminated: refused once 65,537 bytes have come.
    let head = format!(
        "POST {TOKEN} HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n\
         x-session-id: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        session.id()
    );
    let mut body = Vec::new();
    for _ in 0..20 {
        body.extend_from_slice(b"1000\r\n");
        body.extend_from_slice(&[b' '; 0x1000]);
        body.extend_from_slice(b"\r\n");
    }
    let answer = answer_to_unfinished_body(sidecar.addr, &head, &body).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    // A declared Content-Length of 1 GB, with almost nothing sent: refused at once.
    let head = format!(
        "POST {TOKEN} HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n\
         x-session-id: {}\r\ncontent-length: 1000000000\r\n\r\n",
        session.id()
    );
    let answer = answer_to_unfinished_body(sidecar.addr, &head, b"{").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // The same on session init.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n",
        paths::SESSION_INIT
    );
    let answer = answer_to_unfinished_body(sidecar.addr, &head, &body).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

// ----- 408 request_timeout -------------------------------------------------------------------

#[tokio::test]
async fn request_timeout_when_the_body_stops_arriving() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |config| {
        config.server.limits.body_read_timeout = Duration::from_millis(300);
    })
    .await;
    let session = sidecar.client().await.init_anonymous().await.unwrap();
    // On an encrypted route and on session init: the body announces 100 bytes and sends one.
    for head in [
        format!(
            "POST {TOKEN} HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n\
             x-session-id: {}\r\ncontent-length: 100\r\n\r\n",
            session.id()
        ),
        format!(
            "POST {} HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n\
             content-length: 100\r\n\r\n",
            paths::SESSION_INIT
        ),
    ] {
        let answer = answer_to_unfinished_body(sidecar.addr, &head, b"{").await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"], "request_timeout", "{answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("x-session-id"),
            "{answer}"
        );
    }
    // The session is untouched: its next request goes through.
    let sealed = session.seal_request("POST", TOKEN, None, b"{}").unwrap();
    assert_eq!(
        sidecar
            .post_sealed(&session, TOKEN, None, sealed.body)
            .await
            .0,
        200
    );
}

// ----- 415 unsupported_media_type ------------------------------------------------------------

#[tokio::test]
async fn unsupported_media_type() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start(&stub.url).await;
    let (_client, session) = sidecar.anonymous().await;
    let init = sidecar.endpoint(paths::SESSION_INIT);
    for content_type in [
        "text/plain",
        "application/jsonx",
        "application/x-www-form-urlencoded",
        "",
    ] {
        let got = post_raw(&init, &[("content-type", content_type)], init_body()).await;
        assert_error(&got, 415, "unsupported_media_type");
        let sealed = session.seal_request("POST", TOKEN, None, b"{}").unwrap();
        let got = post_raw(
            &sidecar.endpoint(TOKEN),
            &[
                ("content-type", content_type),
                (identity_protocol::headers::SESSION_ID, session.id()),
            ],
            sealed.body,
        )
        .await;
        assert_error(&got, 415, "unsupported_media_type");
    }
    // No Content-Type at all.
    let got = parts(http().post(&init).body(init_body()).send().await.unwrap()).await;
    assert_error(&got, 415, "unsupported_media_type");
    // Parameters and case are fine.
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json;charset=UTF-8",
    ] {
        let got = post_raw(&init, &[("content-type", content_type)], init_body()).await;
        assert_eq!(got.0, 200);
        let sealed = session.seal_request("POST", TOKEN, None, b"{}").unwrap();
        let got = post_raw(
            &sidecar.endpoint(TOKEN),
            &[
                ("content-type", content_type),
                (identity_protocol::headers::SESSION_ID, session.id()),
            ],
            sealed.body,
        )
        .await;
        assert_eq!(got.0, 200);
    }
}

// ----- 429 too_many_requests -----------------------------------------------------------------

#[tokio::test]
async fn too_many_requests_rate_limit() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |c| {
        c.init_burst = 3;
        c.init_rate_per_sec = 0.01;
    })
    .await;
    let init = sidecar.endpoint(paths::SESSION_INIT);
    for _ in 0..3 {
        assert_eq!(post_raw(&init, &[], init_body()).await.0, 200);
    }
    let got = post_raw(&init, &[], init_body()).await;
    assert_error(&got, 429, "too_many_requests");
    let retry_after: u64 = got.1["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    // Every init attempt counts, also invalid ones; encrypted requests are not limited.
    assert_error(&post_raw(&init, &[], "{").await, 429, "too_many_requests");
}

#[tokio::test]
async fn too_many_requests_table_full() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |c| c.max_sessions = 2).await;
    let client = sidecar.client().await;
    let first = client.init_anonymous().await.unwrap();
    let _second = client.init_anonymous().await.unwrap();
    let got = post_raw(&sidecar.endpoint(paths::SESSION_INIT), &[], init_body()).await;
    assert_error(&got, 429, "too_many_requests");
    assert!(got.1.contains_key("retry-after"));
    // Authenticated init too (the new session would have to exist before the one it names
    // ends), and the named session stays.
    let err = client
        .init_authenticated(ALICE_TOKEN, "alice", Some(first.id()))
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.as_str()), Some("too_many_requests"));
    assert_eq!(sidecar.state.sessions.len(), 2);
    assert_eq!(
        client
            .send(&first, TOKEN, None, b"{}")
            .await
            .unwrap()
            .status,
        200
    );
}

// ----- 502 upstream_unavailable, 504 upstream_timeout -----------------------------------------

#[tokio::test]
async fn upstream_unavailable_when_down() {
    let down = closed_port_url().await;
    let sidecar = Sidecar::start(&down).await;
    let (_client, session) = sidecar.anonymous().await;
    let sealed = session.seal_request("POST", TOKEN, None, b"{}").unwrap();
    let got = sidecar
        .post_sealed(&session, TOKEN, None, sealed.body)
        .await;
    assert_error(&got, 502, "upstream_unavailable");
    // Authenticated init needs the identity API too; so do the pass-throughs.
    let got = post_raw(
        &sidecar.endpoint(paths::SESSION_INIT),
        &[
            ("authorization", "Bearer alice-access-token"),
            (identity_protocol::headers::SUBJECT, "alice"),
        ],
        init_body(),
    )
    .await;
    assert_error(&got, 502, "upstream_unavailable");
    let got = parts(
        http()
            .get(sidecar.endpoint(paths::JWKS))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&got, 502, "upstream_unavailable");
    // Not ready; still alive.
    let ready = http()
        .get(sidecar.endpoint("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let live = http()
        .get(sidecar.endpoint("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

#[tokio::test]
async fn upstream_unavailable_when_not_json_or_too_big() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |c| c.max_upstream_body_bytes = 10_000).await;
    let (client, session) = sidecar.anonymous().await;
    let sealed = session
        .seal_request("POST", TOKEN, None, br#"{"non_json":true}"#)
        .unwrap();
    let got = sidecar
        .post_sealed(&session, TOKEN, None, sealed.body)
        .await;
    assert_error(&got, 502, "upstream_unavailable");
    let sealed = session
        .seal_request("POST", TOKEN, None, br#"{"big":20000}"#)
        .unwrap();
    let got = sidecar
        .post_sealed(&session, TOKEN, None, sealed.body)
        .await;
    assert_error(&got, 502, "upstream_unavailable");
    // The same without a Content-Length: the cap holds while the answer streams in.
    let sealed = session
        .seal_request("POST", TOKEN, None, br#"{"chunked":20000}"#)
        .unwrap();
    let got = sidecar
        .post_sealed(&session, TOKEN, None, sealed.body)
        .await;
    assert_error(&got, 502, "upstream_unavailable");
    // Under the cap it goes through, with a length or without.
    let answer = client
        .send(&session, TOKEN, None, br#"{"big":5000}"#)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    let answer = client
        .send(&session, TOKEN, None, br#"{"chunked":5000}"#)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), 5002);
}

#[tokio::test]
async fn upstream_timeout() {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |c| c.upstream_timeout_ms = 200).await;
    let (_client, session) = sidecar.anonymous().await;
    let sealed = session
        .seal_request_with_seq(1, "POST", TOKEN, None, br#"{"sleep_ms":3000}"#)
        .unwrap();
    let got = sidecar
        .post_sealed(&session, TOKEN, None, sealed.body.clone())
        .await;
    assert_error(&got, 504, "upstream_timeout");
    // The request had decrypted: its seq is consumed.
    let got = sidecar
        .post_sealed(&session, TOKEN, None, sealed.body)
        .await;
    assert_error(&got, 409, "replayed_request");
}

// ----- 503 session_store_unavailable ------------------------------------------------------------

#[tokio::test]
async fn session_store_unavailable_when_redis_is_down() {
    let stub = Stub::start().await;
    // A Redis URL where nothing listens: the sidecar starts, and answers 503 until it does.
    let down = closed_port_url().await.replace("http://", "redis://");
    let sidecar = Sidecar::start_with(&stub.url, |c| {
        c.session_store.url = down;
        c.session_store.key = identity_runtime::Secret::from_value("ab".repeat(32));
        c.session_store.timeout_ms = 300;
    })
    .await;
    let init = sidecar.endpoint(paths::SESSION_INIT);
    let authenticated = [
        ("authorization", "Bearer alice-access-token"),
        (identity_protocol::headers::SUBJECT, "alice"),
    ];
    let unknown = identity_sidecar::sessions::new_session_id();
    let sealed_headers = [(identity_protocol::headers::SESSION_ID, unknown.as_str())];
    let envelope = r#"{"seq":1,"iv":"AAAAAAAAAAAAAAAA","ciphertext":"AAAAAAAAAAAAAAAAAAAAAA"}"#;
    for got in [
        post_raw(&init, &[], init_body()).await,
        post_raw(&init, &authenticated, init_body()).await,
        post_raw(&sidecar.endpoint(TOKEN), &sealed_headers, envelope).await,
    ] {
        assert_error(&got, 503, "session_store_unavailable");
        assert_eq!(got.1["retry-after"], "1");
    }
    // Counted by operation.
    let metrics = http()
        .get(sidecar.endpoint(paths::METRICS))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for operation in ["create", "get"] {
        assert!(
            metrics.contains(&format!(
                "sidecar_session_store_errors_total{{operation=\"{operation}\"}}"
            )),
            "{metrics}"
        );
    }
}
