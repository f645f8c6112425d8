//! Known-answer tests: every vector of docs/protocol-vectors.json (a copy of the normative
//! vectors), positive and negative, through the protocol library's public API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use aes_gcm::{Aes256Gcm, KeyInit};
use identity_protocol::envelope::{self, Envelope};
use identity_protocol::handshake::{self, ClientHandshake, InitRequest};
use identity_protocol::keys::{self, Okm};
use identity_protocol::signing::{self, KeyDocument, SigningKey, TrustedKeys};
use identity_protocol::{
    EphemeralSecret, Error, ErrorCode, InitAnswer, PublicKey, Role, SessionKeys, b64,
};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../docs/protocol-vectors.json")).unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string"))
}

fn hex32(v: &Value, key: &str) -> [u8; 32] {
    hex::decode(s(v, key)).unwrap().try_into().unwrap()
}

fn bytes(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(s(v, key)).unwrap()
}

fn positives() -> Vec<Value> {
    vectors()["positive"].as_array().unwrap().clone()
}

fn envelope_of(v: &Value) -> Envelope {
    Envelope::from_json(&serde_json::to_vec(&v["envelope"]).unwrap()).unwrap()
}

#[test]
fn there_are_vectors_of_every_kind() {
    let v = vectors();
    assert_eq!(v["protocol"], "identity-sidecar/v1");
    assert!(v["positive"].as_array().unwrap().len() >= 3);
    assert!(v["negative"].as_array().unwrap().len() >= 7);
    assert!(v["init_signatures"].as_array().unwrap().len() >= 2);
}

#[test]
fn public_keys_derive_from_the_private_keys() {
    for v in positives() {
        let client = EphemeralSecret::from_be_bytes(&hex32(&v, "client_private_key_hex")).unwrap();
        let server = EphemeralSecret::from_be_bytes(&hex32(&v, "server_private_key_hex")).unwrap();
        assert_eq!(client.public_key().to_b64u(), s(&v, "client_public_key"));
        assert_eq!(server.public_key().to_b64u(), s(&v, "server_public_key"));
    }
}

#[test]
fn key_schedule_salt_info_okm_and_keys() {
    for v in positives() {
        let client = PublicKey::from_b64u("c", s(&v, "client_public_key")).unwrap();
        let server = PublicKey::from_b64u("s", s(&v, "server_public_key")).unwrap();
        let salt = keys::hkdf_salt(&client, &server);
        let info = keys::hkdf_info(s(&v, "session_id"));
        assert_eq!(salt.to_vec(), bytes(&v, "hkdf_salt_hex"), "{}", v["name"]);
        assert_eq!(info, bytes(&v, "hkdf_info_hex"), "{}", v["name"]);
        let okm = Okm::derive(&bytes(&v, "Z_hex"), &salt, &info);
        assert_eq!(okm.k_c2s(), bytes(&v, "k_c2s_hex"), "{}", v["name"]);
        assert_eq!(okm.k_s2c(), bytes(&v, "k_s2c_hex"), "{}", v["name"]);
        assert_eq!(
            [okm.k_c2s(), okm.k_s2c()].concat(),
            bytes(&v, "okm_hex"),
            "{}",
            v["name"]
        );
    }
}

/// Both ends run ECDH and the key schedule from their own private key and reach the vector's
/// keys: each opens the vector's request and responses.
#[test]
fn both_roles_establish_the_vector_keys() {
    for v in positives() {
        let client_secret =
            EphemeralSecret::from_be_bytes(&hex32(&v, "client_private_key_hex")).unwrap();
        let server_secret =
            EphemeralSecret::from_be_bytes(&hex32(&v, "server_private_key_hex")).unwrap();
        let client_pk = client_secret.public_key().clone();
        let server_pk = server_secret.public_key().clone();
        let session_id = s(&v, "session_id");
        let as_client = SessionKeys::establish(client_secret, &server_pk, Role::Client, session_id);
        let as_server = SessionKeys::establish(server_secret, &client_pk, Role::Server, session_id);
        let req = &v["request"];
        let auth = req["authorization"].as_str().map(str::as_bytes);
        let (method, path) = (s(req, "method"), s(req, "path"));
        let env = envelope_of(req);
        for keys in [&as_client, &as_server] {
            let plain = keys
                .open_request(session_id, method, path, auth, &env)
                .unwrap();
            assert_eq!(plain.as_bytes(), s(req, "plaintext").as_bytes());
            for resp in v["responses"].as_array().unwrap() {
                let status = resp["status"].as_u64().unwrap() as u16;
                let plain = keys
                    .open_response(
                        session_id,
                        method,
                        path,
                        env.seq,
                        status,
                        &envelope_of(resp),
                    )
                    .unwrap();
                assert_eq!(plain.as_bytes(), s(resp, "plaintext").as_bytes());
            }
        }
    }
}

