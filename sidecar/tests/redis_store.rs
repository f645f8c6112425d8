//! The Redis session store against a real Redis: the script's replay window against the
//! protocol's own `ReplayWindow`, the request limit, what Redis holds (read back: no key
//! material, every key with its expiry), session end and expiry seen by another replica's
//! store, a Redis that stops answering (503 within the timeout, then recovery), a Redis
//! Cluster of three redis-server processes (a session's keys in one slot), and `rediss://` with
//! a private CA and a password.
//!
//! The shared Redis of SIDECAR_TEST_REDIS_URL, each test under its own key prefix; private
//! redis-server processes for the tests that stop Redis or need a cluster. Ignored, visibly,
//! without the variable. (Two sidecar processes on one Redis: tests/tests/redis_sessions.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use identity_launcher::RedisServer;
use identity_protocol::keys::Okm;
use identity_protocol::{ReplayWindow, SessionKeys};
use identity_sidecar::metrics::Metrics;
use identity_sidecar::sessions::{
    Live, Refusal, Session, SessionStore, StoreArgs, StoreUnavailable, new_session_id, unix_now,
};
use proptest::prelude::*;
use redis::AsyncCommands as _;

const STORE_KEY: &str = "8c1f3e5a7b9d0f2e4c6a8b0d2f4e6a8c0b2d4f6e8a0c2e4b6d8f0a2c4e6b8d0f";

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
}

fn redis_url() -> String {
    std::env::var("SIDECAR_TEST_REDIS_URL").expect("SIDECAR_TEST_REDIS_URL is set")
}

fn prefix(test: &str) -> String {
    format!("test:{test}:{}:", &new_session_id()[..10])
}

/// A store, as `identity-sidecar --session-store <url> ...` opens it.
fn store(url: &str, prefix: &str, more: &[&str]) -> (SessionStore, Metrics) {
    store_with_key(url, prefix, STORE_KEY, more)
}

fn store_with_key(url: &str, prefix: &str, key: &str, more: &[&str]) -> (SessionStore, Metrics) {
    let mut args = vec![
        "x",
        "--session-store",
        url,
        "--session-store-key",
        key,
        "--session-store-prefix",
        prefix,
    ];
    args.extend_from_slice(more);
    let cli = Cli::try_parse_from(args).unwrap();
    cli.store.validate().unwrap();
    let metrics = Metrics::new();
    let store = SessionStore::open(&cli.store, 1000, &metrics).unwrap();
    (store, metrics)
}

fn okm(seed: u8) -> Okm {
    Okm::derive(&[seed; 32], b"salt", b"info")
}

fn session(seed: u8, subject: Option<&str>) -> Session {
    Session::new(
        SessionKeys::from_okm(&okm(seed)),
        subject.map(str::to_owned),
        Instant::now() + Duration::from_secs(600),
    )
}

/// A new session in `store`, `ttl` seconds in Redis; its id and its live handle.
async fn create(store: &SessionStore, seed: u8, subject: Option<&str>, ttl: u64) -> (String, Live) {
    let id = new_session_id();
    let slot = store.reserve().unwrap();
    store
        .insert(
            slot,
            id.clone(),
            session(seed, subject),
            ttl,
            unix_now() + ttl,
        )
        .await
        .unwrap();
    let live = store.get(&id, Instant::now()).await.unwrap().unwrap();
    (id, live)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Seqs as clients and attackers send them: mostly rising, some late, some at the window's
/// lower edge or below it, some sliding the window by about its width or past it.
fn seqs() -> impl Strategy<Value = Vec<u64>> {
    let step = prop_oneof![
        6 => 1i64..4,
        2 => -40i64..0,
        2 => -1030i64..-1018,
        1 => -3000i64..0,
        1 => 1000i64..1030,
        1 => 1030i64..3000,
    ];
    proptest::collection::vec(step, 1..400).prop_map(|steps| {
        let mut seq: i64 = 1;
        steps
            .into_iter()
            .map(|d| {
                seq = (seq + d).max(1);
                u64::try_from(seq).unwrap()
            })
            .collect()
    })
}

#[test]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
fn the_scripts_window_is_the_protocols_window() {
    let rt = runtime();
    let (store, _) = rt.block_on(async { store(&redis_url(), &prefix("window"), &[]) });
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(seqs in seqs())| {
        rt.block_on(async {
            let (id, live) = create(&store, 1, None, 60).await;
            let mut oracle = ReplayWindow::new();
            for &seq in &seqs {
                let expected = oracle.accept(seq).map_err(|_| Refusal::Replayed);
                let got = store.accept(&id, &live, seq, u64::MAX >> 11).await;
                prop_assert_eq!(got, expected, "seq {} after {:?}", seq, seqs);
            }
            Ok(())
        })?;
    });
    // The window's edges, and the largest seq (2^53-1, exact in Lua's doubles).
    rt.block_on(async {
        let (id, live) = create(&store, 2, None, 60).await;
        let max = (1u64 << 53) - 1;
        for (seq, expected) in [
            (5000, Ok(())),
            (5000 - 1024, Err(Refusal::Replayed)),
            (5000 - 1023, Ok(())),
            (5000 - 1023, Err(Refusal::Replayed)),
            (max, Ok(())),
            (max, Err(Refusal::Replayed)),
            (max - 1023, Ok(())),
            (max - 1024, Err(Refusal::Replayed)),
        ] {
            assert_eq!(
                store.accept(&id, &live, seq, 1 << 24).await,
                expected,
                "{seq}"
            );
        }
    });
}

