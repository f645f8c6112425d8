//! Refresh rotation under contention: of 50 concurrent refreshes of one token exactly one
//! succeeds, the others get 400 invalid_grant (or 401 invalid_token once their bearer's family
//! is revoked), never a 5xx; the family, the winner's pair included, ends revoked. In-process,
//! over real HTTP, and with two identity-api instances sharing one database. Issues racing a
//! `client disable` leave no live family behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, TestEnv, basic, s, state_on};
use identity_api::storage::Scope;
use serde_json::{Value, json};

const N: usize = 50;

both!(
    fifty_concurrent_refreshes_in_process,
    fifty_concurrent_refreshes_over_http,
    two_instances_share_one_database,
    two_processes_share_one_database,
    concurrent_issues_never_fail,
    disabling_a_client_while_it_issues,
);

/// Exactly one 200; the rest reuse errors.
fn check(results: &[(u16, Value)]) -> Value {
    let mut winner = None;
    for (status, body) in results {
        match (*status, body["error"].as_str()) {
            (200, _) => {
                assert!(winner.is_none(), "two winners");
                winner = Some(body.clone());
            }
            (400, Some("invalid_grant")) | (401, Some("invalid_token")) => {}
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    let grants = results.iter().filter(|r| r.0 == 400).count();
    eprintln!(
        "1 winner, {grants} invalid_grant, {} invalid_token",
        results.len() - 1 - grants
    );
    winner.expect("exactly one refresh must succeed")
}

async fn assert_family_revoked(env: &TestEnv, winner: &Value) {
    let other = env.issue().await;
    let bearer = s(&other, "access_token");
    for t in [s(winner, "access_token"), s(winner, "refresh_token")] {
        assert_eq!(
            env.introspect(&bearer, &t).await.1,
            json!({"active": false})
        );
    }
}

async fn fifty_concurrent_refreshes_in_process(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let pair = env.issue().await;
    let (access, refresh) = (s(&pair, "access_token"), s(&pair, "refresh_token"));
    let body = json!({"grant_type": "refresh_token", "refresh_token": refresh}).to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..N {
        let app = env.app.clone();
        let bearer = format!("Bearer {access}");
        let body = body.clone().into_bytes();
        tasks.spawn(async move {
            let (status, value) = common::send(
                &app,
                "POST",
                "/api/v1/token",
                &[("authorization", &bearer)],
                body,
            )
            .await;
            (status.as_u16(), value)
        });
    }
    let results = tasks.join_all().await;
    let winner = check(&results);
    assert_family_revoked(&env, &winner).await;
}

async fn start_server(state: identity_api::AppState) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limits = identity_runtime::serve::Limits::default();
    tokio::spawn(identity_api::serve(state, listener, limits, async {
        let _ = rx.await;
    }));
    (format!("http://{addr}"), tx)
}

async fn race_http(bases: &[String], access: &str, refresh: &str) -> Vec<(u16, Value)> {
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let url = format!("{}/api/v1/token", bases[i % bases.len()]);
        let req = client
            .post(url)
            .bearer_auth(access)
            .json(&json!({"grant_type": "refresh_token", "refresh_token": refresh}));
        tasks.spawn(async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        });
    }
    tasks.join_all().await
}

async fn fifty_concurrent_refreshes_over_http(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let (base, stop) = start_server(env.state.clone()).await;
    let pair = common::issue_over_http(&base, &env.secret).await;
    let results = race_http(
        &[base],
        &s(&pair, "access_token"),
        &s(&pair, "refresh_token"),
    )
    .await;
    let winner = check(&results);
    assert_family_revoked(&env, &winner).await;
    let _ = stop.send(());
}

/// Two instances (own pools, own key rings, own caches) on one database.
async fn two_instances_share_one_database(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let second = state_on(&env.url, &env.kek, common::settings()).await;
    let (base1, stop1) = start_server(env.state.clone()).await;
    let (base2, stop2) = start_server(second.clone()).await;
    let client = reqwest::Client::new();
    for round in 0..3 {
        // Issued by one instance, raced on both.
        let issuer = if round % 2 == 0 { &base1 } else { &base2 };
        let pair = common::issue_over_http(issuer, &env.secret).await;
        let results = race_http(
            &[base1.clone(), base2.clone()],
            &s(&pair, "access_token"),
            &s(&pair, "refresh_token"),
        )
        .await;
        let winner = check(&results);
        assert_family_revoked(&env, &winner).await;
    }
    // A revocation through one instance is seen at once by the other.
    let pair = env.issue().await;
    let access = s(&pair, "access_token");
    let introspect = |base: &String| {
        client
            .post(format!("{base}/api/v1/introspect"))
            .bearer_auth(&access)
            .json(&json!({"token": access}))
            .send()
    };
    assert_eq!(
        introspect(&base2).await.unwrap().status(),
        StatusCode::OK.as_u16()
    );
    let r = client
        .post(format!("{base1}/api/v1/revoke"))
        .bearer_auth(&access)
        .json(&json!({"token": access}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"revoked": true}));
    assert_eq!(introspect(&base2).await.unwrap().status(), 401);
    let _ = stop1.send(());
    let _ = stop2.send(());
}

