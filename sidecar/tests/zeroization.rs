//! Mechanical proof that session material is wiped (issue 7, PROTOCOL.md section 1: "Both sides
//! MUST zeroize Z, OKM, the ephemeral private keys and the session keys").
//!
//! The test drives full session lifecycles against the real sidecar in-process (anonymous init,
//! encrypted requests, expiry by the sweep, an authenticated init that ends the previous session,
//! shutdown with a session still live), as the client with known ephemeral private keys, so that
//! it can compute each session's Z, OKM, k_c2s and k_s2c itself. It keeps them only masked
//! (secret XOR a random mask), drops everything, and then reads the process's own memory
//! (/proc/self/maps, /proc/self/mem: plain file I/O) looking for any of them, comparing each
//! window XOR the mask against the masked copy, so that the plain secret never exists in the
//! test's own memory. Finding one fails the test.
//!
//! What it scans: every readable and writable mapping (heap arenas, anonymous mappings, .data and
//! .bss, the stacks of live threads) except the stack of the thread that ran the lifecycle, if
//! glibc's stack cache kept it mapped after that thread exited (it is given a 64 MiB stack, which
//! is over the cache's 40 MiB limit, so glibc unmaps it and nothing is excluded in practice).
//!
//! What it cannot see:
//! - registers;
//! - the dead lifecycle thread's stack if it is still mapped (excluded and reported, not failed:
//!   moves inside aes, hkdf and p256 leave stack copies, see docs/crypto-audit.md), and dead
//!   frames on the stacks of threads that are still alive (none of them handled keys here; in
//!   the sidecar proper, the tokio workers that seal and open each message do: unverified);
//! - pages the allocator handed back to the kernel (trimmed or munmapped: gone, so not a leak, but
//!   a leak there would be missed). The test first frees a 30 MiB block, which raises glibc's
//!   dynamic mmap and trim thresholds, so that freed memory stays in the heap where it is read;
//! - a copy freed without zeroize and overwritten by a later allocation before the scan (it
//!   existed for a while);
//! - copies inside the kernel (socket buffers) or in other processes;
//! - the server's ephemeral private key, and the AES round keys and GHASH key derived from the
//!   session keys, whose values the client cannot know. With AES-NI the key schedule starts with
//!   the raw key, which is searched (the positive control checks that it is found while live).
//!
//! The positive controls below prove that the scanner finds a copy left alive or freed without
//! zeroize, so the test cannot rot into one that passes because it reads nothing.
//!
//! Decrypted bodies are not session keys: the test also counts copies of a random marker sent in
//! every request plaintext and prints them, without failing (the client's and the stub identity
//! API's hyper and reqwest buffers are not wiped; see docs/crypto-audit.md).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a panic here is a failed test

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ALICE_TOKEN, Sidecar, Stub, http};
use identity_client::{Client, ClientError};
use identity_protocol::handshake::ClientHandshake;
use identity_protocol::keys::{Okm, hkdf_info, hkdf_salt};
use identity_protocol::{
    EphemeralSecret, ErrorCode, InitAnswer, PublicKey, SessionKeys, TrustedKeys, headers, paths,
};
use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

/// The tests of this binary scan the whole process: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Bigger than glibc's 40 MiB thread-stack cache: the stack is unmapped when the thread is joined.
const LIFECYCLE_STACK: usize = 64 << 20;

// ---------------------------------------------------------------------------------------------
// Masked secrets.

/// A secret kept only as `secret XOR mask`. The plain value is never rebuilt: windows of memory
/// are compared by XOR-ing them with the mask on the fly.
struct Masked {
    name: String,
    mask: Vec<u8>,
    masked: Vec<u8>,
}

impl Masked {
    fn new(name: impl Into<String>, secret: &[u8]) -> Self {
        let mut mask = vec![0u8; secret.len()];
        OsRng.fill_bytes(&mut mask);
        let masked = secret.iter().zip(&mask).map(|(s, m)| s ^ m).collect();
        Self {
            name: name.into(),
            mask,
            masked,
        }
    }

