//! Public keys as JWKs (RFC 7517/7518/8037): what the JWKS publishes, what the database stores,
//! and the RFC 7638 thumbprint that names a key.

use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use super::{Algorithm, SigningError};
use crate::secret::{b64u, b64u_decode, sha256};

/// The public members of a signing key's JWK, each base64url without padding (the integers of
/// an RSA key in their fewest octets): the required members of RFC 7638 §3.2 and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk(Members);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Members {
    /// `kty: EC`, `crv: P-256`.
    P256 { x: String, y: String },
    /// `kty: RSA`.
    Rsa { n: String, e: String },
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519 { x: String },
}

/// Members that only a private JWK has: a row or file holding one is refused outright.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl PublicJwk {
    /// From an uncompressed SEC1 point (`04 || x || y`) on P-256.
    pub(crate) fn from_p256_point(point: &[u8]) -> Result<Self, SigningError> {
        match point {
            [4, xy @ ..] if xy.len() == 64 => Ok(Self(Members::P256 {
                x: b64u(&xy[..32]),
                y: b64u(&xy[32..]),
            })),
            _ => Err(jwk_error("not an uncompressed P-256 point")),
        }
    }

    /// From the big-endian modulus and exponent of an RSA key.
    pub(crate) fn from_rsa(n: &[u8], e: &[u8]) -> Self {
        Self(Members::Rsa {
            n: b64u(strip_zeros(n)),
            e: b64u(strip_zeros(e)),
        })
    }

    /// From the 32 bytes of an Ed25519 public key.
    pub(crate) fn from_ed25519(x: &[u8]) -> Result<Self, SigningError> {
        if x.len() != 32 {
            return Err(jwk_error("an Ed25519 public key is 32 bytes"));
        }
        Ok(Self(Members::Ed25519 { x: b64u(x) }))
    }

    /// The algorithm that signs with a key of this type.
    pub fn algorithm(&self) -> Algorithm {
        match self.0 {
            Members::P256 { .. } => Algorithm::Es256,
            Members::Rsa { .. } => Algorithm::Rs256,
            Members::Ed25519 { .. } => Algorithm::EdDsa,
        }
    }

    /// Reads a stored public JWK (a JSON object) of a key for `alg`. `use`, `alg`, `kid` and
    /// `key_ops` may be present (`alg` must then be `alg`); private members are refused.
    pub fn from_json(alg: Algorithm, json: &str) -> Result<Self, SigningError> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            jwk_error(&format!(
                "not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(object) = value else {
            return Err(jwk_error("not a JSON object"));
        };
        if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
            return Err(jwk_error(&format!(
                "it holds the private member \"{private}\": only public keys are stored or published"
            )));
        }
        if let Some(stated) = object.get("alg")
            && stated.as_str() != Some(alg.as_str())
        {
            return Err(jwk_error(&format!("its \"alg\" is not {alg}")));
        }
        let (kty, crv) = match alg {
            Algorithm::Es256 => ("EC", Some("P-256")),
            Algorithm::Rs256 => ("RSA", None),
            Algorithm::EdDsa => ("OKP", Some("Ed25519")),
        };
        if text(&object, "kty")? != kty {
            return Err(jwk_error(&format!("an {alg} key has \"kty\": \"{kty}\"")));
        }
        if let Some(crv) = crv
            && text(&object, "crv")? != crv
        {
            return Err(jwk_error(&format!("an {alg} key has \"crv\": \"{crv}\"")));
        }
        match alg {
            Algorithm::Es256 => {
                let mut point = vec![4];
                point.extend(bytes(&object, "x", Some(32))?);
                point.extend(bytes(&object, "y", Some(32))?);
                // The point must be on the curve, or verification would be meaningless.
                p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| jwk_error("x and y are not a point on P-256"))?;
                Self::from_p256_point(&point)
            }
            Algorithm::Rs256 => {
                let n = bytes(&object, "n", None)?;
                let e = bytes(&object, "e", None)?;
                let n = strip_zeros(&n);
                if bit_length(n) < 2048 {
                    return Err(SigningError::RsaTooSmall);
                }
                let e = strip_zeros(&e);
                if e.is_empty() || e.len() > 8 {
                    return Err(jwk_error("\"e\" is not a valid RSA public exponent"));
                }
                Ok(Self::from_rsa(n, e))
            }
            Algorithm::EdDsa => Self::from_ed25519(&bytes(&object, "x", Some(32))?),
        }
    }

    /// The required public members in lexicographic order without whitespace (RFC 7638 §3.3):
    /// the text the thumbprint hashes, and what the database stores.
    pub fn to_json(&self) -> String {
        // Every value is base64url or a fixed name: nothing needs escaping.
        match &self.0 {
            Members::P256 { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            Members::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            Members::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        }
    }

    /// The RFC 7638 thumbprint with SHA-256, base64url: the key's `kid`.
    pub fn thumbprint(&self) -> String {
        b64u(&sha256(self.to_json().as_bytes()))
    }

    /// The key that jsonwebtoken verifies with.
    pub fn decoding_key(&self) -> Result<DecodingKey, SigningError> {
        let key = match &self.0 {
            Members::P256 { x, y } => DecodingKey::from_ec_components(x, y),
            Members::Rsa { n, e } => DecodingKey::from_rsa_components(n, e),
            Members::Ed25519 { x } => DecodingKey::from_ed_components(x),
        };
        key.map_err(|_| jwk_error("jsonwebtoken refused the key"))
    }

    /// The key's entry in a JWKS: the public members, `use: sig`, `alg` and `kid`.
    pub fn jwks_entry(&self, kid: &str, alg: Algorithm) -> Value {
        let mut entry = Map::new();
        let mut put = |name: &str, value: &str| {
            entry.insert(name.to_owned(), Value::String(value.to_owned()));
        };
        match &self.0 {
            Members::P256 { x, y } => {
                put("kty", "EC");
                put("crv", "P-256");
                put("x", x);
                put("y", y);
            }
            Members::Rsa { n, e } => {
                put("kty", "RSA");
                put("n", n);
                put("e", e);
            }
            Members::Ed25519 { x } => {
                put("kty", "OKP");
                put("crv", "Ed25519");
                put("x", x);
            }
        }
        put("use", "sig");
        put("alg", alg.as_str());
        put("kid", kid);
        Value::Object(entry)
    }
}

