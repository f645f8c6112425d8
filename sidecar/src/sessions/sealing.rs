//! Session keys as the shared store holds them: sealed with AES-256-GCM under a store key that
//! every replica has (`--session-store-key-file`), with the session id as associated data, so
//! that whoever reads the store learns session ids and subjects, never keys, and cannot move one
//! session's sealed keys to another id.
//!
//! The key file holds one or more keys, 64 hex digits each, one per line: the first seals, every
//! one opens. Rotation is three rollouts: add the new key on a second line (every replica can
//! then open what it will seal), move it to the first line, and remove the old one once the
//! longest session lifetime has passed.
//!
//! Sealed form: `0x01 || nonce (12 random bytes) || AES-256-GCM(k_c2s || k_s2c) (64) || tag (16)`.

use std::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use identity_protocol::SessionKeys;

/// Bytes of a sealed key pair.
pub const SEALED_LEN: usize = 1 + NONCE_LEN + 64 + TAG_LEN;
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Associated data: this label, then the session id.
const AAD_LABEL: &[u8] = b"identity-sidecar/v1 session-store\n";

/// The store keys: the first seals, all open. Wiped on drop; `Debug` shows only how many.
pub struct StoreKeys {
    keys: Vec<Zeroizing<[u8; 32]>>,
}

impl StoreKeys {
    /// Keys of 64 hex digits each, separated by newlines (or other white space).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let words: Vec<&str> = text.split_whitespace().collect();
        // Sized once and filled in place: no reallocation leaves a stale copy of a key behind.
        let mut keys = Vec::with_capacity(words.len());
        for word in words {
            keys.push(Zeroizing::new([0u8; 32]));
            if let Some(key) = keys.last_mut() {
                hex::decode_to_slice(word, &mut key[..])
                    .map_err(|_| "must hold keys of 64 hex digits (32 bytes), one per line")?;
            }
        }
        if keys.is_empty() {
            return Err("must hold at least one key of 64 hex digits");
        }
        Ok(Self { keys })
    }

    /// Seals `keys` under the first store key, bound to `session_id`.
    pub fn seal(&self, session_id: &str, keys: &SessionKeys) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut raw = Zeroizing::new([0u8; 64]);
        keys.export(&mut raw);
        #[allow(clippy::expect_used)] // GCM refuses only messages over 64 GiB; this is 64 bytes.
        let tag = cipher(&self.keys[0])
            .encrypt_in_place_detached(
                GenericArray::from_slice(&nonce),
                &aad(session_id),
                &mut raw[..],
            )
            .expect("64 bytes are within GCM's message limit");
        let mut sealed = Vec::with_capacity(SEALED_LEN);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&raw[..]);
        sealed.extend_from_slice(&tag);
        sealed
    }

    /// The keys sealed for `session_id` under any of the store keys; `None` when no key opens
    /// them (another store key, another session id, or tampered).
    pub fn open(&self, session_id: &str, sealed: &[u8]) -> Option<SessionKeys> {
        if sealed.len() != SEALED_LEN || sealed[0] != VERSION {
            return None;
        }
        let (nonce, rest) = sealed[1..].split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(64);
        let aad = aad(session_id);
        self.keys.iter().find_map(|key| {
            let mut raw = Zeroizing::new([0u8; 64]);
            raw.copy_from_slice(ciphertext);
            cipher(key)
                .decrypt_in_place_detached(
                    GenericArray::from_slice(nonce),
                    &aad,
                    &mut raw[..],
                    GenericArray::from_slice(tag),
                )
                .ok()
                .map(|()| SessionKeys::import(&raw))
        })
    }
}

/// The cipher of one store key, for one operation; aes and polyval wipe it when it drops.
fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(GenericArray::from_slice(key))
}

fn aad(session_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + session_id.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(session_id.as_bytes());
    aad
}

impl fmt::Debug for StoreKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreKeys")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic here is a failed test

    use identity_protocol::keys::Okm;

    use super::*;

    const OLD: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    const NEW: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    fn exported(keys: &SessionKeys) -> [u8; 64] {
        let mut raw = [0u8; 64];
        keys.export(&mut raw);
        raw
    }

    #[test]
    fn sealed_keys_open_only_for_their_session_under_a_known_key() {
        let okm = Okm::derive(&[9; 32], b"salt", b"info");
        let keys = SessionKeys::from_okm(&okm);
        let old = StoreKeys::parse(OLD).unwrap();
        let sealed = old.seal("session-a", &keys);
        assert_eq!(sealed.len(), SEALED_LEN);
        // The key material is not in the sealed form.
        let raw = exported(&keys);
        assert!(!sealed.windows(16).any(|w| raw.windows(16).any(|r| r == w)));
        assert_eq!(
            exported(&old.open("session-a", &sealed).unwrap()),
            exported(&keys)
        );
        // Bound to the session id.
        assert!(old.open("session-b", &sealed).is_none());
        // Tampered, truncated, another version.
        for i in [0, 1, 20, SEALED_LEN - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(old.open("session-a", &bad).is_none(), "byte {i}");
        }
        assert!(old.open("session-a", &sealed[..SEALED_LEN - 1]).is_none());
        // Rotation: the new key seals, the old one still opens; without the old key it does not.
        let rotated = StoreKeys::parse(&format!("{NEW}\n{OLD}\n")).unwrap();
        assert!(rotated.open("session-a", &sealed).is_some());
        let resealed = rotated.seal("session-a", &keys);
        assert!(old.open("session-a", &resealed).is_none());
        assert!(
            StoreKeys::parse(NEW)
                .unwrap()
                .open("session-a", &resealed)
                .is_some()
        );
        assert!(
            StoreKeys::parse(NEW)
                .unwrap()
                .open("session-a", &sealed)
                .is_none()
        );
    }

    #[test]
    fn key_files_hold_hex_keys_and_nothing_else() {
        for bad in [
            "",
            " \n",
            "abc",
            &OLD[..63],
            &format!("{OLD}0"),
            &OLD.replace('0', "g"),
        ] {
            assert!(StoreKeys::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            StoreKeys::parse(&format!("{OLD}\r\n{NEW}"))
                .unwrap()
                .keys
                .len(),
            2
        );
        assert_eq!(
            format!("{:?}", StoreKeys::parse(OLD).unwrap()),
            "StoreKeys { keys: 1, .. }"
        );
    }
}
