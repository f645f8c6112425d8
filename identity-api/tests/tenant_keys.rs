//! A tenant's signing keys: RS256 and EdDSA tenants beside ES256 ones, keys read from a PEM file
//! (and read again when it changes), a reference that cannot be read stopping the start, and
//! keys stored before tenants keeping their `kid`. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, ISSUER, TestEnv, basic, s, send};
use identity_api::clients::{self, NewClient};
use identity_api::signing::{Algorithm, SigningKey};
use identity_api::storage::{SigningKeyRow, TenantId, TenantRow};
use serde_json::Value;

async fn create_tenant(
    env: &TestEnv,
    slug: &str,
    algorithm: Algorithm,
    key_ref: Option<String>,
) -> String {
    let state = &env.state;
    let id = TenantId::new(slug).unwrap();
    let now = identity_api::now();
    let row = TenantRow {
        algorithm: algorithm.as_str().to_owned(),
        signing_key_ref: key_ref,
        ..identity_api::service::state::default_tenant_row(&id, now)
    };
    common::create_tenant(state, row).await;
    let new = NewClient {
        grant_types: Some("client_credentials"),
        ..NewClient::new(&id, "s", "a")
    };
    let secret = clients::create(
        state.db(),
        state.verifier_key(),
        &format!("{slug}-app"),
        new,
        &common::operator(),
        now,
    )
    .await
    .unwrap();
    secret.expose().to_owned()
}

