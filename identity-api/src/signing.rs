//! Signing algorithms and keys (ES256 until the signing module lands).

use std::fmt;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::secret::{b64u, sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        "ES256"
    }
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        jsonwebtoken::Algorithm::ES256
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlgorithmError {
    #[error("unknown signing algorithm {0:?}: use ES256")]
    Unknown(String),
}

impl std::str::FromStr for Algorithm {
    type Err = AlgorithmError;
    fn from_str(s: &str) -> Result<Self, AlgorithmError> {
        if s.eq_ignore_ascii_case("ES256") {
            Ok(Self::Es256)
        } else {
            Err(AlgorithmError::Unknown(s.chars().take(20).collect()))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("not a valid {0} key")]
    BadKey(Algorithm),
    #[error("key generation failed")]
    Generate,
}

#[derive(Debug, Clone)]
pub struct PublicJwk {
    x: String,
    y: String,
}

impl PublicJwk {
    pub fn from_json(alg: Algorithm, json: &str) -> Result<Self, SigningError> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|_| SigningError::BadKey(alg))?;
        let x = v["x"].as_str().ok_or(SigningError::BadKey(alg))?.to_owned();
        let y = v["y"].as_str().ok_or(SigningError::BadKey(alg))?.to_owned();
        Ok(Self { x, y })
    }
    pub fn to_json(&self) -> String {
        serde_json::json!({"crv": "P-256", "kty": "EC", "x": self.x, "y": self.y}).to_string()
    }
    pub fn decoding_key(&self) -> Result<DecodingKey, SigningError> {
        DecodingKey::from_ec_components(&self.x, &self.y)
            .map_err(|_| SigningError::BadKey(Algorithm::Es256))
    }
    pub fn jwks_entry(&self, kid: &str, alg: Algorithm) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": alg.as_str(),
            "kid": kid, "x": self.x, "y": self.y,
        })
    }
}

pub struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
    header: String,
    jwk: PublicJwk,
}

impl SigningKey {
    pub fn generate(alg: Algorithm) -> Result<(Self, Zeroizing<Vec<u8>>), SigningError> {
        let secret = p256::SecretKey::random(&mut OsRng);
        let der = secret.to_pkcs8_der().map_err(|_| SigningError::Generate)?;
        let der = Zeroizing::new(der.as_bytes().to_vec());
        Ok((Self::from_pkcs8(alg, &der)?, der))
    }

    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<Self, SigningError> {
        let secret = p256::SecretKey::from_pkcs8_der(der).map_err(|_| SigningError::BadKey(alg))?;
        let point = secret.public_key().to_encoded_point(false);
        let (x, y) = match (point.x(), point.y()) {
            (Some(x), Some(y)) => (b64u(x), b64u(y)),
            _ => return Err(SigningError::BadKey(alg)),
        };
        let kid = b64u(&sha256(point.as_bytes())[..12]);
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| SigningError::BadKey(alg))?;
        let mut header = jsonwebtoken::Header::new(alg.jwt());
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(kid.clone());
        let header = serde_json::to_vec(&header).map_err(|_| SigningError::Generate)?;
        Ok(Self {
            kid,
            pair,
            header: b64u(&header),
            jwk: PublicJwk { x, y },
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::Es256
    }
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    pub fn sign_jws(&self, payload: &[u8]) -> Option<String> {
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
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

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Where a tenant's key is read from (replaced by the signing module's).
#[derive(Debug)]
pub struct KeyReference(String);

#[derive(Debug, thiserror::Error)]
#[error("{0}: external signing keys are not supported yet")]
pub struct ReferenceError(String);

impl std::str::FromStr for KeyReference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        Err(ReferenceError(s.to_owned()))
    }
}

impl KeyReference {
    pub async fn load(&self) -> Result<SigningKey, ReferenceError> {
        Err(ReferenceError(self.0.clone()))
    }
}
