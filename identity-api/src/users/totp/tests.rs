use super::*;

/// The secret of RFC 4226 Appendix D and of RFC 6238 Appendix B's SHA-1 rows.
const RFC_SECRET: &[u8; 20] = b"12345678901234567890";

fn rfc_secret() -> TotpSecret {
    TotpSecret::from_bytes(RFC_SECRET).unwrap()
}

/// A code of `secret` for `unix` as an independent implementation (totp-rs) computes it.
fn independent(secret: &[u8], digits: u8, unix: u64) -> String {
    totp_rs::Builder::new()
        .with_digits(digits)
        .with_skew(0)
        .with_step_duration(30)
        .with_secret(secret)
        .build()
        .unwrap()
        .generate(unix)
        .to_string()
}

#[test]
fn hotp_matches_rfc_4226_appendix_d() {
    let expected = [
        755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
    ];
    for (counter, code) in expected.into_iter().enumerate() {
        assert_eq!(
            hotp(RFC_SECRET, counter as u64, 6),
            Some(code),
            "count {counter}"
        );
    }
}

#[test]
fn totp_matches_rfc_6238_appendix_b_sha1() {
    let vectors = [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ];
    for (unix, code) in vectors {
        let step = unix / STEP_SECS;
        let eight = hotp(RFC_SECRET, step as u64, 8).unwrap();
        assert_eq!(format!("{eight:08}"), code, "time {unix}");
        // Six digits are the last six of the eight (both are the same number modulo 10^n).
        let six = &code[2..];
        assert_eq!(
            verify(&rfc_secret(), six, unix, None),
            Some(step),
            "time {unix}"
        );
        assert_eq!(
            independent(RFC_SECRET, 8, unix as u64),
            code,
            "totp-rs, time {unix}"
        );
    }
}

#[test]
fn agrees_with_an_independent_implementation() {
    for i in 0..300u64 {
        let secret = TotpSecret::generate();
        let unix = (OsRng.next_u64() % 4_000_000_000) + i;
        let code = independent(secret.expose(), 6, unix);
        let step = (unix / 30) as i64;
        assert_eq!(
            verify(&secret, &code, unix as i64, None),
            Some(step),
            "{code} at {unix}"
        );
        let eight = hotp(secret.expose(), step as u64, 8).unwrap();
        assert_eq!(format!("{eight:08}"), independent(secret.expose(), 8, unix));
    }
}

#[test]
fn accepts_one_step_either_side_and_no_further() {
    let secret = TotpSecret::generate();
    let step = 1_800_000_000 / STEP_SECS;
    let code = |s: i64| independent(secret.expose(), 6, (s * STEP_SECS) as u64);
    for now in [step * STEP_SECS, step * STEP_SECS + 29] {
        for s in step - 1..=step + 1 {
            assert_eq!(
                verify(&secret, &code(s), now, None),
                Some(s),
                "step {s} at {now}"
            );
        }
        for s in [step - 3, step - 2, step + 2, step + 3] {
            // A code two steps away can equal one within the window (one chance in 10^6).
            if (step - 1..=step + 1).all(|w| code(w) != code(s)) {
                assert_eq!(
                    verify(&secret, &code(s), now, None),
                    None,
                    "step {s} at {now}"
                );
            }
        }
    }
    // The first second of the next step moves the window.
    let next = (step + 1) * STEP_SECS;
    assert_eq!(verify(&secret, &code(step + 2), next, None), Some(step + 2));
}

#[test]
fn a_code_is_accepted_once() {
    let secret = TotpSecret::generate();
    let now = 1_900_000_015;
    let step = now / STEP_SECS;
    let code = |s: i64| independent(secret.expose(), 6, (s * STEP_SECS) as u64);
    let used = verify(&secret, &code(step), now, None).unwrap();
    assert_eq!(used, step);
    // Replayed, within the same step or the next: refused.
    assert_eq!(verify(&secret, &code(step), now, Some(used)), None);
    assert_eq!(verify(&secret, &code(step), now + 30, Some(used)), None);
    // An older code still in the window: refused too, once a later one was accepted.
    assert_eq!(verify(&secret, &code(step - 1), now, Some(used)), None);
    // The next step's code: accepted, once.
    let next = verify(&secret, &code(step + 1), now, Some(used)).unwrap();
    assert_eq!(next, step + 1);
    assert_eq!(verify(&secret, &code(step + 1), now, Some(next)), None);
}

