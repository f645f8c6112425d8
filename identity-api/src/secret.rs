//! The identity API's secrets and random values: newtypes without `Clone`, with a redacted
//! `Debug`, wiped on drop and read through an accessor; the random draw of an issue; the lookup
//! key of a refresh token.

use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identity_protocol::keys::with_stack_scrubbed;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// 32 random bytes from the OS, as base64url without padding (43 characters).
pub fn random_token() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

/// A random public identifier (jti, family id, kid): 128 bits, base64url.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Length of a refresh token: 33 bytes as base64url, so that the first 8 characters are exactly
/// the 6 bytes of its issue time.
const REFRESH_TOKEN_LEN: usize = 44;

/// The random bytes of one issue or refresh, read from the OS in one call.
///
/// An issue needs four fresh values (the family id, the access token's and the refresh row's
/// jti, the refresh token), a refresh three. A `getrandom` each would be a system call each,
/// since glibc before 2.41 has no vDSO path for it. The refresh token's bytes are among these,
/// so every byte is wiped once taken and the rest on drop.
pub struct Fresh {
    bytes: Zeroizing<[u8; Self::LEN]>,
    taken: usize,
}

impl Fresh {
    /// What an issue takes: 10 + 16 + 16 + 27 bytes.
    const LEN: usize = 69;

    pub fn draw() -> Self {
        let mut bytes = Zeroizing::new([0u8; Self::LEN]);
        OsRng.fill_bytes(bytes.as_mut());
        Self { bytes, taken: 0 }
    }

    /// A random public identifier (jti): 128 bits, base64url, as [`random_id`].
    pub fn id(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.fill(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A public identifier that sorts by creation time: 48 bits of Unix milliseconds, then 80
    /// random bits, as 32 lowercase hex digits (a UUIDv7's layout without its version bits).
    /// Rows keyed by it are appended at one end of their index, so a batch of inserts shares a
    /// few pages instead of dirtying one random page each.
    pub fn time_ordered_id(&mut self) -> String {
        use std::fmt::Write as _;
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&unix_millis_48());
        self.fill(&mut bytes[6..]);
        let mut id = String::with_capacity(32);
        for byte in bytes {
            let _ = write!(id, "{byte:02x}");
        }
        id
    }

    /// A new refresh token and its lookup key (what the database stores). The token is 6 bytes
    /// of issue time (Unix milliseconds, big-endian) then 216 random bits, as base64url. See
    /// [`refresh_token_key`].
    pub fn refresh_token(&mut self) -> (Zeroizing<String>, [u8; 32]) {
        let mut bytes = Zeroizing::new([0u8; 33]);
        bytes[..6].copy_from_slice(&unix_millis_48());
        self.fill(&mut bytes[6..]);
        let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
        let mut key = [0u8; 32];
        key[..6].copy_from_slice(&bytes[..6]);
        key[6..].copy_from_slice(&sha256(token.as_bytes())[..26]);
        (token, key)
    }

    /// Fills `out` with bytes not taken before and wipes them here. Asked for more than is
    /// left, it reads `out` from the OS instead: never a byte twice.
    fn fill(&mut self, out: &mut [u8]) {
        let end = self.taken + out.len();
        match self.bytes.get_mut(self.taken..end) {
            Some(unused) => {
                out.copy_from_slice(unused);
                unused.zeroize();
                self.taken = end;
            }
            None => OsRng.fill_bytes(out),
        }
    }
}

impl std::fmt::Debug for Fresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fresh(<redacted>)")
    }
}

/// The key a refresh token is stored and looked up under: its issue time (the token's first
/// 6 bytes) then the first 26 bytes of SHA-256 of the token. Led by the time, new keys are
/// appended at the end of the index instead of dirtying one random page each. `None` for
/// anything that is not a refresh token of this form: no stored token has it, so it is not
/// looked up.
pub fn refresh_token_key(token: &str) -> Option<[u8; 32]> {
    let mut time = [0u8; 6];
    if token.len() != REFRESH_TOKEN_LEN
        || URL_SAFE_NO_PAD
            .decode_slice(&token.as_bytes()[..8], &mut time)
            .is_err()
    {
        return None;
    }
    let digest = sha256(token.as_bytes());
    let mut key = [0u8; 32];
    key[..6].copy_from_slice(&time);
    key[6..].copy_from_slice(&digest[..26]);
    Some(key)
}

/// Now in Unix milliseconds, the low 48 bits big-endian (they wrap in the year 10889).
fn unix_millis_48() -> [u8; 6] {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut out = [0u8; 6];
    out.copy_from_slice(&(millis as u64).to_be_bytes()[2..]);
    out
}

