//! Brute force against passwords (docs/users.md, "Brute force"): a username locked for a while
//! whether or not it exists, without a hash computed meanwhile, the lock ending by itself and
//! not extended by attempts; one source unable to lock a user by itself; a spraying source
//! blocked; failures aging out; the source taken from the sidecar's `X-Forwarded-For` only;
//! concurrent logins (failures counted exactly, `last_login_at` never moved back, a burst of
//! guesses held to the limits). On SQLite and
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod login_common;

use std::sync::Arc;

use common::{Backend, primary};
use login_common::{PASSWORD, assert_err, assert_ok, setup};
use serde_json::json;

const ROTATE: &str = "/credentials/password/rotate";

/// Three failures of a username lock it for a while, whether or not it exists; meanwhile even
/// the right password is refused, without computing a hash; the lock ends by itself.
async fn a_username_is_locked_for_a_while(b: Backend) {
    let Some(t) = setup(b, |s| {
        s.logins.max_failures = 3;
        s.logins.lock_secs = 300;
    })
    .await
    else {
        return;
    };
    for name in ["alice", "nobody"] {
        for i in 0..3 {
            let answer = t
                .login(&format!("10.1.{i}.1"), name, "wrong password")
                .await;
            assert_err(
                &answer,
                400,
                "invalid_grant",
                "invalid username or password",
            );
        }
        let verifications = t.env.state.logins().verifications();
        let answer = t.login("10.1.9.1", name, PASSWORD).await;
        assert_eq!(retry_after(&answer), 300);
        assert_eq!(
            t.env.state.logins().verifications(),
            verifications,
            "no hash while locked"
        );
    }
    let rows = common::audit_rows(t.env.state.db()).await;
    let locks: Vec<_> = rows.iter().filter(|r| r.event == "login_lockout").collect();
    assert_eq!(locks.len(), 2);
    assert_eq!(locks[0].subject.as_deref(), Some(t.alice.user_id.as_str()));
    // Attempts during the lock do not extend it.
    t.advance(200);
    let answer = t.login("10.1.9.2", "alice", "wrong").await;
    assert_eq!(retry_after(&answer), 100);
    t.advance(100);
    assert_ok(&t.login("10.1.9.1", "alice", PASSWORD).await);
    assert!(
        t.env
            .state
            .db()
            .login_failures(primary(), "alice")
            .await
            .unwrap()
            .is_none()
    );
}

/// One source alone cannot lock a user out: its own limit on the username trips first, and the
/// user still logs in from elsewhere. A source that fails on many usernames is blocked.
async fn a_single_source_trips_its_own_limit_first(b: Backend) {
    let Some(t) = setup(b, |s| {
        s.logins.max_failures = 3;
        s.logins.source_max_failures = 4;
    })
    .await
    else {
        return;
    };
    let attacker = "192.0.2.66";
    for _ in 0..2 {
        assert_err(
            &t.login(attacker, "alice", "guess").await,
            400,
            "invalid_grant",
            "invalid username",
        );
    }
    assert_err(
        &t.login(attacker, "alice", "guess").await,
        400,
        "invalid_grant",
        "too many failed logins",
    );
    assert_eq!(t.failures("alice").await, 2);
    assert_ok(&t.login("198.51.100.7", "alice", PASSWORD).await);
    // Spraying: two more failures on other usernames reach the source's limit of 4.
    for name in ["bob", "carol"] {
        assert_err(
            &t.login(attacker, name, "guess").await,
            400,
            "invalid_grant",
            "invalid username",
        );
    }
    assert_err(
        &t.login(attacker, "dave", "guess").await,
        400,
        "invalid_grant",
        "too many failed logins",
    );
    // The window ends.
    t.advance(t.env.state.settings().logins.source_window_secs);
    assert_err(
        &t.login(attacker, "dave", "guess").await,
        400,
        "invalid_grant",
        "invalid username",
    );
}

