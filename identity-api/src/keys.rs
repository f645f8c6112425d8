//! Key-encryption key, signing keys (ES256) encrypted at rest, the key ring and the JWKS.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::DecodingKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secret::{Key32, b64u, b64u_decode, sha256};
use crate::storage::{Db, SigningKeyRow, StoreError, WrappedKeyRow, WrappedTable};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the key-encryption key must be 32 random bytes as base64url without padding (43 characters)"
    )]
    BadKek,
    #[error(
        "the previous key-encryption key must be 32 random bytes as base64url without padding (43 characters)"
    )]
    BadPreviousKek,
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
    #[error(
        "{what} cannot be decrypted: it is sealed under key-encryption key id {row_kek}, but the \
         current key-encryption key has id {current}{previous}; configure the key it was sealed \
         under (as IDENTITY_KEY_ENCRYPTION_KEY or IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY)"
    )]
    UnknownKek {
        what: String,
        row_kek: String,
        current: String,
        previous: String,
    },
    #[error(
        "{what} cannot be decrypted with key-encryption key id {kek_id}: the key or the row is corrupt"
    )]
    Decrypt { what: String, kek_id: String },
    #[error("key generation failed")]
    Generate,
    #[error("signing key {kid} is not a P-256 private key in PKCS#8 form")]
    BadSigningKey { kid: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key-encryption key (KEK): encrypts the signing keys and the client-secret verifier key.
#[derive(Debug)]
pub struct Kek {
    key: Key32,
    id: String,
}

/// Name (and AAD) of the client-secret verifier key in `wrapped_keys`.
pub const VERIFIER_KEY_NAME: &str = "client-secret-verifier";

impl Kek {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(b64u_decode(text.trim()).ok_or(KeyError::BadKek)?);
        Key32::from_bytes(&bytes)
            .map(Self::from_key)
            .ok_or(KeyError::BadKek)
    }

    fn from_key(key: Key32) -> Self {
        // Public: the first 8 bytes of SHA-256 of a 256-bit random key tell nothing about it.
        let id = sha256(key.expose())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { key, id }
    }

    /// Short public identifier stored next to every row sealed under this key:
    /// the first 8 bytes of SHA-256(KEK), as 16 hex digits.
    pub fn id(&self) -> &str {
        &self.id
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
        (Self::from_key(key), text)
    }

    /// The client-secret verifier key of the previous version, derived from the KEK. Used once,
    /// to carry the verifiers of a database made by that version over to the stored random key.
    pub fn legacy_verifier_key(&self) -> Key32 {
        self.derive(crate::clients::VERIFIER_LABEL)
    }

    fn derive(&self, label: &str) -> Key32 {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose())
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(label.as_bytes());
        let out = Zeroizing::new(mac.finalize().into_bytes());
        // HMAC-SHA256 output is always 32 bytes.
        Key32::from_bytes(&out).unwrap_or_else(Key32::random)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.expose().into())
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

/// The current key-encryption key (seals everything) and optionally the previous one (only
/// opens rows not yet rewrapped: see `identity-api kek rewrap`).
#[derive(Debug)]
pub struct Keks {
    pub current: Kek,
    pub previous: Option<Kek>,
}

impl From<Kek> for Keks {
    fn from(current: Kek) -> Self {
        Self {
            current,
            previous: None,
        }
    }
}

impl Keks {
    pub fn new(current: Kek, previous: Option<Kek>) -> Self {
        Self { current, previous }
    }

    /// The key a row names; `None` (rows of the previous version) tries the current, then the
    /// previous key. Errors say which key the row needs, never anything secret.
    pub fn open(
        &self,
        what: &str,
        aad: &str,
        kek_id: Option<&str>,
        sealed: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, &Kek), KeyError> {
        let candidates: Vec<&Kek> = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .filter(|k| kek_id.is_none_or(|id| id == k.id()))
            .collect();
        if candidates.is_empty() {
            return Err(KeyError::UnknownKek {
                what: what.to_owned(),
                row_kek: kek_id.unwrap_or("?").to_owned(),
                current: self.current.id().to_owned(),
                previous: match &self.previous {
                    Some(p) => format!(" and the previous {}", p.id()),
                    None => " and no previous key is configured".to_owned(),
                },
            });
        }
        for kek in &candidates {
            if let Some(plain) = kek.open(aad, sealed) {
                return Ok((plain, kek));
            }
        }
        match kek_id {
            Some(id) => Err(KeyError::Decrypt {
                what: what.to_owned(),
                kek_id: id.to_owned(),
            }),
            None => Err(KeyError::UnknownKek {
                what: what.to_owned(),
                row_kek: "(not recorded; sealed by an earlier version)".to_owned(),
                current: self.current.id().to_owned(),
                previous: match &self.previous {
                    Some(p) => format!(" and the previous {}", p.id()),
                    None => " and no previous key is configured".to_owned(),
                },
            }),
        }
    }
}

