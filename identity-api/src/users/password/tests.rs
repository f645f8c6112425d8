#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// Costs small enough for many tests; the defaults are exercised once.
fn cheap() -> PasswordPolicy {
    PasswordPolicy {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
        concurrency: 2,
        ..PasswordPolicy::default()
    }
}

fn pw(text: &str) -> Password {
    Password::new(text.to_owned()).unwrap()
}

#[test]
fn defaults_are_owasps() {
    let policy = PasswordPolicy::default();
    assert_eq!(
        (policy.memory_kib, policy.iterations, policy.parallelism),
        (19_456, 2, 1)
    );
    assert_eq!(policy.min_length, 12);
    assert!(policy.concurrency >= 1);
    policy.validate().unwrap();
}

#[test]
fn debug_is_redacted() {
    let password = pw("correct horse battery staple");
    let shown = format!("{password:?}");
    assert_eq!(shown, "Password(<redacted>)");
    assert!(!shown.contains("horse"));
}

#[test]
fn too_long_is_refused_before_hashing() {
    Password::new("a".repeat(MAX_PASSWORD_BYTES)).unwrap();
    let refused = Password::new("a".repeat(MAX_PASSWORD_BYTES + 1)).unwrap_err();
    assert_eq!(
        refused,
        PasswordRejected::TooLong {
            max_bytes: MAX_PASSWORD_BYTES
        }
    );
    // Bytes, not characters: 342 three-byte characters are 1026 bytes.
    assert!(Password::new("€".repeat(342)).is_err());
}

#[test]
fn check_new_minimum_length_counts_characters() {
    let policy = PasswordPolicy::default();
    let short = policy.check_new("alice", &pw("elevenchars")).unwrap_err();
    assert_eq!(short, PasswordRejected::TooShort { min_chars: 12 });
    assert_eq!(
        short.to_string(),
        "the password is shorter than 12 characters"
    );
    policy.check_new("alice", &pw("twelve chars")).unwrap();
    // Twelve characters of two bytes each pass; eleven do not.
    policy.check_new("alice", &pw(&"é".repeat(12))).unwrap();
    assert!(policy.check_new("alice", &pw(&"é".repeat(11))).is_err());
}

#[test]
fn check_new_refuses_the_username_ignoring_case() {
    let policy = PasswordPolicy {
        min_length: 5,
        ..PasswordPolicy::default()
    };
    let secret = "xxAlIcExx-secret";
    for password in ["alice", "ALICE", secret] {
        let refused = policy.check_new("Alice", &pw(password)).unwrap_err();
        assert_eq!(refused, PasswordRejected::ContainsUsername);
        assert!(!refused.to_string().contains(secret));
    }
    policy.check_new("Alice", &pw("bob's password")).unwrap();
    // An empty username is contained in everything; it is not a reason to refuse.
    policy.check_new("", &pw("bob's password")).unwrap();
}

#[test]
fn policy_errors_name_the_flag() {
    let cases = [
        (
            PasswordPolicy {
                min_length: 0,
                ..cheap()
            },
            BadPolicy::MinLength,
            "--password-min-length",
        ),
        (
            PasswordPolicy {
                parallelism: 0,
                ..cheap()
            },
            BadPolicy::Parallelism,
            "--argon2-parallelism",
        ),
        (
            PasswordPolicy {
                parallelism: 16,
                memory_kib: 127,
                ..cheap()
            },
            BadPolicy::Memory { min: 128 },
            "--argon2-memory-kib",
        ),
        (
            PasswordPolicy {
                memory_kib: MAX_MEMORY_KIB + 1,
                ..cheap()
            },
            BadPolicy::Memory { min: 8 },
            "--argon2-memory-kib",
        ),
        (
            PasswordPolicy {
                iterations: 0,
                ..cheap()
            },
            BadPolicy::Iterations,
            "--argon2-iterations",
        ),
        (
            PasswordPolicy {
                concurrency: 0,
                ..cheap()
            },
            BadPolicy::Concurrency,
            "--password-hash-concurrency",
        ),
    ];
    for (policy, error, flag) in cases {
        assert_eq!(policy.validate(), Err(error));
        assert_eq!(Hasher::new(&policy).err(), Some(error));
        assert!(error.to_string().contains(flag), "{error}");
    }
    PasswordPolicy {
        parallelism: 16,
        memory_kib: 128,
        ..cheap()
    }
    .validate()
    .unwrap();
}

#[tokio::test]
async fn hash_then_verify() {
    let hasher = Hasher::new(&cheap()).unwrap();
    let password = pw("correct horse battery staple");
    let phc = hasher.hash(&password).await.unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
    assert!(!phc.contains("horse"));
    assert_eq!(
        hasher.verify(Some(&phc), &password).await,
        Verdict::Match { rehash: false }
    );
    // A fresh salt each time.
    assert_ne!(hasher.hash(&password).await.unwrap(), phc);
}

