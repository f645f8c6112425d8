//! A signing key of any supported algorithm: the aws-lc-rs key pair parsed once, its public
//! JWK, its `kid`, and the encoded JWT header that every token it signs starts with.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Algorithm, PublicJwk, SigningError, pem};
use crate::secret::b64u;

/// A private key that signs access tokens. Not `Clone`: aws-lc cleanses the private key when
/// the one copy is freed. `Debug` shows the `kid` and the algorithm only.
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    jwk: PublicJwk,
    /// `{"typ":"at+jwt","alg":..,"kid":..}` base64url, as jsonwebtoken's `encode` writes it.
    header: String,
    pair: Pair,
}

enum Pair {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl SigningKey {
    /// A new key for `alg` (RSA: 2048 bits), and its PKCS#8 DER to seal under the KEK.
    pub fn generate(alg: Algorithm) -> Result<(Self, Zeroizing<Vec<u8>>), SigningError> {
        let failed = |_| SigningError::Generate(alg);
        let der = match alg {
            Algorithm::Es256 => {
                let pair =
                    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?;
                Zeroizing::new(pair.to_pkcs8v1().map_err(failed)?.as_ref().to_vec())
            }
            Algorithm::Rs256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
                Zeroizing::new(pair.as_der().map_err(failed)?.as_ref().to_vec())
            }
            Algorithm::EdDsa => {
                let pair = Ed25519KeyPair::generate().map_err(failed)?;
                Zeroizing::new(pair.to_pkcs8v1().map_err(failed)?.as_ref().to_vec())
            }
        };
        // Parsed back from the DER that will be stored: what is sealed is known to load.
        let key = Self::from_pkcs8(alg, &der)?;
        Ok((key, der))
    }

    /// From the PKCS#8 DER of a key for `alg` (v1 or v2; for ES256 also what p256's
    /// `to_pkcs8_der` writes). RSA keys of fewer than 2048 bits are refused.
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<Self, SigningError> {
        let bad = || SigningError::BadPrivateKey { alg };
        let pair = match alg {
            Algorithm::Es256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| bad())?,
            ),
            Algorithm::Rs256 => Pair::Rs256(RsaKeyPair::from_pkcs8(der).map_err(rsa_rejected)?),
            Algorithm::EdDsa => Pair::EdDsa(Ed25519KeyPair::from_pkcs8(der).map_err(|_| bad())?),
        };
        Self::assemble(pair)
    }

    /// From a PEM private key: PKCS#8 (`PRIVATE KEY`, the algorithm detected from the key),
    /// SEC1 (`EC PRIVATE KEY`, P-256) or PKCS#1 (`RSA PRIVATE KEY`). Encrypted keys are refused.
    pub fn from_pem(text: &str) -> Result<Self, SigningError> {
        let block = pem::decode(text).map_err(SigningError::Pem)?;
        match block.label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8_any(&block.der),
            "EC PRIVATE KEY" => Self::assemble(Pair::Es256(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &block.der)
                    .map_err(|_| SigningError::BadPrivateKey {
                        alg: Algorithm::Es256,
                    })?,
            )),
            "RSA PRIVATE KEY" => Self::assemble(Pair::Rs256(
                RsaKeyPair::from_der(&block.der).map_err(rsa_rejected)?,
            )),
            _ => Err(SigningError::PemLabel(block.label)),
        }
    }

    /// A PKCS#8 key of whichever supported type it is.
    fn from_pkcs8_any(der: &[u8]) -> Result<Self, SigningError> {
        if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Self::assemble(Pair::Es256(pair));
        }
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der) {
            return Self::assemble(Pair::EdDsa(pair));
        }
        match RsaKeyPair::from_pkcs8(der) {
            Ok(pair) => Self::assemble(Pair::Rs256(pair)),
            // An RSA key of a refused size says so; anything else is of no supported type.
            Err(e) => match rsa_rejected(e) {
                SigningError::BadPrivateKey { .. } => Err(SigningError::UnsupportedKey),
                size => Err(size),
            },
        }
    }

    fn assemble(pair: Pair) -> Result<Self, SigningError> {
        let (alg, jwk) = match &pair {
            Pair::Es256(p) => (
                Algorithm::Es256,
                PublicJwk::from_p256_point(p.public_key().as_ref())?,
            ),
            Pair::Rs256(p) => {
                let (n, e) = rsa_public_integers(p.public_key().as_ref()).ok_or(
                    SigningError::BadPrivateKey {
                        alg: Algorithm::Rs256,
                    },
                )?;
                (Algorithm::Rs256, PublicJwk::from_rsa(n, e))
            }
            Pair::EdDsa(p) => (
                Algorithm::EdDsa,
                PublicJwk::from_ed25519(p.public_key().as_ref())?,
            ),
        };
        let kid = jwk.thumbprint();
        let header = encode_header(alg, &kid)?;
        Ok(Self {
            alg,
            kid,
            jwk,
            header,
            pair,
        })
    }

    /// The same key under another `kid` (keys made before kids were RFC 7638 thumbprints keep
    /// the kid that their tokens and the published JWKS carry).
    pub fn with_kid(self, kid: &str) -> Result<Self, SigningError> {
        Ok(Self {
            header: encode_header(self.alg, kid)?,
            kid: kid.to_owned(),
            ..self
        })
    }

    /// The RFC 7638 thumbprint of the public key (or the kid given to [`Self::with_kid`]).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    /// The SubjectPublicKeyInfo DER of the public key, to compare with a published one.
    #[cfg(feature = "aws-secrets-manager")]
    pub(crate) fn public_spki_der(&self) -> Option<Vec<u8>> {
        let der = match &self.pair {
            Pair::Es256(p) => p.public_key().as_der().ok()?.as_ref().to_vec(),
            Pair::Rs256(p) => p.public_key().as_der().ok()?.as_ref().to_vec(),
            Pair::EdDsa(p) => p.public_key().as_der().ok()?.as_ref().to_vec(),
        };
        Some(der)
    }

    /// The compact JWS of `payload`: `header.payload.signature`, each part base64url; for
    /// ES256 the signature is r || s (RFC 7518 §3.4). None only if aws-lc fails to sign.
    pub fn sign_jws(&self, payload: &[u8]) -> Option<String> {
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Room for the largest signature too (RSA 2048: 256 bytes, 342 characters).
        let mut jws = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 350);
        jws.push_str(&self.header);
        jws.push('.');
        b64.encode_string(payload, &mut jws);
        let signature = match &self.pair {
            Pair::Es256(p) => p
                .sign(&SystemRandom::new(), jws.as_bytes())
                .ok()?
                .as_ref()
                .to_vec(),
            Pair::Rs256(p) => {
                let mut signature = vec![0; p.public_modulus_len()];
                p.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    jws.as_bytes(),
                    &mut signature,
                )
                .ok()?;
                signature
            }
            Pair::EdDsa(p) => p.try_sign(jws.as_bytes()).ok()?.as_ref().to_vec(),
        };
        jws.push('.');
        b64.encode_string(&signature, &mut jws);
        Some(jws)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// jsonwebtoken's own header serialization, so that tokens are byte for byte what its
