//! Section 3 envelopes: `Envelope::from_json`, then `open_request` / `open_response` under a
//! fixed session key. Whatever the input: no panic; an envelope that parses round-trips through
//! `to_json`; an accepted seq is in 1 .. 2^53-1; and nothing forged opens (the fuzzer does not
//! know the key, so any successful open is a finding).
#![no_main]

use std::sync::OnceLock;

use identity_protocol::envelope::MAX_SEQ;
use identity_protocol::keys::Okm;
use identity_protocol::{Envelope, SessionKeys, paths};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static SessionKeys {
    static KEYS: OnceLock<SessionKeys> = OnceLock::new();
    KEYS.get_or_init(|| SessionKeys::from_okm(&Okm::derive(&[0x42; 32], b"fuzz", b"fuzz")))
}

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::from_json(data) else {
        return;
    };
    assert!((1..=MAX_SEQ).contains(&envelope.seq));
    assert!(envelope.ciphertext.len() >= 16);
    let again = Envelope::from_json(&envelope.to_json()).expect("to_json output parses");
    assert_eq!(again, envelope);
    let keys = keys();
    let opened = keys.open_request("fuzz-session", "POST", paths::TOKEN, None, &envelope);
    assert!(opened.is_err(), "a forged request envelope opened");
    let opened = keys.open_response(
        "fuzz-session",
        "POST",
        paths::TOKEN,
        envelope.seq,
        200,
        &envelope,
    );
    assert!(opened.is_err(), "a forged response envelope opened");
});
