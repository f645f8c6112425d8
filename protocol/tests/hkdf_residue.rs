//! The HKDF of the key schedule (PROTOCOL.md section 1) leaves nothing of its PRK behind: after
//! `Okm::derive` returns, the dead stack below the caller holds no copy of the PRK, of the HMAC
//! key blocks made from it, of the SHA-256 states keyed with it, or of Z.
//!
//! The derivation runs on a thread that then spins without calling anything (so that nothing
//! overwrites the frames it left), while this thread reads that thread's stack through
//! /proc/self/mem (plain file I/O) and searches it. A positive control runs the same HKDF without
//! `Okm::derive`'s scrub, and the scan must find its residue: so the test cannot pass by reading
//! nothing. (The session keys themselves are checked end to end by the sidecar's zeroization
//! test, whose scan excludes dead stacks.)
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use identity_protocol::keys::Okm;
use sha2::Sha256;
use sha2::block_api::compress256;

/// How much of the dead stack below the caller is read: far more than the derivation uses.
const SCAN: usize = 64 * 1024;

/// One test at a time: each reads memory the other's thread may be writing.
static SERIAL: Mutex<()> = Mutex::new(());

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

/// Runs `derive` on a fresh thread and returns the `SCAN` bytes of its stack below the frame
/// that called it, read while the thread spins.
fn dead_stack_after(derive: fn(&[u8], &[u8], &[u8])) -> Vec<u8> {
    let top = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (z, salt, info) = inputs();
    let thread = {
        let (top, done) = (top.clone(), done.clone());
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let marker = 0u8;
                let here = black_box(&marker) as *const u8 as usize;
                derive(&z, &salt, &info);
                top.store(here, Ordering::Release);
                // No call from here on: the frames below stay as the derivation left them.
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
    assert_ne!(here, 0, "the deriving thread did not finish");
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

/// The secrets of which an 8-byte piece is in `mem`.
fn found(mem: &[u8]) -> Vec<&'static str> {
    let (z, salt, _) = inputs();
    secrets(&z, &salt)
        .into_iter()
        .filter(|(_, secret)| {
            secret
                .chunks_exact(8)
                .any(|piece| mem.windows(8).any(|w| w == piece))
        })
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let left = found(&dead_stack_after(protocol_derive));
    assert!(left.is_empty(), "found in dead stack: {left:?}");
}

#[test]
fn positive_control_the_scan_finds_an_unscrubbed_derivation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let left = found(&dead_stack_after(bare_derive));
    assert!(
        !left.is_empty(),
        "an HKDF without the scrub left nothing the scan finds: the scan reads the wrong memory"
    );
}