#[tokio::test]
async fn default_parameters_roundtrip() {
    let hasher = Hasher::new(&PasswordPolicy::default()).unwrap();
    let password = pw("correct horse battery staple");
    let phc = hasher.hash(&password).await.unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert_eq!(
        hasher.verify(Some(&phc), &password).await,
        Verdict::Match { rehash: false }
    );
}

#[tokio::test]
async fn wrong_password_does_not_match() {
    let hasher = Hasher::new(&cheap()).unwrap();
    let phc = hasher
        .hash(&pw("correct horse battery staple"))
        .await
        .unwrap();
    for wrong in [
        "correct horse battery stapl",
        "Correct horse battery staple",
        "",
    ] {
        assert_eq!(
            hasher.verify(Some(&phc), &pw(wrong)).await,
            Verdict::NoMatch
        );
    }
}

#[tokio::test]
async fn no_stored_hash_never_matches() {
    let hasher = Hasher::new(&cheap()).unwrap();
    for password in ["", "correct horse battery staple"] {
        assert_eq!(hasher.verify(None, &pw(password)).await, Verdict::NoMatch);
    }
    // The dummy is made with the policy's parameters, so it costs what a real one does.
    assert!(!hasher.differs(&hasher.inner.dummy));
}

#[tokio::test]
async fn unreadable_stored_hash_does_not_match() {
    let hasher = Hasher::new(&cheap()).unwrap();
    let password = pw("correct horse battery staple");
    let phc = hasher.hash(&password).await.unwrap();
    let unknown_algorithm = phc.replacen("argon2id", "scrypt", 1);
    let bad_params = phc.replacen("m=64", "m=1", 1);
    let no_output = phc.rsplit_once('$').unwrap().0.to_owned();
    let huge_memory = phc.replacen("m=64", &format!("m={}", MAX_MEMORY_KIB + 1), 1);
    for stored in [
        "",
        "not a hash",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        &unknown_algorithm,
        &bad_params,
        &no_output,
        &huge_memory,
    ] {
        assert_eq!(
            hasher.verify(Some(stored), &password).await,
            Verdict::NoMatch,
            "{stored}"
        );
    }
}

#[tokio::test]
async fn other_parameters_match_and_ask_for_a_rehash() {
    let old = Hasher::new(&cheap()).unwrap();
    let password = pw("correct horse battery staple");
    let phc = old.hash(&password).await.unwrap();
    for changed in [
        PasswordPolicy {
            memory_kib: 128,
            ..cheap()
        },
        PasswordPolicy {
            iterations: 2,
            ..cheap()
        },
        PasswordPolicy {
            parallelism: 2,
            ..cheap()
        },
    ] {
        let new = Hasher::new(&changed).unwrap();
        assert_eq!(
            new.verify(Some(&phc), &password).await,
            Verdict::Match { rehash: true },
            "{changed:?}"
        );
        assert_eq!(new.verify(Some(&phc), &pw("wrong")).await, Verdict::NoMatch);
    }
    // Another variant with the same costs is upgraded to Argon2id.
    let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, old.inner.params.clone());
    let stored = hash_with(&argon2i, b"correct horse battery staple")
        .unwrap()
        .to_string();
    assert_eq!(
        old.verify(Some(&stored), &password).await,
        Verdict::Match { rehash: true }
    );
    // Only the policy's own parameters count: min length and concurrency do not.
    let same_costs = Hasher::new(&PasswordPolicy {
        min_length: 20,
        concurrency: 1,
        ..cheap()
    })
    .unwrap();
    assert_eq!(
        same_costs.verify(Some(&phc), &password).await,
        Verdict::Match { rehash: false }
    );
}

#[tokio::test]
async fn concurrency_bounds_the_running_hashes() {
    let hasher = Hasher::new(&PasswordPolicy {
        concurrency: 1,
        ..cheap()
    })
    .unwrap();
    let password = pw("correct horse battery staple");
    let phc = hasher.hash(&password).await.unwrap();
    let held = Arc::clone(&hasher.inner.permits)
        .acquire_owned()
        .await
        .unwrap();
    let waiting = {
        let hasher = hasher.clone();
        let phc = phc.clone();
        tokio::spawn(async move {
            let password = pw("correct horse battery staple");
            hasher.verify(Some(&phc), &password).await
        })
    };
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    drop(held);
    assert_eq!(waiting.await.unwrap(), Verdict::Match { rehash: false });
    assert_eq!(hasher.inner.permits.available_permits(), 1);
}
