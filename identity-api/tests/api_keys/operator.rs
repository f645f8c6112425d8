//! The operator's side: list, revoke and rotate (the library and the `api-key` commands), the
//! coalesced `last_used_at`, and how long a revocation elsewhere takes to reach the cache.

use serde_json::Value;

use super::common::{self, Backend, primary};
use super::{active, env, key_for, user};
use identity_api::storage::TenantId;
use identity_api::users::api_keys::{self, ApiKey, KeyChangeError};

crate::both!(
    operator_list_revoke_and_rotate,
    last_used_is_written_in_batches,
    a_revocation_elsewhere_reaches_the_cache_within_its_ttl,
    cli,
);

async fn operator_list_revoke_and_rotate(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let db = env.state.db();
    let by = common::operator();
    let alice = user(&env, primary(), "alice", "viewer").await;
    let first = key_for(&env, &alice).await;
    let second = key_for(&env, &alice).await;
    let now = env.state.settings().clock.now();
    let listed = db.api_keys_of(primary(), &alice.user_id).await.unwrap();
    let mut ids: Vec<&str> = listed.iter().map(|k| k.key_id.as_str()).collect();
    ids.sort_unstable();
    let mut want = [first.key_id(), second.key_id()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(!format!("{listed:?}").contains(&first.expose()[17..]));

    api_keys::revoke(db, primary(), first.key_id(), &by, now)
        .await
        .unwrap();
    let err = api_keys::revoke(db, primary(), first.key_id(), &by, now)
        .await
        .unwrap_err();
    assert!(matches!(err, KeyChangeError::Revoked(_)), "{err}");
    let err = api_keys::revoke(db, primary(), "AAAAAAAAAAAA", &by, now)
        .await
        .unwrap_err();
    assert!(matches!(err, KeyChangeError::NotFound { .. }), "{err}");
    let err = api_keys::revoke(
        db,
        &TenantId::new("acme").unwrap(),
        second.key_id(),
        &by,
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KeyChangeError::NotFound { .. }), "{err}");
    let err = api_keys::rotate(
        db,
        env.state.credential_key(),
        primary(),
        first.key_id(),
        None,
        &by,
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KeyChangeError::Revoked(_)), "{err}");

    let third = api_keys::rotate(
        db,
        env.state.credential_key(),
        primary(),
        second.key_id(),
        Some(600),
        &by,
        now,
    )
    .await
    .unwrap();
    assert!(active(&env, third.expose()).await);
    assert!(active(&env, second.expose()).await);
    let err = api_keys::rotate(
        db,
        env.state.credential_key(),
        primary(),
        second.key_id(),
        None,
        &by,
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, KeyChangeError::Replaced(_)), "{err}");
    let row = db
        .api_key(primary(), second.key_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.expires_at, Some(now + 600));
    let events: Vec<String> = common::audit_rows(db)
        .await
        .into_iter()
        .filter(|r| r.event.starts_with("api_key_") && r.actor.is_some())
        .map(|r| r.event)
        .collect();
    assert_eq!(
        events,
        [
            "api_key_create",
            "api_key_create",
            "api_key_revoke",
            "api_key_rotate"
        ]
    );
}

async fn last_used_is_written_in_batches(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let db = env.state.db();
    let alice = user(&env, primary(), "alice", "viewer").await;
    let keys = [key_for(&env, &alice).await, key_for(&env, &alice).await];
    let last_used = async |key: &ApiKey| {
        db.api_key(primary(), key.key_id())
            .await
            .unwrap()
            .unwrap()
            .last_used_at
    };
    let t0 = env.state.settings().clock.now();
    for _ in 0..3 {
        assert!(active(&env, keys[0].expose()).await);
    }
    assert!(active(&env, keys[1].expose()).await);
    // No write per validation: nothing is in the database until the batch is written.
    assert_eq!(last_used(&keys[0]).await, None);
    assert_eq!(db.flush_api_key_uses().await.unwrap(), 2);
    assert!(last_used(&keys[0]).await.unwrap() >= t0);
    assert!(last_used(&keys[1]).await.is_some());
    assert_eq!(db.flush_api_key_uses().await.unwrap(), 0);

    // A later use moves it on; an earlier one written late never moves it back.
    env.state.settings().clock.advance(100);
    assert!(active(&env, keys[0].expose()).await);
    db.flush_api_key_uses().await.unwrap();
    let later = last_used(&keys[0]).await.unwrap();
    assert!(later >= t0 + 100);
    db.record_api_key_use(keys[0].key_id(), t0);
    db.flush_api_key_uses().await.unwrap();
    assert_eq!(last_used(&keys[0]).await, Some(later));

    // Closing the database writes what is pending.
    env.state.settings().clock.advance(100);
    assert!(active(&env, keys[1].expose()).await);
    db.close().await;
    let reopened = identity_api::Db::connect(&env.url).await.unwrap();
    let row = reopened
        .api_key(primary(), keys[1].key_id())
        .await
        .unwrap()
        .unwrap();
    assert!(row.last_used_at.unwrap() >= t0 + 200);
    reopened.close().await;
}