#[test]
fn aad_auth_binding_and_ciphertexts() {
    for v in positives() {
        let session_id = s(&v, "session_id");
        let req = &v["request"];
        let auth = req["authorization"].as_str().map(str::as_bytes);
        let (method, path) = (s(req, "method"), s(req, "path"));
        let seq = req["seq"].as_u64().unwrap();
        assert_eq!(envelope::auth_binding(auth), s(req, "auth_binding"));
        let aad = envelope::request_aad(session_id, method, path, seq, auth);
        assert_eq!(aad, bytes(req, "aad_hex"), "{}", v["name"]);
        assert_eq!(aad, s(req, "aad").as_bytes());

        let c2s = Aes256Gcm::new_from_slice(&bytes(&v, "k_c2s_hex")).unwrap();
        let iv: [u8; 12] = bytes(req, "iv_hex").try_into().unwrap();
        let ct = envelope::seal(&c2s, &iv, &aad, &bytes(req, "plaintext_hex"));
        assert_eq!(b64::encode(&ct), s(req, "ciphertext"));
        assert_eq!(b64::encode(&iv), s(req, "iv"));
        let reencoded: Value = serde_json::from_slice(&envelope_of(req).to_json()).unwrap();
        assert_eq!(reencoded, req["envelope"]);

        let s2c = Aes256Gcm::new_from_slice(&bytes(&v, "k_s2c_hex")).unwrap();
        for resp in v["responses"].as_array().unwrap() {
            let status = resp["status"].as_u64().unwrap() as u16;
            let aad = envelope::response_aad(session_id, method, path, seq, status);
            assert_eq!(aad, bytes(resp, "aad_hex"));
            let iv: [u8; 12] = bytes(resp, "iv_hex").try_into().unwrap();
            let ct = envelope::seal(&s2c, &iv, &aad, &bytes(resp, "plaintext_hex"));
            assert_eq!(b64::encode(&ct), s(resp, "ciphertext"));
        }
    }
}

/// The envelope is bound to everything in its AAD: any other session, method, path, seq, auth or
/// status fails, as does a flipped bit anywhere.
#[test]
fn tampering_fails_to_decrypt() {
    for v in positives() {
        let session_id = s(&v, "session_id");
        let req = &v["request"];
        let auth = req["authorization"].as_str().map(str::as_bytes);
        let (m, p) = (s(req, "method"), s(req, "path"));
        let okm = Okm::derive(
            &bytes(&v, "Z_hex"),
            &bytes(&v, "hkdf_salt_hex"),
            &bytes(&v, "hkdf_info_hex"),
        );
        let keys = SessionKeys::from_okm(&okm);
        let env = envelope_of(req);
        assert!(keys.open_request(session_id, m, p, auth, &env).is_ok());
        let fail = |r: Result<_, Error>| assert_eq!(r.map(|_| ()), Err(Error::DecryptionFailed));
        fail(keys.open_request("other-session", m, p, auth, &env));
        fail(keys.open_request(session_id, "PUT", p, auth, &env));
        fail(keys.open_request(session_id, m, "/api/v1/token", auth, &env));
        fail(keys.open_request(session_id, m, &format!("{p}/"), auth, &env));
        fail(keys.open_request(session_id, m, p, Some(b"Bearer other"), &env));
        if auth.is_some() {
            fail(keys.open_request(session_id, m, p, None, &env));
        }
        let mut other_seq = env.clone();
        other_seq.seq = if env.seq == 1 { 2 } else { env.seq - 1 };
        fail(keys.open_request(session_id, m, p, auth, &other_seq));
        for i in 0..env.ciphertext.len() {
            let mut flipped = env.clone();
            flipped.ciphertext[i] ^= 0x01;
            fail(keys.open_request(session_id, m, p, auth, &flipped));
        }
        let mut iv = env.clone();
        iv.iv[0] ^= 0x80;
        fail(keys.open_request(session_id, m, p, auth, &iv));
        // Responses: a tampered status fails, and so does an answer to another seq.
        for resp in v["responses"].as_array().unwrap() {
            let status = resp["status"].as_u64().unwrap() as u16;
            let renv = envelope_of(resp);
            assert!(
                keys.open_response(session_id, m, p, env.seq, status, &renv)
                    .is_ok()
            );
            let other_status = if status == 200 { 201 } else { 200 };
            fail(keys.open_response(session_id, m, p, env.seq, other_status, &renv));
            assert_eq!(
                keys.open_response(session_id, m, p, env.seq + 1, status, &renv)
                    .map(|_| ()),
                Err(Error::SeqMismatch)
            );
        }
    }
}

