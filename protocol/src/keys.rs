//! Section 1: ephemeral ECDH P-256 key pairs, strict peer-key checks, and the key schedule.
//!
//! ```text
//! Z     = ECDH shared secret: the 32-byte big-endian x-coordinate
//! salt  = client_public_key (65 bytes) || server_public_key (65 bytes)
//! info  = "identity-sidecar/v1 session" || 0x00 || session_id (ASCII bytes)
//! OKM   = HKDF-SHA256(salt, IKM = Z, info, L = 64)
//! k_c2s = OKM[0..32]    key for requests (client -> sidecar)
//! k_s2c = OKM[32..64]   key for responses (sidecar -> client)
//! ```
//!
//! "Both sides MUST zeroize Z, OKM, the ephemeral private keys and the session keys as soon as
//! they are no longer needed." Here: [`EphemeralSecret`] is consumed by the exchange and its
//! scalar wiped on drop; Z lives in p256's `SharedSecret`, wiped on drop at the end of
//! [`SessionKeys::establish`]; the PRK lives in the HKDF's HMAC state, wiped on drop, and the
//! dead stack the derivation leaves is overwritten ([`Okm::derive`]); OKM is a [`Zeroizing`]
//! array wiped at the end of `establish` too; the session keys are a boxed pair wiped when the
//! [`SessionKeys`] drop, and each cipher expanded from them for one message has its key
//! schedule (aes) and GHASH state (polyval) wiped when it drops. `docs/crypto-audit.md` lists
//! what zeroize cannot reach (stack copies made by moves inside the crates).

use std::fmt;

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use rand_core::OsRng;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::b64;
use crate::error::Error;

/// Length of an uncompressed SEC1 P-256 point: 0x04 || x || y.
pub const PUBLIC_KEY_LEN: usize = 65;

/// A P-256 public key in the only form the protocol accepts: 65 bytes, 0x04, on the curve.
///
/// `p256::PublicKey::from_sec1_bytes` also takes 33-byte compressed points, which the protocol
/// refuses, so the length and prefix are checked here before any arithmetic.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    sec1: [u8; PUBLIC_KEY_LEN],
    point: p256::PublicKey,
}

impl PublicKey {
    /// Section 1: not base64url is `invalid_request`; decodes but is not a 65-byte uncompressed
    /// point on the curve is `invalid_public_key`.
    pub fn from_b64u(field: &'static str, text: &str) -> Result<Self, Error> {
        // Any length is decoded (and so checked for canonical base64url) first: a wrong encoding
        // is invalid_request even when the length is also wrong.
        let bytes = b64::decode(text).map_err(|_| Error::Base64(field))?;
        Self::from_sec1(&bytes)
    }

    pub fn from_sec1(bytes: &[u8]) -> Result<Self, Error> {
        let sec1: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| Error::PublicKeyEncoding)?;
        if sec1[0] != 0x04 {
            return Err(Error::PublicKeyEncoding);
        }
        let encoded = p256::EncodedPoint::from_bytes(sec1).map_err(|_| Error::PublicKeyEncoding)?;
        // Checks that (x, y) satisfies the curve equation; (0, 0) and y + 1 fail here.
        let point = Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&encoded))
            .ok_or(Error::PublicKeyNotOnCurve)?;
        Ok(Self { sec1, point })
    }

    fn from_point(point: p256::PublicKey) -> Self {
        let encoded = point.to_encoded_point(false);
        let mut sec1 = [0u8; PUBLIC_KEY_LEN];
        sec1.copy_from_slice(encoded.as_bytes());
        Self { sec1, point }
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.sec1
    }

    pub fn to_b64u(&self) -> String {
        b64::encode(&self.sec1)
    }

    pub(crate) fn point(&self) -> &p256::PublicKey {
        &self.point
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.to_b64u()).finish()
    }
}

/// An ephemeral P-256 private key. Used for one exchange: [`SessionKeys::establish`] consumes it,
/// and p256's `SecretKey` wipes the scalar on drop.
pub struct EphemeralSecret {
    secret: p256::SecretKey,
    public: PublicKey,
}

impl EphemeralSecret {
    pub fn generate() -> Self {
        Self::from_secret(p256::SecretKey::random(&mut OsRng))
    }

    /// A fixed private key, for known-answer tests only: never reuse an ephemeral key.
    pub fn from_be_bytes(scalar: &[u8; 32]) -> Result<Self, Error> {
        let secret = p256::SecretKey::from_slice(scalar)
            .map_err(|_| Error::SigningKey("not a P-256 scalar"))?;
        Ok(Self::from_secret(secret))
    }

    fn from_secret(secret: p256::SecretKey) -> Self {
        let public = PublicKey::from_point(public_of(&secret));
        // The scalar multiplication keeps the scalar as a byte array on the stack.
        scrub_dead_stack();
        Self { secret, public }
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Z: the x-coordinate of the ECDH point. Consumes the private key.
    #[inline(never)]
    fn diffie_hellman(self, peer: &PublicKey) -> p256::ecdh::SharedSecret {
        p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.point().as_affine())
    }
}

