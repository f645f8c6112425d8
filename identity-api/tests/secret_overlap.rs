//! `client rotate-secret --overlap`: the secret replaced keeps working until the overlap ends, on
//! a server that has the client's row cached and on one that reads it afresh, then it is
//! refused as any wrong secret is, even by a server whose cached row still shows the overlap
//! (the group commit refuses the issue); a rotation without `--overlap` ends an overlap at once,
//! and a second rotation leaves only the secret it replaced; the group commit stores an issue
//! that authenticated by the previous verifier only within its overlap; bad durations are
//! refused clearly and change nothing. Both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::Router;
use axum::http::StatusCode;
use common::{Backend, TestEnv, admin_rows, basic, cmd, run, state_on};
use identity_api::clients::{self, Overlap};
use identity_api::secret::{random_id, sha256};
use identity_api::storage::Scope;
use identity_api::storage::{ClientSeen, FamilyRow, Opened, RefreshRow};
use serde_json::{Value, json};

both!(
    the_old_secret_works_until_the_overlap_ends,
    only_the_secret_replaced_can_overlap,
    the_write_accepts_the_previous_verifier_only_within_its_overlap,
    bad_overlaps_are_refused_and_change_nothing
);

async fn issue_status(app: &Router, secret: &str) -> StatusCode {
    common::send(
        app,
        "POST",
        "/api/v1/token/issue",
        &[("authorization", &basic("c1", secret))],
        br#"{"subject": "u"}"#.to_vec(),
    )
    .await
    .0
}

/// A second server on the environment's database, with a cache of its own (empty).
async fn other_server(env: &TestEnv) -> Router {
    identity_api::app(state_on(&env.url, &env.kek, common::settings()).await)
}

/// `identity-api client <args>` on the environment's database.
fn client_cli(env: &TestEnv, args: &[&str]) -> (bool, String, String) {
    run(cmd(&[&["client"], args].concat())
        .env("IDENTITY_DATABASE_URL", &env.url)
        .env("IDENTITY_KEY_ENCRYPTION_KEY", &env.kek)
        .env("RUST_LOG", "trace"))
}

/// Ends c1's overlap now, as the passing of time would.
async fn end_overlap(env: &TestEnv) {
    let now = identity_api::now();
    common::exec(
        env.state.db(),
        &format!("UPDATE clients SET previous_verifier_expires_at = {now} WHERE client_id = 'c1'"),
    )
    .await;
}

async fn the_old_secret_works_until_the_overlap_ends(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let old = env.secret.clone();
    // The test's app caches c1's row as it was before the rotation.
    assert_eq!(issue_status(&env.app, &old).await, StatusCode::OK);
    let (ok, out, err) = client_cli(&env, &["rotate-secret", "c1", "--overlap", "10m", "--json"]);
    assert!(ok, "{err}");
    let rotated: Value = serde_json::from_str(out.trim()).unwrap();
    let new = rotated["client_secret"].as_str().unwrap().to_owned();
    let until = rotated["previous_secret_expires_at"].as_i64().unwrap();
    let now = identity_api::now();
    assert!((now + 590..=now + 600).contains(&until), "{until}");
    assert!(
        !err.contains(&new) && !err.contains(&old),
        "a secret in the logs"
    );

    let fresh = other_server(&env).await;
    for (app, which) in [(&env.app, "cached"), (&fresh, "fresh")] {
        for secret in [&old, &new] {
            assert_eq!(issue_status(app, secret).await, StatusCode::OK, "{which}");
        }
    }
    // `client list` shows until when.
    let (ok, out, _) = client_cli(&env, &["list", "--json"]);
    assert!(ok);
    let c1: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|c| c["client_id"] == "c1")
        .unwrap();
    assert_eq!(c1["previous_secret_expires_at"], until);

    // Once the overlap ends, the old secret is refused everywhere, also by the server whose
    // cached row (read above, within the overlap) still accepts it: the write refuses the issue.
    end_overlap(&env).await;
    for (app, which) in [(&env.app, "cached"), (&fresh, "fresh")] {
        assert_eq!(
            issue_status(app, &old).await,
            StatusCode::UNAUTHORIZED,
            "{which}"
        );
        assert_eq!(issue_status(app, &new).await, StatusCode::OK, "{which}");
    }
    let (_, out, _) = client_cli(&env, &["list", "--json"]);
    assert!(
        out.contains(r#""previous_secret_expires_at":null"#),
        "{out}"
    );
    let rows = admin_rows(env.state.db()).await;
    let last = rows.last().unwrap();
    assert_eq!(last.event, "client_rotate_secret");
    let detail: Value = serde_json::from_str(last.detail.as_deref().unwrap()).unwrap();
    assert_eq!(
        detail,
        json!({"overlap_secs": 600, "previous_secret_expires_at": until})
    );
    let trail = format!("{:?}", common::audit_rows(env.state.db()).await);
    assert!(!trail.contains(&old) && !trail.contains(&new));
}

