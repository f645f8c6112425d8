//! The key schedule and the envelope leave nothing secret in dead stack, where a later write
//! from the stack to the heap (a spawned future) could carry a copy off.
//!
//! - The HKDF of PROTOCOL.md section 1: after `Okm::derive` returns, no copy of the PRK, of the
//!   HMAC key blocks made from it, of the SHA-256 states keyed with it, or of Z.
//! - Sealing and opening: after `SessionKeys::seal_response` and `open_response` return (and any
//!   AES-GCM run under `keys::with_stack_scrubbed`, as the services run theirs), no
//!   8-byte piece of k_s2c. With AES-NI the first round key is the key's first 16 bytes, and the
//!   per-message cipher is expanded, moved and spilled on the stack (the sidecar's zeroization
//!   test once found such a copy in a freed heap block).
//!
//! The work runs on a thread that then spins without calling anything (so that nothing
//! overwrites the frames it left), while this thread reads that thread's stack through
//! /proc/self/mem (plain file I/O) and searches it. Each check has a positive control, the same
//! work without the scrub, whose residue the scan must find: so no test passes by reading
//! nothing.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit as _};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use identity_protocol::SessionKeys;
use identity_protocol::keys::{Okm, with_stack_scrubbed};
use sha2::Sha256;
use sha2::block_api::compress256;

/// How much of the dead stack below the caller is read: far more than the work uses.
const SCAN: usize = 64 * 1024;

/// One test at a time: each reads memory another's thread may be writing.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `work` on `input` (made here, so that only the work runs there) on a fresh thread and
/// returns the `SCAN` bytes of its stack below the frame that called it, read while the thread
/// spins.
fn dead_stack_after<T: Send + 'static>(input: T, work: fn(&T)) -> Vec<u8> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let top = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let thread = {
        let (top, done) = (top.clone(), done.clone());
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let marker = 0u8;
                let here = black_box(&marker) as *const u8 as usize;
                work(&input);
                top.store(here, Ordering::Release);
                // No call from here on: the frames below stay as the work left them.
                while !done.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            })
            .unwrap()
    };
    let mut here = 0;
    for _ in 0..100_000_000u64 {
        here = top.load(Ordering::Acquire);
        if here != 0 {
            break;
        }
        std::hint::spin_loop();
    }
    assert_ne!(here, 0, "the working thread did not finish");
    let mut mem = vec![0u8; SCAN];
    let read = File::open("/proc/self/mem").and_then(|mut f| {
        f.seek(SeekFrom::Start((here - SCAN) as u64))?;
        f.read_exact(&mut mem)
    });
    done.store(true, Ordering::Release);
    thread.join().unwrap();
    read.unwrap();
    mem
}

/// Whether `mem` holds `piece` anywhere.
fn holds(mem: &[u8], piece: &[u8]) -> bool {
    mem.windows(piece.len()).any(|w| w == piece)
}

// The HKDF of the key schedule.

/// Z, salt and info shaped as the protocol's (32, 130 and 71 bytes).
fn inputs() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let z: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(97).wrapping_add(13))
        .collect();
    let mut salt = vec![4u8];
    salt.extend((0..64u8).map(|i| i.wrapping_mul(31).wrapping_add(7)));
    salt.push(4);
    salt.extend((0..64u8).map(|i| i.wrapping_mul(53).wrapping_add(3)));
    let mut info = b"identity-sidecar/v1 session\0".to_vec();
    info.extend(b"Zx3_residue-test-session-id-0123456789abcdef");
    (z, salt, info)
}

/// What must not be left: each as the bytes a copy of it would hold.
fn secrets(z: &[u8], salt: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(salt).unwrap();
    mac.update(z);
    let prk: [u8; 32] = mac.finalize().into_bytes().into();
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for i in 0..32 {
        ipad[i] ^= prk[i];
        opad[i] ^= prk[i];
    }
    // The SHA-256 states after the key block: what an HMAC keyed with the PRK keeps.
    let state = |block: [u8; 64]| {
        let mut s = [
            0x6a09e667u32,
            0xbb67ae85,
            0x3c6ef372,
            0xa54ff53a,
            0x510e527f,
            0x9b05688c,
            0x1f83d9ab,
            0x5be0cd19,
        ];
        compress256(&mut s, &[block]);
        s
    };
    let le = |s: [u32; 8]| s.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let be = |s: [u32; 8]| s.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
    vec![
        ("PRK", prk.to_vec()),
        ("PRK ^ ipad", ipad[..32].to_vec()),
        ("PRK ^ opad", opad[..32].to_vec()),
        ("ipad state (LE words)", le(state(ipad))),
        ("opad state (LE words)", le(state(opad))),
        ("ipad state (BE words)", be(state(ipad))),
        ("opad state (BE words)", be(state(opad))),
        ("Z", z.to_vec()),
    ]
}

