//! Password verification as a login pays it (`users::password::Hasher::verify`), with the
//! default (OWASP) Argon2id costs: a known user's right and wrong password, and the dummy hash
//! verified when there is no such user, which must cost the same. One core: each iteration
//! awaits one verification. Then the three interleaved, their medians side by side.
//!
//! `cargo bench -p identity-api --bench passwords`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench that cannot set up should stop

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use identity_api::users::password::{Hasher, Password, PasswordPolicy, Verdict};

fn verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let policy = PasswordPolicy::default();
    let hasher = Hasher::new(&policy).unwrap();
    let password = Password::new("correct horse battery staple".to_owned()).unwrap();
    let wrong = Password::new("correct horse battery stapler".to_owned()).unwrap();
    let stored = runtime.block_on(hasher.hash(&password)).unwrap();

    let mut group = c.benchmark_group(format!(
        "argon2id_m{}_t{}_p{}",
        policy.memory_kib, policy.iterations, policy.parallelism
    ));
    group.sample_size(20);
    group.bench_function("verify_known_user", |b| {
        b.iter(|| {
            let verdict = runtime.block_on(hasher.verify(Some(black_box(&stored)), &password));
            assert_eq!(verdict, Verdict::Match { rehash: false });
        })
    });
    group.bench_function("verify_known_user_wrong_password", |b| {
        b.iter(|| {
            let verdict = runtime.block_on(hasher.verify(Some(black_box(&stored)), &wrong));
            assert_eq!(verdict, Verdict::NoMatch);
        })
    });
    group.bench_function("verify_no_such_user", |b| {
        b.iter(|| {
            let verdict = runtime.block_on(hasher.verify(black_box(None), &password));
            assert_eq!(verdict, Verdict::NoMatch);
        })
    });
    group.bench_function("hash", |b| {
        b.iter(|| black_box(runtime.block_on(hasher.hash(&password)).unwrap()))
    });
    group.finish();
}

/// The three verifications interleaved, rotating the order each round, their medians printed:
/// load from elsewhere on the machine falls on all three alike, which separate criterion
/// benchmarks (run one after another) cannot promise.
fn interleaved() {
    const ROUNDS: usize = 60;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let hasher = Hasher::new(&PasswordPolicy::default()).unwrap();
    let password = Password::new("correct horse battery staple".to_owned()).unwrap();
    let wrong = Password::new("correct horse battery stapler".to_owned()).unwrap();
    let stored = runtime.block_on(hasher.hash(&password)).unwrap();
    let cases: [(&str, Option<&str>, &Password); 3] = [
        ("known user", Some(&stored), &password),
        ("known user, wrong password", Some(&stored), &wrong),
        ("no such user", None, &password),
    ];
    let mut times = [const { Vec::new() }; 3];
    for round in 0..ROUNDS {
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            let (_, stored, password) = cases[i];
            let start = Instant::now();
            black_box(runtime.block_on(hasher.verify(stored, password)));
            times[i].push(start.elapsed());
        }
    }
    println!("interleaved, {ROUNDS} rounds, median per verification:");
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    for ((name, _, _), median) in cases.iter().zip(&medians) {
        let ratio = median.as_secs_f64() / medians[0].as_secs_f64();
        println!(
            "  {name:<28} {:>8.3} ms  ({:.1}/s on one core, {ratio:.3} x known user)",
            median.as_secs_f64() * 1e3,
            1.0 / median.as_secs_f64()
        );
    }
}

criterion_group!(benches, verify);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    interleaved();
}
