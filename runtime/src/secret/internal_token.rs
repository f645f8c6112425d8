//! The internal token (`IDENTITY_INTERNAL_TOKEN`): the secret the sidecar sends as
//! `X-Internal-Token` and the identity API requires on `/api/v1/*`. Both binaries read it through
//! [`InternalTokenSpec`] and start by [`InternalToken::configured`], so one rule decides what a
//! token must be and when a binary may run without one. That rule is [`SharedToken`]'s: every
//! secret presented in a header (the identity API's service token too) meets it.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Secret, SecretSpec};

/// The least entropy a token must be able to hold, in bits: out of reach of guessing.
const MIN_ENTROPY_BITS: f64 = 128.0;

const NOT_VISIBLE_ASCII: &str =
    "must be non-empty visible ASCII (0x21-0x7E): no spaces, no trailing newline";
const TOO_WEAK: &str = "is too weak: it must hold at least 128 bits of entropy, judged by its \
    length and alphabet (length * log2(alphabet size) >= 128): at least 22 characters of \
    base64 or base64url, 32 hex digits, 39 decimal digits. Make one with \
    `openssl rand -base64 32`";

/// Why a text cannot be a [`SharedToken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    NotVisibleAscii,
    TooWeak,
}

impl TokenProblem {
    /// What is wrong, as [`SecretSpec::check`] reports it (after the variable's name).
    pub fn problem(self) -> &'static str {
        match self {
            Self::NotVisibleAscii => NOT_VISIBLE_ASCII,
            Self::TooWeak => TOO_WEAK,
        }
    }
}

/// A secret shared with the callers that present it in a header, checked: visible ASCII (it
/// travels as a header value) and strong enough (at least 128 bits by `entropy_bits`). Wiped
/// on drop; compared in constant time; `Debug` shows nothing.
pub struct SharedToken(Zeroizing<String>);

impl SharedToken {
    pub fn new(text: &str) -> Result<Self, TokenProblem> {
        if text.is_empty() || !text.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(TokenProblem::NotVisibleAscii);
        }
        if entropy_bits(text) < MIN_ENTROPY_BITS {
            return Err(TokenProblem::TooWeak);
        }
        Ok(Self(Zeroizing::new(text.to_owned())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented header value. Fixed-size digests are
    /// compared, so that the token's length does not show either.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        let presented: [u8; 32] = Sha256::digest(presented).into();
        expected.ct_eq(&presented).into()
    }
}

impl fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedToken(<redacted>)")
    }
}

/// `IDENTITY_INTERNAL_TOKEN`: both binaries read the same variables.
#[derive(Debug)]
pub enum InternalTokenSpec {}

impl SecretSpec for InternalTokenSpec {
    const FLAG: &'static str = "internal-token";
    const FILE_FLAG: &'static str = "internal-token-file";
    const ENV: &'static str = "IDENTITY_INTERNAL_TOKEN";
    const FILE_ENV: &'static str = "IDENTITY_INTERNAL_TOKEN_FILE";
    const HELP: &'static str = "The secret shared by the sidecar and the identity API: the \
        sidecar sends it as X-Internal-Token, the identity API requires it on /api/v1/*. \
        Required (unless --dev or --insecure-no-internal-token): visible ASCII, no spaces, at \
        least 128 bits of entropy by length and alphabet (22 base64 characters, 32 hex digits; \
        `openssl rand -base64 32`). Prefer --internal-token-file (or the variable) to the flag";
    const FILE_HELP: &'static str =
        "File holding the internal token (one trailing newline is ignored)";

    fn check(value: &str) -> Result<(), &'static str> {
        InternalToken::new(value).map(drop).map_err(|e| e.problem())
    }
}

