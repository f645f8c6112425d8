//! Section 3: encrypted requests and responses.
//!
//! ```text
//! {"seq": <integer, 1 .. 2^53-1>, "iv": b64u(12 random bytes), "ciphertext": b64u(ct || 16-byte tag)}
//! request AAD  = "identity-sidecar/v1 request"  0x0A session_id 0x0A METHOD 0x0A path 0x0A seq 0x0A auth
//! response AAD = "identity-sidecar/v1 response" 0x0A session_id 0x0A METHOD 0x0A path 0x0A seq 0x0A status
//! auth         = b64u(SHA-256(Authorization header value bytes)), or "-" without the header
//! ```

use std::borrow::Cow;
use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::b64;
use crate::error::Error;
use crate::keys::{SessionKeys, with_stack_scrubbed};

/// The highest `seq`: 2^53 - 1, the largest integer every JSON implementation reads exactly.
pub const MAX_SEQ: u64 = (1 << 53) - 1;
pub const IV_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// An envelope as it travels, requests and responses alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub seq: u64,
    pub iv: [u8; IV_LEN],
    /// ct || tag
    pub ciphertext: Vec<u8>,
}

#[derive(Deserialize)]
struct WireIn<'a> {
    seq: u64,
    #[serde(borrow)]
    iv: Cow<'a, str>,
    #[serde(borrow)]
    ciphertext: Cow<'a, str>,
}

#[derive(Serialize)]
struct WireOut<'a> {
    seq: u64,
    iv: &'a str,
    ciphertext: &'a str,
}

