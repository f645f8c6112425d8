//! Retention on SQLite and PostgreSQL: the purge deletes ended families (expired or revoked
//! before the cutoff) with their refresh tokens and old audit events, keeps everything live
//! working, walks the table across its windows, runs beside the hot path, takes turns between
//! replicas, runs on `serve`'s schedule and as `identity-api purge`; failed-login counts go
//! once they count for nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{Backend, TestEnv, cmd, run, s};
use identity_api::purge::{self, Purged, Retention};
use identity_api::storage::{
    AuditRow, Db, FailureLimits, MAX_LOGIN_WINDOW_SECS, PURGE_BATCH, Pools, RequestEvent,
};
use serde_json::Value;

both!(
    ended_families_go_with_their_refresh_tokens,
    the_walk_crosses_windows,
    purging_beside_the_hot_path,
    one_purge_at_a_time,
    serve_purges_on_its_schedule,
    failed_login_counts_go_when_they_count_no_more,
);

const HOUR: i64 = 3600;
const FAMILY_TTL: i64 = identity_api::service::settings::DEFAULT_FAMILY_TTL_SECS;

/// Runs `$body` with `$p` bound to the pool that writes, whichever the database.
macro_rules! on_writer {
    ($db:expr, $p:ident => $body:expr) => {
        match $db.pools() {
            Pools::Sqlite { write: $p, .. } => $body,
            Pools::Postgres($p) => $body,
        }
    };
}

async fn count(db: &Db, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    on_writer!(db, p => sqlx::query_scalar::<_, i64>(&sql).fetch_one(p).await.unwrap())
}

fn families_only(secs: i64) -> Retention {
    Retention {
        families_secs: secs,
        audit_secs: None,
    }
}

async fn purge_at(db: &Db, retention: Retention, now: i64) -> Purged {
    purge::run(db, retention, now, Duration::ZERO)
        .await
        .unwrap()
        .expect("no other purge runs")
}

