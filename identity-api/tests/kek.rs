//! Key-encryption key rotation end to end (current + previous, `kek rewrap`, then the previous
//! key removed), `kek generate`, and clear start errors with a wrong key. Both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{cmd, run};

use axum::http::StatusCode;
use common::{Backend, TestEnv, basic, new_kek_text, s};
use identity_api::kek::{self, Kek, Keks};
use identity_api::keys;
use identity_api::storage::Pools;
use identity_api::{AppState, Db, clients};

both!(
    kek_rotation_end_to_end,
    rewrap_refuses_rows_under_an_unknown_key,
    serve_with_a_wrong_kek_fails_clearly
);

fn kek(text: &str) -> Kek {
    Kek::parse(text).unwrap()
}

fn keks(current: &str, previous: Option<&str>) -> Keks {
    Keks::new(kek(current), previous.map(kek))
}

/// (table, name, kek_id) of every sealed row.
async fn sealed_rows(db: &Db) -> Vec<(String, String, Option<String>)> {
    const SQL: &str = "SELECT 'signing_keys' AS t, kid AS name, kek_id FROM signing_keys \
                       UNION ALL SELECT 'wrapped_keys' AS t, name, kek_id FROM wrapped_keys";
    let rows: Vec<(String, String, Option<String>)> = match db.pools() {
        Pools::Sqlite { write, .. } => sqlx::query_as(SQL).fetch_all(write).await.unwrap(),
        Pools::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
    };
    rows
}

async fn issue_status(state: &AppState, id: &str, secret: &str) -> StatusCode {
    let app = identity_api::app(state.clone());
    common::send(
        &app,
        "POST",
        "/api/v1/token/issue",
        &[("authorization", &basic(id, secret))],
        br#"{"subject": "u"}"#.to_vec(),
    )
    .await
    .0
}

async fn active(state: &AppState, bearer: &str, token: &str) -> bool {
    let app = identity_api::app(state.clone());
    let (status, body) = common::send(
        &app,
        "POST",
        "/api/v1/introspect",
        &[("authorization", &format!("Bearer {bearer}"))],
        serde_json::json!({ "token": token })
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["active"] == true
}

async fn kek_rotation_end_to_end(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let old_kek = env.kek.clone();
    let new_kek = new_kek_text();
    let (old_id, new_id) = (kek(&old_kek).id().to_owned(), kek(&new_kek).id().to_owned());
    assert_ne!(old_id, new_id);
    assert_eq!(old_id.len(), 16);
    let before = env.issue().await;
    let old_access = s(&before, "access_token");
    let rows = sealed_rows(env.state.db()).await;
    assert_eq!(
        rows.len(),
        4,
        "one signing key, the client-secret verifier key and the two keys of the users' \
         credentials: {rows:?}"
    );
    assert!(rows.iter().all(|r| r.2.as_deref() == Some(old_id.as_str())));

    // 1. Deploy with the new key as current and the old one as previous.
    let during = AppState::open(&env.url, keks(&new_kek, Some(&old_kek)), common::settings())
        .await
        .unwrap();
    assert!(active(&during, &old_access, &old_access).await);
    assert_eq!(
        issue_status(&during, "c1", &env.secret).await,
        StatusCode::OK
    );
    // New keys are sealed under the new key.
    let new_kid = keys::rotate(
        during.db(),
        &kek(&new_kek),
        &common::primary_row(during.db()).await,
        identity_api::now(),
        &common::operator(),
    )
    .await
    .unwrap();
    let secret3 = clients::create(
        during.db(),
        during.verifier_key(),
        "c3",
        common::any_subject(clients::NewClient::new(
            common::primary(),
            "orders.read",
            "orders-api",
        )),
        &common::operator(),
        identity_api::now(),
    )
    .await
    .unwrap();
    let rows = sealed_rows(during.db()).await;
    assert!(
        rows.iter()
            .any(|r| r.1 == new_kid && r.2.as_deref() == Some(new_id.as_str())),
        "{rows:?}"
    );

    // 2. `kek rewrap` (the binary), twice: the second run has nothing to do.
    let rewrap = |current: &str, previous: Option<&str>| {
        let mut c = cmd(&["kek", "rewrap", "--database-url", &env.url]);
        c.env("IDENTITY_KEY_ENCRYPTION_KEY", current);
        if let Some(previous) = previous {
            c.env("IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY", previous);
        }
        run(&mut c)
    };
    let (ok, out, err) = rewrap(&new_kek, Some(&old_kek));
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "rewrapped 4 rows under key-encryption key id {new_id}"
        )),
        "{out}"
    );
    assert!(!out.contains(&new_kek) && !err.contains(&new_kek) && !err.contains(&old_kek));
    let (ok, out, err) = rewrap(&new_kek, Some(&old_kek));
    assert!(ok, "{err}");
    assert!(out.contains("rewrapped 0 rows"), "{out}");
    let rows = sealed_rows(during.db()).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.2.as_deref() == Some(new_id.as_str())),
        "{rows:?}"
    );

    // 3. The previous key is no longer needed.
    let after = AppState::open(&env.url, kek(&new_kek), common::settings())
        .await
        .unwrap();
    assert!(active(&after, &old_access, &old_access).await);
    assert_eq!(
        issue_status(&after, "c1", &env.secret).await,
        StatusCode::OK
    );
    assert_eq!(
        issue_status(&after, "c2", &env.secret2).await,
        StatusCode::OK
    );
    assert_eq!(
        issue_status(&after, "c3", secret3.expose()).await,
        StatusCode::OK
    );
    assert_eq!(
        issue_status(&after, "c1", &env.secret2).await,
        StatusCode::UNAUTHORIZED
    );
    // The old refresh token still refreshes, with a bearer signed under the first key.
    let app = identity_api::app(after.clone());
    let (status, body) = common::send(
        &app,
        "POST",
        "/api/v1/token",
        &[("authorization", &format!("Bearer {old_access}"))],
        serde_json::json!({"grant_type": "refresh_token", "refresh_token": s(&before, "refresh_token")})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // And the old key alone no longer opens anything.
    let err = AppState::open(&env.url, kek(&old_kek), common::settings())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be decrypted"), "{err}");
    assert!(err.contains(&new_id) && err.contains(&old_id), "{err}");
    assert!(err.contains("no previous key"), "{err}");
}

