//! Signing keys (ES256), sealed at rest under the key-encryption key: the key ring that signs
//! and verifies access tokens, the JWKS, and rotation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rand_core::OsRng;

use crate::kek::{Kek, Keks, KeyError};
use crate::operator::Operator;
use crate::secret::{b64u, sha256};
use crate::storage::{AdminEvent, AuditRow, Db, SigningKeyRow};

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

/// Generates a new P-256 key and stores it (encrypted) as the active key; older keys are
/// retired. Audited as `keys_rotate` by `by`, with the new key's id.
pub async fn rotate(db: &Db, kek: &Kek, now: i64, by: &Operator) -> Result<String, KeyError> {
    let row = new_key(kek, now)?;
    let audit = AuditRow::admin(
        now,
        AdminEvent::KeysRotate,
        by.as_str(),
        None,
        serde_json::json!({ "kid": row.kid, "kek_id": row.kek_id }),
    );
    db.insert_signing_key(&row, true, Some(&audit)).await?;
    Ok(row.kid)
}

/// A new P-256 signing key sealed under `kek`, as its row (not yet stored).
fn new_key(kek: &Kek, now: i64) -> Result<SigningKeyRow, KeyError> {
    let secret = p256::SecretKey::random(&mut OsRng);
    let point = secret.public_key().to_encoded_point(false);
    let (x, y) = match (point.x(), point.y()) {
        (Some(x), Some(y)) => (b64u(x), b64u(y)),
        _ => return Err(KeyError::Generate),
    };
    let kid = b64u(&sha256(point.as_bytes())[..12]);
    let der = secret.to_pkcs8_der().map_err(|_| KeyError::Generate)?;
    let sealed = kek.seal(&kid, der.as_bytes())?;
    Ok(SigningKeyRow {
        kid,
        public_x: x,
        public_y: y,
        private_key_enc: sealed,
        kek_id: kek.id().to_owned(),
        created_at: now,
        retired_at: None,
    })
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
            // The server's own first key (or one after every key was retired by hand): not an
            // operator's change, so not audited.
            let row = new_key(&self.keks.current, now)?;
            db.insert_signing_key(&row, true, None).await?;
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
                let der = self.keks.open(
                    &format!("signing key {}", row.kid),
                    &row.kid,
                    &row.kek_id,
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