/// Run by every command that needs keys, before use: records the key-encryption key of signing
/// keys sealed by the previous version (which did not record it), and returns the client-secret
/// verifier key, creating it on first use.
///
/// The verifier key is 256 random bits stored sealed under the KEK. A database made by the
/// previous version has clients whose verifiers were keyed by a key derived from the KEK: for
/// it, that derived key becomes the stored key, so that every existing secret keeps verifying.
/// (This version never creates a client before the key row exists, so clients without a key row
/// are always of the previous version.)
pub async fn bootstrap(db: &Db, keks: &Keks) -> Result<Key32, KeyError> {
    // Signing keys of the previous version: find the key that opens them and record it.
    let mut legacy_kek: Option<&Kek> = None;
    for row in db.signing_keys_without_kek_id().await? {
        let (_, kek) = keks.open(
            &format!("signing key {}", row.kid),
            &row.kid,
            None,
            &row.private_key_enc,
        )?;
        db.set_signing_key_kek_id(&row.kid, kek.id()).await?;
        legacy_kek.get_or_insert(kek);
    }
    if let Some(row) = db.wrapped_key(VERIFIER_KEY_NAME).await? {
        return open_verifier_key(keks, &row);
    }
    let key = if db.has_clients().await? {
        // Normally found above; when an earlier start stopped half-way, the oldest signing key
        // (made by the previous version) tells which key-encryption key that version had.
        let recorded = match legacy_kek {
            Some(kek) => Some(kek),
            None => db.signing_keys(i64::MIN).await?.first().and_then(|row| {
                std::iter::once(&keks.current)
                    .chain(keks.previous.as_ref())
                    .find(|k| row.kek_id.as_deref() == Some(k.id()))
            }),
        };
        let kek = recorded.unwrap_or(&keks.current);
        tracing::info!(
            kek_id = kek.id(),
            "storing the client-secret verifier key of the previous version (sealed under the key-encryption key)"
        );
        kek.legacy_verifier_key()
    } else {
        Key32::random()
    };
    let sealed = keks.current.seal(VERIFIER_KEY_NAME, key.expose())?;
    // Two processes may race here: the first row wins and both use it.
    db.insert_wrapped_key(VERIFIER_KEY_NAME, keks.current.id(), &sealed, crate::now())
        .await?;
    match db.wrapped_key(VERIFIER_KEY_NAME).await? {
        Some(row) => open_verifier_key(keks, &row),
        None => Err(KeyError::Generate),
    }
}

fn open_verifier_key(keks: &Keks, row: &WrappedKeyRow) -> Result<Key32, KeyError> {
    let (plain, _) = keks.open(
        "the client-secret verifier key",
        &row.name,
        Some(&row.kek_id),
        &row.key_enc,
    )?;
    Key32::from_bytes(&plain).ok_or_else(|| KeyError::Decrypt {
        what: "the client-secret verifier key".to_owned(),
        kek_id: row.kek_id.clone(),
    })
}

/// Re-seals every row not sealed under the current key-encryption key, in one transaction.
/// Idempotent; returns how many rows it changed. Refuses (changing nothing) when a row opens
/// with neither key.
pub async fn rewrap(db: &Db, keks: &Keks) -> Result<usize, KeyError> {
    let current = keks.current.id().to_owned();
    db.rewrap(|row| {
        if row.kek_id.as_deref() == Some(current.as_str()) {
            return Ok(None);
        }
        let what = match row.table {
            WrappedTable::SigningKeys => format!("signing key {}", row.name),
            WrappedTable::WrappedKeys => format!("wrapped key {}", row.name),
        };
        let (plain, _) = keks.open(&what, &row.name, row.kek_id.as_deref(), &row.sealed)?;
        let sealed = keks.current.seal(&row.name, &plain)?;
        Ok(Some((current.clone(), sealed)))
    })
    .await?
}

#[allow(clippy::panic)] // HMAC accepts keys of any length; this cannot be reached.
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC accepts any key length")
}

/// The active signing key: the aws-lc-rs key pair, parsed once (aws-lc cleanses the private
/// scalar when it frees it), and the encoded JWT header, the same for every token it signs.
pub struct SigningKey {
    pub kid: String,
    pair: EcdsaKeyPair,
    header: String,
}

impl SigningKey {
    /// From the PKCS#8 DER of a P-256 key.
    pub fn from_pkcs8(kid: &str, der: &[u8]) -> Result<Self, KeyError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| {
                KeyError::BadSigningKey {
                    kid: kid.to_owned(),
                }
            })?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(kid.to_owned());
        let header = serde_json::to_vec(&header).map_err(|_| KeyError::Generate)?;
        Ok(Self {
            kid: kid.to_owned(),
            pair,
            header: b64u(&header),
        })
    }

    /// The compact JWS of `payload` under this key: `header.payload.signature`, the signature
    /// ES256's r || s (RFC 7518 §3.4), each part base64url.
    pub fn sign_jws(&self, payload: &[u8]) -> Option<String> {
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Room for the signature too: 64 bytes, 86 characters.
        let mut jws = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 92);
        jws.push_str(&self.header);
        jws.push('.');
        b64.encode_string(payload, &mut jws);
        let signature = self
            .pair
            .sign(&aws_lc_rs::rand::SystemRandom::new(), jws.as_bytes())
            .ok()?;
        jws.push('.');
        b64.encode_string(signature.as_ref(), &mut jws);
        Some(jws)
    }
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
            kek_id: Some(kek.id().to_owned()),
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
    keks: Keks,
    ring: RwLock<Arc<KeyRing>>,
    /// Tokens of keys retired longer ago than this can no longer be presented (family lifetime).
    verify_window: i64,
    /// Keys retired longer ago than this have no live access token left: dropped from the JWKS.
    publish_window: i64,
}

impl KeyStore {
    pub fn new(keks: Keks, verify_window: i64, publish_window: i64) -> Self {
        Self {
            keks,
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

    pub fn keks(&self) -> &Keks {
        &self.keks
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
            rotate(db, &self.keks.current, now).await?;
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
                let (der, _) = self.keks.open(
                    &format!("signing key {}", row.kid),
                    &row.kid,
                    row.kek_id.as_deref(),
                    &row.private_key_enc,
                )?;
                active = Some(SigningKey::from_pkcs8(&row.kid, &der)?);
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
