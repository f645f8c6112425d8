//! Section 1, "Server authentication": the sidecar's long-term ECDSA P-256 key signs every
//! session init answer over
//!
//! ```text
//! "identity-sidecar/v1 session-init" 0x0A b64u(client_public_key) 0x0A b64u(server_public_key)
//! 0x0A session_id 0x0A expires_at 0x0A subject
//! ```
//!
//! with `subject` = `-` for an anonymous session. The public keys are published at
//! `GET /.well-known/identity-sidecar` as a [`KeyDocument`].

use std::fmt;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::b64;
use crate::error::Error;
use crate::keys::{PublicKey, scrub_dead_stack};
use crate::names::PROTOCOL;

/// The bytes that the session init signature covers.
pub fn init_signing_input(
    client_public_key: &PublicKey,
    server_public_key: &PublicKey,
    session_id: &str,
    expires_at: u64,
    subject: Option<&str>,
) -> Vec<u8> {
    let mut input = Vec::with_capacity(256 + session_id.len());
    for part in [
        "identity-sidecar/v1 session-init",
        &client_public_key.to_b64u(),
        &server_public_key.to_b64u(),
        session_id,
        &expires_at.to_string(),
        subject.unwrap_or("-"),
    ] {
        if !input.is_empty() {
            input.push(b'\n');
        }
        input.extend_from_slice(part.as_bytes());
    }
    input
}

/// A key's id: the first 16 characters of b64u(SHA-256(65-byte public key)). Derived, so two
/// sidecars holding one key publish one id and no id needs configuring.
pub fn key_id(public_key: &PublicKey) -> String {
    let mut id = b64::encode(&Sha256::digest(public_key.as_bytes()));
    id.truncate(16);
    id
}

/// The sidecar's long-term signing key. p256 wipes the scalar on drop; not `Clone`.
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
    public: PublicKey,
    key_id: String,
}

impl SigningKey {
    pub fn generate() -> Self {
        Self::from_key(p256::ecdsa::SigningKey::random(&mut OsRng))
    }

    /// Reads a PKCS#8 PEM ("BEGIN PRIVATE KEY").
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| Error::SigningKey("not a PKCS#8 PEM ECDSA P-256 private key"))?;
        Ok(Self::from_key(key))
    }

    /// A fixed key, for known-answer tests.
    pub fn from_be_bytes(scalar: &[u8; 32]) -> Result<Self, Error> {
        let key = p256::ecdsa::SigningKey::from_slice(scalar)
            .map_err(|_| Error::SigningKey("not a P-256 scalar"))?;
        Ok(Self::from_key(key))
    }

    fn from_key(key: p256::ecdsa::SigningKey) -> Self {
        let public = verifying_to_public(key.verifying_key());
        let key_id = key_id(&public);
        Self {
            key,
            public,
            key_id,
        }
    }

    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::SigningKey("cannot encode as PKCS#8"))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// ECDSA P-256 with SHA-256 (RFC 6979 nonces), as the 64-byte `r || s`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let signature = self.sign_inner(message);
        // RFC 6979's HMAC-DRBG is keyed with the private key, and its nonce gives the key away
        // with the signature: neither may stay in the frames the signature left.
        scrub_dead_stack();
        signature
    }

    #[inline(never)]
    fn sign_inner(&self, message: &[u8]) -> [u8; 64] {
        let signature: Signature = self.key.sign(message);
        signature.to_bytes().into()
    }

    /// This key's entry in the key document.
    pub fn published(&self) -> PublishedKey {
        PublishedKey {
            key_id: self.key_id.clone(),
            public_key: self.public.to_b64u(),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn verifying_to_public(key: &VerifyingKey) -> PublicKey {
    let point = key.to_encoded_point(false);
    #[allow(clippy::expect_used)] // A verifying key is always a valid uncompressed point.
    PublicKey::from_sec1(point.as_bytes()).expect("a verifying key is on the curve")
}

/// A public key read from a PEM ("BEGIN PUBLIC KEY") or from the public half of a private key
/// PEM: what the sidecar publishes next to its signing key before that one signs (rotation).
pub fn published_key_from_pem(pem: &str) -> Result<PublishedKey, Error> {
    let public = if let Ok(key) = VerifyingKey::from_public_key_pem(pem) {
        verifying_to_public(&key)
    } else {
        SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| Error::SigningKey("not a P-256 public or private key PEM"))?
            .public
            .clone()
    };
    Ok(PublishedKey {
        key_id: key_id(&public),
        public_key: public.to_b64u(),
    })
}

/// `GET /.well-known/identity-sidecar`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDocument {
    pub protocol: String,
    pub keys: Vec<PublishedKey>,
}

impl KeyDocument {
    pub fn new(keys: Vec<PublishedKey>) -> Self {
        Self {
            protocol: PROTOCOL.to_owned(),
            keys,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedKey {
    pub key_id: String,
    pub public_key: String,
}

/// The sidecar keys a client trusts: a pinned key, or the key document fetched on first use.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: Vec<(Option<String>, VerifyingKey)>,
}

impl TrustedKeys {
    /// A pinned public key (b64u of the 65-byte point, as published). It verifies whatever
    /// `key_id` an answer names: the pin is the key, not its id.
    pub fn pinned(public_key_b64u: &str) -> Result<Self, Error> {
        let public = PublicKey::from_b64u("pinned sidecar public key", public_key_b64u)?;
        Ok(Self {
            keys: vec![(None, VerifyingKey::from(*public.point()))],
        })
    }

    /// Every key of a key document, each verifying only answers that name its id.
    pub fn from_document(document: &KeyDocument) -> Result<Self, Error> {
        if document.protocol != PROTOCOL {
            return Err(Error::SigningKey(
                "key document is not for identity-sidecar/v1",
            ));
        }
        let mut keys = Vec::with_capacity(document.keys.len());
        for key in &document.keys {
            let public = PublicKey::from_b64u("published sidecar public key", &key.public_key)?;
            keys.push((
                Some(key.key_id.clone()),
                VerifyingKey::from(*public.point()),
            ));
        }
        if keys.is_empty() {
            return Err(Error::SigningKey("key document lists no keys"));
        }
        Ok(Self { keys })
    }

    /// Verifies a 64-byte `r || s` signature under the key named `key_id` (or the pin).
    pub fn verify(&self, key_id: &str, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let signature = Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
        self.keys
            .iter()
            .filter(|(id, _)| id.as_deref().is_none_or(|id| id == key_id))
            .any(|(_, key)| key.verify(message, &signature).is_ok())
            .then_some(())
            .ok_or(Error::BadSignature)
    }
}
