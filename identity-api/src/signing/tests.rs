//! Known answers and round trips of keys and public JWKs of each algorithm.

use base64::Engine as _;
use jsonwebtoken::Validation;
use serde_json::json;

use super::*;

/// A 1024-bit RSA key made for this test only (such keys are refused).
const RSA_1024_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAL390LCNn91JqGCQ
F8NRCUn2mIr6QSP0UmCSo43KigYDOYEf+KjaBx9MFdY8DkbfvOZFrSlxEupNACYD
Pvgn1uyzwpG/sH9GdhKogh2X4OrjlP9PNowPBtaxKuTQc2ZSZxrhmxEpyxPGrHgH
TfkhE0ATWQj0C3htOHYKdyhazvRpAgMBAAECgYA+weh9aUq1Pe9wdihjTBFVbS9W
OPPrfHj5jXaZD54n/kiwbm8k12Ai5m8QJSZSIvWy2rEoT0GAQ48Y/1l9fytu0mJl
p3kacUmO5qFOogDTr9vxcSbA/wwgZfw1GKLsrjC2lPEssXETu76rclM8e+HFHVSP
Mzg+ErgbHouZoxEmQQJBAPG4ZimbSo6BOLwRu35QOz+mkDsd2diaNFZfdCIusarm
8IR/MxI4+1FRR8tEwKZc6OjbKeVQQKxxjtH116HSN9MCQQDJNxtjAtR6Ohl+4moB
66DfudGAapkrGxdzPii5Vj1ACLfTRdpG5jt/7Gp/ydmBu9DWjsCAvIbm7JTWCXL8
N9lTAkBLw97R38kIzdw4pt48A23uz4iZ3wtvZzZMdHL0W+p4hRaSkUQyzAWKQY3d
Wtl/y9N9WWTSacs7wgRgL0y9fiTdAkEAgc3hBwB+XdM5O1eIl3CQOYPAGR2rbdlu
SVPiJZ3yqWp2W/8GDxLbc2zqT0HB5SVqVd+FZAc656HbajByUy8cLQJBALCnOPl6
/YFu1MSHVdyGbp4oYOLyao2FHkGeI8y58KkgrYJNdo8VQd+Dkd4ohZnq8sVCKffM
KeDg9Noc+upayhA=
-----END PRIVATE KEY-----
";

/// RFC 7638 §3.1's example RSA key and its thumbprint.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
const RFC7638_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

pub(super) fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Claims {
    sub: String,
    iss: String,
    exp: i64,
}

fn claims() -> Claims {
    Claims {
        sub: "subject".into(),
        iss: "https://issuer.test".into(),
        exp: 4_000_000_000,
    }
}

/// `token` verifies under `key`'s public JWK with jsonwebtoken, for `alg` only, and its header
/// is `typ: at+jwt` with `key`'s kid.
fn assert_verifies(key: &SigningKey, token: &str) {
    let alg = key.algorithm();
    let decoding = key.public_jwk().decoding_key().unwrap();
    let data =
        jsonwebtoken::decode::<Claims>(token, &decoding, &Validation::new(alg.jwt())).unwrap();
    assert_eq!(data.claims, claims());
    assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
    assert_eq!(data.header.alg, alg.jwt());
    // A changed payload does not verify.
    let (head, rest) = token.split_once('.').unwrap();
    let signature = rest.rsplit_once('.').unwrap().1;
    let other = serde_json::to_vec(&Claims {
        sub: "other".into(),
        ..claims()
    })
    .unwrap();
    let forged = format!("{head}.{}.{signature}", crate::secret::b64u(&other));
    assert!(
        jsonwebtoken::decode::<Claims>(&forged, &decoding, &Validation::new(alg.jwt())).is_err()
    );
}

