//! Session keys as the shared store holds them: sealed with AES-256-GCM under a store key that
//! every replica has (`--session-store-key-file`), with the session's id, subject and expiry as
//! associated data ([`Binding`]), so that whoever reads the store learns session ids and
//! subjects, never keys, and whoever writes it can neither move one session's sealed keys to
//! another id nor rebind a session to another subject or a later expiry.
//!
//! The key file holds one or more keys, 64 hex digits each, one per line: the first seals, every
//! one opens. Rotation is three rollouts: add the new key on a second line (every replica can
//! then open what it will seal), move it to the first line, and remove the old one once the
//! longest session lifetime has passed.
//!
//! Sealed form: `0x02 || nonce (12 random bytes) || AES-256-GCM(k_c2s || k_s2c) (64) || tag (16)`;
//! associated data: `"identity-sidecar/v2 session-store\n" || len(session_id) (u64, big-endian)
//! || session_id || expires_at (u64, big-endian) || 0x00` for an anonymous session, `|| 0x01 ||
//! subject` for an authenticated one.

use std::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use identity_protocol::SessionKeys;
use identity_protocol::keys::with_stack_scrubbed;

/// Bytes of a sealed key pair.
pub const SEALED_LEN: usize = 1 + NONCE_LEN + 64 + TAG_LEN;
const VERSION: u8 = 2;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Associated data: this label, then the [`Binding`].
const AAD_LABEL: &[u8] = b"identity-sidecar/v2 session-store\n";

/// What a session's sealed keys are bound to: everything the store holds of it that a replica
/// trusts (the replay window and the count are only ever changed by the store's own script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    pub session_id: &'a str,
    /// The subject of an authenticated session; `None` for an anonymous one.
    pub subject: Option<&'a str>,
    /// Unix seconds.
    pub expires_at: u64,
}

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

    /// Seals `keys` under the first store key, bound to `binding`.
    pub fn seal(&self, binding: &Binding<'_>, keys: &SessionKeys) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut raw = Zeroizing::new([0u8; 64]);
        keys.export(&mut raw);
        let aad = aad(binding);
        #[allow(clippy::expect_used)] // GCM refuses only messages over 64 GiB; this is 64 bytes.
        let tag = with_stack_scrubbed(|| {
            cipher(&self.keys[0])
                .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &aad, &mut raw[..])
                .expect("64 bytes are within GCM's message limit")
        });
        let mut sealed = Vec::with_capacity(SEALED_LEN);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&raw[..]);
        sealed.extend_from_slice(&tag);
        sealed
    }

    /// The keys sealed for `binding` under any of the store keys; `None` when no key opens
    /// them (another store key, another session id, subject or expiry, or tampered).
    pub fn open(&self, binding: &Binding<'_>, sealed: &[u8]) -> Option<SessionKeys> {
        if sealed.len() != SEALED_LEN || sealed[0] != VERSION {
            return None;
        }
        let (nonce, rest) = sealed[1..].split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(64);
        let aad = aad(binding);
        self.keys.iter().find_map(|key| {
            let mut raw = Zeroizing::new([0u8; 64]);
            raw.copy_from_slice(ciphertext);
            with_stack_scrubbed(|| {
                cipher(key).decrypt_in_place_detached(
                    GenericArray::from_slice(nonce),
                    &aad,
                    &mut raw[..],
                    GenericArray::from_slice(tag),
                )
            })
            .ok()
            .map(|()| SessionKeys::import(&raw))
        })
    }
}

/// The cipher of one store key, for one operation; aes and polyval wipe it when it drops, and
/// [`with_stack_scrubbed`] the copies its expansion and use leave on the stack.
fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(GenericArray::from_slice(key))
}

/// Each part is of fixed length, length-prefixed or last, so that no two bindings share one.
fn aad(binding: &Binding<'_>) -> Vec<u8> {
    let id = binding.session_id.as_bytes();
    let subject = binding.subject.map(str::as_bytes);
    let mut aad =
        Vec::with_capacity(AAD_LABEL.len() + 17 + id.len() + subject.map_or(0, <[u8]>::len));
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(&u64::try_from(id.len()).unwrap_or(u64::MAX).to_be_bytes());
    aad.extend_from_slice(id);
    aad.extend_from_slice(&binding.expires_at.to_be_bytes());
    match subject {
        None => aad.push(0),
        Some(subject) => {
            aad.push(1);
            aad.extend_from_slice(subject);
        }
    }
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

    const A: Binding<'static> = Binding {
        session_id: "session-a",
        subject: None,
        expires_at: 1_800_000_000,
    };

    #[test]
    fn sealed_keys_open_only_for_their_session_under_a_known_key() {
        let okm = Okm::derive(&[9; 32], b"salt", b"info");
        let keys = SessionKeys::from_okm(&okm);
        let old = StoreKeys::parse(OLD).unwrap();
        let sealed = old.seal(&A, &keys);
        assert_eq!(sealed.len(), SEALED_LEN);
        // The key material is not in the sealed form.
        let raw = exported(&keys);
        assert!(!sealed.windows(16).any(|w| raw.windows(16).any(|r| r == w)));
        assert_eq!(exported(&old.open(&A, &sealed).unwrap()), exported(&keys));
        // Bound to the session id, the subject and the expiry.
        for other in [
            Binding {
                session_id: "session-b",
                ..A
            },
            Binding {
                subject: Some("mallory"),
                ..A
            },
            Binding {
                subject: Some(""),
                ..A
            },
            Binding {
                expires_at: A.expires_at + 1,
                ..A
            },
        ] {
            assert!(old.open(&other, &sealed).is_none(), "{other:?}");
        }
        let alice = Binding {
            subject: Some("alice"),
            ..A
        };
        let sealed_for_alice = old.seal(&alice, &keys);
        assert!(old.open(&alice, &sealed_for_alice).is_some());
        for other in [
            A,
            Binding {
                subject: Some("alicf"),
                ..A
            },
        ] {
            assert!(old.open(&other, &sealed_for_alice).is_none(), "{other:?}");
        }
        // Tampered, truncated, another version.
        for i in [0, 1, 20, SEALED_LEN - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(old.open(&A, &bad).is_none(), "byte {i}");
        }
        assert!(old.open(&A, &sealed[..SEALED_LEN - 1]).is_none());
        // Rotation: the new key seals, the old one still opens; without the old key it does not.
        let rotated = StoreKeys::parse(&format!("{NEW}\n{OLD}\n")).unwrap();
        assert!(rotated.open(&A, &sealed).is_some());
        let resealed = rotated.seal(&A, &keys);
        assert!(old.open(&A, &resealed).is_none());
        assert!(StoreKeys::parse(NEW).unwrap().open(&A, &resealed).is_some());
        assert!(StoreKeys::parse(NEW).unwrap().open(&A, &sealed).is_none());
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
