//! The batches of the storage hot path (`storage::batch`): calls queued while the database is
//! busy go into one batch, and must come out as if each had run alone. A failing call fails
//! alone; two rotations of one token in one batch give one winner; answers come back to the
//! right callers; an issue whose client changed is refused alone. Writes are held (the SQLite write connection taken, or the PostgreSQL tables
//! locked) while the calls queue, so that they really share a batch, which the write batches'
//! counters (as on /metrics) confirm: a batch statement that failed and ran its calls again one
//! by one would give the same answers, only slower. Also: PostgreSQL
//! connections plan each execution (no generic plan made for nearly empty tables).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use identity_api::storage::Scope;
use std::time::Duration;

use common::{Backend, TestEnv};
use identity_api::Db;
use identity_api::secret::{random_id, sha256};
use identity_api::storage::{
    ClientSeen, FamilyRow, Opened, Pools, RefreshRow, Rotation, StoreError,
};

both!(
    a_failing_call_fails_alone,
    issues_of_a_changed_client_are_refused_alone,
    two_rotations_of_one_token_in_one_batch,
    issues_and_a_rotation_in_one_batch,
    queued_reads_answer_their_own_callers,
);

/// Holds every write until dropped.
enum Hold {
    Sqlite(#[allow(dead_code)] sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(#[allow(dead_code)] sqlx::Transaction<'static, sqlx::Postgres>),
}

async fn hold_writes(db: &Db) -> Hold {
    match db.pools() {
        // The write pool has one connection: the next batch waits for it.
        Pools::Sqlite { write, .. } => Hold::Sqlite(write.acquire().await.unwrap()),
        Pools::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE token_families, refresh_tokens IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            Hold::Postgres(tx)
        }
    }
}

/// Write batches answered, split (failed, run again call by call) and failed, and calls, since
/// `since` (the counters at the start of a test).
fn write_batches(db: &Db, since: [u64; 4]) -> [u64; 4] {
    let c = db.batch_metrics().counts("writes");
    let now = [&c.answered, &c.split, &c.failed, &c.calls].map(|c| c.get());
    std::array::from_fn(|i| now[i] - since[i])
}

/// Long enough for spawned calls to reach the batch task's queue.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Writes held behind a first issue, which the batch task has taken and which waits for the
/// connection: the calls made until [`Held::release`] queue behind it and go into the next
/// batch together.
struct Held {
    hold: Hold,
    first: tokio::task::JoinHandle<Result<Opened, StoreError>>,
}

impl Held {
    async fn release(self) {
        settle().await;
        drop(self.hold);
        assert_eq!(self.first.await.unwrap().unwrap(), Opened::Stored);
    }
}

/// A stored family and its first refresh token's hash, then the writes held.
async fn stored_family_then_held_writes(db: &Db) -> (FamilyRow, [u8; 32], Held) {
    let (family, refresh, hash) = new_family("c1");
    open(db, family.clone(), refresh).await.unwrap();
    let hold = hold_writes(db).await;
    let (blocker, blocker_refresh, _) = new_family("c1");
    let first = {
        let db = db.clone();
        tokio::spawn(async move { open(&db, blocker, blocker_refresh).await })
    };
    settle().await;
    (family, hash, Held { hold, first })
}

/// `Db::create_family` with the family's client as stored (nothing for an unknown client), as
/// an issue that authenticated just now saw it.
async fn open(db: &Db, family: FamilyRow, refresh: RefreshRow) -> Result<Opened, StoreError> {
    let client = db.client(Scope::AnyTenant, &family.client_id).await?;
    let seen = match client {
        Some(c) => ClientSeen {
            verifier: c.secret_verifier,
            scopes: c.scopes,
            audiences: c.audiences,
            grant_types: c.grant_types,
            subject_policy: c.subject_policy,
        },
        None => seen(&[]),
    };
    db.create_family(family, Some(refresh), seen).await
}

/// A client of the test environment as an issue saw it: its grants, and `verifier`.
fn seen(verifier: &[u8]) -> ClientSeen {
    ClientSeen {
        verifier: verifier.to_vec(),
        scopes: "orders.read orders.write".into(),
        audiences: "orders-api".into(),
        grant_types: "client_credentials".into(),
        subject_policy: "any".into(),
    }
}