#[test]
fn negative_public_keys_are_refused_with_the_expected_error() {
    for v in vectors()["negative"].as_array().unwrap() {
        let body = serde_json::json!({ "client_public_key": v["client_public_key"] });
        let err = InitRequest::parse(body.to_string().as_bytes()).unwrap_err();
        let expected = ErrorCode::parse(s(v, "expected_error")).unwrap();
        assert_eq!(err.code(), expected, "{}: {err}", v["name"]);
        assert_eq!(
            u64::from(err.code().status()),
            v["expected_status"].as_u64().unwrap()
        );
    }
}

#[test]
fn init_signatures_sign_and_verify() {
    for v in vectors()["init_signatures"].as_array().unwrap() {
        let name = &v["name"];
        let signing = SigningKey::from_be_bytes(&hex32(v, "signing_private_key_hex")).unwrap();
        let doc: KeyDocument = serde_json::from_value(v["key_document"].clone()).unwrap();
        assert_eq!(
            signing.public_key().to_b64u(),
            doc.keys[0].public_key,
            "{name}"
        );
        let answer: InitAnswer = serde_json::from_value(v["answer"].clone()).unwrap();
        let subject = v["subject"].as_str();
        let client_pk = PublicKey::from_b64u("c", s(v, "client_public_key")).unwrap();
        let server_pk = PublicKey::from_b64u("s", &answer.server_public_key).unwrap();
        let input = signing::init_signing_input(
            &client_pk,
            &server_pk,
            &answer.session_id,
            answer.expires_at,
            subject,
        );
        assert_eq!(input, bytes(v, "signing_input_hex"), "{name}");
        // RFC 6979 nonces: our signature is the vector's, byte for byte.
        assert_eq!(
            b64::encode(&signing.sign(&input)),
            answer.signature,
            "{name}"
        );

        let signature = b64::decode(&answer.signature).unwrap();
        let trusted = TrustedKeys::from_document(&doc).unwrap();
        trusted.verify(&answer.key_id, &input, &signature).unwrap();
        let pinned = TrustedKeys::pinned(&doc.keys[0].public_key).unwrap();
        pinned.verify("any-id", &input, &signature).unwrap();
        // A document key verifies only answers that name its id.
        assert_eq!(
            trusted.verify("other-key", &input, &signature),
            Err(Error::BadSignature)
        );
    }
}

/// The client's whole handshake against each signed answer: it accepts the genuine answer and
/// refuses any field changed after signing.
#[test]
fn client_handshake_verifies_the_answer() {
    let v = vectors();
    let positives = positives();
    for (sig, pos) in v["init_signatures"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&positives)
    {
        let doc: KeyDocument = serde_json::from_value(sig["key_document"].clone()).unwrap();
        let trusted = TrustedKeys::from_document(&doc).unwrap();
        let answer: InitAnswer = serde_json::from_value(sig["answer"].clone()).unwrap();
        let subject = sig["subject"].as_str();
        let handshake = || {
            let secret =
                EphemeralSecret::from_be_bytes(&hex32(pos, "client_private_key_hex")).unwrap();
            assert_eq!(secret.public_key().to_b64u(), s(sig, "client_public_key"));
            ClientHandshake::with_secret(secret)
        };
        let session = handshake().finish(&answer, &trusted, subject).unwrap();
        assert_eq!(session.id(), answer.session_id);
        // The session's keys are the vector's: it opens the vector's responses.
        let req = &pos["request"];
        let seq = req["seq"].as_u64().unwrap();
        for resp in pos["responses"].as_array().unwrap() {
            let body = serde_json::to_vec(&resp["envelope"]).unwrap();
            let status = resp["status"].as_u64().unwrap() as u16;
            let plain = session
                .open_response(s(req, "method"), s(req, "path"), seq, status, &body)
                .unwrap();
            assert_eq!(plain.as_bytes(), s(resp, "plaintext").as_bytes());
        }

        let refused = |answer: &InitAnswer| {
            assert_eq!(
                handshake().finish(answer, &trusted, subject).unwrap_err(),
                Error::BadSignature
            )
        };
        let mut later = answer.clone();
        later.expires_at += 1;
        refused(&later);
        let mut other_id = answer.clone();
        other_id.session_id.push('x');
        refused(&other_id);
        let mut other_key = answer.clone();
        other_key.server_public_key = EphemeralSecret::generate().public_key().to_b64u();
        refused(&other_key);
        // A subject other than the one asked for is refused before the signature is checked.
        assert!(matches!(
            handshake().finish(&answer, &trusted, Some("someone-else")),
            Err(Error::InitAnswer(_))
        ));
        let stranger = TrustedKeys::pinned(&SigningKey::generate().public_key().to_b64u()).unwrap();
        assert_eq!(
            handshake().finish(&answer, &stranger, subject).unwrap_err(),
            Error::BadSignature
        );
    }
}