async fn rewrap_refuses_rows_under_an_unknown_key(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let (a, c) = (new_kek_text(), new_kek_text());
    let err = kek::rewrap(env.state.db(), &keks(&a, Some(&c)), &common::operator())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be decrypted"), "{err}");
    assert!(
        err.contains(kek(&env.kek).id()),
        "names the key the row needs: {err}"
    );
    // Nothing changed: the original key still opens everything.
    let rows = sealed_rows(env.state.db()).await;
    assert!(
        rows.iter()
            .all(|r| r.2.as_deref() == Some(kek(&env.kek).id()))
    );
    // The binary says so and fails.
    let (ok, out, err) = run(cmd(&["kek", "rewrap", "--database-url", &env.url])
        .env("IDENTITY_KEY_ENCRYPTION_KEY", &a)
        .env("IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY", &c));
    assert!(!ok, "{out}");
    assert!(err.contains("cannot be decrypted"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A bad previous key is named as such.
    let (ok, _, err) = run(cmd(&["kek", "rewrap", "--database-url", &env.url])
        .env("IDENTITY_KEY_ENCRYPTION_KEY", &a)
        .env("IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY", "short"));
    assert!(!ok);
    assert!(err.contains("previous key-encryption key must be"), "{err}");
    assert!(!err.contains("short"), "{err}");
}

async fn serve_with_a_wrong_kek_fails_clearly(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let (ok, _, err) = run(cmd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &env.url,
        "--insecure-no-internal-token",
    ])
    .env("IDENTITY_KEY_ENCRYPTION_KEY", new_kek_text()));
    assert!(!ok);
    assert!(err.contains("cannot be decrypted"), "{err}");
    assert!(err.contains(kek(&env.kek).id()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn kek_generate_prints_a_usable_key() {
    let (ok, out, err) = run(&mut cmd(&["kek", "generate"]));
    assert!(ok, "{err}");
    let text = out.trim();
    assert_eq!(text.len(), 43, "{out}");
    let key = Kek::parse(text).unwrap();
    assert!(err.contains(key.id()), "{err}");
    let (_, again, _) = run(&mut cmd(&["kek", "generate"]));
    assert_ne!(again.trim(), text);
}

#[test]
fn help_names_the_new_flags_and_variables() {
    let (ok, out, _) = run(&mut cmd(&["kek", "rewrap", "--help"]));
    assert!(ok);
    for flag in [
        "--database-url",
        "--database-url-file",
        "--key-encryption-key",
        "--previous-key-encryption-key",
        "--previous-key-encryption-key-file",
        "IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY",
        "IDENTITY_DATABASE_URL_FILE",
    ] {
        assert!(out.contains(flag), "kek rewrap --help lacks {flag}: {out}");
    }
    let (_, out, _) = run(&mut cmd(&["serve", "--help"]));
    for flag in [
        "--internal-token-file",
        "IDENTITY_INTERNAL_TOKEN_FILE",
        "--previous-key-encryption-key",
    ] {
        assert!(out.contains(flag), "serve --help lacks {flag}: {out}");
    }
    let (_, out, _) = run(&mut cmd(&["--help"]));
    assert!(out.contains("kek"), "{out}");
}