#[tokio::test]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn the_request_limit_ends_the_session_in_redis() {
    let (store, _) = store(&redis_url(), &prefix("limit"), &[]);
    let (id, live) = create(&store, 3, None, 60).await;
    for seq in 1..=3 {
        assert_eq!(store.accept(&id, &live, seq, 3).await, Ok(()));
    }
    // A replay is still a replay; a fresh seq finds the session exhausted, which ends it.
    assert_eq!(
        store.accept(&id, &live, 4, 3).await,
        Err(Refusal::Exhausted)
    );
    store.forget(&id);
    assert_eq!(store.accept(&id, &live, 5, 3).await, Err(Refusal::Ended));
    assert!(store.get(&id, Instant::now()).await.unwrap().is_none());
}

#[tokio::test]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn what_redis_holds_has_no_key_material_and_every_key_expires() {
    let prefix = prefix("readback");
    let (store, _) = store(&redis_url(), &prefix, &[]);
    let mut ids = Vec::new();
    for (seed, subject) in [(11, None), (12, Some("alice")), (13, Some("bob"))] {
        let (id, live) = create(&store, seed, subject, 120).await;
        for seq in [1, 2, 7] {
            store.accept(&id, &live, seq, 1 << 24).await.unwrap();
        }
        ids.push(id);
    }

    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = connection.keys(format!("{prefix}*")).await.unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let mut everything = Vec::new();
    for key in &keys {
        // One key per session, named by its id inside a hash tag.
        assert!(
            ids.iter().any(|id| *key == format!("{prefix}{{{id}}}")),
            "{key}"
        );
        let ttl: i64 = connection.ttl(key).await.unwrap();
        assert!((1..=120).contains(&ttl), "{key}: ttl {ttl}");
        let fields: HashMap<String, Vec<u8>> = connection.hgetall(key).await.unwrap();
        let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert!(
            names == ["e", "h", "k", "n", "w"] || names == ["e", "h", "k", "n", "s", "w"],
            "{names:?}"
        );
        assert_eq!(
            fields["k"].len(),
            93,
            "sealed: version, nonce, 64 bytes, tag"
        );
        everything.extend_from_slice(key.as_bytes());
        for (name, value) in fields {
            everything.extend_from_slice(name.as_bytes());
            everything.extend_from_slice(&value);
        }
    }
    // Neither a session key (8 bytes of either half, raw or in hex) nor the store key.
    let store_key = hex::decode(STORE_KEY).unwrap();
    let mut secrets = vec![store_key.clone(), STORE_KEY.as_bytes().to_vec()];
    for seed in [11, 12, 13] {
        let okm = okm(seed);
        for half in [okm.k_c2s(), okm.k_s2c()] {
            secrets.push(half.to_vec());
            secrets.push(hex::encode(half).into_bytes());
        }
    }
    for secret in &secrets {
        for piece in secret.chunks(8) {
            assert!(
                !everything.windows(piece.len()).any(|w| w == piece),
                "key material found in Redis"
            );
        }
    }
    // Subjects and session ids are there (the doc says so), and nothing else of note.
    assert!(everything.windows(5).any(|w| w == b"alice"));
}