/// `encode` writes with `Header { typ: "at+jwt", kid }`.
fn encode_header(alg: Algorithm, kid: &str) -> Result<String, SigningError> {
    let mut header = jsonwebtoken::Header::new(alg.jwt());
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(kid.to_owned());
    let json = serde_json::to_vec(&header).map_err(|_| SigningError::Generate(alg))?;
    Ok(b64u(&json))
}

fn rsa_rejected(e: aws_lc_rs::error::KeyRejected) -> SigningError {
    match e.description_() {
        "TooSmall" => SigningError::RsaTooSmall,
        "TooLarge" => SigningError::RsaTooLarge,
        _ => SigningError::BadPrivateKey {
            alg: Algorithm::Rs256,
        },
    }
}

/// The modulus and exponent of a DER `RSAPublicKey` (RFC 8017 §A.1.1):
/// `SEQUENCE { INTEGER n, INTEGER e }`.
pub(super) fn rsa_public_integers(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (body, rest) = der_element(der, 0x30)?;
    if !rest.is_empty() {
        return None;
    }
    let (n, body) = der_element(body, 0x02)?;
    let (e, rest) = der_element(body, 0x02)?;
    rest.is_empty().then_some((n, e))
}

/// The contents of the DER element of type `tag` at the start of `der`, and what follows it.
pub(super) fn der_element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, der) = der.split_first()?;
    if first != tag {
        return None;
    }
    let (&len, mut der) = der.split_first()?;
    let len = if len < 0x80 {
        usize::from(len)
    } else {
        let octets = usize::from(len & 0x7f);
        if octets == 0 || octets > 4 || der.len() < octets {
            return None;
        }
        let (len_bytes, rest) = der.split_at(octets);
        der = rest;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    (der.len() >= len).then(|| der.split_at(len))
}
