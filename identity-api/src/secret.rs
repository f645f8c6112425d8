//! Secret newtypes: no `Clone`, redacted `Debug`, wiped on drop, read through an accessor.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
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

macro_rules! string_secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: String) -> Self {
                Self(value)
            }
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

string_secret!(
    /// A client secret in clear text: exists only while being created or checked.
    ClientSecret
);
string_secret!(
    /// An opaque refresh token in clear text.
    RefreshToken
);
string_secret!(
    /// The shared secret between the sidecar and the identity API (X-Internal-Token).
    InternalToken
);

impl InternalToken {
    /// Constant-time comparison with a presented header value.
    pub fn matches(&self, presented: &[u8]) -> bool {
        // Compare fixed-size digests so that the length of the secret does not leak either.
        let a = sha256(self.0.as_bytes());
        let b = sha256(presented);
        a.ct_eq(&b).into()
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
}

impl std::fmt::Debug for Key32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}