#[inline(never)]
fn public_of(secret: &p256::SecretKey) -> p256::PublicKey {
    secret.public_key()
}

impl fmt::Debug for EphemeralSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralSecret")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Which end of the exchange we are: it decides the order of the salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// `salt = client_public_key || server_public_key`
pub fn hkdf_salt(client: &PublicKey, server: &PublicKey) -> [u8; 2 * PUBLIC_KEY_LEN] {
    let mut salt = [0u8; 2 * PUBLIC_KEY_LEN];
    salt[..PUBLIC_KEY_LEN].copy_from_slice(client.as_bytes());
    salt[PUBLIC_KEY_LEN..].copy_from_slice(server.as_bytes());
    salt
}

/// `info = "identity-sidecar/v1 session" || 0x00 || session_id`
pub fn hkdf_info(session_id: &str) -> Vec<u8> {
    const LABEL: &[u8] = b"identity-sidecar/v1 session";
    let mut info = Vec::with_capacity(LABEL.len() + 1 + session_id.len());
    info.extend_from_slice(LABEL);
    info.push(0x00);
    info.extend_from_slice(session_id.as_bytes());
    info
}

/// The 64-byte HKDF output. Read only through the accessors; wiped on drop.
pub struct Okm(Zeroizing<[u8; 64]>);

impl Okm {
    /// `OKM = HKDF-SHA256(salt, IKM = Z, info, L = 64)`
    pub fn derive(z: &[u8], salt: &[u8], info: &[u8]) -> Self {
        let mut okm = Self(Zeroizing::new([0u8; 64]));
        hkdf_sha256(z, salt, info, &mut okm.0);
        // At the depth the derivation ran: overwrites the copies of the PRK-keyed HMAC state
        // that moves inside hkdf and hmac left in dead frames, which their zeroize cannot reach.
        scrub_dead_stack();
        okm
    }

    /// `k_c2s = OKM[0..32]`: the key for requests (client -> sidecar).
    pub fn k_c2s(&self) -> &[u8] {
        &self.0[..32]
    }

    /// `k_s2c = OKM[32..64]`: the key for responses (sidecar -> client).
    pub fn k_s2c(&self) -> &[u8] {
        &self.0[32..]
    }
}

/// Not inlined, so that its frames lie where [`scrub_dead_stack`] writes next. The `Hkdf`
/// (HMAC keyed with the PRK) wipes its SHA-256 states and block buffer when it drops here, and
/// `extract`'s copy of the PRK is wiped by hand.
#[inline(never)]
fn hkdf_sha256(z: &[u8], salt: &[u8], info: &[u8], okm: &mut [u8; 64]) {
    let (mut prk, hkdf) = Hkdf::<Sha256>::extract(Some(salt), z);
    prk.as_mut_slice().zeroize();
    #[allow(clippy::expect_used)] // 64 bytes is far below HKDF-SHA256's 255 * 32 limit.
    hkdf.expand(info, okm)
        .expect("64 bytes is a valid HKDF-SHA256 output length");
}

/// Zeroes 8 KiB of stack below the caller's frame (zeroize's volatile writes are not optimised
/// away), where a call into the crypto crates just left its frames: copies of secrets made by
/// moves and temporaries that their own zeroize cannot reach. The HKDF reaches about 1.2 KiB deep
/// in release builds and 5.7 KiB in debug builds on x86_64; `protocol/tests/stack_residue.rs`
/// checks that nothing of the PRK is left.
#[inline(always)]
pub(crate) fn scrub_dead_stack() {
    scrub::<1024>();
}

/// As [`scrub_dead_stack`], 16 KiB: after a message's AES-GCM, which reaches about 11 KiB deep in
/// debug builds (the AES-NI intrinsics are calls there, each spilling its operands).
/// `protocol/tests/stack_residue.rs` checks that nothing of the key is left.
#[inline(always)]
pub(crate) fn scrub_deep_dead_stack() {
    scrub::<2048>();
}

/// Runs `f`, a use of a key by the crypto crates (an AES-GCM seal or open, say), then zeroes
/// the 16 KiB of dead stack below the caller that it reached ([`scrub_deep_dead_stack`]): for
/// every AES-GCM under a key or over a secret, here and in the services, so that no copy of
/// either is left where a later write from the stack could carry it off.
pub fn with_stack_scrubbed<T>(f: impl FnOnce() -> T) -> T {
    let out = call(f);
    scrub_deep_dead_stack();
    out
}

/// Not inlined, so that the frames of `f` lie where [`scrub_deep_dead_stack`] writes next.
#[inline(never)]
fn call<T>(f: impl FnOnce() -> T) -> T {
    f()
}