#[test]
fn each_algorithm_generates_signs_verifies_and_round_trips() {
    let payload = serde_json::to_vec(&claims()).unwrap();
    for alg in Algorithm::ALL {
        let (key, der) = SigningKey::generate(alg).unwrap();
        assert_eq!(key.algorithm(), alg);
        assert_eq!(key.kid(), key.public_jwk().thumbprint());
        assert_eq!(key.public_jwk().algorithm(), alg);
        let token = key.sign_jws(&payload).unwrap();
        assert_verifies(&key, &token);

        let again = SigningKey::from_pkcs8(alg, &der).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(again.public_jwk(), key.public_jwk());
        assert_verifies(&key, &again.sign_jws(&payload).unwrap());
        let pem = SigningKey::from_pem(&to_pem("PRIVATE KEY", &der)).unwrap();
        assert_eq!((pem.algorithm(), pem.kid()), (alg, key.kid()));

        // The stored public JWK reads back, and verifies the key's tokens.
        let stored = PublicJwk::from_json(alg, &key.public_jwk().to_json()).unwrap();
        assert_eq!(&stored, key.public_jwk());
        let entry = stored.jwks_entry(key.kid(), alg);
        assert_eq!(entry["use"], "sig");
        assert_eq!(entry["alg"], alg.as_str());
        assert_eq!(entry["kid"], key.kid());
        let from_jwks = PublicJwk::from_json(alg, &entry.to_string()).unwrap();
        assert_eq!(&from_jwks, key.public_jwk());

        // Under another algorithm the DER is refused.
        for other in Algorithm::ALL.into_iter().filter(|a| *a != alg) {
            assert!(
                SigningKey::from_pkcs8(other, &der).is_err(),
                "{alg} as {other}"
            );
            assert!(PublicJwk::from_json(other, &key.public_jwk().to_json()).is_err());
        }
        assert_eq!(
            format!("{key:?}"),
            format!("SigningKey {{ kid: {:?}, alg: {alg:?}, .. }}", key.kid())
        );
    }
}

/// ES256 tokens are byte for byte what jsonwebtoken's `encode` writes (up to the signature),
/// from the PKCS#8 that p256 writes (the keys already sealed in the database).
#[test]
fn es256_matches_jsonwebtoken_and_reads_p256_keys() {
    use p256::pkcs8::EncodePrivateKey as _;
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let der = secret.to_pkcs8_der().unwrap();
    let key = SigningKey::from_pkcs8(Algorithm::Es256, der.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(key.kid().to_owned());
    let theirs = jsonwebtoken::encode(
        &header,
        &claims(),
        &jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
    )
    .unwrap();
    let ours = key
        .sign_jws(&serde_json::to_vec(&claims()).unwrap())
        .unwrap();
    let signed = |t: &str| t.rsplit_once('.').unwrap().0.to_owned();
    assert_eq!(signed(&ours), signed(&theirs));
    // r || s, 64 bytes.
    let signature = crate::secret::b64u_decode(ours.rsplit_once('.').unwrap().1).unwrap();
    assert_eq!(signature.len(), 64);
    assert_verifies(&key, &ours);
    assert_verifies(&key, &theirs);

    // SEC1 ("EC PRIVATE KEY") is the same key.
    use p256::pkcs8::LineEnding;
    let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap();
    assert_eq!(SigningKey::from_pem(&sec1).unwrap().kid(), key.kid());

    // A key kept under a kid of before (not a thumbprint) signs with it in the header.
    let legacy = key.with_kid("legacy-kid").unwrap();
    let token = legacy.sign_jws(b"{}").unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
        Some("legacy-kid")
    );
}

#[test]
fn rsa_pkcs1_pem_is_read() {
    let (key, der) = SigningKey::generate(Algorithm::Rs256).unwrap();
    // PKCS#8 wraps the PKCS#1 RSAPrivateKey in its last OCTET STRING.
    let (body, _) = key::der_element(&der, 0x30).unwrap();
    let (_, body) = key::der_element(body, 0x02).unwrap();
    let (_, body) = key::der_element(body, 0x30).unwrap();
    let (pkcs1, _) = key::der_element(body, 0x04).unwrap();
    let key1 = SigningKey::from_pem(&to_pem("RSA PRIVATE KEY", pkcs1)).unwrap();
    assert_eq!(key1.kid(), key.kid());
}

