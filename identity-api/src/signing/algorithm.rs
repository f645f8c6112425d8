//! The JWS algorithms a tenant's access tokens may be signed with.

use std::fmt;
use std::str::FromStr;

/// An asymmetric JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1): the verifiers of an access token
/// only ever hold the public key, published in the JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256; the signature is r || s.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 bits or more.
    Rs256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Algorithm {
    /// Every supported algorithm, in the order error messages list them.
    pub const ALL: [Algorithm; 3] = [Algorithm::Es256, Algorithm::Rs256, Algorithm::EdDsa];

    /// The JOSE name, as in a JWT header's `alg` and a JWK's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Rs256 => "RS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The same algorithm as jsonwebtoken names it (for `Validation` and `Header`).
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    /// The algorithm of a jsonwebtoken header, if it is one of ours.
    pub fn from_jwt(alg: jsonwebtoken::Algorithm) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.jwt() == alg)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a name is not an algorithm a tenant may sign with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmError {
    #[error(
        "{0} is a symmetric (HMAC) algorithm and is not supported: its shared secret cannot be \
         published in a JWKS, and every verifier holding it could mint tokens of its own; \
         use ES256, RS256 or EdDSA"
    )]
    Symmetric(String),
    #[error("unknown signing algorithm {0:?}: the supported ones are ES256, RS256 and EdDSA")]
    Unknown(String),
}

impl FromStr for Algorithm {
    type Err = AlgorithmError;

    /// The JOSE name, in any case: `ES256`, `RS256`, `EdDSA`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let name = name.trim();
        if let Some(alg) = Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name))
        {
            return Ok(alg);
        }
        if ["HS256", "HS384", "HS512"]
            .iter()
            .any(|hs| hs.eq_ignore_ascii_case(name))
        {
            return Err(AlgorithmError::Symmetric(name.to_ascii_uppercase()));
        }
        // A name longer than any JOSE name is not echoed whole: it may be a pasted key.
        let shown: String = name.chars().take(16).collect();
        Err(AlgorithmError::Unknown(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            assert_eq!(alg.as_str().to_lowercase().parse::<Algorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
            assert_eq!(Algorithm::from_jwt(alg.jwt()), Some(alg));
            // jsonwebtoken writes the same name into headers.
            assert_eq!(
                serde_json::to_value(alg.jwt()).ok(),
                Some(serde_json::json!(alg.as_str()))
            );
        }
        assert_eq!("eddsa".parse::<Algorithm>(), Ok(Algorithm::EdDsa));
    }

    #[test]
    fn hmac_is_refused_with_the_reason() {
        for name in ["HS256", "hs384", "HS512"] {
            let err = name.parse::<Algorithm>().unwrap_err();
            assert!(matches!(err, AlgorithmError::Symmetric(_)), "{name}");
            let text = err.to_string();
            assert!(text.contains("cannot be published in a JWKS"), "{text}");
            assert!(text.contains("mint tokens"), "{text}");
            assert!(text.contains(&name.to_ascii_uppercase()), "{text}");
        }
    }

    #[test]
    fn unknown_names_list_the_supported_ones() {
        let err = "PS256".parse::<Algorithm>().unwrap_err();
        assert_eq!(err, AlgorithmError::Unknown("PS256".into()));
        assert!(err.to_string().contains("ES256, RS256 and EdDSA"));
        assert!(matches!(
            "none".parse::<Algorithm>(),
            Err(AlgorithmError::Unknown(_))
        ));
    }
}