#[test]
fn malformed_codes_are_refused() {
    let secret = rfc_secret();
    // 287082 is the code of step 1 (RFC 4226's count 1): valid at 59.
    assert_eq!(verify(&secret, "287082", 59, None), Some(1));
    for spaced in [
        " 287082",
        "287082 ",
        "287 082",
        "\t287082\n",
        " 2 8 7 0 8 2 ",
    ] {
        assert_eq!(verify(&secret, spaced, 59, None), Some(1), "{spaced:?}");
    }
    for bad in [
        "",
        "      ",
        "28708",
        "2870820",
        "0287082",
        "28708a",
        "+287082",
        "-287082",
        "287-082",
        "２８７０８２", // fullwidth digits
        "287082\0",
        "0x4616A",
        "94287082", // the 8-digit code
    ] {
        assert_eq!(verify(&secret, bad, 59, None), None, "{bad:?}");
    }
}

#[test]
fn steps_before_the_epoch_match_nothing() {
    let secret = rfc_secret();
    let code0 = format!("{:06}", hotp(RFC_SECRET, 0, 6).unwrap());
    // At -1 the window is steps -2..=0: only step 0 has a code.
    assert_eq!(verify(&secret, &code0, -1, None), Some(0));
    assert_eq!(verify(&secret, &code0, -61, None), None);
    assert_eq!(verify(&secret, &code0, i64::MIN, None), None);
    assert_eq!(verify(&secret, &code0, i64::MAX, None), None);
}

#[test]
fn secrets_are_random_redacted_and_exactly_20_bytes() {
    let a = TotpSecret::generate();
    let b = TotpSecret::generate();
    assert_ne!(a.expose(), b.expose());
    assert_eq!(format!("{a:?}"), "TotpSecret(<redacted>)");
    let copy = TotpSecret::from_bytes(a.expose()).unwrap();
    assert_eq!(copy.expose(), a.expose());
    for len in [0, 16, 19, 21, 32] {
        assert!(
            TotpSecret::from_bytes(&vec![7u8; len]).is_none(),
            "{len} bytes"
        );
    }
}

#[test]
fn otpauth_uri_follows_the_key_uri_format() {
    let uri = rfc_secret()
        .otpauth_uri("Example Co", "alice@example.com")
        .unwrap();
    assert_eq!(
        uri.as_str(),
        "otpauth://totp/Example%20Co:alice%40example.com\
         ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Co\
         &algorithm=SHA1&digits=6&period=30"
    );
    // Sized once: no reallocation left a copy of the secret in freed memory.
    assert_eq!(uri.len(), uri.capacity());
}

#[test]
fn otpauth_uri_reads_back_in_an_independent_implementation() {
    let secret = TotpSecret::generate();
    for (issuer, account) in [
        ("identity-sidecar", "alice"),
        ("ACME Corp & Sons", "bob smith+mfa@example.com"),
        ("Zürich 100%", "üser/../?#=&"),
        ("t", "a~b_c.d-e"),
    ] {
        let uri = secret.otpauth_uri(issuer, account).unwrap();
        let parsed = totp_rs::Totp::from_url(uri.as_str()).unwrap();
        assert_eq!(parsed.issuer(), Some(issuer), "{uri:?}");
        assert_eq!(parsed.account_name(), account, "{uri:?}");
        assert_eq!(parsed.secret().as_ref(), secret.expose());
        assert_eq!(parsed.algorithm(), totp_rs::Algorithm::SHA1);
        assert_eq!((parsed.digits(), parsed.step()), (6, 30));
        let unix = 1_700_000_000;
        let code = parsed.generate(unix).to_string();
        assert_eq!(
            verify(&secret, &code, unix as i64, None),
            Some(unix as i64 / 30)
        );
    }
}

