//! The second factor: TOTP (RFC 6238 over RFC 4226's HOTP) and recovery codes. Pure functions:
//! the caller brings the time, seals and stores the secret, and records what was used.
//!
//! # TOTP
//! - [`TotpSecret::generate`] draws the shared secret K (160 bits, RFC 4226 section 4's
//!   recommended length). The caller seals [`TotpSecret::expose`] under the KEK and reads it
//!   back with [`TotpSecret::from_bytes`].
//! - [`TotpSecret::otpauth_uri`] is what the user's authenticator app scans, shown once at
//!   enrolment: `otpauth://totp/{issuer}:{account}?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30`
//!   (Google Authenticator's Key Uri Format). It holds the secret, so it is a secret too.
//! - [`verify`] checks a code: HOTP(K, T) with T = floor(now / 30) (RFC 6238 section 4),
//!   HMAC-SHA-1, 6 digits, as every authenticator app computes it. Steps T-1, T and T+1 are
//!   accepted (section 5.2: one step of clock skew or network delay either way). It returns the
//!   step that matched; the caller stores it (`users.totp_last_step`) and passes it back as
//!   `last_step` next time, so a code, and any code older than it, is accepted once (section
//!   5.2). Two concurrent logins with one code must not both win: the caller stores the step
//!   with a compare-and-set (`... SET totp_last_step = $step WHERE totp_last_step IS NULL OR
//!   totp_last_step < $step`) and accepts only if a row changed.
//!
//! Enrolment: `generate`, seal, show `otpauth_uri`; confirmation: `verify(.., None)` on the
//! first code, then store its step. Login: `verify(.., stored_last_step)`.
//!
//! # Recovery codes
//! [`RecoveryCodes::generate`] makes [`RECOVERY_CODE_COUNT`] codes of 65 random bits each, as
//! 13 lowercase base32 characters in groups of four (`abcd-efgh-ijkl-m`): shown once, stored
//! as [`RecoveryCodes::verifiers`]. What a user types goes through
//! [`RecoveryCodes::normalize`] (case, dashes and spaces do not matter), then
//! [`RecoveryCodes::verifier`], and is looked up among the user's unused ones. 65 random bits
//! need no slow hash: an HMAC under a server key, as client secrets (`clients::verifier`).
//! A code works once: the caller spends it with `... SET used_at = $now WHERE user_id = $1 AND
//! code_hash = $2 AND used_at IS NULL` and accepts only if a row changed.
//!
//! Tests that need a user's codes compute them with the `totp-rs` dev-dependency, an
//! implementation not written here, as this module's own tests do.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand_core::{OsRng, RngCore};
use sha1::Sha1;
use sha2::Sha256;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::secret::Key32;

/// Digits of a code: 6, what authenticator apps show (RFC 4226 section 5.3 allows 6 to 8).
pub const DIGITS: u32 = 6;
/// The time step X of RFC 6238 section 4.1, in seconds (T0 = 0, the Unix epoch).
pub const STEP_SECS: i64 = 30;
/// Steps accepted either side of the current one (RFC 6238 section 5.2 recommends one).
pub const SKEW_STEPS: i64 = 1;
/// Bytes of a TOTP secret: 160 bits, the length of an HMAC-SHA-1 output (RFC 4226 section 4).
pub const SECRET_LEN: usize = 20;
/// Recovery codes given at enrolment.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Base32 characters of a recovery code: 13 * 5 = 65 random bits.
const RECOVERY_CODE_CHARS: usize = 13;
/// Random bytes drawn for a recovery code: the 72 bits whose first 65 its characters show.
const RECOVERY_CODE_BYTES: usize = 9;

/// A TOTP shared secret K, boxed (so moves leave no copies) and wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct TotpSecret(Box<[u8; SECRET_LEN]>);

impl TotpSecret {
    /// A new secret from the OS's random source.
    pub fn generate() -> Self {
        let mut secret = Box::new([0u8; SECRET_LEN]);
        OsRng.fill_bytes(secret.as_mut());
        Self(secret)
    }

