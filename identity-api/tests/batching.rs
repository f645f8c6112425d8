//! The batches of the storage hot path (`storage::batch`): calls queued while the database is
//! busy go into one batch, and must come out as if each had run alone. A failing call fails
//! alone; two rotations of one token in one batch give one winner; answers come back to the
//! right callers. Writes are held (the SQLite write connection taken, or the PostgreSQL tables
//! locked) while the calls queue, so that they really share a batch, which the write batches'
//! counters (as on /metrics) confirm: a batch statement that failed and ran its calls again one
//! by one would give the same answers, only slower. Also: PostgreSQL
//! connections plan each execution (no generic plan made for nearly empty tables).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Backend, TestEnv};
use identity_api::Db;
use identity_api::secret::{random_id, sha256};
use identity_api::storage::{FamilyRow, NewRefresh, Pools, Rotation, StoreError};

both!(
    a_failing_call_fails_alone,
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
    first: tokio::task::JoinHandle<Result<(), StoreError>>,
}

impl Held {
    async fn release(self) {
        settle().await;
        drop(self.hold);
        self.first.await.unwrap().unwrap();
    }
}

/// A stored family and its first refresh token's hash, then the writes held.
async fn stored_family_then_held_writes(db: &Db) -> (FamilyRow, [u8; 32], Held) {
    let (family, refresh, hash) = new_family("c1");
    db.create_family(family.clone(), refresh).await.unwrap();
    let hold = hold_writes(db).await;
    let (blocker, blocker_refresh, _) = new_family("c1");
    let first = {
        let db = db.clone();
        tokio::spawn(async move { db.create_family(blocker, blocker_refresh).await })
    };
    settle().await;
    (family, hash, Held { hold, first })
}

fn new_family(client_id: &str) -> (FamilyRow, NewRefresh, [u8; 32]) {
    let now = identity_api::now();
    let family = FamilyRow {
        family_id: random_id(),
        client_id: client_id.to_owned(),
        subject: "batch-user".to_owned(),
        scope: "orders.read".to_owned(),
        audience: "orders-api".to_owned(),
        created_at: now,
        expires_at: now + 3600,
        revoked_at: None,
    };
    let (refresh, hash) = new_refresh(&family.family_id);
    (family, refresh, hash)
}

fn new_refresh(family_id: &str) -> (NewRefresh, [u8; 32]) {
    let now = identity_api::now();
    let hash = sha256(random_id().as_bytes());
    let refresh = NewRefresh {
        token_hash: hash,
        jti: random_id(),
        family_id: family_id.to_owned(),
        issued_at: now,
        expires_at: now + 600,
    };
    (refresh, hash)
}

/// One issue among eight names a client that does not exist (a foreign-key violation): it
/// fails, the seven others are stored.
async fn a_failing_call_fails_alone(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let start = write_batches(&db, [0; 4]);
    let hold = hold_writes(&db).await;
    // The first call is taken at once and waits for the connection; the rest queue behind it
    // and go into the next batch together.
    let mut calls = Vec::new();
    let mut families = Vec::new();
    for i in 0..9 {
        let client = if i == 5 { "no-such-client" } else { "c1" };
        let (family, refresh, _) = new_family(client);
        families.push((family.family_id.clone(), client));
        let db = db.clone();
        calls.push(tokio::spawn(async move {
            db.create_family(family, refresh).await
        }));
        if i == 0 {
            settle().await;
        }
    }
    settle().await;
    drop(hold);
    for (call, (family_id, client)) in calls.into_iter().zip(&families) {
        let result = call.await.unwrap();
        let stored = db.family_revoked(family_id).await.unwrap();
        if *client == "c1" {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(stored, Some(false), "family of a good call is stored");
        } else {
            assert!(result.is_err(), "the bad call must fail");
            assert_eq!(stored, None, "nothing of the bad call is stored");
        }
    }
    // The first call alone, then one batch of eight, split because of the bad call.
    assert_eq!(write_batches(&db, start), [1, 1, 0, 9]);
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
        let (new, new_hash) = new_refresh(&fam.family_id);
        new_hashes.push(new_hash);
        let (db, fam) = (db.clone(), fam.clone());
        rotations.push(tokio::spawn(async move {
            db.rotate_refresh(old_hash, new, identity_api::now(), &fam)
                .await
        }));
        // In order: the first queued is the first of the batch.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.release().await;
    let mut outcomes = Vec::new();
    for r in rotations {
        outcomes.push(r.await.unwrap().unwrap());
    }
    assert_eq!(outcomes, [Rotation::Rotated, Rotation::Lost]);
    let winner = db.refresh_token(&new_hashes[0]).await.unwrap();
    assert!(
        winner.is_some_and(|v| !v.spent),
        "the winner's token is stored"
    );
    assert!(
        db.refresh_token(&new_hashes[1]).await.unwrap().is_none(),
        "the loser's token is not"
    );
    assert!(db.refresh_token(&old_hash).await.unwrap().unwrap().spent);
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
        issues.push(tokio::spawn(async move {
            db.create_family(family, refresh).await
        }));
    }
    let (new, new_hash) = new_refresh(&fam.family_id);
    let rotation = {
        let (db, fam) = (db.clone(), fam.clone());
        tokio::spawn(async move {
            db.rotate_refresh(old_hash, new, identity_api::now(), &fam)
                .await
        })
    };
    held.release().await;
    for issue in issues {
        issue.await.unwrap().unwrap();
    }
    assert_eq!(rotation.await.unwrap().unwrap(), Rotation::Rotated);
    for (family_id, hash) in &issued {
        assert_eq!(db.family_revoked(family_id).await.unwrap(), Some(false));
        let view = db
            .refresh_token(hash)
            .await
            .unwrap()
            .expect("issued token stored");
        assert!(!view.spent);
        assert_eq!(view.family.family_id, *family_id);
    }
    assert!(db.refresh_token(&old_hash).await.unwrap().unwrap().spent);
    let rotated = db
        .refresh_token(&new_hash)
        .await
        .unwrap()
        .expect("rotated token stored");
    assert!(!rotated.spent);
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
        db.create_family(family, refresh).await.unwrap();
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
                let state = db.family_revoked(&id).await.unwrap();
                assert_eq!(state, (!unknown).then_some(false), "family {id}");
                let key = if unknown { sha256(b"unknown") } else { hash };
                let view = db.refresh_token(&key).await.unwrap();
                assert_eq!(
                    view.map(|v| v.family.family_id),
                    (!unknown).then_some(family_id)
                );
                let client = if unknown { "nobody" } else { "c2" };
                let row = db.client(client).await.unwrap();
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

/// Every PostgreSQL connection plans each execution: a generic plan made while the tables were
/// nearly empty would go on scanning them as they grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_plan_each_execution() {
    let Some(env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    let Pools::Postgres(pool) = env.state.db().pools() else {
        panic!("postgres")
    };
    for _ in 0..3 {
        let mut conn = pool.acquire().await.unwrap();
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "force_custom_plan");
    }
}
