//! A measurement (ignored by default; asserts nothing about time): the purge of a million rows
//! (500,000 ended families and their 500,000 refresh tokens) while 32 callers issue and refresh
//! as fast as they can. Prints each window's time (its read and its write transaction, an upper
//! bound on how long it held the write lock) and the hot path's rate before and during. Run:
//! `cargo test -p identity-api --release --test purge_load -- --ignored --nocapture`
//! (with IDENTITY_TEST_POSTGRES_URL set for the PostgreSQL one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, TestEnv, basic};
use identity_api::purge;
use identity_api::storage::{Db, Pools};

const ENDED: i64 = 500_000;
const CALLERS: usize = 32;

/// Half a million families revoked two weeks ago, each with one refresh token, made by the
/// database itself.
async fn fill(db: &Db) {
    let old = identity_api::now() - 14 * 86_400;
    match db.pools() {
        Pools::Sqlite { write, .. } => {
            for sql in [
                "INSERT INTO token_families (family_id, client_id, subject, scope, audience, \
                 created_at, expires_at, last_used_at, revoked_at, revoke_reason) \
                 WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1) \
                 SELECT printf('load-%07d', i), 'c1', 'u' || i, 'orders.read', 'orders-api', \
                 $2, $2 + 2592000, $2, $2, 'load' FROM n",
                "INSERT INTO refresh_tokens (token_hash, jti, family_id, issued_at, expires_at, \
                 spent, spent_at) \
                 WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1) \
                 SELECT randomblob(32), 'j' || i, printf('load-%07d', i), $2, $2 + 86400, \
                 FALSE, NULL FROM n",
            ] {
                sqlx::query(sql)
                    .bind(ENDED)
                    .bind(old)
                    .execute(write)
                    .await
                    .unwrap();
            }
        }
        Pools::Postgres(pool) => {
            for sql in [
                "INSERT INTO token_families (family_id, client_id, subject, scope, audience, \
                 created_at, expires_at, last_used_at, revoked_at, revoke_reason) \
                 SELECT 'load-' || lpad(i::text, 7, '0'), 'c1', 'u' || i, 'orders.read', \
                 'orders-api', $2, $2 + 2592000, $2, $2, 'load' \
                 FROM generate_series(0, $1 - 1) AS i",
                "INSERT INTO refresh_tokens (token_hash, jti, family_id, issued_at, expires_at, \
                 spent, spent_at) \
                 SELECT decode(md5(i::text) || md5('x' || i), 'hex'), 'j' || i, \
                 'load-' || lpad(i::text, 7, '0'), $2, $2 + 86400, FALSE, NULL \
                 FROM generate_series(0, $1 - 1) AS i",
            ] {
                sqlx::query(sql)
                    .bind(ENDED)
                    .bind(old)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            sqlx::query("ANALYZE").execute(pool).await.unwrap();
        }
    }
}

/// 32 callers, each issuing a pair and refreshing it, until `stop`; counts the calls.
fn hot_path(
    env: &TestEnv,
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
) -> tokio::task::JoinSet<()> {
    let mut callers = tokio::task::JoinSet::new();
    for i in 0..CALLERS {
        let app = env.app.clone();
        let auth = basic("c1", &env.secret);
        let (stop, calls) = (Arc::clone(&stop), Arc::clone(&calls));
        callers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                common::issue_and_refresh(&app, &auth, &format!("hot-{i}")).await;
                calls.fetch_add(2, Ordering::Relaxed);
            }
        });
    }
    callers
}

async fn measure(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let started = Instant::now();
    fill(&db).await;
    eprintln!("{b:?}: filled in {:.1} s", started.elapsed().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut callers = hot_path(&env, Arc::clone(&stop), Arc::clone(&calls));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = calls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let alone = (calls.load(Ordering::Relaxed) - before) as f64 / 5.0;

    // The purge as `serve` runs it, paced.
    let retention = purge::Retention {
        families_secs: 7 * 86_400,
        audit_secs: None,
    };
    let before = calls.load(Ordering::Relaxed);
    let purge_started = Instant::now();
    let purged = purge::run(&db, retention, identity_api::now(), purge::PAUSE)
        .await
        .unwrap()
        .unwrap();
    let purge_secs = purge_started.elapsed().as_secs_f64();
    let during = (calls.load(Ordering::Relaxed) - before) as f64 / purge_secs;
    stop.store(true, Ordering::Relaxed);
    while callers.join_next().await.is_some() {}

    let deleted = purged.families + purged.refresh_tokens;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "{b:?}: purged {deleted} rows in {purge_secs:.1} s, {} batches holding the database \
         {:.1} ms on average, {:.1} ms at the longest",
        purged.batches,
        ms(purged.held) / purged.batches as f64,
        ms(purged.longest_hold)
    );
    eprintln!(
        "{b:?}: issue+refresh calls {alone:.0}/s alone, {during:.0}/s during the purge ({:.0} %)",
        during / alone * 100.0
    );
    assert_eq!(deleted, 2 * ENDED.unsigned_abs());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, run explicitly"]
async fn purge_under_load_sqlite() {
    measure(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, run explicitly"]
async fn purge_under_load_postgres() {
    measure(Backend::Postgres).await;
}
