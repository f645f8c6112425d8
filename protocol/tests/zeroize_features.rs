//! The session keys live in aes-gcm ciphers. aes-gcm's own `zeroize` feature wipes only the GHASH
//! key it derives; the AES round keys need `aes/zeroize`, and the GHASH key and accumulator need
//! `polyval/zeroize`, which `ghash/zeroize` does not turn on. The HKDF's PRK lives in HMAC
//! state, wiped with `hmac/zeroize` and `sha2/zeroize`. This test reads the features cargo
//! actually resolved for this crate, so dropping one from Cargo.toml fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use std::process::Command;

#[test]
fn the_ciphers_and_hashes_are_built_with_zeroize() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--manifest-path", manifest])
        .args(["-p", "identity-protocol"])
        .args([
            "-e",
            "normal,features",
            "--prefix",
            "none",
            "-f",
            "{p} [{f}]",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    // sha2 0.10 is in the tree too, for p256's own ECDSA: the one the HKDF uses is 0.11.
    for krate in [
        "aes-gcm",
        "aes",
        "ghash",
        "polyval",
        "hmac v0.13",
        "sha2 v0.11",
    ] {
        let prefix = if krate.contains(' ') {
            krate.to_owned()
        } else {
            format!("{krate} v")
        };
        let line = tree
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{krate} is in the dependency tree:\n{tree}"));
        let features = line.rsplit_once('[').map(|(_, f)| f).unwrap_or_default();
        assert!(
            features.split([',', ']']).any(|f| f == "zeroize"),
            "{krate} is built without its zeroize feature: {line}"
        );
    }
}
