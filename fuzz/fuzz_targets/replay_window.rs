//! The replay window of section 3 against a model that remembers every seq, driven the way the
//! sidecar drives it: `check` before decrypting (consumes nothing), then `accept` for requests
//! that decrypted. Input: 9-byte records, one op byte and a little-endian u64; the seq is taken
//! relative to the highest so far half the time, so that the window's edges are reached.
#![no_main]

use std::collections::HashSet;

use identity_protocol::replay::{ReplayWindow, WINDOW};
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Model {
    highest: u64,
    seen: HashSet<u64>,
}

impl Model {
    fn acceptable(&self, seq: u64) -> bool {
        !self.seen.contains(&seq) && (seq > self.highest || self.highest - seq < WINDOW)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut window = ReplayWindow::new();
    let mut model = Model::default();
    for record in data.chunks_exact(9) {
        let op = record[0];
        let raw = u64::from_le_bytes(record[1..9].try_into().expect("8 bytes"));
        let seq = if op & 0x80 != 0 {
            // Near H: H - 2047 .. H + 2048.
            model.highest.wrapping_add(raw % 4096).wrapping_sub(2047)
        } else {
            raw
        };
        let expected = model.acceptable(seq);
        assert_eq!(window.check(seq).is_ok(), expected, "check({seq})");
        // As the sidecar: check, then (if it "decrypted") accept; sometimes a second accept,
        // as a concurrent request with the same seq would.
        if op & 0x01 != 0 {
            assert_eq!(window.accept(seq).is_ok(), expected, "accept({seq})");
            if expected {
                model.seen.insert(seq);
                model.highest = model.highest.max(seq);
            }
            if op & 0x02 != 0 {
                assert!(window.accept(seq).is_err(), "second accept({seq})");
            }
        }
        assert_eq!(window.highest(), model.highest);
    }
});