/// The secrets of which an 8-byte piece is in `mem`.
fn hkdf_found(mem: &[u8]) -> Vec<&'static str> {
    let (z, salt, _) = inputs();
    secrets(&z, &salt)
        .into_iter()
        .filter(|(_, secret)| secret.chunks_exact(8).any(|piece| holds(mem, piece)))
        .map(|(name, _)| name)
        .collect()
}

#[inline(never)]
fn protocol_derive(z: &[u8], salt: &[u8], info: &[u8]) {
    let okm = Okm::derive(z, salt, info);
    black_box(&okm);
}

/// The same HKDF without the scrub of `Okm::derive`.
#[inline(never)]
fn bare_derive(z: &[u8], salt: &[u8], info: &[u8]) {
    let mut okm = [0u8; 64];
    Hkdf::<Sha256>::new(Some(salt), z)
        .expand(info, &mut okm)
        .unwrap();
    black_box(&okm);
}

#[test]
fn okm_derive_leaves_nothing_of_the_prk_in_dead_stack() {
    let left = hkdf_found(&dead_stack_after(inputs(), |(z, salt, info)| {
        protocol_derive(z, salt, info)
    }));
    assert!(left.is_empty(), "found in dead stack: {left:?}");
}

#[test]
fn positive_control_the_scan_finds_an_unscrubbed_derivation() {
    let left = hkdf_found(&dead_stack_after(inputs(), |(z, salt, info)| {
        bare_derive(z, salt, info)
    }));
    assert!(
        !left.is_empty(),
        "an HKDF without the scrub left nothing the scan finds: the scan reads the wrong memory"
    );
}

// Sealing and opening.

/// `k_c2s || k_s2c`, known to the test; nothing else on the stack has these bytes.
fn raw_keys() -> Box<[u8; 64]> {
    let mut raw = Box::new([0u8; 64]);
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(151).wrapping_add(29);
    }
    raw
}

/// Which 8-byte pieces of k_s2c (by offset) are in `mem`.
fn k_s2c_found(mem: &[u8]) -> Vec<usize> {
    let raw = raw_keys();
    (0..32)
        .step_by(8)
        .filter(|&at| holds(mem, &raw[32 + at..32 + at + 8]))
        .collect()
}

/// The session's keys, and the raw bytes they were imported from.
fn session_keys() -> (SessionKeys, Box<[u8; 64]>) {
    let raw = raw_keys();
    (SessionKeys::import(&raw), raw)
}

const SESSION: &str = "residue-test-session";
const PATH: &str = "/v1/token/introspect";
const BODY: &[u8] = br#"{"access_token":"a token of some length, sealed and opened"}"#;

/// The sidecar's seal and the client's open of one answer, both under k_s2c.
#[inline(never)]
fn protocol_seal_and_open(keys: &SessionKeys, _raw: &[u8; 64]) {
    let envelope = keys.seal_response(SESSION, "POST", PATH, 7, 200, BODY);
    let plaintext = keys
        .open_response(SESSION, "POST", PATH, 7, 200, &envelope)
        .unwrap();
    assert_eq!(plaintext.as_bytes(), BODY);
}

/// The same seal and open with a bare cipher, without the scrub.
#[inline(never)]
fn bare_seal_and_open(_keys: &SessionKeys, raw: &[u8; 64]) {
    let cipher = Aes256Gcm::new_from_slice(&raw[32..]).unwrap();
    let nonce = Nonce::from_slice(&[9u8; 12]);
    let ciphertext = cipher.encrypt(nonce, BODY).unwrap();
    let plaintext = cipher.decrypt(nonce, ciphertext.as_slice()).unwrap();
    assert_eq!(plaintext, BODY);
    drop(black_box(cipher));
}

#[test]
fn seal_and_open_leave_nothing_of_the_key_in_dead_stack() {
    let left = k_s2c_found(&dead_stack_after(session_keys(), |(keys, raw)| {
        protocol_seal_and_open(keys, raw)
    }));
    assert!(
        left.is_empty(),
        "pieces of k_s2c at these offsets are in dead stack: {left:?}"
    );
}

#[test]
fn positive_control_the_scan_finds_an_unscrubbed_cipher() {
    let left = k_s2c_found(&dead_stack_after(session_keys(), |(keys, raw)| {
        bare_seal_and_open(keys, raw)
    }));
    assert!(
        !left.is_empty(),
        "a cipher without the scrub left nothing the scan finds: the scan reads the wrong memory"
    );
}

/// What the services' other AES-GCM (the session store's, the KEK's) rely on.
#[test]
fn any_cipher_run_under_with_stack_scrubbed_leaves_nothing_of_its_key() {
    let left = k_s2c_found(&dead_stack_after(session_keys(), |(keys, raw)| {
        with_stack_scrubbed(|| bare_seal_and_open(keys, raw))
    }));
    assert!(
        left.is_empty(),
        "pieces of the key at these offsets are in dead stack: {left:?}"
    );
}