async fn ended_families_go_with_their_refresh_tokens(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let t0 = identity_api::now();
    // A: revoked now. B: live, refreshed once (two refresh tokens, one spent).
    let a = env.issue().await;
    let b0 = env.issue().await;
    let (status, b1) = env
        .refresh(&s(&b0, "access_token"), &s(&b0, "refresh_token"))
        .await;
    assert_eq!(status, StatusCode::OK, "{b1}");
    let (status, _) = env
        .revoke(&s(&a, "access_token"), &s(&a, "refresh_token"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            count(&db, "token_families").await,
            count(&db, "refresh_tokens").await
        ),
        (2, 3)
    );

    // Within the retention nothing goes; past it, the revoked family and its token.
    let purged = purge_at(&db, families_only(HOUR), t0 + HOUR - 60).await;
    assert_eq!(purged, Purged::default());
    let purged = purge_at(&db, families_only(HOUR), t0 + HOUR + 60).await;
    assert_eq!((purged.families, purged.refresh_tokens), (1, 1));
    assert_eq!(
        (
            count(&db, "token_families").await,
            count(&db, "refresh_tokens").await
        ),
        (1, 2)
    );

    // The live family works as before; the purged one is simply unknown.
    let (status, body) = env
        .refresh(&s(&b1, "access_token"), &s(&b1, "refresh_token"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = env
        .refresh(&s(&b1, "access_token"), &s(&a, "refresh_token"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, body) = env
        .introspect(&s(&b1, "access_token"), &s(&a, "refresh_token"))
        .await;
    assert_eq!(
        (status, &body),
        (StatusCode::OK, &serde_json::json!({"active": false}))
    );

    // Once its absolute lifetime and the retention have passed, the live family goes too.
    let purged = purge_at(&db, families_only(HOUR), t0 + FAMILY_TTL + HOUR + 60).await;
    assert_eq!(purged.families, 1);
    assert_eq!(count(&db, "refresh_tokens").await, 0);

    // Audit events: kept forever without an audit retention, deleted past it.
    let events = count(&db, "audit_events").await;
    assert!(events >= 4, "{events}");
    let later = t0 + 2 * FAMILY_TTL;
    assert_eq!(
        purge_at(&db, families_only(HOUR), later).await.audit_events,
        0
    );
    let with_audit = Retention {
        families_secs: HOUR,
        audit_secs: Some(HOUR),
    };
    let purged = purge_at(&db, with_audit, later).await;
    assert_eq!(purged.audit_events, u64::try_from(events).unwrap());
    assert_eq!(count(&db, "audit_events").await, 0);
}

/// `n` families of client c1 (ids `bulk-00000`...), each with one refresh token; family `i` is
/// revoked two hours ago when `revoked(i)`, expired two hours ago when `expired(i)`.
async fn bulk_families(
    db: &Db,
    n: usize,
    revoked: impl Fn(usize) -> bool,
    expired: impl Fn(usize) -> bool,
) {
    let now = identity_api::now();
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(200) {
        // Built inside each arm: the builder's type is the database's.
        on_writer!(db, p => {
            let mut families = sqlx::QueryBuilder::new(
                "INSERT INTO token_families (family_id, client_id, subject, scope, audience, \
                 created_at, expires_at, last_used_at, revoked_at, revoke_reason) ",
            );
            families.push_values(chunk, |mut row, &i| {
                let expires = if expired(i) { now - 2 * HOUR } else { now + FAMILY_TTL };
                let revoked_at = revoked(i).then_some(now - 2 * HOUR);
                row.push_bind(format!("bulk-{i:05}"))
                    .push_bind("c1")
                    .push_bind(format!("user-{i}"))
                    .push_bind("orders.read")
                    .push_bind("orders-api")
                    .push_bind(now - FAMILY_TTL / 2)
                    .push_bind(expires)
                    .push_bind(now - FAMILY_TTL / 2)
                    .push_bind(revoked_at)
                    .push_bind(revoked_at.map(|_| "test"));
            });
            families.build().execute(p).await.unwrap();
            let mut tokens = sqlx::QueryBuilder::new(
                "INSERT INTO refresh_tokens (token_hash, jti, family_id, issued_at, expires_at, \
                 spent, spent_at) ",
            );
            tokens.push_values(chunk, |mut row, &i| {
                let mut hash = vec![0xb0; 32];
                hash[..8].copy_from_slice(&(i as u64).to_be_bytes());
                row.push_bind(hash)
                    .push_bind(format!("jti-{i}"))
                    .push_bind(format!("bulk-{i:05}"))
                    .push_bind(now - FAMILY_TTL / 2)
                    .push_bind(now - HOUR)
                    .push_bind(false)
                    .push_bind(None::<i64>);
            });
            tokens.build().execute(p).await.unwrap();
        });
    }
}

async fn the_walk_crosses_windows(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    // More than two windows, ended families spread through all of them.
    let n = 2 * identity_api::storage::PURGE_WINDOW as usize + 500;
    let revoked = |i: usize| i.is_multiple_of(3);
    let expired = |i: usize| i.is_multiple_of(5);
    bulk_families(&db, n, revoked, expired).await;
    let ended = (0..n).filter(|&i| revoked(i) || expired(i)).count() as u64;

    let purged = purge_at(&db, families_only(HOUR), identity_api::now()).await;
    assert_eq!((purged.families, purged.refresh_tokens), (ended, ended));
    let left: Vec<String> = on_writer!(db, p => sqlx::query_scalar(
        "SELECT family_id FROM token_families ORDER BY family_id"
    )
    .fetch_all(p)
    .await
    .unwrap());
    let live: Vec<String> = (0..n)
        .filter(|&i| !revoked(i) && !expired(i))
        .map(|i| format!("bulk-{i:05}"))
        .collect();
    assert_eq!(left, live);
    assert_eq!(count(&db, "refresh_tokens").await, live.len() as i64);
}

/// Issues and refreshes run while a purge of thousands of families does: none fails, and the
/// purge deletes exactly what ended.
async fn purging_beside_the_hot_path(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let n = 10_000;
    bulk_families(&db, n, |i| i.is_multiple_of(2), |_| false).await;
    let purging = {
        let db = db.clone();
        tokio::spawn(async move { purge_at(&db, families_only(HOUR), identity_api::now()).await })
    };
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..50 {
        let app = env.app.clone();
        let auth = common::basic("c1", &env.secret);
        calls.spawn(async move {
            common::issue_and_refresh(&app, &auth, &format!("hot-{i}")).await;
        });
    }
    while let Some(call) = calls.join_next().await {
        call.unwrap();
    }
    let purged = purging.await.unwrap();
    assert_eq!((purged.families, purged.refresh_tokens), (5000, 5000));
    // The 5,000 live bulk families and the 50 issued meanwhile (one spent token and its
    // successor each) are all there.
    assert_eq!(count(&db, "token_families").await, 5000 + 50);
    assert_eq!(count(&db, "refresh_tokens").await, 5000 + 100);
}

/// Anyone may add a failed-login count (for any well-formed username): one whose last failure
/// is older than the longest window or lock allowed is deleted, in batches; a recent one, or a
/// lock, stays.
async fn failed_login_counts_go_when_they_count_no_more(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let t0 = identity_api::now();
    let tenant = common::primary();
    // More than one batch of old counts, written in bulk.
    let old = PURGE_BATCH + 10;
    let at = t0 - MAX_LOGIN_WINDOW_SECS - 1;
    for chunk in (0..old).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| format!("('{}', 'old{i}', 1, {at}, NULL)", tenant.as_str()))
            .collect();
        let sql = format!(
            "INSERT INTO login_failures \
             (tenant_id, username_key, failures, last_failure, locked_until) VALUES {}",
            values.join(", ")
        );
        on_writer!(db, p => {
            sqlx::query(&sql).execute(p).await.unwrap();
        });
    }
    let limits = FailureLimits {
        max_failures: 2,
        window_secs: 900,
        lock_secs: 3600,
    };
    let fail = |name: &'static str, at: i64| {
        let db = db.clone();
        async move {
            let lockout = |_| {
                AuditRow::credential(
                    at,
                    RequestEvent::LoginLockout,
                    tenant,
                    None,
                    None,
                    "locked",
                    None,
                )
            };
            db.record_login_failure(tenant, name, at, limits, lockout)
                .await
                .unwrap();
        }
    };
    fail("recent", t0 - 60).await;
    // Locked at its second failure, a day and a minute ago: the lock is over.
    fail("locked", t0 - MAX_LOGIN_WINDOW_SECS - 61).await;
    fail("locked", t0 - MAX_LOGIN_WINDOW_SECS - 60).await;
    let purged = purge_at(&db, families_only(HOUR), t0).await;
    assert_eq!(purged.login_failures, u64::try_from(old).unwrap() + 1);
    assert_eq!(count(&db, "login_failures").await, 1);
    assert!(db.login_failures(tenant, "recent").await.unwrap().is_some());
}

