//! Replay, splice and tamper attempts against the running sidecar: a replayed envelope and one
//! below the replay window (409 replayed_request); an envelope moved to another path, another
//! session, or sent with another Authorization header (400 decryption_failed); flipped
//! ciphertext, IV and seq (400 decryption_failed, and a request that failed to decrypt consumes
//! nothing); and answers altered on the way back (body or status), which the client refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e_tests::{Env, raw_post, refusal};
use identity_protocol::identity::bearer_header;
use identity_protocol::{Envelope, Error as ProtocolError, paths};
use serde_json::json;

/// A started stack, a session, and a token pair to build valid requests with.
async fn setup() -> anyhow::Result<(Env, identity_protocol::ClientSession, String)> {
    let env = Env::start().await?;
    let session = env.anonymous().await?;
    let tokens = env.issue(&session, "mallory-target").await?;
    Ok((env, session, tokens.access_token))
}

fn introspect_body(token: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "token": token })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_envelope_is_409() -> anyhow::Result<()> {
    let (env, session, access) = setup().await?;
    let auth = bearer_header(&access);
    let sealed = session.seal_request(
        "POST",
        paths::INTROSPECT,
        Some(&auth),
        &introspect_body(&access),
    )?;
    let first = env
        .client
        .send_sealed(
            &session,
            paths::INTROSPECT,
            Some(&auth),
            sealed.seq,
            sealed.body.clone(),
        )
        .await?;
    assert_eq!(first.status, 200);
    let replay = env
        .client
        .send_sealed(
            &session,
            paths::INTROSPECT,
            Some(&auth),
            sealed.seq,
            sealed.body,
        )
        .await;
    assert_eq!(refusal(replay)?, (409, "replayed_request".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seq_below_the_window_is_409_and_gaps_are_allowed() -> anyhow::Result<()> {
    let (env, session, access) = setup().await?;
    let auth = bearer_header(&access);
    let body = introspect_body(&access);
    // Jump ahead: gaps are allowed.
    let high =
        session.seal_request_with_seq(5000, "POST", paths::INTROSPECT, Some(&auth), &body)?;
    let answer = env
        .client
        .send_sealed(
            &session,
            paths::INTROSPECT,
            Some(&auth),
            high.seq,
            high.body,
        )
        .await?;
    assert_eq!(answer.status, 200);
    // Unseen but at most H-1024: below the window.
    let low = session.seal_request_with_seq(
        5000 - 1024,
        "POST",
        paths::INTROSPECT,
        Some(&auth),
        &body,
    )?;
    let below = env
        .client
        .send_sealed(&session, paths::INTROSPECT, Some(&auth), low.seq, low.body)
        .await;
    assert_eq!(refusal(below)?, (409, "replayed_request".into()));
    // Unseen inside the window: accepted.
    let inside = session.seal_request_with_seq(
        5000 - 1023,
        "POST",
        paths::INTROSPECT,
        Some(&auth),
        &body,
    )?;
    let answer = env
        .client
        .send_sealed(
            &session,
            paths::INTROSPECT,
            Some(&auth),
            inside.seq,
            inside.body,
        )
        .await?;
    assert_eq!(answer.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_moved_to_another_path_is_400_decryption_failed() -> anyhow::Result<()> {
    let (env, session, access) = setup().await?;
    let auth = bearer_header(&access);
    let sealed = session.seal_request(
        "POST",
        paths::INTROSPECT,
        Some(&auth),
        &introspect_body(&access),
    )?;
    let spliced = env
        .client
        .send_sealed(
            &session,
            paths::REVOKE,
            Some(&auth),
            sealed.seq,
            sealed.body.clone(),
        )
        .await;
    assert_eq!(refusal(spliced)?, (400, "decryption_failed".into()));
    // Failing to decrypt consumed nothing: the genuine request still goes through.
    let genuine = env
        .client
        .send_sealed(
            &session,
            paths::INTROSPECT,
            Some(&auth),
            sealed.seq,
            sealed.body,
        )
        .await?;
    assert_eq!(genuine.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_moved_to_another_session_is_400_decryption_failed() -> anyhow::Result<()> {
    let (env, session, access) = setup().await?;
    let other = env.anonymous().await?;
    let auth = bearer_header(&access);
    let sealed = session.seal_request(
        "POST",
        paths::INTROSPECT,
        Some(&auth),
        &introspect_body(&access),
    )?;
    let spliced = env
        .client
        .send_sealed(
            &other,
            paths::INTROSPECT,
            Some(&auth),
            sealed.seq,
            sealed.body,
        )
        .await;
    assert_eq!(refusal(spliced)?, (400, "decryption_failed".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_or_no_authorization_header_is_400_decryption_failed() -> anyhow::Result<()> {
    let (env, session, access) = setup().await?;
    let other = env.issue(&session, "mallory").await?;
    let auth = bearer_header(&access);
    let sealed = session.seal_request(
        "POST",
        paths::INTROSPECT,
        Some(&auth),
        &introspect_body(&access),
    )?;
    let swapped = env
        .client
        .send_sealed(
            &session,
            paths::INTROSPECT,
            Some(&bearer_header(&other.access_token)),
            sealed.seq,
            sealed.body.clone(),
        )
        .await;
    assert_eq!(refusal(swapped)?, (400, "decryption_failed".into()));
    let stripped = env
        .client
        .send_sealed(&session, paths::INTROSPECT, None, sealed.seq, sealed.body)
        .await;
    assert_eq!(refusal(stripped)?, (400, "decryption_failed".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_ciphertext_iv_or_seq_is_400_decryption_failed() -> anyhow::Result<()> {
    let (env, session, access) = setup().await?;
    let auth = bearer_header(&access);
    let sealed = session.seal_request(
        "POST",
        paths::INTROSPECT,
        Some(&auth),
        &introspect_body(&access),
    )?;
    let genuine = Envelope::from_json(&sealed.body)?;

    let mut flipped = genuine.clone();
    flipped.ciphertext[0] ^= 0x01;
    let mut iv = genuine.clone();
    iv.iv[11] ^= 0x80;
    let mut tag = genuine.clone();
    let last = tag.ciphertext.len() - 1;
    tag.ciphertext[last] ^= 0x01;
    let mut seq = genuine.clone();
    seq.seq += 1;
    for tampered in [flipped, iv, tag, seq] {
        let seq = tampered.seq;
        let answer = env
            .client
            .send_sealed(
                &session,
                paths::INTROSPECT,
                Some(&auth),
                seq,
                tampered.to_json(),
            )
            .await;
        assert_eq!(refusal(answer)?, (400, "decryption_failed".into()));
    }
    let answer = env
        .client
        .send_sealed(
            &session,
            paths::INTROSPECT,
            Some(&auth),
            sealed.seq,
            sealed.body,
        )
        .await?;
    assert_eq!(answer.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_altered_on_the_way_back_is_refused_by_the_client() -> anyhow::Result<()> {
    let (env, session, access) = setup().await?;
    let auth = bearer_header(&access);
    let sealed = session.seal_request(
        "POST",
        paths::INTROSPECT,
        Some(&auth),
        &introspect_body(&access),
    )?;
    let (status, encrypted, body) = raw_post(
        &env,
        &session,
        paths::INTROSPECT,
        Some(&auth),
        sealed.body,
        &[],
    )
    .await?;
    assert_eq!(status, 200);
    assert!(
        encrypted,
        "identity API answers come encrypted with X-Session-Id"
    );

    // The genuine answer opens.
    let plaintext = session.open_response("POST", paths::INTROSPECT, sealed.seq, status, &body)?;
    let answer: serde_json::Value = serde_json::from_slice(plaintext.as_bytes())?;
    assert_eq!(answer["active"], true);

    // A forged status (say, to turn an error into a success or back) fails.
    let forged = session.open_response("POST", paths::INTROSPECT, sealed.seq, 401, &body);
    assert_eq!(forged.unwrap_err(), ProtocolError::DecryptionFailed);
    // So does the answer presented as another path's, or another seq's.
    let moved = session.open_response("POST", paths::REVOKE, sealed.seq, status, &body);
    assert_eq!(moved.unwrap_err(), ProtocolError::DecryptionFailed);
    // A flipped bit in the body fails.
    let mut envelope = Envelope::from_json(&body)?;
    envelope.ciphertext[0] ^= 0x01;
    let flipped = session.open_response(
        "POST",
        paths::INTROSPECT,
        sealed.seq,
        status,
        &envelope.to_json(),
    );
    assert_eq!(flipped.unwrap_err(), ProtocolError::DecryptionFailed);
    Ok(())
}