async fn only_the_secret_replaced_can_overlap(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let (db, key, by) = (
        env.state.db(),
        env.state.verifier_key(),
        &common::operator(),
    );
    let hour = Some(Overlap::from_secs(3600).unwrap());
    let rotate = |overlap: Option<Overlap>| async move {
        clients::rotate_secret(
            db,
            key,
            Scope::AnyTenant,
            "c1",
            overlap,
            by,
            identity_api::now(),
        )
        .await
        .unwrap()
        .expose()
        .to_owned()
    };
    let fresh = other_server(&env).await;
    let expect = async |secrets: &[(&str, StatusCode)]| {
        for (app, which) in [(&env.app, "cached"), (&fresh, "fresh")] {
            for (secret, status) in secrets {
                assert_eq!(issue_status(app, secret).await, *status, "{which}");
            }
        }
    };
    let (ok, refused) = (StatusCode::OK, StatusCode::UNAUTHORIZED);
    let a = env.secret.clone();
    let b = rotate(hour).await;
    expect(&[(&a, ok), (&b, ok)]).await;
    // A second overlap: the first secret is gone, the one it replaced overlaps.
    let c = rotate(hour).await;
    expect(&[(&a, refused), (&b, ok), (&c, ok)]).await;
    // Without --overlap: only the new secret, at once.
    let d = rotate(None).await;
    expect(&[(&b, refused), (&c, refused), (&d, ok)]).await;
    let row = db.client(Scope::AnyTenant, "c1").await.unwrap().unwrap();
    assert_eq!(row.previous_secret_verifier, None);
    assert_eq!(row.previous_verifier_expires_at, None);
}

/// A family of c1 created at `at`, as an issue would store it.
fn family_at(at: i64) -> (FamilyRow, RefreshRow) {
    let family = FamilyRow {
        family_id: random_id(),
        client_id: "c1".to_owned(),
        subject: "u".to_owned(),
        scope: "orders.read".to_owned(),
        audience: "orders-api".to_owned(),
        created_at: at,
        expires_at: at + 3600,
        last_used_at: at,
        revoked_at: None,
        revoke_reason: None,
        tenant_id: common::primary().clone(),
        roles: None,
    };
    let refresh = RefreshRow::new(
        sha256(random_id().as_bytes()),
        random_id(),
        &family,
        at,
        at + 3600,
    );
    (family, refresh)
}

/// The group commit itself, below the API: an issue that authenticated by the previous
/// verifier is stored while the overlap lasts at the issue's time, and refused from its end on
/// or once a rotation without an overlap ends it.
async fn the_write_accepts_the_previous_verifier_only_within_its_overlap(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let (db, key, by) = (env.state.db(), env.state.verifier_key(), common::operator());
    let verifier = async || {
        db.client(Scope::AnyTenant, "c1")
            .await
            .unwrap()
            .unwrap()
            .secret_verifier
    };
    let seen = |verifier: &[u8]| ClientSeen {
        verifier: verifier.to_vec(),
        scopes: "orders.read orders.write".into(),
        audiences: "orders-api".into(),
        grant_types: "client_credentials".into(),
        subject_policy: "any".into(),
    };
    let store = async |verifier: &[u8], at: i64| {
        let (family, refresh) = family_at(at);
        db.create_family(family, Some(refresh), seen(verifier))
            .await
            .unwrap()
    };
    let old = verifier().await;
    let now = identity_api::now();
    let overlap = Some(Overlap::from_secs(600).unwrap());
    clients::rotate_secret(db, key, Scope::AnyTenant, "c1", overlap, &by, now)
        .await
        .unwrap();
    let new = verifier().await;
    assert_eq!(store(&old, now).await, Opened::Stored);
    assert_eq!(store(&new, now).await, Opened::Stored);
    assert_eq!(store(&old, now + 599).await, Opened::Stored);
    assert_eq!(store(&old, now + 600).await, Opened::ClientChanged);
    assert_eq!(store(&[7; 32], now).await, Opened::ClientChanged);
    clients::rotate_secret(db, key, Scope::AnyTenant, "c1", None, &by, now)
        .await
        .unwrap();
    let newest = verifier().await;
    assert_eq!(store(&new, now).await, Opened::ClientChanged);
    assert_eq!(store(&newest, now).await, Opened::Stored);
}

async fn bad_overlaps_are_refused_and_change_nothing(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let rows = admin_rows(env.state.db()).await.len();
    for (overlap, expected) in [
        (
            "8d",
            "invalid overlap: it must be at most 7 days (604800 seconds)",
        ),
        ("604801", "at most 7 days"),
        ("0", "invalid overlap: it must be at least 1 second"),
        (
            "10x",
            "invalid overlap: expected seconds, or a number with s, m, h or d",
        ),
        ("", "expected seconds"),
    ] {
        let (ok, out, err) = client_cli(&env, &["rotate-secret", "c1", "--overlap", overlap]);
        assert!(!ok, "{overlap}: {out}");
        assert!(err.contains(expected), "{overlap}: {err}");
        assert!(err.contains("--overlap"), "{overlap}: {err}");
    }
    let (ok, _, err) = client_cli(&env, &["rotate-secret", "nobody", "--overlap", "1h"]);
    assert!(!ok);
    assert!(err.contains("no client nobody"), "{err}");
    assert_eq!(issue_status(&env.app, &env.secret).await, StatusCode::OK);
    assert_eq!(admin_rows(env.state.db()).await.len(), rows);
}