/// Why there is no usable internal token. Names the variables, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadInternalToken {
    #[error("--internal-token (IDENTITY_INTERNAL_TOKEN) {NOT_VISIBLE_ASCII}")]
    NotVisibleAscii,
    #[error("--internal-token (IDENTITY_INTERNAL_TOKEN) {TOO_WEAK}")]
    TooWeak,
    /// None given, and the binary was not told that none is fine.
    #[error(
        "no internal token: set IDENTITY_INTERNAL_TOKEN_FILE or IDENTITY_INTERNAL_TOKEN \
         (--internal-token-file, --internal-token) to the secret the sidecar and the identity API \
         share, at least 128 bits of entropy (`openssl rand -base64 32`). To run without one, \
         which leaves the identity API's /api/v1/* open to anyone who can reach it, pass \
         --insecure-no-internal-token ({env_prefix}_INSECURE_NO_INTERNAL_TOKEN), or --dev \
         ({env_prefix}_DEV) for development"
    )]
    Missing {
        /// The binary's prefix of its own variables: `IDENTITY` or `SIDECAR`.
        env_prefix: &'static str,
    },
}

impl BadInternalToken {
    /// What is wrong with a given token, as [`SecretSpec::check`] reports it.
    fn problem(self) -> &'static str {
        match self {
            Self::NotVisibleAscii => NOT_VISIBLE_ASCII,
            Self::TooWeak => TOO_WEAK,
            Self::Missing { .. } => "is missing",
        }
    }
}

/// The internal token: a [`SharedToken`]. `Debug` shows nothing.
pub struct InternalToken(SharedToken);

impl InternalToken {
    pub fn new(text: &str) -> Result<Self, BadInternalToken> {
        SharedToken::new(text).map(Self).map_err(|e| match e {
            TokenProblem::NotVisibleAscii => BadInternalToken::NotVisibleAscii,
            TokenProblem::TooWeak => BadInternalToken::TooWeak,
        })
    }

    /// The token a binary starts with. A token that was given is checked (again, for one given
    /// in code); none is refused unless `none_allowed` (`--dev` or
    /// `--insecure-no-internal-token`), and the refusal names the variables of the binary whose
    /// own variables start with `env_prefix`.
    pub fn configured(
        secret: &Secret<InternalTokenSpec>,
        none_allowed: bool,
        env_prefix: &'static str,
    ) -> Result<Option<Self>, BadInternalToken> {
        match secret.get() {
            Some(text) => Self::new(text).map(Some),
            None if none_allowed => Ok(None),
            None => Err(BadInternalToken::Missing { env_prefix }),
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Constant-time comparison with a presented header value ([`SharedToken::matches`]).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.matches(presented)
    }
}

impl fmt::Debug for InternalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalToken(<redacted>)")
    }
}