    /// A secret read back from storage; `None` unless exactly [`SECRET_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != SECRET_LEN {
            return None;
        }
        let mut secret = Box::new([0u8; SECRET_LEN]);
        secret.copy_from_slice(bytes);
        Some(Self(secret))
    }

    /// The raw secret, to seal for storage.
    pub fn expose(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// The `otpauth://` URI of the Key Uri Format: label `issuer:account` and the `issuer`
    /// parameter percent-encoded (all but RFC 3986's unreserved characters, so a space is `%20`),
    /// the secret in RFC 4648 base32 without padding. The format reserves `:` to separate the
    /// issuer from the account, so neither may contain one, nor be empty.
    pub fn otpauth_uri(
        &self,
        issuer: &str,
        account: &str,
    ) -> Result<Zeroizing<String>, LabelError> {
        for part in [issuer, account] {
            if part.is_empty() {
                return Err(LabelError::Empty);
            }
            if part.contains(':') {
                return Err(LabelError::Colon);
            }
        }
        let issuer = utf8_percent_encode(issuer, URI_COMPONENT).to_string();
        let account = utf8_percent_encode(account, URI_COMPONENT).to_string();
        let head = format!("otpauth://totp/{issuer}:{account}?secret=");
        let tail = format!("&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}");
        // Sized once, so that no reallocation leaves a copy of the secret behind unwiped.
        let secret_len = BASE32_NOPAD.encode_len(SECRET_LEN);
        let mut uri = Zeroizing::new(String::with_capacity(head.len() + secret_len + tail.len()));
        uri.push_str(&head);
        BASE32_NOPAD.encode_append(self.expose(), &mut uri);
        uri.push_str(&tail);
        Ok(uri)
    }
}

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// Why an issuer or account name cannot go into an `otpauth://` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("the issuer and the account name of a TOTP label must not be empty")]
    Empty,
    #[error("the issuer and the account name of a TOTP label must not contain ':'")]
    Colon,
}

/// Left as they are in a label or a query value: RFC 3986's unreserved characters.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The time step matched by `code`, if it is the TOTP of `secret` for a step within
/// [`SKEW_STEPS`] of `now_unix`'s and later than `last_step` (the step of the last code
/// accepted; `None` if none was). Whitespace in `code` is ignored ("123 456", as apps show it);
/// anything but 6 digits then is `None`. Every step of the window that `last_step` leaves is
/// computed and compared in constant time, so the time taken does not tell which step matched,
/// nor how many digits did.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now_unix: i64,
    last_step: Option<i64>,
) -> Option<i64> {
    let given = parse_code(code)?;
    let current = now_unix.div_euclid(STEP_SECS);
    let mut matched = Choice::from(0);
    let mut matched_step = 0i64;
    // Upwards, so that if two steps share a code the later one is returned, which refuses more.
    for step in current - SKEW_STEPS..=current + SKEW_STEPS {
        if last_step.is_some_and(|last| step <= last) {
            continue;
        }
        let Ok(counter) = u64::try_from(step) else {
            continue;
        };
        let Some(expected) = hotp(secret.expose(), counter, DIGITS) else {
            continue;
        };
        let hit = expected.ct_eq(&given);
        matched_step.conditional_assign(&step, hit);
        matched |= hit;
    }
    bool::from(matched).then_some(matched_step)
}

/// `code` without whitespace, as a number, if that is exactly [`DIGITS`] ASCII digits.
fn parse_code(code: &str) -> Option<u32> {
    let mut digits = 0u32;
    let mut value = 0u32;
    for byte in code.bytes().filter(|b| !b.is_ascii_whitespace()) {
        if !byte.is_ascii_digit() || digits == DIGITS {
            return None;
        }
        value = value * 10 + u32::from(byte - b'0');
        digits += 1;
    }
    (digits == DIGITS).then_some(value)
}

