//! Sealing and opening a message leave nothing of the session key behind: after
//! `SessionKeys::seal_response` and `open_response` return, the dead stack below the caller holds
//! no 8-byte piece of k_s2c. With AES-NI the first round key is the key's first 16 bytes, and the
//! per-message cipher is expanded, moved and spilled on the stack; an unrelated value written
//! from the stack to the heap later (a spawned future) carried such a copy off (the sidecar's
//! zeroization test found it in a freed heap block).
//!
//! As in `hkdf_residue.rs`: the work runs on a thread that then spins without calling anything,
//! while this thread reads that thread's stack through /proc/self/mem. A positive control seals
//! with a bare `Aes256Gcm`, without the scrub, and the scan must find the key.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use identity_protocol::SessionKeys;

/// How much of the dead stack below the caller is read: far more than a message uses.
const SCAN: usize = 64 * 1024;

/// One test at a time: each reads memory the other's thread may be writing.
static SERIAL: Mutex<()> = Mutex::new(());

/// `k_c2s || k_s2c`, known to the test; nothing else on the stack has these bytes.
fn raw_keys() -> Box<[u8; 64]> {
    let mut raw = Box::new([0u8; 64]);
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(151).wrapping_add(29);
    }
    raw
}

/// Runs `work` on a fresh thread and returns the `SCAN` bytes of its stack below the frame that
/// called it, read while the thread spins.
fn dead_stack_after(work: fn(&SessionKeys, &[u8; 64])) -> Vec<u8> {
    let top = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let raw = raw_keys();
    let keys = SessionKeys::import(&raw);
    let thread = {
        let (top, done) = (top.clone(), done.clone());
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let marker = 0u8;
                let here = black_box(&marker) as *const u8 as usize;
                work(&keys, &raw);
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

/// Which 8-byte pieces of k_s2c (by offset) are in `mem`.
fn found(mem: &[u8]) -> Vec<usize> {
    let raw = raw_keys();
    (0..32)
        .step_by(8)
        .filter(|&at| mem.windows(8).any(|w| w == &raw[32 + at..32 + at + 8]))
        .collect()
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let left = found(&dead_stack_after(protocol_seal_and_open));
    assert!(
        left.is_empty(),
        "pieces of k_s2c at these offsets are in dead stack: {left:?}"
    );
}

#[test]
fn positive_control_the_scan_finds_an_unscrubbed_cipher() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let left = found(&dead_stack_after(bare_seal_and_open));
    assert!(
        !left.is_empty(),
        "a cipher without the scrub left nothing the scan finds: the scan reads the wrong memory"
    );
}