#[test]
fn rfc7638_example_thumbprint() {
    let jwk =
        json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
    let jwk = PublicJwk::from_json(Algorithm::Rs256, &jwk.to_string()).unwrap();
    assert_eq!(jwk.thumbprint(), RFC7638_THUMBPRINT);
    assert_eq!(
        jwk.to_json(),
        format!(r#"{{"e":"AQAB","kty":"RSA","n":"{RFC7638_N}"}}"#)
    );
    jwk.decoding_key().unwrap();
}

#[test]
fn small_rsa_keys_are_refused() {
    let err = SigningKey::from_pem(RSA_1024_PKCS8).unwrap_err();
    assert!(matches!(err, SigningError::RsaTooSmall), "{err:?}");
    assert!(err.to_string().contains("fewer than 2048 bits"), "{err}");
    let der = pem::decode(RSA_1024_PKCS8).unwrap().der;
    let err = SigningKey::from_pkcs8(Algorithm::Rs256, &der).unwrap_err();
    assert!(err.to_string().contains("fewer than 2048 bits"), "{err}");
    // Nor published: a 1024-bit modulus in a JWK.
    let n = crate::secret::b64u(&[0xc5; 128]);
    let err = PublicJwk::from_json(
        Algorithm::Rs256,
        &json!({"kty": "RSA", "n": n, "e": "AQAB"}).to_string(),
    )
    .unwrap_err();
    assert!(matches!(err, SigningError::RsaTooSmall), "{err:?}");
}

#[test]
fn hs256_is_refused_with_the_reason() {
    let err = SigningError::from("HS256".parse::<Algorithm>().unwrap_err());
    let text = err.to_string();
    assert!(
        text.contains("HS256") && text.contains("JWKS") && text.contains("mint"),
        "{text}"
    );
}

#[test]
fn malformed_keys_and_jwks_are_refused_without_quoting_them() {
    let (_, der) = SigningKey::generate(Algorithm::EdDsa).unwrap();
    let pem_text = to_pem("PRIVATE KEY", &der);
    let secret_line = pem_text.lines().nth(1).unwrap().to_owned();
    let mut truncated = pem_text.replace(&secret_line, &secret_line[..20]);
    truncated.push('\n');
    for (text, want) in [
        ("", "no PEM block"),
        ("not a key", "no PEM block"),
        (truncated.as_str(), "not a P-256"),
        (
            &pem_text.replace("PRIVATE KEY", "PUBLIC KEY"),
            "\"PUBLIC KEY\"",
        ),
        (
            &pem_text.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
            "unencrypted",
        ),
        (&pem_text.replace('M', "*"), "not valid base64"),
    ] {
        let err = SigningKey::from_pem(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
        assert!(!err.contains(&secret_line[..20]), "{err}");
    }
    assert!(matches!(
        SigningKey::from_pkcs8(Algorithm::Es256, b"\x30\x03\x02\x01\x00"),
        Err(SigningError::BadPrivateKey {
            alg: Algorithm::Es256
        })
    ));

    let (key, _) = SigningKey::generate(Algorithm::Es256).unwrap();
    let good: serde_json::Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
    let with = |name: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[name] = value;
        v.to_string()
    };
    for (json, want) in [
        ("[1]".to_owned(), "not a JSON object"),
        ("{".to_owned(), "not valid JSON"),
        (with("d", json!("AAAA")), "private member \"d\""),
        (with("crv", json!("P-384")), "\"crv\": \"P-256\""),
        (with("kty", json!("RSA")), "\"kty\": \"EC\""),
        (with("alg", json!("RS256")), "\"alg\" is not ES256"),
        (with("x", json!("AAAA")), "3 bytes, not 32"),
        (with("x", json!(good["y"])), "not a point on P-256"),
        (with("y", json!(7)), "\"y\" is not a string"),
        (with("y", json!("a+b/")), "not base64url"),
    ] {
        let err = PublicJwk::from_json(Algorithm::Es256, &json)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{json}: {err}");
    }
}
