//! "Terms": `b64u(x)` is base64url without padding; decoders reject padding, the standard
//! alphabet, whitespace and non-canonical trailing bits.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `URL_SAFE_NO_PAD` decodes with `DecodePaddingMode::RequireNone` and refuses trailing bits, so it
/// is exactly the strict decoder the protocol asks for; the tests in `tests/vectors.rs` pin that.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict decode. The error says nothing about the input: it may be a secret.
pub fn decode(text: &str) -> Result<Vec<u8>, InvalidBase64> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| InvalidBase64)
}

/// Strict decode into exactly `N` bytes.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], InvalidBase64> {
    let mut out = [0u8; N];
    // A correct length is checked first so a long input is not decoded at all.
    if text.len() != base64::encoded_len(N, false).unwrap_or(0) {
        return Err(InvalidBase64);
    }
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(n) if n == N => Ok(out),
        _ => Err(InvalidBase64),
    }
}

/// The input is not canonical base64url without padding (or does not have the expected length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;