/// The same race across two identity-api processes (the real binary, as two replicas would
/// run) on one database: still exactly one winner, never a 5xx.
async fn two_processes_share_one_database(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let (one, two) = (
        common::ServeProcess::start(&env).await,
        common::ServeProcess::start(&env).await,
    );
    let bases = [one.base.clone(), two.base.clone()];
    for round in 0..3 {
        let pair = common::issue_over_http(&bases[round % 2], &env.secret).await;
        let results = race_http(
            &bases,
            &s(&pair, "access_token"),
            &s(&pair, "refresh_token"),
        )
        .await;
        let winner = check(&results);
        assert_family_revoked(&env, &winner).await;
    }
}

/// Many writers at once (SQLite: one write connection, BEGIN IMMEDIATE): all succeed.
async fn concurrent_issues_never_fail(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let second = state_on(&env.url, &env.kek, common::settings()).await;
    let apps = [env.app.clone(), identity_api::app(second)];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let app = apps[i % 2].clone();
        let auth = basic("c1", &env.secret);
        tasks.spawn(async move {
            common::send(
                &app,
                "POST",
                "/api/v1/token/issue",
                &[("authorization", &auth)],
                br#"{"subject": "u"}"#.to_vec(),
            )
            .await
        });
    }
    for (status, body) in tasks.join_all().await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// `client disable` while the client issues from two instances (so from two caches of client
/// rows): each issue either is stored before the disable commits, and revoked by it, or is
/// refused with `invalid_client`; none that starts after the disable returned succeeds. No
/// family of the client is left live.
async fn disabling_a_client_while_it_issues(b: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let second = state_on(&env.url, &env.kek, common::settings()).await;
    let apps = [env.app.clone(), identity_api::app(second)];
    let issued = Arc::new(AtomicUsize::new(0));
    let disabled = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let app = apps[i % 2].clone();
        let auth = basic("c1", &env.secret);
        let (issued, disabled) = (issued.clone(), disabled.clone());
        // Until refused, which must come with the first request after the disable returned.
        tasks.spawn(async move {
            loop {
                let after = disabled.load(Ordering::SeqCst);
                let (status, body) = common::send(
                    &app,
                    "POST",
                    "/api/v1/token/issue",
                    &[("authorization", &auth)],
                    br#"{"subject": "u"}"#.to_vec(),
                )
                .await;
                match (status.as_u16(), body["error"].as_str()) {
                    (200, _) if after => panic!("issued after the disable returned"),
                    (200, _) => issued.fetch_add(1, Ordering::SeqCst),
                    (401, Some("invalid_client")) => return,
                    other => panic!("unexpected answer {other:?}: {body}"),
                };
            }
        });
    }
    let started = async {
        while issued.load(Ordering::SeqCst) < 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), started)
        .await
        .expect("100 issues within a minute");
    identity_api::clients::set_enabled(
        env.state.db(),
        Scope::AnyTenant,
        "c1",
        false,
        &common::operator(),
    )
    .await
    .unwrap();
    disabled.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(60), tasks.join_all())
        .await
        .expect("every task refused within a minute");
    let live = "SELECT COUNT(*) FROM token_families WHERE client_id = 'c1' AND revoked_at IS NULL";
    let (live, all): (i64, i64) = match env.state.db().pools() {
        identity_api::storage::Pools::Sqlite { read, .. } => (
            sqlx::query_scalar(live).fetch_one(read).await.unwrap(),
            sqlx::query_scalar("SELECT COUNT(*) FROM token_families")
                .fetch_one(read)
                .await
                .unwrap(),
        ),
        identity_api::storage::Pools::Postgres(pool) => (
            sqlx::query_scalar(live).fetch_one(pool).await.unwrap(),
            sqlx::query_scalar("SELECT COUNT(*) FROM token_families")
                .fetch_one(pool)
                .await
                .unwrap(),
        ),
    };
    eprintln!("{all} families issued, {live} live");
    assert!(all >= 100);
    assert_eq!(
        live, 0,
        "a family issued while the client was disabled is live"
    );
}
