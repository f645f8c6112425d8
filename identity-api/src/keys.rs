//! Key-encryption key, signing keys (ES256) encrypted at rest, the key ring and the JWKS.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hmac::{Hmac, Mac};
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secret::{Key32, b64u, b64u_decode, sha256};
use crate::storage::{Db, SigningKeyRow, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the key-encryption key must be 32 random bytes as base64url without padding (43 characters)"
    )]
    BadKek,
    #[error("cannot read the key-encryption key file {path}: {source}")]
    KekFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "no key-encryption key: set IDENTITY_KEY_ENCRYPTION_KEY or IDENTITY_KEY_ENCRYPTION_KEY_FILE \
         (or pass --dev to create a local development key file)"
    )]
    NoKek,
    #[error("signing key {kid} cannot be decrypted: wrong key-encryption key or corrupt row")]
    Decrypt { kid: String },
    #[error("key generation failed")]
    Generate,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key-encryption key (KEK): encrypts signing keys, and derives the client-secret verifier key.
#[derive(Debug)]
pub struct Kek(Key32);

impl Kek {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(b64u_decode(text.trim()).ok_or(KeyError::BadKek)?);
        Key32::from_bytes(&bytes).map(Self).ok_or(KeyError::BadKek)
    }

    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::KekFile {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::parse(&text)
    }

    pub fn generate() -> (Self, Zeroizing<String>) {
        let key = Key32::random();
        let text = Zeroizing::new(b64u(key.expose()));
        (Self(key), text)
    }

    /// HMAC-SHA256 key for client-secret verifiers, derived with a fixed label so that it is
    /// independent of the encryption use of the KEK.
    pub fn derive(&self, label: &str) -> Key32 {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose())
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(label.as_bytes());
        let out = Zeroizing::new(mac.finalize().into_bytes());
        // HMAC-SHA256 output is always 32 bytes.
        Key32::from_bytes(&out).unwrap_or_else(Key32::random)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.expose().into())
    }

    /// AES-256-GCM with a random 96-bit nonce; AAD binds the ciphertext to its key id.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Generate)?;
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, aad: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

#[allow(clippy::panic)] // HMAC accepts keys of any length; this cannot be reached.
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC accepts any key length")
}

/// The active signing key.
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Everything needed to sign and verify, swapped as a whole on rotation.
pub struct KeyRing {
    pub active: Option<SigningKey>,
    pub verify: HashMap<String, DecodingKey>,
    /// The serialized JWKS document.
    pub jwks: Arc<[u8]>,
    /// How many keys the JWKS holds (a retired key leaves it one access-token lifetime later).
    pub published: usize,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("verify", &self.verify.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Generates a new P-256 key and stores it (encrypted) as the active key; older keys are retired.
pub async fn rotate(db: &Db, kek: &Kek, now: i64) -> Result<String, KeyError> {
    let secret = p256::SecretKey::random(&mut OsRng);
    let point = secret.public_key().to_encoded_point(false);
    let (x, y) = match (point.x(), point.y()) {
        (Some(x), Some(y)) => (b64u(x), b64u(y)),
        _ => return Err(KeyError::Generate),
    };
    let kid = b64u(&sha256(point.as_bytes())[..12]);
    let der = secret.to_pkcs8_der().map_err(|_| KeyError::Generate)?;
    let sealed = kek.seal(&kid, der.as_bytes())?;
    db.insert_signing_key(
        &SigningKeyRow {
            kid: kid.clone(),
            public_x: x,
            public_y: y,
            private_key_enc: sealed,
            created_at: now,
            retired_at: None,
        },
        true,
    )
    .await?;
    Ok(kid)
}

/// The key ring as stored, plus the KEK to open private keys.
#[derive(Debug)]
pub struct KeyStore {
    kek: Kek,
    ring: RwLock<Arc<KeyRing>>,
    /// Tokens of keys retired longer ago than this can no longer be presented (family lifetime).
    verify_window: i64,
    /// Keys retired longer ago than this have no live access token left: dropped from the JWKS.
    publish_window: i64,
}

impl KeyStore {
    pub fn new(kek: Kek, verify_window: i64, publish_window: i64) -> Self {
        Self {
            kek,
            ring: RwLock::new(Arc::new(KeyRing {
                active: None,
                verify: HashMap::new(),
                jwks: Arc::from(&b"{\"keys\":[]}"[..]),
                published: 0,
            })),
            verify_window,
            publish_window,
        }
    }

    pub fn kek(&self) -> &Kek {
        &self.kek
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the keys from the database; creates the first one if there is none.
    /// Returns true when the set of keys changed.
    pub async fn reload(&self, db: &Db, now: i64) -> Result<bool, KeyError> {
        let mut rows = db.signing_keys(now - self.verify_window).await?;
        if !rows.iter().any(|r| r.retired_at.is_none()) {
            rotate(db, &self.kek, now).await?;
            rows = db.signing_keys(now - self.verify_window).await?;
        }
        let current = self.ring();
        let publish =
            |r: &SigningKeyRow| r.retired_at.is_none_or(|t| t > now - self.publish_window);
        let unchanged = rows.len() == current.verify.len()
            && rows.iter().filter(|r| publish(r)).count() == current.published
            && rows.iter().all(|r| current.verify.contains_key(&r.kid))
            && current.active.as_ref().map(|a| a.kid.as_str()) == active_kid(&rows);
        if unchanged {
            return Ok(false);
        }
        let mut verify = HashMap::new();
        let mut published = Vec::new();
        let mut active = None;
        let active_id = active_kid(&rows).map(str::to_owned);
        for row in &rows {
            let Ok(dk) = DecodingKey::from_ec_components(&row.public_x, &row.public_y) else {
                tracing::warn!(kid = %row.kid, "skipping a signing key with a bad public key");
                continue;
            };
            verify.insert(row.kid.clone(), dk);
            if publish(row) {
                published.push(serde_json::json!({
                    "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                    "kid": row.kid, "x": row.public_x, "y": row.public_y,
                }));
            }
            if Some(&row.kid) == active_id.as_ref() {
                let der = self
                    .kek
                    .open(&row.kid, &row.private_key_enc)
                    .ok_or_else(|| KeyError::Decrypt {
                        kid: row.kid.clone(),
                    })?;
                active = Some(SigningKey {
                    kid: row.kid.clone(),
                    encoding: EncodingKey::from_ec_der(&der),
                });
            }
        }
        let published_count = published.len();
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": published }))
            .unwrap_or_else(|_| b"{\"keys\":[]}".to_vec());
        let ring = Arc::new(KeyRing {
            active,
            verify,
            jwks: Arc::from(jwks),
            published: published_count,
        });
        match self.ring.write() {
            Ok(mut guard) => *guard = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
        Ok(true)
    }
}

/// The newest key that is not retired signs (two instances may race to create the first key).
fn active_kid(rows: &[SigningKeyRow]) -> Option<&str> {
    rows.iter()
        .filter(|r| r.retired_at.is_none())
        .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
        .map(|r| r.kid.as_str())
}
