//! Sections 1 and 2: session init, anonymous and authenticated, for both ends.
//!
//! The client sends its ephemeral public key; the sidecar answers with its own, a fresh
//! `session_id`, the expiry and a signature over all of it; both run the key schedule.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::b64;
use crate::envelope::{Envelope, Plaintext, check_seq};
use crate::error::Error;
use crate::keys::{EphemeralSecret, PublicKey, Role, SessionKeys};
use crate::names::is_valid_session_id;
use crate::signing::{SigningKey, TrustedKeys, init_signing_input};

/// `POST /api/v1/session/init` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitRequest {
    pub client_public_key: String,
}

impl InitRequest {
    /// Parses the body and checks the key: `invalid_request` for bad JSON or base64url,
    /// `invalid_public_key` for anything but a 65-byte uncompressed point on the curve.
    pub fn parse(body: &[u8]) -> Result<PublicKey, Error> {
        let request: InitRequest =
            serde_json::from_slice(body).map_err(|e| Error::json("session init body", &e))?;
        PublicKey::from_b64u("client_public_key", &request.client_public_key)
    }
}

/// The `200` answer to session init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitAnswer {
    pub session_id: String,
    pub server_public_key: String,
    pub expires_in: u64,
    pub expires_at: u64,
    pub authenticated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub key_id: String,
    pub signature: String,
}

/// The sidecar's end: a fresh ephemeral key, the key schedule, and the signed answer.
///
/// Returns the answer to send and the session's keys; the ephemeral private key is gone by then.
pub fn accept(
    client_public_key: &PublicKey,
    session_id: &str,
    expires_in: u64,
    expires_at: u64,
    subject: Option<&str>,
    signing_key: &SigningKey,
) -> (InitAnswer, SessionKeys) {
    accept_with(
        EphemeralSecret::generate(),
        client_public_key,
        session_id,
        expires_in,
        expires_at,
        subject,
        signing_key,
    )
}

/// [`accept`] with a given ephemeral key, for known-answer tests.
pub fn accept_with(
    server_secret: EphemeralSecret,
    client_public_key: &PublicKey,
    session_id: &str,
    expires_in: u64,
    expires_at: u64,
    subject: Option<&str>,
    signing_key: &SigningKey,
) -> (InitAnswer, SessionKeys) {
    let server_public_key = server_secret.public_key().clone();
    let keys = SessionKeys::establish(server_secret, client_public_key, Role::Server, session_id);
    let signing_input = init_signing_input(
        client_public_key,
        &server_public_key,
        session_id,
        expires_at,
        subject,
    );
    let answer = InitAnswer {
        session_id: session_id.to_owned(),
        server_public_key: server_public_key.to_b64u(),
        expires_in,
        expires_at,
        authenticated: subject.is_some(),
        subject: subject.map(str::to_owned),
        key_id: signing_key.key_id().to_owned(),
        signature: b64::encode(&signing_key.sign(&signing_input)),
    };
    (answer, keys)
}

/// The client's end of session init.
#[derive(Debug)]
pub struct ClientHandshake {
    secret: EphemeralSecret,
}

impl Default for ClientHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientHandshake {
    pub fn new() -> Self {
        Self::with_secret(EphemeralSecret::generate())
    }

    /// A given ephemeral key, for known-answer tests.
    pub fn with_secret(secret: EphemeralSecret) -> Self {
        Self { secret }
    }

    pub fn public_key(&self) -> &PublicKey {
        self.secret.public_key()
    }

    pub fn request(&self) -> InitRequest {
        InitRequest {
            client_public_key: self.secret.public_key().to_b64u(),
        }
    }

    /// Checks the answer (its form, the subject we asked for, and the signature: "a client
    /// configured with the sidecar's public key MUST verify the signature and abort on
    /// failure"), then runs the key schedule.
    pub fn finish(
        self,
        answer: &InitAnswer,
        trusted: &TrustedKeys,
        expected_subject: Option<&str>,
    ) -> Result<ClientSession, Error> {
        if !is_valid_session_id(&answer.session_id) {
            return Err(Error::InitAnswer(
                "session_id is not 1 to 512 visible ASCII characters",
            ));
        }
        if answer.authenticated != answer.subject.is_some() {
            return Err(Error::InitAnswer("authenticated and subject disagree"));
        }
        if answer.subject.as_deref() != expected_subject {
            return Err(Error::InitAnswer(
                "the session is not bound to the subject asked for",
            ));
        }
        let server_public_key =
            PublicKey::from_b64u("server_public_key", &answer.server_public_key)?;
        let signature = b64::decode(&answer.signature).map_err(|_| Error::Base64("signature"))?;
        let signing_input = init_signing_input(
            self.secret.public_key(),
            &server_public_key,
            &answer.session_id,
            answer.expires_at,
            answer.subject.as_deref(),
        );
        trusted.verify(&answer.key_id, &signing_input, &signature)?;
        let keys = SessionKeys::establish(
            self.secret,
            &server_public_key,
            Role::Client,
            &answer.session_id,
        );
        Ok(ClientSession {
            id: answer.session_id.clone(),
            keys,
            next_seq: AtomicU64::new(1),
            expires_at: answer.expires_at,
            subject: answer.subject.clone(),
        })
    }
}

/// A client's live session. Shareable between tasks: `seq` is drawn atomically.
#[derive(Debug)]
pub struct ClientSession {
    id: String,
    keys: SessionKeys,
    next_seq: AtomicU64,
    expires_at: u64,
    subject: Option<String>,
}

/// A sealed request, ready to send.
#[derive(Debug)]
pub struct SealedRequest {
    pub seq: u64,
    /// The envelope as JSON: the request body.
    pub body: Vec<u8>,
}

impl ClientSession {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// "Clients count `seq` from 1 upwards per session."
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Seals a request with the next `seq`. `method` upper-case, `path` exactly as sent.
    pub fn seal_request(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        plaintext: &[u8],
    ) -> Result<SealedRequest, Error> {
        self.seal_request_with_seq(self.next_seq(), method, path, authorization, plaintext)
    }

    /// Seals with a chosen `seq` (tests of the replay window use it).
    pub fn seal_request_with_seq(
        &self,
        seq: u64,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        plaintext: &[u8],
    ) -> Result<SealedRequest, Error> {
        check_seq(seq)?;
        let envelope = self.keys.seal_request(
            &self.id,
            method,
            path,
            seq,
            authorization.map(str::as_bytes),
            plaintext,
        );
        Ok(SealedRequest {
            seq,
            body: envelope.to_json(),
        })
    }

    /// Verifies and decrypts the sidecar's encrypted answer to the request sealed with `seq`.
    pub fn open_response(
        &self,
        method: &str,
        path: &str,
        seq: u64,
        status: u16,
        body: &[u8],
    ) -> Result<Plaintext, Error> {
        let envelope = Envelope::from_json(body)?;
        self.keys
            .open_response(&self.id, method, path, seq, status, &envelope)
    }
}