#[tokio::test]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn end_and_expiry_in_redis_reach_a_replica_that_holds_the_keys() {
    let prefix = prefix("replicas");
    let (a, _) = store(&redis_url(), &prefix, &[]);
    let (b, _) = store(&redis_url(), &prefix, &[]);

    // Opened on A, used on B (B unseals and caches it), ended on A by alice's refresh.
    let (id, _) = create(&a, 21, None, 60).await;
    let on_b = b.get(&id, Instant::now()).await.unwrap().unwrap();
    assert_eq!(b.accept(&id, &on_b, 1, 1 << 24).await, Ok(()));
    a.end_previous(&id, "alice").await.unwrap();
    assert_eq!(b.accept(&id, &on_b, 2, 1 << 24).await, Err(Refusal::Ended));

    // A session bound to bob is not ended by alice's refresh; by bob's it is.
    let (bobs, _) = create(&a, 22, Some("bob"), 60).await;
    a.end_previous(&bobs, "alice").await.unwrap();
    let on_b = b.get(&bobs, Instant::now()).await.unwrap().unwrap();
    assert_eq!(on_b.session().subject(), Some("bob"));
    b.end_previous(&bobs, "bob").await.unwrap();
    assert!(
        a.get(&bobs, Instant::now()).await.unwrap().is_some(),
        "cached on A"
    );
    let on_a = a.get(&bobs, Instant::now()).await.unwrap().unwrap();
    assert_eq!(
        a.accept(&bobs, &on_a, 1, 1 << 24).await,
        Err(Refusal::Ended)
    );

    // Redis' expiry decides, even where a replica's cached deadline is later.
    let (short, on_a) = create(&a, 23, None, 1).await;
    let on_b = b.get(&short, Instant::now()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        a.accept(&short, &on_a, 1, 1 << 24).await,
        Err(Refusal::Ended)
    );
    assert_eq!(
        b.accept(&short, &on_b, 1, 1 << 24).await,
        Err(Refusal::Ended)
    );
    b.forget(&short);
    assert!(b.get(&short, Instant::now()).await.unwrap().is_none());

    // A replica without the store key that sealed a session (removed from its key file) finds
    // it unknown, its client sent to session init, counted apart from the store's failures.
    let (c, metrics) = store_with_key(&redis_url(), &prefix, &"00".repeat(32), &[]);
    let (kept, _) = create(&a, 24, None, 60).await;
    for _ in 0..2 {
        assert!(c.get(&kept, Instant::now()).await.unwrap().is_none());
    }
    let text = metrics.encode(0).unwrap();
    assert!(
        text.contains(r#"sidecar_session_store_refusals_total{reason="unopenable"} 2"#),
        "{text}"
    );
    assert!(
        !text.contains("sidecar_session_store_errors_total{"),
        "{text}"
    );
    // Left in Redis for the replicas that hold the key.
    let (d, _) = store(&redis_url(), &prefix, &[]);
    assert!(d.get(&kept, Instant::now()).await.unwrap().is_some());
}

