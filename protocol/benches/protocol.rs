//! The protocol's hot paths, one core: each side of session init, seal and open at three sizes,
//! and the replay window; then the raw rate of the crates underneath (p256, hkdf, aes-gcm).
//! docs/benchmarks.md records the figures and the machine.
//!
//! `cargo bench -p identity-protocol --bench protocol`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use identity_protocol::envelope::Envelope;
use identity_protocol::handshake::{self, ClientHandshake, InitRequest};
use identity_protocol::signing::{SigningKey, TrustedKeys};
use identity_protocol::{EphemeralSecret, ReplayWindow, Role, SessionKeys, paths};
use std::hint::black_box;

fn session_init(c: &mut Criterion) {
    let signing = SigningKey::generate();
    let trusted = TrustedKeys::pinned(&signing.public_key().to_b64u()).unwrap();
    let client = ClientHandshake::new();
    let body = serde_json::to_vec(&client.request()).unwrap();
    let mut group = c.benchmark_group("session_init");

    // The sidecar's side without the signature: parse and check the key, keygen, ECDH, HKDF.
    group.bench_function("sidecar_parse_keygen_ecdh_hkdf", |b| {
        b.iter(|| {
            let client_pk = InitRequest::parse(black_box(&body)).unwrap();
            let ours = EphemeralSecret::generate();
            black_box(SessionKeys::establish(
                ours,
                &client_pk,
                Role::Server,
                "bench-session",
            ))
        })
    });
    // What the sidecar does per init: all of the above plus the ECDSA signature.
    group.bench_function("sidecar_accept_signed", |b| {
        b.iter(|| {
            let client_pk = InitRequest::parse(black_box(&body)).unwrap();
            black_box(handshake::accept(
                &client_pk,
                "bench-session",
                300,
                1_800_000_000,
                None,
                &signing,
            ))
        })
    });
    // The client's side: keygen, then verify the signature, parse, ECDH, HKDF.
    group.bench_function("client_keygen_verify_ecdh_hkdf", |b| {
        let client_pk = InitRequest::parse(&body).unwrap();
        b.iter_batched(
            || {
                let fresh = ClientHandshake::new();
                let pk = fresh.public_key().clone();
                let (answer, _) =
                    handshake::accept(&pk, "bench-session", 300, 1_800_000_000, None, &signing);
                (fresh, answer)
            },
            |(fresh, answer)| black_box(fresh.finish(&answer, &trusted, None).unwrap()),
            criterion::BatchSize::SmallInput,
        );
        black_box(client_pk);
    });
    group.finish();
}

fn envelope(c: &mut Criterion) {
    let signing = SigningKey::generate();
    let client = ClientHandshake::new();
    let client_pk = client.public_key().clone();
    let (answer, server_keys) = handshake::accept(
        &client_pk,
        "bench-session",
        300,
        1_800_000_000,
        None,
        &signing,
    );
    let trusted = TrustedKeys::pinned(&signing.public_key().to_b64u()).unwrap();
    let session = client.finish(&answer, &trusted, None).unwrap();
    let auth = Some("Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln");

    let mut group = c.benchmark_group("envelope");
    for size in [256usize, 4096, 65536] {
        let plaintext = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("seal_request", size),
            &plaintext,
            |b, p| {
                b.iter(|| {
                    black_box(
                        session
                            .seal_request("POST", paths::INTROSPECT, auth, p)
                            .unwrap(),
                    )
                })
            },
        );
        let sealed = session
            .seal_request_with_seq(1, "POST", paths::INTROSPECT, auth, &plaintext)
            .unwrap();
        group.bench_with_input(
            BenchmarkId::new("parse_open_request", size),
            &sealed.body,
            |b, body| {
                b.iter(|| {
                    let env = Envelope::from_json(black_box(body)).unwrap();
                    black_box(
                        server_keys
                            .open_request(
                                "bench-session",
                                "POST",
                                paths::INTROSPECT,
                                auth.map(str::as_bytes),
                                &env,
                            )
                            .unwrap(),
                    )
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("seal_response", size),
            &plaintext,
            |b, p| {
                b.iter(|| {
                    black_box(
                        server_keys
                            .seal_response("bench-session", "POST", paths::INTROSPECT, 1, 200, p)
                            .to_json(),
                    )
                })
            },
        );
    }
    group.finish();
}

fn replay_window(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay_window");
    group.bench_function("accept_in_order", |b| {
        let mut window = ReplayWindow::new();
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            window.accept(black_box(seq)).unwrap()
        })
    });
    group.bench_function("accept_out_of_order_within_window", |b| {
        let mut window = ReplayWindow::new();
        let mut base = 0u64;
        let mut i = 0u64;
        b.iter(|| {
            // Blocks of 64 seqs accepted in reverse, so most accepts land inside the window.
            if i.is_multiple_of(64) {
                base += 64;
            }
            let seq = base + 63 - (i % 64);
            i += 1;
            let _ = black_box(window.accept(black_box(seq)));
        })
    });
    group.bench_function("slide_far", |b| {
        let mut window = ReplayWindow::new();
        let mut seq = 0;
        b.iter(|| {
            seq += 700;
            window.accept(black_box(seq)).unwrap()
        })
    });
    group.finish();
}

/// The crates underneath, without the protocol around them: the per-core ceiling that
/// docs/benchmarks.md compares the sidecar's figures with, measured in the same run.
fn raw_crypto(c: &mut Criterion) {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use p256::ecdsa::signature::{Signer, Verifier};
    use rand_core::OsRng;

    let mut group = c.benchmark_group("raw");
    let peer = p256::ecdh::EphemeralSecret::random(&mut OsRng).public_key();
    group.bench_function("p256_keygen", |b| {
        b.iter(|| black_box(p256::ecdh::EphemeralSecret::random(&mut OsRng)))
    });
    group.bench_function("p256_keygen_ecdh", |b| {
        b.iter(|| {
            let ours = p256::ecdh::EphemeralSecret::random(&mut OsRng);
            black_box(ours.diffie_hellman(black_box(&peer)))
        })
    });
    let ecdsa = p256::ecdsa::SigningKey::random(&mut OsRng);
    let verifying = *ecdsa.verifying_key();
    let message = [b'm'; 200];
    group.bench_function("p256_ecdsa_sign", |b| {
        b.iter(|| {
            let signature: p256::ecdsa::Signature = ecdsa.sign(black_box(&message));
            black_box(signature)
        })
    });
    let signature: p256::ecdsa::Signature = ecdsa.sign(&message);
    group.bench_function("p256_ecdsa_verify", |b| {
        b.iter(|| black_box(verifying.verify(black_box(&message), &signature).is_ok()))
    });
    group.bench_function("hkdf_sha256_extract_expand_64", |b| {
        b.iter(|| {
            let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"salt"), black_box(&[7u8; 32]));
            let mut okm = [0u8; 64];
            hk.expand(b"bench info", &mut okm).unwrap();
            black_box(okm)
        })
    });
    let cipher = aes_gcm::Aes256Gcm::new(&[9u8; 32].into());
    let nonce = aes_gcm::Nonce::from([3u8; 12]);
    for size in [256usize, 4096, 65536] {
        let plaintext = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("aes256gcm_seal", size),
            &plaintext,
            |b, p| {
                b.iter(|| {
                    black_box(
                        cipher
                            .encrypt(
                                &nonce,
                                Payload {
                                    msg: p,
                                    aad: b"aad of about sixty bytes: session, path, seq, auth..",
                                },
                            )
                            .unwrap(),
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, session_init, envelope, replay_window, raw_crypto);
criterion_main!(benches);