fn jwk_error(reason: &str) -> SigningError {
    SigningError::Jwk(reason.to_owned())
}

fn text<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a str, SigningError> {
    object
        .get(name)
        .ok_or_else(|| jwk_error(&format!("the member \"{name}\" is missing")))?
        .as_str()
        .ok_or_else(|| jwk_error(&format!("the member \"{name}\" is not a string")))
}

/// A base64url member, of exactly `len` bytes when given.
fn bytes(
    object: &Map<String, Value>,
    name: &str,
    len: Option<usize>,
) -> Result<Vec<u8>, SigningError> {
    let value = b64u_decode(text(object, name)?).ok_or_else(|| {
        jwk_error(&format!(
            "the member \"{name}\" is not base64url without padding"
        ))
    })?;
    match len {
        Some(len) if value.len() != len => Err(jwk_error(&format!(
            "the member \"{name}\" is {} bytes, not {len}",
            value.len()
        ))),
        _ => Ok(value),
    }
}

/// An unsigned big-endian integer in its fewest octets (RFC 7518 §6.3.1).
fn strip_zeros(int: &[u8]) -> &[u8] {
    let first = int.iter().position(|b| *b != 0).unwrap_or(int.len());
    &int[first..]
}

/// The bits of an unsigned big-endian integer without leading zero octets.
pub(crate) fn bit_length(int: &[u8]) -> usize {
    match int.first() {
        Some(first) => int.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}