#[tokio::test]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn a_subject_or_expiry_rewritten_in_redis_makes_the_session_unknown() {
    let prefix = prefix("rewritten");
    let (a, _) = store(&redis_url(), &prefix, &[]);
    let (alices, _) = create(&a, 31, Some("alice"), 60).await;
    let (anonymous, _) = create(&a, 32, None, 60).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = |id: &str| format!("{prefix}{{{id}}}");
    let expires_at: u64 = redis.hget(key(&alices), "e").await.unwrap();

    // Each edit, seen by a replica that has not cached the session's keys yet; then undone.
    let edits: [(&str, &str, Vec<u8>); 5] = [
        (&alices, "s", b"bob".to_vec()),
        (&alices, "s", b"\xff".to_vec()),
        (&alices, "e", (expires_at + 3600).to_string().into_bytes()),
        (&alices, "e", b"later".to_vec()),
        (&anonymous, "s", b"alice".to_vec()),
    ];
    for (id, field, value) in edits {
        let before: Option<Vec<u8>> = redis.hget(key(id), field).await.unwrap();
        let () = redis.hset(key(id), field, &value).await.unwrap();
        let (replica, metrics) = store(&redis_url(), &prefix, &[]);
        let got = replica.get(id, Instant::now()).await.unwrap();
        assert!(got.is_none(), "{field} = {value:?} was accepted");
        let text = metrics.encode(0).unwrap();
        assert!(
            text.contains(r#"sidecar_session_store_refusals_total{reason="unopenable"} 1"#),
            "{text}"
        );
        match before {
            Some(before) => redis.hset(key(id), field, before).await.unwrap(),
            None => redis.hdel(key(id), field).await.unwrap(),
        }
        let (replica, _) = store(&redis_url(), &prefix, &[]);
        let live = replica.get(id, Instant::now()).await.unwrap().unwrap();
        let subject = (id == alices).then_some("alice");
        assert_eq!(live.session().subject(), subject);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn a_redis_that_stops_answering_is_503_within_the_timeout_and_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start(dir.path()).await.unwrap();
    let (store, metrics) = store(&redis.url(), "t:", &["--session-store-timeout-ms", "300"]);
    let (id, live) = create(&store, 31, None, 60).await;
    assert_eq!(store.accept(&id, &live, 1, 1 << 24).await, Ok(()));

    // Slow: the server stopped (SIGSTOP) holds the connection open and answers nothing.
    let pid = redis.pid().unwrap();
    signal(pid, "-STOP");
    let started = Instant::now();
    let got = store.accept(&id, &live, 2, 1 << 24).await;
    let waited = started.elapsed();
    signal(pid, "-CONT");
    assert_eq!(got, Err(Refusal::Unavailable(StoreUnavailable)));
    assert!(waited < Duration::from_secs(3), "{waited:?}");

    // Gone: refused at once, for every operation; nothing accepted.
    redis.stop();
    assert_eq!(
        store.accept(&id, &live, 3, 1 << 24).await,
        Err(Refusal::Unavailable(StoreUnavailable))
    );
    let slot = store.reserve().unwrap();
    let created = store
        .insert(
            slot,
            new_session_id(),
            session(32, None),
            60,
            unix_now() + 60,
        )
        .await;
    assert_eq!(created, Err(StoreUnavailable));
    assert!(store.get(&new_session_id(), Instant::now()).await.is_err());
    assert!(
        store
            .end_previous(&new_session_id(), "alice")
            .await
            .is_err()
    );
    let text = metrics.encode(0).unwrap();
    for operation in ["accept", "create", "get", "end"] {
        assert!(
            text.contains(&format!(
                "sidecar_session_store_errors_total{{operation=\"{operation}\"}}"
            )),
            "{text}"
        );
    }

    // Back (empty: no persistence): the same store works again, without a restart.
    redis.resume().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let slot = store.reserve().unwrap();
        let id = new_session_id();
        if store
            .insert(slot, id.clone(), session(33, None), 60, unix_now() + 60)
            .await
            .is_ok()
        {
            let live = store.get(&id, Instant::now()).await.unwrap().unwrap();
            assert_eq!(store.accept(&id, &live, 1, 1 << 24).await, Ok(()));
            break;
        }
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The session opened before the restart is gone with Redis' memory: 401, not 503.
    assert_eq!(
        store.accept(&id, &live, 4, 1 << 24).await,
        Err(Refusal::Ended)
    );
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn a_redis_cluster_keeps_each_session_in_one_slot() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = identity_launcher::redis::cluster(dir.path(), 3)
        .await
        .unwrap();
    let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let (store, _) = store(&urls.join(","), "c:", &["--session-store-cluster"]);
    let client = redis::Client::open(urls[0].as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut slots = std::collections::HashSet::new();
    for seed in 0..12u8 {
        // Anonymous, alice's, bob's: alice's refresh ends the first two.
        let subject = [None, Some("alice"), Some("bob")][usize::from(seed % 3)];
        let (id, live) = create(&store, seed, subject, 60).await;
        assert_eq!(store.accept(&id, &live, 1, 1 << 24).await, Ok(()));
        assert_eq!(
            store.accept(&id, &live, 1, 1 << 24).await,
            Err(Refusal::Replayed)
        );
        store.end_previous(&id, "alice").await.unwrap();
        let after = store.accept(&id, &live, 2, 1 << 24).await;
        let expected = match subject {
            Some("bob") => Ok(()),
            _ => Err(Refusal::Ended),
        };
        assert_eq!(after, expected, "seed {seed}");
        // The key's slot is its hash tag's: the session id's.
        let key: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("c:{{{id}}}"))
            .query_async(&mut connection)
            .await
            .unwrap();
        let tag: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&id)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(key, tag);
        slots.insert(key);
    }
    // The sessions spread over the cluster (12 random ids in one slot do not happen).
    assert!(slots.len() > 1);
}

#[tokio::test]
#[cfg_attr(not(redis_tests), ignore = "needs Redis: set SIDECAR_TEST_REDIS_URL")]
async fn rediss_verifies_the_server_against_the_ca_file_and_sends_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // A CA and a certificate for 127.0.0.1 that it signed.
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(dir.path().join("san"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san",
    ]);
    let tls_port = identity_launcher::free_port().unwrap().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let _redis = RedisServer::start_with_args(
        dir.path(),
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret-pw",
        ],
    )
    .await
    .unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca_args = ["--session-store-ca-file", ca.as_str()];

    let (served, _) = store(
        &url,
        "tls:",
        &[&ca_args[..], &["--session-store-password", "s3cret-pw"]].concat(),
    );
    let (id, live) = create(&served, 41, Some("alice"), 60).await;
    assert_eq!(served.accept(&id, &live, 1, 1 << 24).await, Ok(()));
    assert_eq!(
        served.accept(&id, &live, 1, 1 << 24).await,
        Err(Refusal::Replayed)
    );

    // A wrong password, or a server the system's roots do not vouch for: nothing stored.
    for more in [
        [&ca_args[..], &["--session-store-password", "wrong"]].concat(),
        vec!["--session-store-password", "s3cret-pw"],
    ] {
        let (refused, _) = store(&url, "tls:", &more);
        let slot = refused.reserve().unwrap();
        let created = refused
            .insert(
                slot,
                new_session_id(),
                session(42, None),
                60,
                unix_now() + 60,
            )
            .await;
        assert_eq!(created, Err(StoreUnavailable), "{more:?}");
    }
}