/// A rotation of `old_hash` (a token of `family`), spawned: its task and the new token's hash.
fn spawn_rotation(
    db: &Db,
    family: &FamilyRow,
    old_hash: [u8; 32],
) -> (
    tokio::task::JoinHandle<Result<Rotation, StoreError>>,
    [u8; 32],
) {
    let (new, new_hash) = new_refresh(&family.family_id);
    let (db, family) = (db.clone(), family.clone());
    let task = tokio::spawn(async move {
        db.rotate_refresh(old_hash, new, identity_api::now(), &family)
            .await
    });
    (task, new_hash)
}

fn new_family(client_id: &str) -> (FamilyRow, RefreshRow, [u8; 32]) {
    let now = identity_api::now();
    let family = FamilyRow {
        family_id: random_id(),
        client_id: client_id.to_owned(),
        subject: "batch-user".to_owned(),
        scope: "orders.read".to_owned(),
        audience: "orders-api".to_owned(),
        created_at: now,
        expires_at: now + 3600,
        last_used_at: now,
        revoked_at: None,
        revoke_reason: None,
        tenant_id: common::primary().clone(),
        roles: None,
    };
    let (refresh, hash) = new_refresh(&family.family_id);
    (family, refresh, hash)
}

fn new_refresh(family_id: &str) -> (RefreshRow, [u8; 32]) {
    let now = identity_api::now();
    let hash = sha256(random_id().as_bytes());
    let refresh = RefreshRow {
        token_hash: hash.to_vec(),
        jti: random_id(),
        family_id: family_id.to_owned(),
        issued_at: now,
        expires_at: now + 600,
        spent: false,
        spent_at: None,
        tenant_id: common::primary().clone(),
    };
    (refresh, hash)
}

/// One issue among eight reuses the id of a stored family (a primary-key violation): it fails,
/// the seven others are stored.
async fn a_failing_call_fails_alone(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let (taken, taken_refresh, _) = new_family("c1");
    let taken_id = taken.family_id.clone();
    open(&db, taken, taken_refresh).await.unwrap();
    let start = write_batches(&db, [0; 4]);
    let hold = hold_writes(&db).await;
    // The first call is taken at once and waits for the connection; the rest queue behind it
    // and go into the next batch together.
    let mut calls = Vec::new();
    for i in 0..9 {
        let (mut family, refresh, hash) = new_family("c1");
        let bad = i == 5;
        if bad {
            family.family_id.clone_from(&taken_id);
        }
        let db = db.clone();
        let family_id = family.family_id.clone();
        let call = tokio::spawn(async move { open(&db, family, refresh).await });
        calls.push((call, family_id, hash, bad));
        if i == 0 {
            settle().await;
        }
    }
    settle().await;
    drop(hold);
    for (call, family_id, hash, bad) in calls {
        let result = call.await.unwrap();
        let stored = db.refresh_token(Scope::AnyTenant, &hash).await.unwrap();
        if bad {
            assert!(result.is_err(), "the bad call must fail: {result:?}");
            assert!(stored.is_none(), "nothing of the bad call is stored");
        } else {
            assert_eq!(result.unwrap(), Opened::Stored);
            assert_eq!(stored.unwrap().family.family_id, family_id);
        }
    }
    // The first call alone, then one batch of eight, split because of the bad call.
    assert_eq!(write_batches(&db, start), [1, 1, 0, 9]);
}