impl Envelope {
    /// Parses and checks an envelope: all failures are `invalid_request`.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        let wire: WireIn<'_> = serde_json::from_slice(body).map_err(|e| {
            // A seq that is a number but not a u64 (negative, fractional, too big) is a range error.
            if e.is_data() && e.to_string().contains("expected u64") {
                Error::SeqOutOfRange
            } else {
                Error::json("envelope", &e)
            }
        })?;
        check_seq(wire.seq)?;
        let iv = b64::decode(&wire.iv).map_err(|_| Error::Base64("iv"))?;
        let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| Error::IvLength)?;
        let ciphertext = b64::decode(&wire.ciphertext).map_err(|_| Error::Base64("ciphertext"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(Error::Malformed(
                "ciphertext is shorter than the 16-byte GCM tag".into(),
            ));
        }
        Ok(Self {
            seq: wire.seq,
            iv,
            ciphertext,
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        let iv = b64::encode(&self.iv);
        let ciphertext = b64::encode(&self.ciphertext);
        let wire = WireOut {
            seq: self.seq,
            iv: &iv,
            ciphertext: &ciphertext,
        };
        #[allow(clippy::expect_used)] // A struct of an integer and two strings always serialises.
        serde_json::to_vec(&wire).expect("envelope serialises")
    }
}

/// "A `seq` that is not an integer in 1 .. 2^53-1 is `400 invalid_request`."
pub fn check_seq(seq: u64) -> Result<(), Error> {
    if (1..=MAX_SEQ).contains(&seq) {
        Ok(())
    } else {
        Err(Error::SeqOutOfRange)
    }
}

/// `auth`: `b64u(SHA-256(Authorization header value bytes))`, or `-` without the header.
pub fn auth_binding(authorization: Option<&[u8]>) -> String {
    match authorization {
        Some(value) => b64::encode(&Sha256::digest(value)),
        None => "-".to_owned(),
    }
}

/// The request AAD of section 3.
pub fn request_aad(
    session_id: &str,
    method: &str,
    path: &str,
    seq: u64,
    authorization: Option<&[u8]>,
) -> Vec<u8> {
    aad(
        "request",
        session_id,
        method,
        path,
        seq,
        &auth_binding(authorization),
    )
}

/// The response AAD of section 3; `status` is the three-digit HTTP status.
pub fn response_aad(session_id: &str, method: &str, path: &str, seq: u64, status: u16) -> Vec<u8> {
    aad(
        "response",
        session_id,
        method,
        path,
        seq,
        &status.to_string(),
    )
}

fn aad(kind: &str, session_id: &str, method: &str, path: &str, seq: u64, last: &str) -> Vec<u8> {
    let seq = seq.to_string();
    let mut aad = Vec::with_capacity(
        32 + session_id.len() + method.len() + path.len() + seq.len() + last.len(),
    );
    for part in [
        "identity-sidecar/v1 ",
        kind,
        "\n",
        session_id,
        "\n",
        method,
        "\n",
        path,
        "\n",
        &seq,
        "\n",
        last,
    ] {
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// A decrypted body. Wiped on drop; `Debug` shows only its length.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// So that a buffer can own the plaintext (`bytes::Bytes::from_owner`) and wipe it when the
/// last user lets go, instead of a copy that nobody wipes.
impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext(<{} bytes>)", self.0.len())
    }
}

/// AES-256-GCM seal with an explicit IV. The protocol draws the IV at random
/// ([`random_iv`]); an explicit one is for known-answer tests.
pub fn seal(cipher: &Aes256Gcm, iv: &[u8; IV_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    #[allow(clippy::expect_used)] // aes-gcm fails only for plaintexts over 2^36 bytes.
    cipher
        .encrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("plaintext within AES-GCM's length limit")
}

pub fn open(
    cipher: &Aes256Gcm,
    iv: &[u8; IV_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Plaintext, Error> {
    cipher
        .decrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(|p| Plaintext(Zeroizing::new(p)))
        .map_err(|_| Error::DecryptionFailed)
}

/// 12 random bytes. With random IVs, 2^24 messages a key keeps the collision chance far below
/// NIST's 2^-32 bound; that is why a session carries at most 2^24 requests.
pub fn random_iv() -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    OsRng.fill_bytes(&mut iv);
    iv
}

/// [`seal`] under a cipher expanded for this one message, then a scrub of the dead stack: the
/// key schedule is built and moved on the stack, and the AES-NI code spills round keys there (in
/// unoptimised builds every intrinsic is a call with its operands on the stack). aes wipes only
/// the cipher's last place; the other copies would stay in dead frames until an unrelated value
/// written from the stack to the heap (a spawned future, say) carried them off.
fn seal_scrubbed(
    cipher: impl FnOnce() -> Aes256Gcm,
    iv: &[u8; IV_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    with_stack_scrubbed(|| seal(&cipher(), iv, aad, plaintext))
}

/// [`open`] as [`seal_scrubbed`] seals.
fn open_scrubbed(
    cipher: impl FnOnce() -> Aes256Gcm,
    iv: &[u8; IV_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Plaintext, Error> {
    with_stack_scrubbed(|| open(&cipher(), iv, aad, ciphertext))
}

/// The four operations of section 3 on a session's keys. The caller supplies `session_id`,
/// `METHOD` and `path` as they travel; nothing here trusts the envelope for them.
impl SessionKeys {
    /// Client: encrypt a request under k_c2s.
    pub fn seal_request(
        &self,
        session_id: &str,
        method: &str,
        path: &str,
        seq: u64,
        authorization: Option<&[u8]>,
        plaintext: &[u8],
    ) -> Envelope {
        let iv = random_iv();
        let aad = request_aad(session_id, method, path, seq, authorization);
        let ciphertext = seal_scrubbed(|| self.c2s(), &iv, &aad, plaintext);
        Envelope {
            seq,
            iv,
            ciphertext,
        }
    }

    /// Sidecar: decrypt a request under k_c2s.
    pub fn open_request(
        &self,
        session_id: &str,
        method: &str,
        path: &str,
        authorization: Option<&[u8]>,
        envelope: &Envelope,
    ) -> Result<Plaintext, Error> {
        let aad = request_aad(session_id, method, path, envelope.seq, authorization);
        open_scrubbed(|| self.c2s(), &envelope.iv, &aad, &envelope.ciphertext)
    }

    /// Sidecar: encrypt the identity API's answer under k_s2c, bound to its status.
    pub fn seal_response(
        &self,
        session_id: &str,
        method: &str,
        path: &str,
        seq: u64,
        status: u16,
        plaintext: &[u8],
    ) -> Envelope {
        let iv = random_iv();
        let aad = response_aad(session_id, method, path, seq, status);
        let ciphertext = seal_scrubbed(|| self.s2c(), &iv, &aad, plaintext);
        Envelope {
            seq,
            iv,
            ciphertext,
        }
    }

    /// Client: verify and decrypt an answer under k_s2c. "Clients MUST verify it; a tampered
    /// status fails." The answer must echo the request's `seq`.
    pub fn open_response(
        &self,
        session_id: &str,
        method: &str,
        path: &str,
        seq: u64,
        status: u16,
        envelope: &Envelope,
    ) -> Result<Plaintext, Error> {
        if envelope.seq != seq {
            return Err(Error::SeqMismatch);
        }
        let aad = response_aad(session_id, method, path, seq, status);
        open_scrubbed(|| self.s2c(), &envelope.iv, &aad, &envelope.ciphertext)
    }
}