/// The sidecar's end of the handshake reproduces the signed vector answers.
#[test]
fn server_accept_reproduces_the_vector_answers() {
    let v = vectors();
    for (sig, pos) in v["init_signatures"]
        .as_array()
        .unwrap()
        .iter()
        .zip(positives())
    {
        let signing = SigningKey::from_be_bytes(&hex32(sig, "signing_private_key_hex")).unwrap();
        let expected: InitAnswer = serde_json::from_value(sig["answer"].clone()).unwrap();
        let server_secret =
            EphemeralSecret::from_be_bytes(&hex32(&pos, "server_private_key_hex")).unwrap();
        let client_pk = PublicKey::from_b64u("c", s(sig, "client_public_key")).unwrap();
        let (answer, _keys) = handshake::accept_with(
            server_secret,
            &client_pk,
            &expected.session_id,
            expected.expires_in,
            expected.expires_at,
            sig["subject"].as_str(),
            &signing,
        );
        assert_eq!(answer.server_public_key, expected.server_public_key);
        assert_eq!(answer.signature, expected.signature);
        assert_eq!(answer.authenticated, expected.authenticated);
        assert_eq!(answer.subject, expected.subject);
    }
}

#[test]
fn strict_base64url() {
    let key = EphemeralSecret::generate().public_key().to_b64u();
    assert!(b64::decode(&key).is_ok());
    for bad in [
        format!("{key}="),
        format!(" {key}"),
        format!("{key}\n"),
        format!("{}+/", &key[..key.len() - 2]),
    ] {
        assert!(b64::decode(&bad).is_err(), "{bad:?}");
    }
    assert!(b64::decode("AA").is_ok());
    assert!(b64::decode("AB").is_err(), "non-canonical trailing bits");
    assert_eq!(b64::decode_array::<2>("AAA"), Ok([0, 0]));
    assert!(b64::decode_array::<2>("AAAA").is_err());
}

#[test]
fn envelope_parsing_errors_are_invalid_request() {
    let iv = b64::encode(&[0u8; 12]);
    let ct = b64::encode(&[0u8; 16]);
    let ok = |seq: &str| format!(r#"{{"seq":{seq},"iv":"{iv}","ciphertext":"{ct}"}}"#);
    assert!(Envelope::from_json(ok("1").as_bytes()).is_ok());
    assert!(Envelope::from_json(ok("9007199254740991").as_bytes()).is_ok());
    for bad in [
        ok("0"),
        ok("-1"),
        ok("9007199254740992"),
        ok("1.5"),
        ok("\"1\""),
        ok("null"),
        ok("18446744073709551616"),
        format!(r#"{{"seq":1,"iv":"{iv}"}}"#),
        format!(
            r#"{{"seq":1,"iv":"{}","ciphertext":"{ct}"}}"#,
            b64::encode(&[0u8; 16])
        ),
        format!(r#"{{"seq":1,"iv":"{iv}=","ciphertext":"{ct}"}}"#),
        format!(
            r#"{{"seq":1,"iv":"{iv}","ciphertext":"{}"}}"#,
            b64::encode(&[0u8; 15])
        ),
        "not json".to_owned(),
        "[]".to_owned(),
        String::new(),
    ] {
        let err = Envelope::from_json(bad.as_bytes()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidRequest, "{bad}: {err}");
    }
    // Unknown fields are ignored.
    let extra = format!(r#"{{"seq":1,"iv":"{iv}","ciphertext":"{ct}","x":[1,2]}}"#);
    assert!(Envelope::from_json(extra.as_bytes()).is_ok());
}