/// Issues in one batch whose client was disabled, whose secret was rotated after they
/// authenticated (they carry the old verifier), whose client's grants are no longer those they
/// were judged by, or which name no client: each is refused and stores nothing (no family, no
/// refresh token, no audit row); the good issues and a rotation beside them are stored, and the
/// batch is answered as a whole, not split.
async fn issues_of_a_changed_client_are_refused_alone(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let old_c2 = db
        .client(Scope::AnyTenant, "c2")
        .await
        .unwrap()
        .unwrap()
        .secret_verifier;
    identity_api::clients::set_enabled(&db, Scope::AnyTenant, "c2", false, &common::operator())
        .await
        .unwrap();
    let old_c1 = db
        .client(Scope::AnyTenant, "c1")
        .await
        .unwrap()
        .unwrap()
        .secret_verifier;
    identity_api::clients::rotate_secret(
        &db,
        env.state.verifier_key(),
        Scope::AnyTenant,
        "c1",
        None,
        &common::operator(),
        identity_api::now(),
    )
    .await
    .unwrap();
    let new_c1 = db
        .client(Scope::AnyTenant, "c1")
        .await
        .unwrap()
        .unwrap()
        .secret_verifier;
    let narrower = ClientSeen {
        scopes: "orders.read".into(),
        ..seen(&new_c1)
    };
    let start = write_batches(&db, [0; 4]);
    let (fam, old_hash, held) = stored_family_then_held_writes(&db).await;
    let cases: [(&str, Option<ClientSeen>, Opened); 7] = [
        ("c1", None, Opened::Stored),
        ("c1", Some(seen(&old_c1)), Opened::ClientChanged),
        ("c2", Some(seen(&old_c2)), Opened::ClientChanged),
        ("multi", None, Opened::Stored),
        (
            "no-such-client",
            Some(seen(&[7; 32])),
            Opened::ClientChanged,
        ),
        ("c1", Some(narrower), Opened::ClientChanged),
        ("c1", None, Opened::Stored),
    ];
    let mut calls = Vec::new();
    for (client, seen, expected) in cases {
        let (family, refresh, hash) = new_family(client);
        let family_id = family.family_id.clone();
        let db = db.clone();
        let call = tokio::spawn(async move {
            match seen {
                Some(seen) => db.create_family(family, Some(refresh), seen).await,
                None => open(&db, family, refresh).await,
            }
        });
        calls.push((call, family_id, hash, expected));
    }
    let (rotation, new_hash) = spawn_rotation(&db, &fam, old_hash);
    held.release().await;
    let mut answered = Vec::new();
    for (call, family_id, hash, expected) in calls {
        assert_eq!(call.await.unwrap().unwrap(), expected, "{family_id}");
        answered.push((family_id, hash, expected));
    }
    assert_eq!(rotation.await.unwrap().unwrap(), Rotation::Rotated);
    assert!(
        db.refresh_token(Scope::AnyTenant, &new_hash)
            .await
            .unwrap()
            .is_some()
    );
    let events = db.audit_events(100).await.unwrap();
    for (family_id, hash, expected) in answered {
        let stored = expected == Opened::Stored;
        assert_eq!(
            db.family(common::primary(), &family_id)
                .await
                .unwrap()
                .is_some(),
            stored
        );
        assert_eq!(
            db.refresh_token(Scope::AnyTenant, &hash)
                .await
                .unwrap()
                .is_some(),
            stored
        );
        let audited = events
            .iter()
            .any(|e| e.0 == "issue" && e.2.as_deref() == Some(family_id.as_str()));
        assert_eq!(audited, stored, "{events:?}");
    }
    // The stored family, the first held call, then the seven issues and the rotation in one
    // batch, answered.
    assert_eq!(write_batches(&db, start), [3, 0, 0, 10]);
}