/// On PostgreSQL one replica purges at a time; SQLite's transactions take turns without a lock.
async fn one_purge_at_a_time(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    let held = db.purge_lock().await.unwrap().expect("the lock is free");
    let second = purge::run(
        &db,
        families_only(HOUR),
        identity_api::now(),
        Duration::ZERO,
    )
    .await
    .unwrap();
    match b {
        Backend::Postgres => assert_eq!(second, None, "a second purge ran beside the first"),
        Backend::Sqlite => assert_eq!(second, Some(Purged::default())),
    }
    held.release().await;
    let third = purge::run(
        &db,
        families_only(HOUR),
        identity_api::now(),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(third, Some(Purged::default()), "the lock was released");
}

async fn serve_purges_on_its_schedule(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db().clone();
    bulk_families(&db, 3, |i| i == 1, |_| false).await;
    let task = identity_api::server::spawn_purge(
        env.state.clone(),
        Duration::from_millis(50),
        families_only(HOUR),
    );
    // The purge counts its rows once its transaction has committed: the rows may be gone a
    // moment before the metric says so.
    let counted = r#"identity_api_purged_rows_total{table="token_families"} 1"#;
    let mut purged = false;
    for _ in 0..100 {
        if count(&db, "token_families").await == 2 && env.state.metrics().encode().contains(counted)
        {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    assert!(
        purged,
        "the scheduled purge did not run, or did not count its rows: {} families left\n{}",
        count(&db, "token_families").await,
        env.state.metrics().encode()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_command() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let a = env.issue().await;
    let (status, _) = env
        .revoke(&s(&a, "access_token"), &s(&a, "refresh_token"))
        .await;
    assert_eq!(status, StatusCode::OK);
    bulk_families(env.state.db(), 2, |i| i == 0, |_| false).await;
    let url = env.url.clone();

    // The family revoked two hours ago goes; the one revoked just now stays, in its retention.
    let (ok, out, err) = run(&mut cmd(&[
        "purge",
        "--json",
        "--database-url",
        &url,
        "--family-retention-secs",
        "3600",
    ]));
    assert!(ok, "{err}");
    let counts: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        counts,
        serde_json::json!({
            "families": 1, "refresh_tokens": 1, "audit_events": 0, "login_failures": 0,
        })
    );
    assert_eq!(count(env.state.db(), "token_families").await, 2);

    // The shortest retention is an hour: a purge must never race a request.
    let (ok, _, err) = run(&mut cmd(&[
        "purge",
        "--database-url",
        &url,
        "--family-retention-secs",
        "60",
    ]));
    assert!(!ok);
    assert!(err.contains("--family-retention-secs"), "{err}");

    // Audit retention 0 keeps the audit; the human form names what went.
    let (ok, out, err) = run(&mut cmd(&[
        "purge",
        "--database-url",
        &url,
        "--audit-retention-secs",
        "0",
    ]));
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "purged 0 token families, 0 refresh tokens, 0 audit events, 0 failed-login counts"
    );
}
