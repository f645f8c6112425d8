//! ES256 access tokens through jsonwebtoken's aws-lc-rs backend, exactly as the identity API
//! signs and verifies them (`tokens::sign`, `tokens::verify`), and the random values of an
//! issue (`secret::Fresh`), one core.
//! docs/benchmarks.md records the figures next to the service's.
//!
//! `cargo bench -p identity-api --bench tokens`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use identity_api::keys::{KeyRing, SigningKey};
use identity_api::secret::Fresh;
use identity_api::tokens::{self, Claims, VerifiedCache};
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rand_core::OsRng;

fn ring(secret: &p256::SecretKey) -> KeyRing {
    let private = secret.to_pkcs8_der().unwrap();
    let public = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let kid = "bench-kid".to_owned();
    let mut verify = HashMap::new();
    verify.insert(
        kid.clone(),
        DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
    );
    KeyRing {
        active: Some(SigningKey::from_pkcs8(&kid, private.as_bytes()).unwrap()),
        verify,
        jwks: Arc::from(Vec::new()),
        published: 1,
    }
}

fn claims() -> Claims {
    Claims {
        iss: "http://127.0.0.1:8140".into(),
        sub: "loadgen-user".into(),
        aud: "orders-api".into(),
        client_id: "loadgen".into(),
        scope: "orders.read orders.write".into(),
        iat: 1_800_000_000,
        exp: 1_800_000_900,
        jti: "0123456789abcdef0123456789abcdef".into(),
        fid: "fedcba9876543210fedcba9876543210".into(),
    }
}

fn es256(c: &mut Criterion) {
    let secret = p256::SecretKey::random(&mut OsRng);
    let ring = ring(&secret);
    let claims = claims();
    let token = tokens::sign(&ring, &claims).unwrap();
    let mut group = c.benchmark_group("es256_aws_lc_rs");
    group.bench_function("sign", |b| {
        b.iter(|| black_box(tokens::sign(&ring, black_box(&claims)).unwrap()))
    });
    // For comparison, jsonwebtoken's `encode`, which parses the PKCS#8 key for every token.
    let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some("bench-kid".to_owned());
    group.bench_function("sign_jsonwebtoken_encode", |b| {
        b.iter(|| black_box(jsonwebtoken::encode(&header, black_box(&claims), &encoding).unwrap()))
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            black_box(tokens::verify(&ring, "http://127.0.0.1:8140", black_box(&token)).unwrap())
        })
    });
    // What a repeated introspection pays instead of `verify`: SHA-256 of the token and a lookup.
    let cache = VerifiedCache::default();
    cache.insert(
        VerifiedCache::key(&token),
        Arc::new(claims.clone()),
        1_800_000_001,
    );
    group.bench_function("verified_cache_hit", |b| {
        b.iter(|| {
            let key = VerifiedCache::key(black_box(&token));
            black_box(cache.get(&key, 1_800_000_001).unwrap())
        })
    });
    group.finish();
}

/// An issue's four random values (family id, two jti, refresh token) from one read of the OS,
/// as `Service::issue` takes them, against one read each, as before `Fresh`: the difference is
/// three `getrandom` system calls.
fn fresh_values(c: &mut Criterion) {
    fn take_all(fresh: &mut Fresh) {
        black_box(fresh.time_ordered_id());
        black_box(fresh.id());
        black_box(fresh.refresh_token());
        black_box(fresh.id());
    }
    let mut group = c.benchmark_group("issue_random_values");
    group.bench_function("one_draw", |b| b.iter(|| take_all(&mut Fresh::draw())));
    group.bench_function("a_draw_each", |b| {
        b.iter(|| {
            black_box(Fresh::draw().time_ordered_id());
            black_box(Fresh::draw().id());
            black_box(Fresh::draw().refresh_token());
            black_box(Fresh::draw().id());
        })
    });
    group.finish();
}

criterion_group!(benches, es256, fresh_values);
criterion_main!(benches);