/// Two refreshes presenting the same token land in one batch: the first wins, the second is
/// reuse (`Lost`), and only the winner's new token is stored.
async fn two_rotations_of_one_token_in_one_batch(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let start = write_batches(&db, [0; 4]);
    let (fam, old_hash, held) = stored_family_then_held_writes(&db).await;
    let mut rotations = Vec::new();
    let mut new_hashes = Vec::new();
    for _ in 0..2 {
        let (rotation, new_hash) = spawn_rotation(&db, &fam, old_hash);
        new_hashes.push(new_hash);
        rotations.push(rotation);
        // In order: the first queued is the first of the batch.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.release().await;
    let mut outcomes = Vec::new();
    for r in rotations {
        outcomes.push(r.await.unwrap().unwrap());
    }
    assert_eq!(outcomes, [Rotation::Rotated, Rotation::Lost]);
    let winner = db
        .refresh_token(Scope::AnyTenant, &new_hashes[0])
        .await
        .unwrap();
    assert!(
        winner.is_some_and(|v| !v.token.spent),
        "the winner's token is stored"
    );
    assert!(
        db.refresh_token(Scope::AnyTenant, &new_hashes[1])
            .await
            .unwrap()
            .is_none(),
        "the loser's token is not"
    );
    assert!(
        db.refresh_token(Scope::AnyTenant, &old_hash)
            .await
            .unwrap()
            .unwrap()
            .token
            .spent
    );
    // The stored family, the first held call, then both rotations in one batch, not split.
    assert_eq!(write_batches(&db, start), [3, 0, 0, 4]);
}

/// Issues and a rotation land in one batch: on PostgreSQL the spend, then one statement that
/// inserts the new families and the refresh tokens that refer to them (checked at its end),
/// the rotation's token and the audit rows. Everything is stored as if each had run alone.
async fn issues_and_a_rotation_in_one_batch(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let start = write_batches(&db, [0; 4]);
    let (fam, old_hash, held) = stored_family_then_held_writes(&db).await;
    let mut issues = Vec::new();
    let mut issued = Vec::new();
    for _ in 0..3 {
        let (family, refresh, hash) = new_family("c1");
        issued.push((family.family_id.clone(), hash));
        let db = db.clone();
        issues.push(tokio::spawn(
            async move { open(&db, family, refresh).await },
        ));
    }
    let (rotation, new_hash) = spawn_rotation(&db, &fam, old_hash);
    held.release().await;
    for issue in issues {
        assert_eq!(issue.await.unwrap().unwrap(), Opened::Stored);
    }
    assert_eq!(rotation.await.unwrap().unwrap(), Rotation::Rotated);
    for (family_id, hash) in &issued {
        assert_eq!(
            db.family_revoked(common::primary(), family_id)
                .await
                .unwrap(),
            Some(false)
        );
        let view = db
            .refresh_token(Scope::AnyTenant, hash)
            .await
            .unwrap()
            .expect("issued token stored");
        assert!(!view.token.spent);
        assert_eq!(view.family.family_id, *family_id);
    }
    assert!(
        db.refresh_token(Scope::AnyTenant, &old_hash)
            .await
            .unwrap()
            .unwrap()
            .token
            .spent
    );
    let rotated = db
        .refresh_token(Scope::AnyTenant, &new_hash)
        .await
        .unwrap()
        .expect("rotated token stored");
    assert!(!rotated.token.spent);
    // The stored family, the first held call, then the three issues and the rotation in one
    // batch, which did not fail (a failed one would be run again call by call, to the same end).
    assert_eq!(write_batches(&db, start), [3, 0, 0, 6]);
}

/// Many concurrent lookups of different families and clients, some unknown: each caller gets
/// the answer for its own key.
async fn queued_reads_answer_their_own_callers(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let mut known = Vec::new();
    for _ in 0..20 {
        let (family, refresh, hash) = new_family("c1");
        known.push((family.family_id.clone(), hash));
        open(&db, family, refresh).await.unwrap();
    }
    let mut calls = Vec::new();
    for round in 0..3 {
        for (i, (family_id, hash)) in known.iter().enumerate() {
            let db = db.clone();
            let (family_id, hash) = (family_id.clone(), *hash);
            let unknown = (i + round) % 3 == 0;
            calls.push(tokio::spawn(async move {
                let id = if unknown {
                    random_id()
                } else {
                    family_id.clone()
                };
                let state = db.family_revoked(common::primary(), &id).await.unwrap();
                assert_eq!(state, (!unknown).then_some(false), "family {id}");
                let key = if unknown { sha256(b"unknown") } else { hash };
                let view = db.refresh_token(Scope::AnyTenant, &key).await.unwrap();
                assert_eq!(
                    view.map(|v| v.family.family_id),
                    (!unknown).then_some(family_id)
                );
                let client = if unknown { "nobody" } else { "c2" };
                let row = db.client(Scope::AnyTenant, client).await.unwrap();
                assert_eq!(
                    row.map(|r| r.client_id),
                    (!unknown).then(|| "c2".to_owned())
                );
            }));
        }
    }
    for call in calls {
        call.await.unwrap();
    }
}

/// Every PostgreSQL connection plans each execution (a generic plan made while the tables were
/// nearly empty would go on scanning them as they grow), and runs at READ COMMITTED even when
/// the server or the URL asks for another (here SERIALIZABLE) (`client disable` relies on it, see
/// `Db::create_family`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set IDENTITY_TEST_POSTGRES_URL"
)]
async fn postgres_connections_plan_each_execution_at_read_committed() {
    let Some(env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    let url = format!(
        "{}&options[default_transaction_isolation]=serializable",
        env.url
    );
    let db = Db::connect(&url).await.unwrap();
    let Pools::Postgres(pool) = db.pools() else {
        panic!("postgres")
    };
    for _ in 0..3 {
        let mut conn = pool.acquire().await.unwrap();
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "force_custom_plan");
        let level: String = sqlx::query_scalar("SHOW transaction_isolation")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(level, "read committed");
    }
    db.close().await;
}