    /// The secret's bytes `range`, as a secret of its own.
    fn part(&self, range: Range<usize>) -> Self {
        Self {
            name: format!("{} (bytes {}..{})", self.name, range.start, range.end),
            mask: self.mask[range.clone()].to_vec(),
            masked: self.masked[range].to_vec(),
        }
    }

    /// Does `window` (at least as long as the secret) start with the secret?
    fn matches(&self, window: &[u8]) -> bool {
        // The first byte filters almost every position; the rest is compared only then.
        window[0] ^ self.mask[0] == self.masked[0]
            && window[1..self.masked.len()]
                .iter()
                .zip(&self.mask[1..])
                .zip(&self.masked[1..])
                .all(|((w, m), x)| w ^ m == *x)
    }
}

/// Each secret, and each 16-byte half of a 32-byte one: when the allocator frees a small block it
/// writes its list pointers over the block's first 16 bytes, so a key freed unwiped at the start
/// of a block survives only as its second half (and one at the end of a block that the allocator
/// merges may keep only its first). Halves also catch a copy carried off in part: the client's
/// scalar, left on the stack by the scalar multiplication, once reached the heap in the padding
/// of an HTTP header bucket written from the stack, until the protocol scrubbed those frames.
fn with_halves(secrets: Vec<Masked>) -> Vec<Masked> {
    let mut all = Vec::with_capacity(secrets.len() * 3);
    for secret in secrets {
        if secret.masked.len() >= 32 {
            all.push(secret.part(0..16));
            all.push(secret.part(16..32));
        }
        all.push(secret);
    }
    all
}

/// Everything of one session the scan looks for.
fn session_secrets(
    label: &str,
    client_scalar: &[u8; 32],
    client_public: &PublicKey,
    answer: &InitAnswer,
) -> Vec<Masked> {
    let server_public = PublicKey::from_b64u("server_public_key", &answer.server_public_key)
        .expect("the sidecar's public key");
    let secret = p256::SecretKey::from_slice(client_scalar).expect("a P-256 scalar");
    let server_point = p256::PublicKey::from_sec1_bytes(server_public.as_bytes()).unwrap();
    let z = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), server_point.as_affine());
    let okm = Okm::derive(
        z.raw_secret_bytes(),
        &hkdf_salt(client_public, &server_public),
        &hkdf_info(&answer.session_id),
    );
    let mut scalar_le = Zeroizing::new(*client_scalar);
    scalar_le.reverse();
    let secrets = vec![
        Masked::new(
            format!("{label}: client ephemeral scalar (big-endian)"),
            client_scalar,
        ),
        Masked::new(
            format!("{label}: client ephemeral scalar (little-endian limbs)"),
            scalar_le.as_ref(),
        ),
        Masked::new(format!("{label}: Z"), z.raw_secret_bytes()),
        Masked::new(format!("{label}: k_c2s (OKM[0..32])"), okm.k_c2s()),
        Masked::new(format!("{label}: k_s2c (OKM[32..64])"), okm.k_s2c()),
    ];
    with_halves(secrets)
    // `secret`, `z`, `okm` and `scalar_le` are wiped here, on drop.
}

// ---------------------------------------------------------------------------------------------
// The scanner.

struct Mapping {
    range: Range<usize>,
    perms: String,
    name: String,
}

fn mappings() -> Vec<Mapping> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?.to_owned();
            let name = fields.nth(3).unwrap_or("").to_owned();
            Some(Mapping {
                range: usize::from_str_radix(start, 16).ok()?
                    ..usize::from_str_radix(end, 16).ok()?,
                perms,
                name,
            })
        })
        .collect()
}

/// One place a secret was found.
#[derive(Debug)]
struct Hit {
    secret: String,
    address: usize,
    mapping: String,
}

#[derive(Debug, Default)]
struct Scan {
    hits: Vec<Hit>,
    /// Hits inside `excluded` ranges: reported, not counted.
    excluded_hits: Vec<Hit>,
    bytes: usize,
    regions: usize,
    unreadable: usize,
}

