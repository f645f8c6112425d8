//! Access tokens: JWT per RFC 9068 (`typ: at+jwt`, `kid`, signed with their tenant's key), and a cache of verified tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};

use crate::keys::{Directory, Tenant};
use crate::secret::sha256;
use crate::storage::TenantId;

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
    /// A user's roles (a password grant's token); absent from a client's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
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

/// A compact JWS of `claims` under the tenant's active key: the JSON is serde's, as
/// jsonwebtoken's `encode` makes it, and `verify` (jsonwebtoken's `decode`) reads it back.
pub fn sign(tenant: &Tenant, claims: &Claims) -> Result<String, TokenError> {
    let key = tenant.active.as_ref().ok_or(TokenError::NoKey)?;
    let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Sign)?;
    key.sign_jws(&payload).ok_or(TokenError::Sign)
}

/// Claims that verified, and the tenant whose key signed them: a token belongs to the tenant
/// of its key, whose issuer it must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub tenant: TenantId,
    pub claims: Claims,
}

impl std::ops::Deref for Verified {
    type Target = Claims;

    fn deref(&self) -> &Claims {
        &self.claims
    }
}

/// Verifies signature, `typ`, algorithm (the key's) and issuer (the key's tenant's); not the
/// expiry (callers decide: a refresh may present an expired bearer).
pub fn verify(directory: &Directory, token: &str) -> Result<Verified, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    // RFC 9068 §4: typ is "at+jwt" (or the full media type).
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(TokenError::Invalid);
    }
    let kid = header.kid.ok_or(TokenError::Invalid)?;
    let verifier = directory.verifier(&kid).ok_or(TokenError::UnknownKey)?;
    if header.alg != verifier.algorithm.jwt() {
        return Err(TokenError::Invalid);
    }
    let tenant = directory
        .tenant(verifier.tenant.as_str())
        .ok_or(TokenError::UnknownKey)?;
    let mut validation = Validation::new(verifier.algorithm.jwt());
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.set_issuer(&[&tenant.issuer]);
    let data = jsonwebtoken::decode::<Claims>(token, &verifier.key, &validation)
        .map_err(|_| TokenError::Invalid)?;
    Ok(Verified {
        tenant: verifier.tenant.clone(),
        claims: data.claims,
    })
}

const SHARDS: usize = 16;
const SHARD_CAPACITY: usize = 4096;

/// Verified tokens keyed by SHA-256 of the token, each until its `exp`: saves the signature
/// verification on repeated use. Never a substitute for the family revocation check.
/// Sharded so that no single lock sits on the request path.
#[derive(Debug)]
pub struct VerifiedCache {
    shards: Vec<Mutex<HashMap<[u8; 32], Arc<Verified>>>>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl VerifiedCache {
    fn shard(&self, key: &[u8; 32]) -> Option<&Mutex<HashMap<[u8; 32], Arc<Verified>>>> {
        self.shards.get(usize::from(key[0]) % SHARDS)
    }

    pub fn key(token: &str) -> [u8; 32] {
        sha256(token.as_bytes())
    }

    pub fn get(&self, key: &[u8; 32], now: i64) -> Option<Arc<Verified>> {
        let shard = self.shard(key)?.lock().ok()?;
        shard.get(key).filter(|c| c.exp > now).cloned()
    }

    pub fn insert(&self, key: [u8; 32], claims: Arc<Verified>, now: i64) {
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

    fn plain(exp: i64) -> Claims {
        Claims {
            iss: "https://id.example/t/a".into(),
            sub: "s".into(),
            aud: "a".into(),
            client_id: "c".into(),
            scope: "x".into(),
            iat: 0,
            exp,
            jti: "j".into(),
            fid: "f".into(),
            roles: None,
        }
    }

    fn claims(exp: i64) -> Arc<Verified> {
        Arc::new(Verified {
            tenant: TenantId::primary(),
            claims: plain(exp),
        })
    }

    /// A directory of tenants `a` and `b`, each with a key of its own; `a`'s key's PKCS#8.
    fn two_tenants() -> (Directory, zeroize::Zeroizing<Vec<u8>>) {
        use crate::keys::{Tenant, Verifier};
        use crate::signing::{Algorithm, SigningKey};
        let mut tenants = Vec::new();
        let mut verifiers = Vec::new();
        let mut der_a = None;
        for slug in ["a", "b"] {
            let (key, der) = SigningKey::generate(Algorithm::Es256).unwrap();
            let id = TenantId::new(slug).unwrap();
            verifiers.push((
                key.kid().to_owned(),
                Verifier {
                    tenant: id.clone(),
                    algorithm: Algorithm::Es256,
                    key: key.public_jwk().decoding_key().unwrap(),
                },
            ));
            tenants.push(Tenant {
                issuer: format!("https://id.example/t/{slug}"),
                display_name: slug.into(),
                enabled: true,
                algorithm: Algorithm::Es256,
                signing_key_ref: None,
                access_ttl: 60,
                refresh_ttl: 60,
                family_ttl: 60,
                active: Some(Arc::new(key)),
                jwks: Arc::from(Vec::new()),
                published: 1,
                id,
            });
            der_a.get_or_insert(der);
        }
        (
            Directory::of(TenantId::new("a").unwrap(), tenants, verifiers),
            der_a.unwrap(),
        )
    }

    /// `sign` writes what jsonwebtoken's `encode` writes (header and payload byte for byte), and
    /// `verify` reads it back with its tenant; a token with a changed payload does not verify,
    /// nor one naming another tenant's issuer.
    #[test]
    fn signed_tokens_match_jsonwebtoken_and_verify() {
        use jsonwebtoken::{EncodingKey, Header};

        let (directory, der) = two_tenants();
        let a = directory.tenant("a").unwrap();
        let kid = a.active.as_ref().unwrap().kid().to_owned();
        let claims = plain(4_000_000_000);
        let ours = sign(a, &claims).unwrap();
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(kid);
        let theirs =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&der)).unwrap();
        let signed_part = |t: &str| t.rsplit_once('.').unwrap().0.to_owned();
        assert_eq!(signed_part(&ours), signed_part(&theirs));
        let verified = verify(&directory, &ours).unwrap();
        assert_eq!(verified.tenant.as_str(), "a");
        assert_eq!(verified.claims, claims);
        assert_eq!(verify(&directory, &theirs).unwrap().claims, claims);

        let other = Claims {
            sub: "someone-else".into(),
            ..claims.clone()
        };
        let forged = format!(
            "{}.{}",
            signed_part(&sign(a, &other).unwrap()),
            ours.rsplit_once('.').unwrap().1
        );
        assert!(matches!(
            verify(&directory, &forged),
            Err(TokenError::Invalid)
        ));

        // Signed with a's key but naming b's issuer: a's tokens name a's issuer only.
        let as_b = Claims {
            iss: "https://id.example/t/b".into(),
            ..claims.clone()
        };
        let token = sign(a, &as_b).unwrap();
        assert!(matches!(
            verify(&directory, &token),
            Err(TokenError::Invalid)
        ));
        // b's token is b's.
        let b = directory.tenant("b").unwrap();
        let token = sign(b, &as_b).unwrap();
        assert_eq!(verify(&directory, &token).unwrap().tenant.as_str(), "b");
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