/// HOTP(K, C) of RFC 4226 section 5.3: HMAC-SHA-1 of the counter as 8 big-endian bytes,
/// dynamic truncation to 31 bits, modulo 10^digits. `None` only if HMAC refused the key,
/// which it never does (HMAC takes a key of any length).
fn hotp(key: &[u8], counter: u64, digits: u32) -> Option<u32> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(&counter.to_be_bytes());
    let hs = mac.finalize().into_bytes();
    // The offset is the low 4 bits of the last byte; the 4 bytes from there, less the top bit.
    let offset = usize::from(hs.last()? & 0x0f);
    let &[a, b, c, d] = hs.get(offset..offset + 4)? else {
        return None;
    };
    let snum = u32::from_be_bytes([a & 0x7f, b, c, d]);
    Some(snum % 10u32.pow(digits))
}

/// Recovery codes as made for one user: each in clear text, to show once.
pub struct RecoveryCodes(Vec<Zeroizing<String>>);

impl RecoveryCodes {
    /// `count` new codes (normally [`RECOVERY_CODE_COUNT`]) of 65 random bits each, written
    /// `abcd-efgh-ijkl-m`: base32's alphabet (no 0, 1, 8 or 9 to mistake), lowercase.
    pub fn generate(count: usize) -> Self {
        Self((0..count).map(|_| new_recovery_code()).collect())
    }

    /// The codes as the user is to see them.
    pub fn codes(&self) -> &[Zeroizing<String>] {
        &self.0
    }

    /// What to store for each code: its [`Self::verifier`] for `user_id`.
    pub fn verifiers(&self, key: &Key32, user_id: &str) -> Vec<[u8; 32]> {
        self.0
            .iter()
            .filter_map(|code| Self::normalize(code))
            .map(|code| Self::verifier(key, user_id, &code))
            .collect()
    }

    /// A code as typed, in the one form its verifier is computed from: lowercase, without
    /// dashes or whitespace. `None` if that is not 13 characters of the base32 alphabet (no
    /// stored code can match it).
    pub fn normalize(input: &str) -> Option<Zeroizing<String>> {
        let mut code = Zeroizing::new(String::with_capacity(RECOVERY_CODE_CHARS));
        for c in input.chars().filter(|c| *c != '-' && !c.is_whitespace()) {
            let c = c.to_ascii_lowercase();
            if code.len() == RECOVERY_CODE_CHARS || !matches!(c, 'a'..='z' | '2'..='7') {
                return None;
            }
            code.push(c);
        }
        (code.len() == RECOVERY_CODE_CHARS).then_some(code)
    }

    /// HMAC-SHA256(key, "recovery-code" || 0x00 || user_id || 0x00 || normalized code): binds
    /// the verifier to its user. The label keeps it apart from an API key's verifier, made under
    /// the same key.
    pub fn verifier(key: &Key32, user_id: &str, normalized_code: &str) -> [u8; 32] {
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose()) {
            Ok(mac) => mac,
            Err(_) => return [0u8; 32], // unreachable: HMAC takes any key length
        };
        mac.update(b"recovery-code\0");
        mac.update(user_id.as_bytes());
        mac.update(&[0]);
        mac.update(normalized_code.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodes({} codes, <redacted>)", self.0.len())
    }
}

fn new_recovery_code() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; RECOVERY_CODE_BYTES]);
    OsRng.fill_bytes(bytes.as_mut());
    let mut base32 = Zeroizing::new(vec![0u8; BASE32_NOPAD.encode_len(RECOVERY_CODE_BYTES)]);
    BASE32_NOPAD.encode_mut(bytes.as_ref(), &mut base32);
    let mut code = Zeroizing::new(String::with_capacity(RECOVERY_CODE_CHARS + 3));
    for (i, byte) in base32.iter().take(RECOVERY_CODE_CHARS).enumerate() {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        code.push(char::from(byte.to_ascii_lowercase()));
    }
    code
}

#[cfg(test)]
mod tests;