/// The most entropy a token of this length and alphabet can hold: `length * log2(alphabet)`.
/// The alphabet is the smallest that explains the token: decimal digits (10), hex digits of one
/// case (16), or else the sum of the classes present: digits 10, lower case 26, upper case 26,
/// base64's and base64url's `+/=_-` 5, the other 27 visible ASCII symbols. A real random token
/// holds that much; a chosen one (`password1`, a repeated letter) holds less, which no count
/// can see: so this only refuses what is too short for its alphabet.
fn entropy_bits(token: &str) -> f64 {
    fn base64_symbol(b: &u8) -> bool {
        b"+/=_-".contains(b)
    }
    let all = |class: fn(&u8) -> bool| token.bytes().all(|b| class(&b));
    let any = |class: fn(&u8) -> bool| token.bytes().any(|b| class(&b));
    let alphabet: u32 = if all(u8::is_ascii_digit) {
        10
    } else if all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        || all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
    {
        16
    } else {
        [
            (any(u8::is_ascii_digit), 10),
            (any(u8::is_ascii_lowercase), 26),
            (any(u8::is_ascii_uppercase), 26),
            (any(base64_symbol), 5),
            (any(|b| b.is_ascii_punctuation() && !base64_symbol(b)), 27),
        ]
        .iter()
        .filter(|(present, _)| *present)
        .map(|(_, size)| size)
        .sum()
    };
    // Lengths of tokens are far below 2^52: exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    let length = token.len() as f64;
    length * f64::from(alphabet).log2()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_internal_token_is_visible_ascii_and_compared_whole() {
        let text = "tok-1-7Hq2xZ9pLm4Vb8Nc3Rd6";
        let token = InternalToken::new(text).unwrap();
        assert!(token.matches(text.as_bytes()));
        for other in [
            &b"tok-1-7Hq2xZ9pLm4Vb8Nc3Rd6\n"[..],
            b"tok-1-7Hq2xZ9pLm4Vb8Nc3Rd",
            b"tok-1-7Hq2xZ9pLm4Vb8Nc3Rd66",
            b"",
        ] {
            assert!(!token.matches(other));
        }
        for bad in ["", " ", "a b", "tab\t", "é"] {
            assert_eq!(
                InternalToken::new(bad).unwrap_err(),
                BadInternalToken::NotVisibleAscii,
                "{bad:?}"
            );
        }
        // Spaces around a strong token do not make it visible ASCII.
        let padded = format!(" {text}");
        assert_eq!(
            InternalToken::new(&padded).unwrap_err(),
            BadInternalToken::NotVisibleAscii
        );
        assert_eq!(format!("{token:?}"), "InternalToken(<redacted>)");
    }

    #[test]
    fn a_token_needs_128_bits_by_length_and_alphabet() {
        // (alphabet, the shortest token of it that passes)
        for (alphabet, shortest) in [
            ("0123456789", 39),
            ("0123456789abcdef", 32),
            ("0123456789ABCDEF", 32),
            ("abcdefghijklmnopqrstuvwxyz", 28),
            ("a0b1c2d3e4f5g6h7i8j9klmnopqrstuvwxyz", 25),
            ("Aa0Bb1Cc2Dd3Ee4Ff5Gg6Hh7Ii8Jj9", 22),
            // base64url; base64 with its padding
            ("Aa0-Bb1_Cc2Dd3Ee4Ff5Gg6Hh7", 22),
            ("Aa0+Bb1/Cc2=Dd3Ee4Ff5Gg6", 22),
            ("!aA0\"bB1#cC2$dD3%eE4&fF5", 20),
        ] {
            let of_length = |n: usize| -> String { alphabet.chars().cycle().take(n).collect() };
            let long_enough = of_length(shortest);
            assert!(InternalToken::new(&long_enough).is_ok(), "{long_enough}");
            let short = of_length(shortest - 1);
            assert_eq!(
                InternalToken::new(&short).unwrap_err(),
                BadInternalToken::TooWeak,
                "{short}"
            );
        }
        // What the documents and the launcher make passes.
        let openssl_base64_32 = "q2Vc0mO5vW3xk8Yb7R1tZ9fLh4Pn6Ja+/sEgDuCiTlw=";
        assert!(InternalToken::new(openssl_base64_32).is_ok());
        assert!(InternalToken::new("3f9a0c5be17d4286a9c0f1e2d3b4a596").is_ok());
    }

    #[test]
    fn none_is_refused_unless_allowed_and_the_refusal_names_the_binarys_variables() {
        let none = Secret::<InternalTokenSpec>::none();
        assert!(
            InternalToken::configured(&none, true, "SIDECAR")
                .unwrap()
                .is_none()
        );
        let refused = InternalToken::configured(&none, false, "SIDECAR").unwrap_err();
        assert_eq!(
            refused,
            BadInternalToken::Missing {
                env_prefix: "SIDECAR"
            }
        );
        let text = refused.to_string();
        for says in [
            "IDENTITY_INTERNAL_TOKEN_FILE",
            "128 bits",
            "--insecure-no-internal-token (SIDECAR_INSECURE_NO_INTERNAL_TOKEN)",
            "--dev (SIDECAR_DEV)",
        ] {
            assert!(text.contains(says), "{text}");
        }
        // A token given in code meets the same rule, allowed or not.
        let weak = Secret::<InternalTokenSpec>::from_value("it");
        for allowed in [true, false] {
            assert_eq!(
                InternalToken::configured(&weak, allowed, "IDENTITY").unwrap_err(),
                BadInternalToken::TooWeak
            );
        }
        let strong = Secret::<InternalTokenSpec>::from_value("3f9a0c5be17d4286a9c0f1e2d3b4a596");
        assert!(
            InternalToken::configured(&strong, false, "IDENTITY")
                .unwrap()
                .is_some()
        );
    }
}