impl Scan {
    fn count(&self, prefix: &str) -> usize {
        self.hits
            .iter()
            .filter(|h| h.secret.starts_with(prefix))
            .count()
    }
}

/// Reads every readable and writable mapping through /proc/self/mem and looks for `secrets`.
/// Regions that fail to read (guard pages, [vvar]) are skipped and counted.
fn scan(secrets: &[&Masked], excluded: &[Range<usize>]) -> Scan {
    const CHUNK: usize = 1 << 20;
    let longest = secrets.iter().map(|s| s.masked.len()).max().unwrap_or(1);
    let mut mem = File::open("/proc/self/mem").expect("/proc/self/mem");
    let mut buffer = vec![0u8; CHUNK + longest];
    // Which secrets can start at a byte: one byte of each secret in the clear, too little to
    // match anything, so that each window is compared only with the secrets it could start.
    let mut by_first_byte: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for (i, secret) in secrets.iter().enumerate() {
        by_first_byte[usize::from(secret.masked[0] ^ secret.mask[0])].push(i);
    }
    let mut result = Scan::default();
    for mapping in mappings() {
        if !mapping.perms.starts_with("rw") {
            continue;
        }
        let is_excluded = excluded
            .iter()
            .any(|r| r.start < mapping.range.end && mapping.range.start < r.end);
        let label = format!(
            "{:#x}-{:#x} {} {}",
            mapping.range.start, mapping.range.end, mapping.perms, mapping.name
        );
        result.regions += 1;
        // Chunks overlap by `longest - 1` bytes so that no window is cut in two.
        let mut at = mapping.range.start;
        while at < mapping.range.end {
            let len = (mapping.range.end - at).min(CHUNK + longest - 1);
            let read = mem
                .seek(SeekFrom::Start(at as u64))
                .and_then(|_| mem.read_exact(&mut buffer[..len]));
            if read.is_err() {
                result.unreadable += 1;
                break;
            }
            result.bytes += len;
            let data = &buffer[..len];
            let last = at + len == mapping.range.end;
            // Windows starting in the overlap are scanned with the next chunk, except at the end.
            let starts = if last { len } else { len - (longest - 1) };
            for offset in 0..starts {
                let window = &data[offset..];
                for &i in &by_first_byte[usize::from(window[0])] {
                    let secret = secrets[i];
                    if window.len() >= secret.masked.len() && secret.matches(window) {
                        let hit = Hit {
                            secret: secret.name.clone(),
                            address: at + offset,
                            mapping: label.clone(),
                        };
                        if is_excluded {
                            result.excluded_hits.push(hit);
                        } else {
                            result.hits.push(hit);
                        }
                    }
                }
            }
            if last {
                break;
            }
            at += starts;
        }
    }
    // The buffer holds copies of whatever was read last.
    buffer.zeroize();
    result
}

/// The mapping that holds the calling thread's stack (found by the address of a local).
fn current_stack() -> Range<usize> {
    let local = 0u8;
    let address = std::ptr::from_ref(&local) as usize;
    mappings()
        .into_iter()
        .find(|m| m.range.contains(&address))
        .map(|m| m.range)
        .expect("the stack is mapped")
}

/// glibc raises its trim threshold to twice, and its mmap threshold to, the size of a freed
/// mmapped block (up to 32 MiB). After this, freed memory stays in the heap, where a leak would
/// be visible, instead of being handed back to the kernel.
fn keep_freed_memory_in_the_heap() {
    drop(std::hint::black_box(vec![1u8; 30 << 20]));
}

/// Runs `work` on a fresh thread with a stack too big for glibc's stack cache, and returns what
/// it returned plus that thread's stack range.
fn on_own_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> (T, Range<usize>) {
    std::thread::Builder::new()
        .name("lifecycle".into())
        .stack_size(LIFECYCLE_STACK)
        .spawn(move || {
            let stack = current_stack();
            (work(), stack)
        })
        .unwrap()
        .join()
        .unwrap()
}