async fn a_revocation_elsewhere_reaches_the_cache_within_its_ttl(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let key = key_for(&env, &alice).await;
    assert!(active(&env, key.expose()).await);
    // Revoked by the command line (another process): this instance's cache still answers
    // for at most ApiKeys::TTL_SECS.
    let now = env.state.settings().clock.now();
    api_keys::revoke(
        env.state.db(),
        primary(),
        key.key_id(),
        &common::operator(),
        now,
    )
    .await
    .unwrap();
    assert!(active(&env, key.expose()).await);
    env.state
        .settings()
        .clock
        .advance(identity_api::service::api_keys::ApiKeys::TTL_SECS);
    assert!(!active(&env, key.expose()).await);
}

async fn cli(b: Backend) {
    let Some(env) = env(b, 0, None).await else {
        return;
    };
    let alice = user(&env, primary(), "alice", "viewer").await;
    let with = |args: &[&str]| {
        let mut c = common::cmd(args);
        c.env("IDENTITY_KEY_ENCRYPTION_KEY", &env.kek)
            .env("IDENTITY_DATABASE_URL", &env.url);
        c
    };
    let ok = |args: &[&str]| {
        let (ok, out, err) = common::run(&mut with(args));
        assert!(ok, "{args:?}: {err}");
        assert!(!err.contains("isk_"), "{err}");
        out
    };
    let refused = |args: &[&str]| {
        let (ok, out, err) = common::run(&mut with(args));
        assert!(!ok, "{args:?} succeeded: {out}");
        err
    };

    let created: Value =
        serde_json::from_str(ok(&["api-key", "create", "--user", "ALICE", "--json"]).trim())
            .unwrap();
    let key = created["api_key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    assert_eq!(created["user_id"], alice.user_id);
    assert_eq!(created["tenant"], "primary");
    assert!(active(&env, &key).await);
    let text = ok(&["api-key", "create", "--user", "alice"]);
    assert!(
        text.contains("api_key: isk_") && text.contains("shown once"),
        "{text}"
    );

    let listed = ok(&["api-key", "list", "--user", "Alice", "--json"]);
    assert!(!listed.contains(&key[17..]));
    let first: Value = listed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|k| k["key_id"] == key_id.as_str())
        .unwrap();
    assert_eq!(listed.lines().count(), 2);
    assert_eq!(first["state"], "active");
    assert_eq!(first["username"], "alice");
    assert_eq!(first["last_used_at"], Value::Null);

    let rotated: Value = serde_json::from_str(
        ok(&["api-key", "rotate", &key_id, "--overlap", "10m", "--json"]).trim(),
    )
    .unwrap();
    let new = rotated["api_key"].as_str().unwrap();
    assert!(rotated["previous_key_expires_at"].as_i64().unwrap() > identity_api::now() + 590);
    assert!(active(&env, new).await);
    let text = ok(&["api-key", "list", "--user", "alice"]);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&key_id) && l.contains("\treplaced\t")),
        "{text}"
    );

    let new_id = rotated["key_id"].as_str().unwrap();
    let out = ok(&["api-key", "revoke", new_id]);
    assert!(out.contains("revoked"), "{out}");
    let err = refused(&["api-key", "revoke", new_id]);
    assert!(
        err.contains(&format!("API key {new_id} is revoked")),
        "{err}"
    );
    let err = refused(&["api-key", "rotate", &key_id]);
    assert!(err.contains("replaced by a rotation"), "{err}");
    let err = refused(&["api-key", "rotate", "AAAAAAAAAAAA"]);
    assert!(
        err.contains("tenant primary has no API key AAAAAAAAAAAA"),
        "{err}"
    );
    let err = refused(&["api-key", "create", "--user", "nobody"]);
    assert!(err.contains("has no user nobody"), "{err}");
    let err = refused(&["api-key", "list", "--user", "alice", "--tenant", "nope"]);
    assert!(err.contains("has no user alice"), "{err}");
    let err = refused(&["api-key", "rotate", &key_id, "--overlap", "0"]);
    assert!(err.contains("at least 1 second"), "{err}");
    let events: Vec<String> = common::audit_rows(env.state.db())
        .await
        .into_iter()
        .filter(|r| r.event.starts_with("api_key_"))
        .map(|r| r.event)
        .collect();
    assert_eq!(
        events,
        [
            "api_key_create",
            "api_key_create",
            "api_key_rotate",
            "api_key_revoke"
        ]
    );
}