#[test]
fn otpauth_uri_refuses_what_the_label_cannot_carry() {
    let secret = TotpSecret::generate();
    assert_eq!(
        secret.otpauth_uri("", "alice").unwrap_err(),
        LabelError::Empty
    );
    assert_eq!(
        secret.otpauth_uri("Issuer", "").unwrap_err(),
        LabelError::Empty
    );
    assert_eq!(
        secret.otpauth_uri("Iss:uer", "alice").unwrap_err(),
        LabelError::Colon
    );
    assert_eq!(
        secret.otpauth_uri("Issuer", "al:ice").unwrap_err(),
        LabelError::Colon
    );
}

fn is_recovery_code_form(code: &str) -> bool {
    let groups: Vec<&str> = code.split('-').collect();
    groups.iter().map(|g| g.len()).eq([4, 4, 4, 1])
        && groups
            .concat()
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '2'..='7'))
}

#[test]
fn recovery_codes_are_typable_and_carry_at_least_64_bits() {
    const { assert!(RECOVERY_CODE_CHARS * 5 >= 64) };
    const { assert!(RECOVERY_CODE_BYTES * 8 >= RECOVERY_CODE_CHARS * 5) };
    let codes = RecoveryCodes::generate(RECOVERY_CODE_COUNT);
    assert_eq!(codes.codes().len(), 10);
    for (i, code) in codes.codes().iter().enumerate() {
        assert!(is_recovery_code_form(code), "{:?}", code.as_str());
        assert!(!codes.codes()[..i].contains(code), "a repeat");
    }
    assert_eq!(format!("{codes:?}"), "RecoveryCodes(10 codes, <redacted>)");
    // Every character position takes every symbol: all 65 bits are random.
    let many = RecoveryCodes::generate(400);
    let stripped: Vec<Zeroizing<String>> = many
        .codes()
        .iter()
        .map(|c| RecoveryCodes::normalize(c).unwrap())
        .collect();
    for position in 0..RECOVERY_CODE_CHARS {
        let mut seen: Vec<u8> = stripped.iter().map(|c| c.as_bytes()[position]).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 32, "position {position}");
    }
}

#[test]
fn recovery_codes_normalize_case_dashes_and_spaces() {
    let code = "abcd-efgh-ijkl-m";
    for typed in [
        "abcd-efgh-ijkl-m",
        "ABCD-EFGH-IJKL-M",
        "abcdefghijklm",
        " abcd efgh ijkl m ",
        "AbCd--EfGh ijkl-M\n",
    ] {
        assert_eq!(
            RecoveryCodes::normalize(typed)
                .as_deref()
                .map(String::as_str),
            Some("abcdefghijklm"),
            "{typed:?}"
        );
    }
    assert_eq!(RecoveryCodes::normalize(code).unwrap().len(), 13);
    for bad in [
        "",
        "abcd-efgh-ijkl",
        "abcd-efgh-ijkl-mn",
        "abcd-efgh-ijkl-1", // 0, 1, 8 and 9 are not base32
        "abcd-efgh-ijkl-0",
        "abcd-efgh-ijkl-é",
        "abcd_efgh_ijkl_m",
        "abcd-efgh-ijkl-m=",
    ] {
        assert!(RecoveryCodes::normalize(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn recovery_code_verifiers_bind_the_user_and_the_key() {
    let key = Key32::random();
    let codes = RecoveryCodes::generate(3);
    let stored = codes.verifiers(&key, "user-1");
    assert_eq!(stored.len(), 3);
    for (code, verifier) in codes.codes().iter().zip(&stored) {
        let typed = code.to_uppercase().replace('-', " ");
        let normalized = RecoveryCodes::normalize(&typed).unwrap();
        assert_eq!(
            RecoveryCodes::verifier(&key, "user-1", &normalized),
            *verifier
        );
        assert_ne!(
            RecoveryCodes::verifier(&key, "user-2", &normalized),
            *verifier
        );
        assert_ne!(
            RecoveryCodes::verifier(&Key32::random(), "user-1", &normalized),
            *verifier
        );
    }
    // A known answer: HMAC-SHA256(key, "recovery-code" 0x00 user 0x00 code).
    let key = Key32::from_bytes(&[0x0b; 32]).unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x0b; 32]).unwrap();
    mac.update(b"recovery-code\0u\0abcdefghijklm");
    let expected: [u8; 32] = mac.finalize().into_bytes().into();
    assert_eq!(
        RecoveryCodes::verifier(&key, "u", "abcdefghijklm"),
        expected
    );
}
