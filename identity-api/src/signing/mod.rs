//! Signing keys of any supported algorithm (ES256, RS256, EdDSA) for a tenant's access tokens:
//! generated and sealed in the database, or referenced from outside it (a PEM file, an AWS
//! Secrets Manager secret), with their public JWKs, RFC 7638 `kid`s and JWKS entries.
//!
//! - [`Algorithm`]: the algorithms, and why HMAC is not one of them;
//! - [`SigningKey`]: a private key parsed once, that signs compact JWS;
//! - [`PublicJwk`]: its public half, as stored, published and verified with;
//! - [`KeyReference`], [`Watched`]: keys kept outside the database, and reloading them on change.

mod algorithm;
// The AWS SDK is a large part of a build and of its dependencies' features: opt-in.
#[cfg(feature = "aws-secrets-manager")]
mod aws;
#[cfg(not(feature = "aws-secrets-manager"))]
#[path = "no_aws.rs"]
mod aws;
mod jwk;
mod key;
mod pem;
mod reference;
#[cfg(test)]
mod tests;

pub use algorithm::{Algorithm, AlgorithmError};
pub use jwk::PublicJwk;
pub use key::SigningKey;
pub use reference::{KeyReference, ReferenceError, Watched};

/// Why a key or public JWK cannot be used. Never quotes key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Algorithm(#[from] AlgorithmError),
    #[error("not a valid {alg} private key (unencrypted PKCS#8 expected)")]
    BadPrivateKey { alg: Algorithm },
    #[error(
        "the RSA key has fewer than 2048 bits: such keys are refused (RFC 7518 §3.3 requires \
         2048 or more); generate a 2048-bit or larger key"
    )]
    RsaTooSmall,
    #[error("the RSA key has more than 8192 bits: not supported")]
    RsaTooLarge,
    #[error("the PKCS#8 private key is not a P-256 (ES256), RSA (RS256) or Ed25519 (EdDSA) key")]
    UnsupportedKey,
    #[error("the key is an {found} key, not an {expected} one")]
    AlgorithmMismatch {
        expected: Algorithm,
        found: Algorithm,
    },
    #[error("generating an {0} key failed")]
    Generate(Algorithm),
    #[error("not a PEM private key: {0}")]
    Pem(&'static str),
    #[error(
        "the PEM block is \"{0}\": a \"PRIVATE KEY\" (PKCS#8), \"EC PRIVATE KEY\" or \
         \"RSA PRIVATE KEY\" is expected, unencrypted"
    )]
    PemLabel(String),
    #[error("not a usable public JWK: {0}")]
    Jwk(String),
}
