//! Access tokens as the identity API signs and verifies them (`tokens::sign`, `tokens::verify`):
//! ES256 beside jsonwebtoken's own `encode`, and each algorithm a tenant may choose (ES256,
//! RS256, EdDSA); and the random values of an issue (`secret::Fresh`), one core.
//! docs/benchmarks.md records the figures next to the service's.
//!
//! `cargo bench -p identity-api --bench tokens`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use identity_api::keys::{Directory, Tenant, Verifier};
use identity_api::secret::Fresh;
use identity_api::signing::{Algorithm, SigningKey};
use identity_api::storage::TenantId;
use identity_api::tokens::{self, Claims, Verified, VerifiedCache};
use jsonwebtoken::EncodingKey;
use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
use rand_core::OsRng;

/// One tenant, `primary`, signing with `key`.
fn directory(key: SigningKey) -> Directory {
    let tenant = TenantId::primary();
    let verifier = Verifier {
        tenant: tenant.clone(),
        algorithm: key.algorithm(),
        key: key.public_jwk().decoding_key().unwrap(),
    };
    let kid = key.kid().to_owned();
    let primary = Tenant {
        id: tenant.clone(),
        display_name: "primary".into(),
        issuer: "http://127.0.0.1:8140".into(),
        enabled: true,
        algorithm: key.algorithm(),
        signing_key_ref: None,
        access_ttl: 900,
        refresh_ttl: 86_400,
        family_ttl: 2_592_000,
        active: Some(Arc::new(key)),
        jwks: Arc::from(Vec::new()),
        published: 1,
    };
    Directory::of(tenant, vec![primary], vec![(kid, verifier)])
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
        roles: None,
    }
}

fn es256(c: &mut Criterion) {
    let secret = p256::SecretKey::random(&mut OsRng);
    let private = secret.to_pkcs8_der().unwrap();
    let key = SigningKey::from_pkcs8(Algorithm::Es256, private.as_bytes()).unwrap();
    let kid = key.kid().to_owned();
    let directory = directory(key);
    let tenant = directory.default_tenant().unwrap();
    let claims = claims();
    let token = tokens::sign(tenant, &claims).unwrap();
    let mut group = c.benchmark_group("es256_aws_lc_rs");
    group.bench_function("sign", |b| {
        b.iter(|| black_box(tokens::sign(tenant, black_box(&claims)).unwrap()))
    });
    // For comparison, jsonwebtoken's `encode`, which parses the PKCS#8 key for every token.
    let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
    let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(kid);
    group.bench_function("sign_jsonwebtoken_encode", |b| {
        b.iter(|| black_box(jsonwebtoken::encode(&header, black_box(&claims), &encoding).unwrap()))
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(tokens::verify(&directory, black_box(&token)).unwrap()))
    });
    // What a repeated introspection pays instead of `verify`: SHA-256 of the token and a lookup.
    let cache = VerifiedCache::default();
    cache.insert(
        VerifiedCache::key(&token),
        Arc::new(Verified {
            tenant: TenantId::primary(),
            claims: claims.clone(),
        }),
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

/// Signing and verifying with each algorithm a tenant may choose, the key generated as a
/// tenant's is: what an issue and an uncached introspection pay.
fn algorithms(c: &mut Criterion) {
    for algorithm in Algorithm::ALL {
        let (key, _) = SigningKey::generate(algorithm).unwrap();
        let directory = directory(key);
        let tenant = directory.default_tenant().unwrap();
        let claims = claims();
        let token = tokens::sign(tenant, &claims).unwrap();
        let mut group = c.benchmark_group(format!("tenant_{algorithm}"));
        group.bench_function("sign", |b| {
            b.iter(|| black_box(tokens::sign(tenant, black_box(&claims)).unwrap()))
        });
        group.bench_function("verify", |b| {
            b.iter(|| black_box(tokens::verify(&directory, black_box(&token)).unwrap()))
        });
        group.finish();
    }
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

criterion_group!(benches, es256, algorithms, fresh_values);
criterion_main!(benches);