/// After the thread has exited: its stack, if it is still mapped (only then is it excluded).
fn still_mapped(stack: &Range<usize>) -> Option<Range<usize>> {
    mappings()
        .into_iter()
        .find(|m| m.range == *stack)
        .map(|m| m.range)
}

fn report(what: &str, scan: &Scan, stack_excluded: bool) {
    eprintln!(
        "{what}: scanned {} rw regions, {} MiB, {} unreadable; lifecycle stack {}",
        scan.regions,
        scan.bytes >> 20,
        scan.unreadable,
        if stack_excluded {
            "still mapped: excluded"
        } else {
            "unmapped"
        }
    );
    for hit in &scan.hits {
        eprintln!(
            "  found {} at {:#x} in {}",
            hit.secret, hit.address, hit.mapping
        );
    }
    for hit in &scan.excluded_hits {
        eprintln!(
            "  (excluded) {} at {:#x} in {}",
            hit.secret, hit.address, hit.mapping
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The lifecycle.

/// A client session whose ephemeral key the test chose, so that it knows (masked) the session's
/// secrets. `authenticated`: (access token, subject, previous session).
async fn init(
    trusted: &TrustedKeys,
    sidecar: &Sidecar,
    label: &str,
    authenticated: Option<(&str, &str, &str)>,
) -> (identity_protocol::ClientSession, Vec<Masked>) {
    let mut scalar = Zeroizing::new([0u8; 32]);
    let secret = loop {
        OsRng.fill_bytes(scalar.as_mut());
        if let Ok(secret) = EphemeralSecret::from_be_bytes(&scalar) {
            break secret;
        }
    };
    let client_public = secret.public_key().clone();
    let handshake = ClientHandshake::with_secret(secret);
    let mut request = http()
        .post(sidecar.endpoint(paths::SESSION_INIT))
        .json(&handshake.request());
    if let Some((token, subject, previous)) = authenticated {
        request = request
            .header("authorization", format!("Bearer {token}"))
            .header(headers::SUBJECT, subject)
            .header(headers::SESSION_ID, previous);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer: InitAnswer = answer.json().await.unwrap();
    // The test's own ECDH and HKDF are not scrubbed: on this thread they would leave the secrets
    // in dead frames that later reach the heap, and the scan would find the test's copies. A
    // thread of its own, whose stack is unmapped at join, takes them away.
    let masked = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(LIFECYCLE_STACK)
            .spawn_scoped(scope, || {
                session_secrets(label, &scalar, &client_public, &answer)
            })
            .unwrap()
            .join()
            .unwrap()
    });
    drop(scalar);
    let session = handshake
        .finish(&answer, trusted, authenticated.map(|(_, s, _)| s))
        .unwrap();
    (session, masked)
}

async fn request(client: &Client, session: &identity_protocol::ClientSession, marker: &str) {
    let body = format!(r#"{{"subject":"test-user","marker":"{marker}"}}"#);
    let answer = client
        .send(
            session,
            paths::TOKEN_ISSUE,
            Some("Basic Yzp4"),
            body.as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

async fn refused_as_ended(client: &Client, session: &identity_protocol::ClientSession) {
    let err = client
        .send(session, paths::TOKEN_ISSUE, None, b"{}")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Sidecar { .. } if err.code() == Some(ErrorCode::InvalidSession)),
        "{err}"
    );
}

/// Init, requests, expiry by the sweep; an anonymous session ended by an authenticated init
/// naming it; shutdown with that authenticated session live. Returns the masked secrets.
async fn lifecycle(marker: String) -> Vec<Masked> {
    let stub = Stub::start().await;
    let sidecar = Sidecar::start_with(&stub.url, |config| {
        config.anonymous_ttl_secs = 1;
        config.sweep_interval_ms = 20;
    })
    .await;
    let client = Client::with_http(http(), &sidecar.url, Some(&sidecar.public_key))
        .await
        .unwrap();
    let trusted = TrustedKeys::pinned(&sidecar.public_key).unwrap();
    let mut secrets = Vec::new();

    // 1. Anonymous: init, three requests, then it expires and the sweep drops it.
    let (expiring, masked) = init(&trusted, &sidecar, "expired session", None).await;
    secrets.extend(masked);
    for _ in 0..3 {
        request(&client, &expiring, &marker).await;
    }
    let swept = common::eventually(200, || sidecar.state.sessions.is_empty()).await;
    assert!(swept, "the expired session is swept");
    refused_as_ended(&client, &expiring).await;
    drop(expiring);

    // 2. Anonymous, two requests, then ended by an authenticated init that names it.
    let (replaced, masked) = init(&trusted, &sidecar, "replaced session", None).await;
    secrets.extend(masked);
    request(&client, &replaced, &marker).await;
    request(&client, &replaced, &marker).await;
    let previous = replaced.id().to_owned();
    let (live, masked) = init(
        &trusted,
        &sidecar,
        "authenticated session",
        Some((ALICE_TOKEN, "alice", &previous)),
    )
    .await;
    secrets.extend(masked);
    refused_as_ended(&client, &replaced).await;
    drop(replaced);

    // 3. Authenticated: two requests, then the sidecar shuts down with the session live.
    request(&client, &live, &marker).await;
    request(&client, &live, &marker).await;
    assert_eq!(sidecar.state.sessions.len(), 1);
    drop(live);
    drop(client);
    sidecar.shutdown().await;
    drop(stub);
    secrets
}

fn run_lifecycle(marker: String) -> Vec<Masked> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let secrets = runtime.block_on(lifecycle(marker));
    // Every task (server, sweep, stub, connection pools) and the blocking pool end here.
    drop(runtime);
    secrets
}

fn random_marker() -> Zeroizing<String> {
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    Zeroizing::new(identity_protocol::b64::encode(&bytes))
}

#[test]
fn no_session_secret_survives_the_session() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    keep_freed_memory_in_the_heap();
    let marker = random_marker();
    let marker_masked = Masked::new("request plaintext marker", marker.as_bytes());
    let marker_plain = marker.to_string();
    drop(marker);
    let (secrets, stack) = on_own_thread(move || run_lifecycle(marker_plain));
    assert_eq!(
        secrets.len(),
        45,
        "five secrets of 32 bytes and their two halves each, for each of three sessions"
    );

    let excluded: Vec<_> = still_mapped(&stack).into_iter().collect();
    let mut all: Vec<&Masked> = secrets.iter().collect();
    all.push(&marker_masked);
    let scan = scan(&all, &excluded);
    report("after the lifecycle", &scan, !excluded.is_empty());
    assert!(scan.bytes > 0 && scan.regions > 0, "the scan read memory");

    // Decrypted bodies are not wiped everywhere (hyper, reqwest, serde buffers): informational.
    eprintln!(
        "informational: {} copies of the request plaintext marker remain",
        scan.count("request plaintext marker")
    );
    let leaked: Vec<_> = scan
        .hits
        .iter()
        .filter(|h| !h.secret.starts_with("request plaintext marker"))
        .collect();
    assert!(
        leaked.is_empty(),
        "session secrets survived the session: {leaked:#?}"
    );
}

/// Positive control: the same derivation and masking, then a copy of k_c2s kept alive in a `Vec`
/// and a copy of k_s2c freed without zeroize. The scanner must find both; if it ever does not,
/// the test above proves nothing.
#[test]
fn the_scanner_finds_a_copy_left_unwiped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    keep_freed_memory_in_the_heap();
    // The thread stays alive, idle, through the scan: were it to exit, glibc would hand what it
    // freed to its arena, where another thread may reuse it. After the small block is freed it
    // allocates nothing (no channel, no lock: atomics and sleeps), so nothing takes it over.
    let freed = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let (sent, received) = std::sync::mpsc::channel();
    let thread = {
        let (freed, release) = (freed.clone(), release.clone());
        std::thread::spawn(move || {
            let stack = current_stack();
            let mut z = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(z.as_mut());
            let okm = Okm::derive(z.as_ref(), b"salt", &hkdf_info("control"));
            let mut secrets = vec![
                Masked::new("control: k_c2s kept alive", okm.k_c2s()),
                Masked::new("control: k_s2c freed without zeroize", okm.k_s2c()),
                Masked::new("control: Z (wiped)", z.as_ref()),
            ];
            drop(z);
            // Session keys, the real type: one set kept alive, one dropped.
            let (live_okm, dropped_okm) = (random_okm(), random_okm());
            secrets.push(Masked::new(
                "control: live SessionKeys' k_c2s",
                live_okm.k_c2s(),
            ));
            secrets.push(Masked::new(
                "control: dropped SessionKeys' k_c2s",
                dropped_okm.k_c2s(),
            ));
            secrets.push(Masked::new(
                "control: dropped SessionKeys' k_s2c",
                dropped_okm.k_s2c(),
            ));
            let live = SessionKeys::from_okm(&live_okm);
            drop(std::hint::black_box(SessionKeys::from_okm(&dropped_okm)));
            let small = random_okm();
            secrets.push(Masked::new(
                "control: small Box freed without zeroize",
                small.k_c2s(),
            ));
            // The deliberate leaks: a copy kept, and a copy near the end of a freed block.
            let kept = okm.k_c2s().to_vec();
            let mut freed_block = vec![0u8; 64 << 10];
            freed_block[60 << 10..(60 << 10) + 32].copy_from_slice(okm.k_s2c());
            drop(std::hint::black_box(freed_block));
            sent.send((with_halves(secrets), stack)).unwrap();
            // A key at the start of a freed block: freeing it overwrites its first 16 bytes (the
            // allocator's list pointers). An uncommon size, small enough for glibc's per-thread
            // cache and fast bins, which never merge a freed block into its neighbours (a
            // 232-byte box was merged away). Last: nothing of this thread allocates after it.
            let mut boxed = Box::new([0u8; 104]);
            boxed[..32].copy_from_slice(small.k_c2s());
            drop(std::hint::black_box(boxed));
            freed.store(true, Ordering::Release);
            while !release.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            (kept, live)
        })
    };
    let (secrets, stack) = received.recv().unwrap();
    for _ in 0..10_000 {
        if freed.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        freed.load(Ordering::Acquire),
        "the control thread did not finish"
    );
    // Its stack is mapped while it waits: excluded.
    let all: Vec<&Masked> = secrets.iter().collect();
    let scan = scan(&all, &[stack]);
    release.store(true, Ordering::Release);
    let (mut kept, live) = thread.join().unwrap();
    report("positive control", &scan, true);
    assert!(
        scan.count("control: k_c2s kept alive") >= 1,
        "the scanner misses a live copy"
    );
    assert!(
        scan.count("control: k_s2c freed without zeroize") >= 1,
        "the scanner misses a freed, unwiped copy"
    );
    assert!(
        scan.count("control: small Box freed without zeroize") >= 1,
        "the scanner misses a small block freed unwiped (its second half survives)"
    );
    assert_eq!(scan.count("control: Z (wiped)"), 0, "Z was wiped");
    // The AES-NI key schedule begins with the raw key; the bitsliced software one does not.
    if std::arch::is_x86_feature_detected!("aes") {
        assert!(
            scan.count("control: live SessionKeys' k_c2s") >= 1,
            "the scanner misses the key inside a live AES-256-GCM key schedule"
        );
    }
    assert_eq!(scan.count("control: dropped SessionKeys"), 0);
    drop(live);
    kept.zeroize();
}

fn random_okm() -> Okm {
    let mut z = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(z.as_mut());
    Okm::derive(z.as_ref(), b"salt", &hkdf_info("control"))
}

/// The scan itself works on a known buffer and never matches the masked copy or the mask.
#[test]
fn masked_matching() {
    let secret = [7u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    let masked = Masked::new("s", &secret);
    let mut window = [0u8; 20];
    window[..16].copy_from_slice(&secret);
    assert!(masked.matches(&window));
    window[15] ^= 1;
    assert!(!masked.matches(&window));
    assert!(!masked.matches(&masked.masked));
    assert!(!masked.matches(&masked.mask));
}
