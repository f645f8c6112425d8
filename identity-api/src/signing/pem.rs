//! PEM (RFC 7468) decoding into buffers that are wiped on drop: a private key's base64 text is
//! as secret as the key, so neither it nor the DER is left behind in freed memory.

use base64::Engine as _;
use zeroize::Zeroizing;

/// One PEM block: its label (`PRIVATE KEY`, `PUBLIC KEY`, ...) and its DER.
pub(crate) struct Block {
    pub label: String,
    pub der: Zeroizing<Vec<u8>>,
}

/// The first PEM block of `text` (text before it, such as an `openssl` comment, is skipped).
/// Errors never quote the text.
pub(crate) fn decode(text: &str) -> Result<Block, &'static str> {
    let begin = text
        .find("-----BEGIN ")
        .ok_or("no PEM block: a \"-----BEGIN ...-----\" line is missing")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let (label, rest) = rest
        .split_once("-----")
        .ok_or("the PEM BEGIN line is not closed by \"-----\"")?;
    if label.len() > 64 || !label.bytes().all(|b| b.is_ascii_uppercase() || b == b' ') {
        return Err("the PEM BEGIN line has no valid label");
    }
    let end_line = format!("-----END {label}-----");
    let end = rest
        .find(&end_line)
        .ok_or("the PEM block has no matching END line")?;
    let body = &rest[..end];
    if body.contains(':') {
        // RFC 1421 headers: an encrypted ("Proc-Type: 4,ENCRYPTED") traditional key.
        return Err(
            "the PEM block has headers (an encrypted key?): only unencrypted keys are read",
        );
    }
    let mut b64 = Zeroizing::new(String::with_capacity(body.len()));
    b64.extend(body.chars().filter(|c| !c.is_ascii_whitespace()));
    let mut der = Zeroizing::new(Vec::with_capacity(b64.len() / 4 * 3 + 3));
    base64::engine::general_purpose::STANDARD
        .decode_vec(b64.as_bytes(), &mut der)
        .map_err(|_| "the PEM block is not valid base64")?;
    if der.is_empty() {
        return Err("the PEM block is empty");
    }
    Ok(Block {
        label: label.to_owned(),
        der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_first_block_and_refuses_broken_ones() {
        let block =
            decode("comment\n-----BEGIN PUBLIC KEY-----\nAAEC\nAw==\n-----END PUBLIC KEY-----\n")
                .unwrap();
        assert_eq!(block.label, "PUBLIC KEY");
        assert_eq!(&block.der[..], &[0, 1, 2, 3]);
        for (text, want) in [
            ("MIIB", "no PEM block"),
            ("-----BEGIN PRIVATE KEY\nAA==", "not closed"),
            ("-----BEGIN PRIVATE KEY-----\nAAEC\n", "no matching END"),
            (
                "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PUBLIC KEY-----",
                "no matching END",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----",
                "not valid base64",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----",
                "empty",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAA==\n-----END RSA PRIVATE KEY-----",
                "encrypted",
            ),
            (
                "-----BEGIN private-----\nAA==\n-----END private-----",
                "no valid label",
            ),
        ] {
            let err = decode(text).err().unwrap();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