#[inline(never)]
fn scrub<const WORDS: usize>() {
    let mut dead = [0u64; WORDS];
    dead.zeroize();
    std::hint::black_box(&dead);
}

impl fmt::Debug for Okm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Okm(<redacted>)")
    }
}

/// A session's two AES-256-GCM keys, k_c2s and k_s2c, as the raw 32-byte keys.
///
/// Boxed so that the keys stay at one heap address for the session's life, however often the
/// session itself moves (a map resize, say): a move would leave a stale copy behind. Not `Clone`;
/// `Debug` shows nothing; wiped on drop.
///
/// Each seal or open expands its key into an `Aes256Gcm` on the stack (`SessionKeys::c2s`),
/// which aes and polyval wipe when it drops; the dead frames it leaves are scrubbed after it. Keeping the two expanded ciphers instead would cost
/// about 2 KB a session (the aes crate's run-time CPU detection reserves room for the software
/// key schedule in every `Aes256`): 200 MB for 100,000 live sessions, against tens of
/// nanoseconds of AES-NI key expansion per envelope of about a microsecond.
pub struct SessionKeys(Box<KeyPair>);

#[derive(Zeroize, ZeroizeOnDrop)]
struct KeyPair {
    /// k_c2s = OKM[0..32]: requests, client -> sidecar.
    c2s: [u8; 32],
    /// k_s2c = OKM[32..64]: responses, sidecar -> client.
    s2c: [u8; 32],
}

impl SessionKeys {
    /// Runs the key schedule of section 1 for one side. Consumes our ephemeral secret; Z and OKM
    /// are wiped before this returns.
    pub fn establish(
        ours: EphemeralSecret,
        peer: &PublicKey,
        role: Role,
        session_id: &str,
    ) -> Self {
        let salt = match role {
            Role::Client => hkdf_salt(ours.public_key(), peer),
            Role::Server => hkdf_salt(peer, ours.public_key()),
        };
        let z = ours.diffie_hellman(peer);
        // The scalar multiplication left the scalar, as a byte array, and the ECDH point in its
        // frames: a copy could later be carried off to the heap in the padding of an unrelated
        // struct written from the stack.
        scrub_dead_stack();
        let okm = Okm::derive(z.raw_secret_bytes(), &salt, &hkdf_info(session_id));
        drop(z);
        Self::from_okm(&okm)
    }

    pub fn from_okm(okm: &Okm) -> Self {
        Self::from_halves(okm.k_c2s(), okm.k_s2c())
    }

    fn from_halves(c2s: &[u8], s2c: &[u8]) -> Self {
        // Allocated zeroed and filled in place, so the keys never sit in a stack temporary.
        let mut keys = Box::new(KeyPair {
            c2s: [0; 32],
            s2c: [0; 32],
        });
        keys.c2s.copy_from_slice(c2s);
        keys.s2c.copy_from_slice(s2c);
        Self(keys)
    }

    /// The 64 key bytes, `k_c2s || k_s2c`, written into `out`: for a store that keeps session
    /// keys sealed under a key of its own (the sidecar's shared session store). The caller wipes
    /// `out`.
    pub fn export(&self, out: &mut [u8; 64]) {
        out[..32].copy_from_slice(&self.0.c2s);
        out[32..].copy_from_slice(&self.0.s2c);
    }

    /// The keys from the 64 bytes [`SessionKeys::export`] wrote. The caller wipes `raw`.
    pub fn import(raw: &[u8; 64]) -> Self {
        Self::from_halves(&raw[..32], &raw[32..])
    }

    /// The cipher of k_c2s, for one request; wiped when the caller drops it.
    pub(crate) fn c2s(&self) -> Aes256Gcm {
        Aes256Gcm::new(GenericArray::from_slice(&self.0.c2s))
    }

    /// The cipher of k_s2c, for one response; wiped when the caller drops it.
    pub(crate) fn s2c(&self) -> Aes256Gcm {
        Aes256Gcm::new(GenericArray::from_slice(&self.0.s2c))
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// The aes-gcm crate's own `zeroize` feature wipes only the GHASH key it derives; the AES round
/// keys are wiped by `aes`'s feature and the GHASH state by `polyval`'s (which `ghash`'s feature
/// does not turn on). The first, the session key pair and the hash states are checked here at
/// compile time; `tests/zeroize_features.rs` checks the resolved features of the crates.
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<aes::Aes256>();
    wiped_on_drop::<KeyPair>();
    wiped_on_drop::<p256::SecretKey>();
    wiped_on_drop::<p256::ecdh::SharedSecret>();
    // The HKDF's HMAC: its SHA-256 states (sha2's `zeroize`) and its output (hmac's).
    wiped_on_drop::<Sha256>();
    wiped_on_drop::<hmac::digest::CtOutput<hmac::Hmac<Sha256>>>();
};