/// Failures older than the window are forgotten.
async fn failures_age_out(b: Backend) {
    let Some(t) = setup(b, |s| {
        s.logins.max_failures = 3;
        s.logins.window_secs = 600;
    })
    .await
    else {
        return;
    };
    for i in 0..2 {
        t.login(&format!("10.2.0.{i}"), "alice", "wrong").await;
    }
    assert_eq!(t.failures("alice").await, 2);
    t.advance(600);
    t.login("10.2.1.1", "alice", "wrong").await;
    assert_eq!(t.failures("alice").await, 1);
    t.login("10.2.1.2", "alice", "wrong").await;
    assert_ok(&t.login("10.2.1.3", "alice", PASSWORD).await);
}

/// Concurrent wrong logins are all counted (one UPSERT each); concurrent right ones all succeed
/// and `last_login_at` ends at the latest.
async fn concurrent_logins(b: Backend) {
    let Some(t) = setup(b, |s| s.logins.max_failures = 1000).await else {
        return;
    };
    let t = Arc::new(t);
    let wrong: Vec<_> = (0..16)
        .map(|i| {
            let t = Arc::clone(&t);
            tokio::spawn(async move { t.login(&format!("10.3.0.{i}"), "alice", "wrong").await.0 })
        })
        .collect();
    for task in wrong {
        assert_eq!(task.await.unwrap(), 400);
    }
    assert_eq!(t.failures("alice").await, 16);
    let start = t.now();
    let right: Vec<_> = (0..6)
        .map(|i| {
            let t = Arc::clone(&t);
            tokio::spawn(async move { t.login(&format!("10.3.1.{i}"), "alice", PASSWORD).await.0 })
        })
        .collect();
    for task in right {
        assert_eq!(task.await.unwrap(), 200);
    }
    let last = t.user("alice").await.last_login_at.unwrap();
    assert!((start..=t.now()).contains(&last));
    assert_eq!(t.failures("alice").await, 0);
    // The storage's rule, with times out of order: the latest wins.
    let db = t.env.state.db().clone();
    let id = t.alice.user_id.clone();
    let times = [last + 50, last + 10, last + 90, last + 30, last + 70];
    let tasks: Vec<_> = times
        .into_iter()
        .map(|at| {
            let (db, id) = (db.clone(), id.clone());
            tokio::spawn(async move { db.record_login(&id, at).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(t.user("alice").await.last_login_at, Some(last + 90));
}

/// A burst of concurrent guesses is judged one after the other, each counted before the next
/// is judged: no more hashes than the limits allow, however many arrive at once. From many
/// sources: the username's limit (5) locks it after exactly 5 hashes. From one source: its own
/// limit on the username (4) trips first, so it cannot lock the user, and its limit on all
/// usernames (10) stops a spray at 10.
async fn a_burst_is_counted_before_it_is_judged(b: Backend) {
    let Some(t) = setup(b, |s| {
        s.logins.max_failures = 5;
        s.logins.source_max_failures = 10;
    })
    .await
    else {
        return;
    };
    let t = Arc::new(t);
    let burst = |logins: Vec<(String, String)>| {
        let t = Arc::clone(&t);
        async move {
            let before = t.env.state.logins().verifications();
            let tasks: Vec<_> = logins
                .into_iter()
                .map(|(ip, name)| {
                    let t = Arc::clone(&t);
                    tokio::spawn(async move { t.login(&ip, &name, "wrong password").await })
                })
                .collect();
            let mut locked = 0;
            for task in tasks {
                let answer = task.await.unwrap();
                assert_eq!(answer.0, 400, "{}", answer.2);
                if answer.2.to_string().contains("too many failed logins") {
                    locked += 1;
                }
            }
            let after = t.env.state.logins().verifications();
            (after.0 + after.1 - before.0 - before.1, locked)
        }
    };
    let many_sources = (0..40).map(|i| (format!("10.4.0.{i}"), "alice".to_owned()));
    assert_eq!(burst(many_sources.collect()).await, (5, 35));
    let row = t.env.state.db().login_failures(primary(), "alice").await;
    assert!(row.unwrap().unwrap().locked_until.is_some());

    let one_source = (0..20).map(|_| ("10.4.1.1".to_owned(), "bob".to_owned()));
    assert_eq!(burst(one_source.collect()).await, (4, 16));
    assert_eq!(t.failures("bob").await, 4);
    let row = t.env.state.db().login_failures(primary(), "bob").await;
    assert_eq!(
        row.unwrap().unwrap().locked_until,
        None,
        "one source locked bob"
    );

    let spray = (0..30).map(|i| ("10.4.2.1".to_owned(), format!("user{i}")));
    assert_eq!(burst(spray.collect()).await, (10, 20));
}

/// `X-Forwarded-For` names the source only on a request that carries the internal token (the
/// sidecar's); on others it is ignored, and without a peer address the client counts as the
/// source. Locks answer on every route that takes a password.
async fn the_source_is_what_the_sidecar_forwards(b: Backend) {
    let Some(t) = setup(b, |s| s.logins.max_failures = 3).await else {
        return;
    };
    let auth = common::basic("c1", &t.secret);
    let direct = |ip: String| {
        let auth = auth.clone();
        let t = &t;
        async move {
            let form = "grant_type=password&username=alice&password=guess";
            let headers = [
                ("content-type", common::oauth::FORM),
                ("authorization", auth.as_str()),
                ("x-forwarded-for", ip.as_str()),
            ];
            common::send_raw(&t.env.app, "POST", "/oauth/token", &headers, form.into()).await
        }
    };
    // Two failures "from" two addresses, without the internal token: one source (the client).
    for i in 0..2 {
        let answer = direct(format!("203.0.113.{i}")).await;
        assert_err(&answer, 400, "invalid_grant", "invalid username");
    }
    let answer = direct("203.0.113.9".into()).await;
    assert_err(&answer, 400, "invalid_grant", "too many failed logins");
    // Through the sidecar, each address is its own source; the third failure locks alice.
    assert_err(
        &t.login("10.5.0.1", "alice", "guess").await,
        400,
        "invalid_grant",
        "invalid username",
    );
    for (path, body) in [
        (
            "/api/v1/token/password",
            json!({"username": "alice", "password": PASSWORD}),
        ),
        (
            ROTATE,
            json!({"username": "alice", "current_password": PASSWORD, "new_password": "a long enough one"}),
        ),
        (
            "/credentials/mfa/enroll",
            json!({"username": "alice", "password": PASSWORD}),
        ),
    ] {
        let answer = t.json(path, "10.5.0.2", &body).await;
        assert_err(&answer, 400, "invalid_grant", "too many failed logins");
        assert!(answer.1.contains_key("retry-after"), "{path}");
    }
    // The sealed route judges the audience like /api/v1/token/issue.
    t.advance(300);
    let answer = t
        .sealed(
            "10.5.0.2",
            &json!({"username": "alice", "password": PASSWORD, "audience": "billing-api"}),
        )
        .await;
    assert_err(&answer, 400, "invalid_target", "audience");
    let answer = t
        .sealed(
            "10.5.0.2",
            &json!({"username": "alice", "password": PASSWORD, "scope": "admin.all"}),
        )
        .await;
    assert_err(&answer, 400, "invalid_scope", "");
}

/// A lock's answer: 400 invalid_grant naming the wait, which `Retry-After` gives too; the wait,
/// give or take the second the wall clock may have ticked meanwhile.
#[track_caller]
fn retry_after(answer: &common::oauth::Answer) -> i64 {
    assert_err(
        answer,
        400,
        "invalid_grant",
        "too many failed logins; try again in ",
    );
    let wait: i64 = answer.1["retry-after"].to_str().unwrap().parse().unwrap();
    let says = format!("try again in {wait} seconds");
    assert!(answer.2.to_string().contains(&says), "{}", answer.2);
    // Rounded up to the test's whole numbers.
    (wait + 1) / 10 * 10
}

both!(
    a_username_is_locked_for_a_while,
    a_single_source_trips_its_own_limit_first,
    failures_age_out,
    concurrent_logins,
    a_burst_is_counted_before_it_is_judged,
    the_source_is_what_the_sidecar_forwards,
);