/// Strict base64url without padding: rejects padding, the standard alphabet and non-canonical bits.
pub fn b64u_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()
}

pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A client secret in clear text: exists only while being created or checked.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// A 256-bit key in a box (so moves do not leave copies), wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Key32(Box<[u8; 32]>);

impl Key32 {
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut key = Box::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        key.copy_from_slice(bytes);
        Some(Self(key))
    }
    pub fn random() -> Self {
        let mut key = Box::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        Self(key)
    }
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// AES-256-GCM under this key with a random 96-bit nonce, bound to `aad` (what the sealed
    /// value belongs to, so that it opens nowhere else): `nonce (12) || ciphertext || tag (16)`.
    /// The cipher's copies on the stack are scrubbed after it, as the protocol's are.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let payload = Payload {
            msg: plaintext,
            aad,
        };
        let ciphertext =
            with_stack_scrubbed(|| self.cipher().encrypt(Nonce::from_slice(&nonce), payload))
                .map_err(|_| SealError::Cipher)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// What [`Key32::seal`] sealed with `aad`; `None` if it does not open (another key, another
    /// `aad`, altered).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad,
        };
        with_stack_scrubbed(|| self.cipher().decrypt(Nonce::from_slice(nonce), payload))
            .ok()
            .map(Zeroizing::new)
    }

    /// The cipher for one operation; aes and polyval wipe it when it drops.
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why [`Key32::seal`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the OS random source failed")]
    Random,
    #[error("AES-256-GCM refused the message")]
    Cipher,
}

impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_millis() -> u64 {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        d.unwrap().as_millis() as u64
    }

    fn millis(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0, |t, b| t << 8 | u64::from(*b))
    }

    #[test]
    fn time_ordered_ids_lead_with_the_time() {
        let before = now_millis();
        let mut fresh = Fresh::draw();
        let id = fresh.time_ordered_id();
        let after = now_millis();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        let time = u64::from_str_radix(&id[..12], 16).unwrap();
        assert!(
            (before..=after).contains(&time),
            "{time} not in {before}..={after}"
        );
        assert_ne!(id[12..], fresh.time_ordered_id()[12..], "80 random bits");
    }

    #[test]
    fn refresh_tokens_and_their_keys() {
        let before = now_millis();
        let mut fresh = Fresh::draw();
        let (token, key) = fresh.refresh_token();
        let after = now_millis();
        assert_eq!(token.len(), 44);
        let bytes = b64u_decode(&token).unwrap();
        assert_eq!(bytes.len(), 33);
        assert!((before..=after).contains(&millis(&bytes[..6])));
        assert_eq!(key[..6], bytes[..6], "the key leads with the issue time");
        assert_eq!(key[6..], sha256(token.as_bytes())[..26]);
        assert_eq!(refresh_token_key(&token), Some(key));
        assert_ne!(fresh.refresh_token().0[8..], token[8..], "216 random bits");
    }

    #[test]
    fn one_draw_serves_each_byte_once_and_wipes_it() {
        let mut fresh = Fresh::draw();
        let drawn = *fresh.bytes;
        let family = fresh.time_ordered_id();
        let access_jti = fresh.id();
        let (token, _) = fresh.refresh_token();
        let refresh_jti = fresh.id();
        // An issue takes exactly what one draw holds, in order, and leaves nothing behind.
        assert_eq!(fresh.taken, Fresh::LEN);
        assert_eq!(*fresh.bytes, [0u8; Fresh::LEN]);
        assert_eq!(family[12..], hex(&drawn[..10]));
        assert_eq!(b64u_decode(&access_jti).unwrap(), drawn[10..26]);
        assert_eq!(b64u_decode(&token).unwrap()[6..], drawn[26..53]);
        assert_eq!(b64u_decode(&refresh_jti).unwrap(), drawn[53..]);
        // Past the end each value comes from the OS: still 128 random bits, never a repeat.
        let more: Vec<String> = (0..8).map(|_| fresh.id()).collect();
        for (i, id) in more.iter().enumerate() {
            assert_eq!(b64u_decode(id).unwrap().len(), 16);
            assert!(!more[..i].contains(id) && *id != access_jti && *id != refresh_jti);
        }
        assert_eq!(format!("{fresh:?}"), "Fresh(<redacted>)");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn anything_else_has_no_key() {
        let random = b64u(&[7u8; 32]);
        let not_b64 = "!".repeat(44);
        for token in [
            random.as_str(),
            "",
            "x",
            "é",
            &"é".repeat(22),
            not_b64.as_str(),
        ] {
            assert_eq!(refresh_token_key(token), None, "{token:?}");
        }
    }
}
