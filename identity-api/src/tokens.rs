//! Access tokens: JWT per RFC 9068 (ES256, `typ: at+jwt`, `kid`), and a cache of verified tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::KeyRing;
use crate::secret::sha256;

/// Claims of an access token. `fid` is the token family, checked on every use for revocation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub fid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no active signing key")]
    NoKey,
    #[error("signing failed")]
    Sign,
    #[error("not a valid access token")]
    Invalid,
    #[error("signed by an unknown key")]
    UnknownKey,
}

/// A compact JWS of `claims` under the active key: the JSON is serde's, as jsonwebtoken's
/// `encode` makes it, and `verify` (jsonwebtoken's `decode`) reads it back.
pub fn sign(ring: &KeyRing, claims: &Claims) -> Result<String, TokenError> {
    let key = ring.active.as_ref().ok_or(TokenError::NoKey)?;
    let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Sign)?;
    key.sign_jws(&payload).ok_or(TokenError::Sign)
}

/// Verifies signature, `typ`, algorithm and issuer; not the expiry (callers decide: a refresh
/// may present an expired bearer).
pub fn verify(ring: &KeyRing, issuer: &str, token: &str) -> Result<Claims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    // RFC 9068 §4: typ is "at+jwt" (or the full media type).
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if header.alg != Algorithm::ES256 || !typ_ok {
        return Err(TokenError::Invalid);
    }
    let kid = header.kid.ok_or(TokenError::Invalid)?;
    let key = ring.verify.get(&kid).ok_or(TokenError::UnknownKey)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.set_issuer(&[issuer]);
    let data =
        jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|_| TokenError::Invalid)?;
    Ok(data.claims)
}

const SHARDS: usize = 16;
const SHARD_CAPACITY: usize = 4096;

/// Verified tokens keyed by SHA-256 of the token, each until its `exp`: saves the signature
/// verification on repeated use. Never a substitute for the family revocation check.
/// Sharded so that no single lock sits on the request path.
#[derive(Debug)]
pub struct VerifiedCache {
    shards: Vec<Mutex<HashMap<[u8; 32], Arc<Claims>>>>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl VerifiedCache {
    fn shard(&self, key: &[u8; 32]) -> Option<&Mutex<HashMap<[u8; 32], Arc<Claims>>>> {
        self.shards.get(usize::from(key[0]) % SHARDS)
    }

    pub fn key(token: &str) -> [u8; 32] {
        sha256(token.as_bytes())
    }

    pub fn get(&self, key: &[u8; 32], now: i64) -> Option<Arc<Claims>> {
        let shard = self.shard(key)?.lock().ok()?;
        shard.get(key).filter(|c| c.exp > now).cloned()
    }

    pub fn insert(&self, key: [u8; 32], claims: Arc<Claims>, now: i64) {
        if claims.exp <= now {
            return;
        }
        let Some(shard) = self.shard(&key) else {
            return;
        };
        let Ok(mut map) = shard.lock() else { return };
        if map.len() >= SHARD_CAPACITY {
            map.retain(|_, c| c.exp > now);
            if map.len() >= SHARD_CAPACITY {
                map.clear();
            }
        }
        map.insert(key, claims);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Arc<Claims> {
        Arc::new(Claims {
            iss: "i".into(),
            sub: "s".into(),
            aud: "a".into(),
            client_id: "c".into(),
            scope: "x".into(),
            iat: 0,
            exp,
            jti: "j".into(),
            fid: "f".into(),
        })
    }

    /// `sign` writes what jsonwebtoken's `encode` writes (header and payload byte for byte), and
    /// `verify` reads it back; a token with a changed payload does not verify.
    #[test]
    fn signed_tokens_match_jsonwebtoken_and_verify() {
        use jsonwebtoken::{DecodingKey, EncodingKey, Header};
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        use p256::pkcs8::EncodePrivateKey as _;

        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let der = secret.to_pkcs8_der().unwrap();
        let point = secret.public_key().to_encoded_point(false);
        let b64 = |b: &[u8]| crate::secret::b64u(b);
        let mut ring = KeyRing {
            active: Some(crate::keys::SigningKey::from_pkcs8("k1", der.as_bytes()).unwrap()),
            verify: HashMap::new(),
            jwks: Arc::from(Vec::new()),
            published: 1,
        };
        ring.verify.insert(
            "k1".to_owned(),
            DecodingKey::from_ec_components(&b64(point.x().unwrap()), &b64(point.y().unwrap()))
                .unwrap(),
        );
        let claims = Claims {
            exp: 4_000_000_000,
            ..(*claims(0)).clone()
        };
        let ours = sign(&ring, &claims).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some("k1".to_owned());
        let theirs =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(der.as_bytes()))
                .unwrap();
        let signed_part = |t: &str| t.rsplit_once('.').unwrap().0.to_owned();
        assert_eq!(signed_part(&ours), signed_part(&theirs));
        assert_eq!(verify(&ring, "i", &ours).unwrap(), claims);
        assert_eq!(verify(&ring, "i", &theirs).unwrap(), claims);

        let other = Claims {
            sub: "someone-else".into(),
            ..claims.clone()
        };
        let forged = format!(
            "{}.{}",
            signed_part(&sign(&ring, &other).unwrap()),
            ours.rsplit_once('.').unwrap().1
        );
        assert!(matches!(
            verify(&ring, "i", &forged),
            Err(TokenError::Invalid)
        ));
    }

    #[test]
    fn cache_entries_end_at_exp_and_stay_bounded() {
        let cache = VerifiedCache::default();
        let k = VerifiedCache::key("t");
        cache.insert(k, claims(100), 50);
        assert!(cache.get(&k, 99).is_some());
        assert!(cache.get(&k, 100).is_none());
        // Already expired: not stored.
        let k2 = VerifiedCache::key("t2");
        cache.insert(k2, claims(10), 50);
        assert!(cache.get(&k2, 0).is_none());
        for i in 0..(SHARDS * SHARD_CAPACITY * 2) {
            cache.insert(VerifiedCache::key(&i.to_string()), claims(1000), 50);
        }
        let total: usize = cache
            .shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(total <= SHARDS * SHARD_CAPACITY);
    }
}