async fn token(env: &TestEnv, slug: &str, secret: &str) -> String {
    let (status, body) = common::send_form(
        &env.app,
        &format!("/t/{slug}/oauth/token"),
        &[("authorization", &basic(&format!("{slug}-app"), secret))],
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s(&body, "access_token")
}

async fn jwks(env: &TestEnv, slug: &str) -> Vec<Value> {
    let (status, body) = send(
        &env.app,
        "GET",
        &format!("/t/{slug}/.well-known/jwks.json"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["keys"].as_array().unwrap().clone()
}

/// Verifies `token` as a stock verifier would: with the tenant's JWKS and issuer only.
fn verify_with_jwks(token: &str, keys: &[Value], issuer: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let jwk = keys
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .ok_or("kid not in the JWKS")?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).map_err(|e| e.to_string())?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// ES256, RS256 and EdDSA tenants side by side: each signs with its own algorithm, publishes
/// it, says it in its metadata, and its tokens verify with its JWKS only.
async fn every_algorithm_beside_the_others(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let rs = create_tenant(&env, "rs", Algorithm::Rs256, None).await;
    let ed = create_tenant(&env, "ed", Algorithm::EdDsa, None).await;
    let es = create_tenant(&env, "es", Algorithm::Es256, None).await;
    env.state.reload_keys().await.unwrap();
    for (slug, secret, alg, kty) in [
        ("rs", &rs, "RS256", "RSA"),
        ("ed", &ed, "EdDSA", "OKP"),
        ("es", &es, "ES256", "EC"),
    ] {
        let token = token(&env, slug, secret).await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(
            format!("{:?}", header.alg).to_uppercase(),
            alg.to_uppercase()
        );
        let keys = jwks(&env, slug).await;
        assert_eq!(keys.len(), 1);
        assert_eq!(
            (keys[0]["alg"].as_str(), keys[0]["kty"].as_str()),
            (Some(alg), Some(kty))
        );
        let issuer = format!("{ISSUER}/t/{slug}");
        verify_with_jwks(&token, &keys, &issuer).unwrap();
        // Another tenant's JWKS does not verify it.
        let other = if slug == "rs" { "ed" } else { "rs" };
        assert!(verify_with_jwks(&token, &jwks(&env, other).await, &issuer).is_err());
        let (_, doc) = send(
            &env.app,
            "GET",
            &format!("/t/{slug}/.well-known/openid-configuration"),
            &[],
            vec![],
        )
        .await;
        assert_eq!(
            doc["access_token_signing_alg_values_supported"],
            serde_json::json!([alg])
        );
        // And it introspects as active in its tenant.
        let (status, body) = common::send_form(
            &env.app,
            &format!("/t/{slug}/oauth/introspect"),
            &[("authorization", &basic(&format!("{slug}-app"), secret))],
            &format!("token={token}"),
        )
        .await;
        assert_eq!(
            (status, &body["active"]),
            (StatusCode::OK, &Value::Bool(true)),
            "{slug}"
        );
    }
}

/// Writes a new key of `algorithm` to `path`: its kid, and the PEM to write it again.
fn write_pem(path: &std::path::Path, algorithm: Algorithm) -> (String, String) {
    let (key, der) = SigningKey::generate(algorithm).unwrap();
    let pem = pem_of(&der);
    std::fs::write(path, &pem).unwrap();
    (key.kid().to_owned(), pem)
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// A tenant whose key is a PEM file: its tokens carry the file key's kid; a new file is read at
/// the next reload, and the key it replaced stays published and verifying.
async fn a_key_read_from_a_file_and_again_when_it_changes(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ext.pem");
    let (first, first_pem) = write_pem(&path, Algorithm::Rs256);
    let secret = create_tenant(
        &env,
        "ext",
        Algorithm::Rs256,
        Some(format!("file:{}", path.display())),
    )
    .await;
    env.state.reload_keys().await.unwrap();
    let old_token = token(&env, "ext", &secret).await;
    assert_eq!(
        jsonwebtoken::decode_header(&old_token)
            .unwrap()
            .kid
            .unwrap(),
        first
    );
    // A later modification time or another length: the watcher's change test.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (second, _) = write_pem(&path, Algorithm::Rs256);
    env.state.reload_keys().await.unwrap();
    let new_token = token(&env, "ext", &secret).await;
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .unwrap(),
        second
    );
    let keys = jwks(&env, "ext").await;
    let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(
        kids.contains(&first.as_str()) && kids.contains(&second.as_str()),
        "{kids:?}"
    );
    verify_with_jwks(&old_token, &keys, &format!("{ISSUER}/t/ext")).unwrap();
    // Another replica on the same database verifies both (it read the file itself).
    let other = common::state_on(&env.url, &env.kek, common::settings()).await;
    let other_app = identity_api::app(other);
    let (_, answer) = common::send_form(
        &other_app,
        "/t/ext/oauth/introspect",
        &[("authorization", &basic("ext-app", &secret))],
        &format!("token={old_token}"),
    )
    .await;
    assert_eq!(answer["active"], true, "{answer}");

    // Back to the first key: active, published and verifying again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&path, format!("{first_pem}\n")).unwrap();
    env.state.reload_keys().await.unwrap();
    let again = token(&env, "ext", &secret).await;
    assert_eq!(
        jsonwebtoken::decode_header(&again).unwrap().kid.unwrap(),
        first
    );
    let keys = jwks(&env, "ext").await;
    verify_with_jwks(&again, &keys, &format!("{ISSUER}/t/ext")).unwrap();

    // Another tenant referencing the same key does not get it: one key, one tenant.
    let copy = dir.path().join("copy.pem");
    std::fs::write(&copy, &first_pem).unwrap();
    let twin = create_tenant(
        &env,
        "twin",
        Algorithm::Rs256,
        Some(format!("file:{}", copy.display())),
    )
    .await;
    env.state.reload_keys().await.unwrap();
    assert!(jwks(&env, "twin").await.is_empty());
    let answer = common::send_form(
        &env.app,
        "/t/twin/oauth/token",
        &[("authorization", &basic("twin-app", &twin))],
        "grant_type=client_credentials",
    )
    .await;
    common::assert_error(&answer, 503, "temporarily_unavailable");
    assert_eq!(jwks(&env, "ext").await.len(), 2);
    verify_with_jwks(&again, &jwks(&env, "ext").await, &format!("{ISSUER}/t/ext")).unwrap();

    // The file gone: the key read before signs on.
    std::fs::remove_file(&path).unwrap();
    env.state.reload_keys().await.unwrap();
    let still = token(&env, "ext", &secret).await;
    assert_eq!(
        jsonwebtoken::decode_header(&still).unwrap().kid.unwrap(),
        first
    );
    // `keys rotate` refuses a tenant whose key lives elsewhere.
    let row = env
        .state
        .db()
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.tenant_id.as_str() == "ext")
        .unwrap();
    let kek = identity_api::kek::Kek::parse(&env.kek).unwrap();
    let err = identity_api::keys::rotate(
        env.state.db(),
        &kek,
        &row,
        identity_api::now(),
        &common::operator(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("file:") && err.contains("ext"), "{err}");
    // A server that starts now cannot read it: it does not start, and says which reference.
    let err = identity_api::AppState::open(&env.url, kek, common::settings())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ext") && err.contains(&path.display().to_string()),
        "{err}"
    );
}

/// A key stored before tenants (its kid not a thumbprint) keeps signing under its kid.
async fn stored_keys_keep_their_kid(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let kek = identity_api::kek::Kek::parse(&env.kek).unwrap();
    let (key, der) = SigningKey::generate(Algorithm::Es256).unwrap();
    let kid = "legacy-kid-0001";
    let row = SigningKeyRow {
        kid: kid.to_owned(),
        private_key_enc: kek.seal(kid, &der).unwrap(),
        kek_id: kek.id().to_owned(),
        created_at: identity_api::now() + 1,
        retired_at: None,
        tenant_id: common::primary().clone(),
        algorithm: "ES256".into(),
        public_jwk: key.public_jwk().to_json(),
    };
    env.state
        .db()
        .insert_signing_key(&row, true, None)
        .await
        .unwrap();
    env.state.reload_keys().await.unwrap();
    let pair = env.issue().await;
    let token = s(&pair, "access_token");
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.unwrap(),
        kid
    );
    let (status, body) = env.introspect(&token, &token).await;
    assert_eq!(
        (status, &body["active"]),
        (StatusCode::OK, &Value::Bool(true)),
        "{body}"
    );
}

both!(
    every_algorithm_beside_the_others,
    a_key_read_from_a_file_and_again_when_it_changes,
    stored_keys_keep_their_kid,
);
