//! `POST /api/v1/session/init` body: `InitRequest::parse` (JSON, strict base64url, the 65-byte
//! uncompressed point on P-256). Whatever the input: no panic, and an accepted key is a valid
//! 65-byte point that round-trips through its base64url.
#![no_main]

use identity_protocol::{ErrorCode, InitRequest, PublicKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match InitRequest::parse(data) {
        Ok(key) => {
            assert_eq!(key.as_bytes()[0], 0x04);
            let again = PublicKey::from_b64u("client_public_key", &key.to_b64u())
                .expect("an accepted key round-trips");
            assert_eq!(again, key);
        }
        Err(err) => {
            let code = err.code();
            assert!(
                code == ErrorCode::InvalidRequest || code == ErrorCode::InvalidPublicKey,
                "{code:?}"
            );
        }
    }
});
