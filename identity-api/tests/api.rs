//! PROTOCOL.md section 5 over HTTP (in-process, `oneshot`), on SQLite and on PostgreSQL:
//! issue, introspect, refresh, revoke with every error of the section, malformed bodies, bearer
//! variants, internal token, discovery, health and metrics (subject binding:
//! `subject_binding.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, TestEnv, assert_error, basic, claims_of, exec, s, sign_with};
use identity_api::storage::Scope;
use identity_runtime::InternalToken;
use serde_json::json;

both!(
    issue_answer_and_token_shape,
    issue_errors,
    introspect_semantics,
    introspect_errors,
    refresh_rotation_and_reuse,
    refresh_errors,
    revoke_semantics,
    internal_token_enforced,
    discovery_and_operations,
    bearer_variants,
    disabling_a_client_revokes_its_families,
    client_changes_act_at_once_on_issue,
    storage_holds_hashes_and_audit_holds_no_secret,
);

async fn issue_answer_and_token_shape(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let pair = env.issue().await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["refresh_expires_in"], 86_400);
    assert_eq!(pair["scope"], "orders.read orders.write");
    let access = s(&pair, "access_token");
    assert!(!s(&pair, "refresh_token").contains('.'));

    // RFC 9068 header and claims, verifiable with the published JWKS.
    let header = jsonwebtoken::decode_header(&access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let kid = header.kid.unwrap();
    let (_, jwks) = env.get("/.well-known/jwks.json").await;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap()
            .clone(),
    )
    .unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["orders-api"]);
    v.set_issuer(&[common::ISSUER]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&access, &key, &v).unwrap();
    let c = data.claims;
    assert_eq!(c["sub"], "test-user");
    assert_eq!(c["client_id"], "c1");
    assert_eq!(c["scope"], "orders.read orders.write");
    for claim in ["iat", "exp", "jti", "fid"] {
        assert!(!c[claim].is_null(), "missing {claim}");
    }

    // Narrower scope, explicit audience; the answer's scope is what introspection shows.
    let (status, pair) = env
        .post(
            "/api/v1/token/issue",
            &[("authorization", &basic("c1", &env.secret))],
            r#"{"subject": "u2", "scope": "orders.write", "audience": "orders-api"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pair["scope"], "orders.write");
    let (_, info) = env
        .introspect(&s(&pair, "access_token"), &s(&pair, "access_token"))
        .await;
    assert_eq!(info["scope"], "orders.write");

    // 255 characters is the longest subject.
    let long = "é".repeat(255);
    env.issue_for("c1", &env.secret, &long).await;
    // A client with several audiences may pick one.
    let (status, _) = env
        .post(
            "/api/v1/token/issue",
            &[("authorization", &basic("multi", "x"))],
            r#"{"subject": "u"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn issue_errors(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let ok_auth = basic("c1", &env.secret);
    let issue = |auth: String, body: &'static str| {
        let env = &env;
        async move {
            env.post("/api/v1/token/issue", &[("authorization", &auth)], body)
                .await
        }
    };
    let body = r#"{"subject": "u"}"#;
    // Client authentication: all the same answer.
    let r = env.post("/api/v1/token/issue", &[], body).await;
    assert_error(&r, 401, "invalid_client");
    assert_error(
        &issue(basic("c1", "wrong"), body).await,
        401,
        "invalid_client",
    );
    assert_error(
        &issue(basic("nobody", &env.secret), body).await,
        401,
        "invalid_client",
    );
    assert_error(
        &issue(basic("c2", &env.secret), body).await,
        401,
        "invalid_client",
    );
    assert_error(
        &issue("Basic !!!".into(), body).await,
        401,
        "invalid_client",
    );
    assert_error(
        &issue("Basic YzE=".into(), body).await,
        401,
        "invalid_client",
    );
    // An id no client can have, a NUL included (PostgreSQL refuses it in text): not looked up,
    // the same answer as an unknown client.
    for id in ["c\u{0}", "c 1", "c\u{e9}", ""] {
        assert_error(
            &issue(basic(id, &env.secret), body).await,
            401,
            "invalid_client",
        );
    }
    assert_error(
        &issue(format!("Bearer {}", env.secret), body).await,
        401,
        "invalid_client",
    );
    identity_api::clients::set_enabled(
        env.state.db(),
        Scope::AnyTenant,
        "c1",
        false,
        &common::operator(),
    )
    .await
    .unwrap();
    assert_error(&issue(ok_auth.clone(), body).await, 401, "invalid_client");
    identity_api::clients::set_enabled(
        env.state.db(),
        Scope::AnyTenant,
        "c1",
        true,
        &common::operator(),
    )
    .await
    .unwrap();
    assert_eq!(issue(ok_auth.clone(), body).await.0, StatusCode::OK);
    // The scheme is case-insensitive.
    let lower = ok_auth.replacen("Basic", "basic", 1);
    assert_eq!(issue(lower, body).await.0, StatusCode::OK);

    // Scope and audience.
    for bad in [
        r#"{"subject": "u", "scope": "admin"}"#,
        r#"{"subject": "u", "scope": "orders.read admin"}"#,
        r#"{"subject": "u", "scope": ""}"#,
        r#"{"subject": "u", "scope": "orders.read\"x"}"#,
    ] {
        assert_error(&issue(ok_auth.clone(), bad).await, 400, "invalid_scope");
    }
    let r = issue(
        ok_auth.clone(),
        r#"{"subject": "u", "audience": "billing-api"}"#,
    )
    .await;
    assert_error(&r, 400, "invalid_target");
    assert_eq!(
        r.1["error_description"],
        "audience is not allowed for this client"
    );
    // Malformed requests.
    let too_long = format!(r#"{{"subject": "{}"}}"#, "a".repeat(256));
    for bad in [
        "",
        "{",
        "not json",
        "[]",
        "null",
        "{}",
        r#"{"subject": ""}"#,
        r#"{"subject": "-"}"#,
        r#"{"subject": 42}"#,
        r#"{"subject": null}"#,
        r#"{"subject": "u", "scope": ["orders.read"]}"#,
        r#"{"subject": "u", "audience": 1}"#,
        r#"{"subject": "a\nb"}"#,
        too_long.as_str(),
    ] {
        let r = env
            .post("/api/v1/token/issue", &[("authorization", &ok_auth)], bad)
            .await;
        assert_error(&r, 400, "invalid_request");
    }
    // A client with several audiences must name one.
    let multi = identity_api::clients::rotate_secret(
        env.state.db(),
        env.state.verifier_key(),
        Scope::AnyTenant,
        "multi",
        None,
        &common::operator(),
        identity_api::now(),
    )
    .await
    .unwrap();
    let auth = basic("multi", multi.expose());
    let r = issue(auth.clone(), body).await;
    assert_error(&r, 400, "invalid_request");
    // The audience rule of /oauth/token's client_credentials grant, in this route's words.
    assert_eq!(
        r.1["error_description"],
        "audience is required: the client has several audiences"
    );
    let r = env
        .post(
            "/api/v1/token/issue",
            &[("authorization", &auth)],
            r#"{"subject": "u", "audience": "billing-api"}"#,
        )
        .await;
    assert_eq!(r.0, StatusCode::OK);
    // Oversized body.
    let big = format!(r#"{{"subject": "u", "pad": "{}"}}"#, "x".repeat(70_000));
    let r = common::send(
        &env.app,
        "POST",
        "/api/v1/token/issue",
        &[("authorization", &ok_auth)],
        big.into_bytes(),
    )
    .await;
    assert_error(&r, 413, "payload_too_large");
    // Unknown fields are ignored.
    let r = env
        .post(
            "/api/v1/token/issue",
            &[("authorization", &ok_auth)],
            r#"{"subject": "u", "extra": {"a": 1}}"#,
        )
        .await;
    assert_eq!(r.0, StatusCode::OK);
}

async fn introspect_semantics(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let pair = env.issue().await;
    let access = s(&pair, "access_token");
    let refresh = s(&pair, "refresh_token");

    let (status, info) = env.introspect(&access, &access).await;
    assert_eq!(status, StatusCode::OK);
    let c = claims_of(&access);
    assert_eq!(
        info,
        json!({
            "active": true, "token_use": "access_token", "token_type": "Bearer",
            "sub": "test-user", "client_id": "c1", "scope": "orders.read orders.write",
            "aud": ["orders-api"], "iss": common::ISSUER, "exp": c.exp, "iat": c.iat, "jti": c.jti,
        })
    );
    let (_, info) = env.introspect(&access, &refresh).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["token_use"], "refresh_token");
    assert_eq!(info["aud"], json!(["orders-api"]));
    assert_eq!(info["scope"], "orders.read orders.write");
    assert_eq!(info["sub"], "test-user");
    assert!(info.get("token_type").is_none());
    // The hint does not change the answer.
    let (_, hinted) = env
        .post(
            "/api/v1/introspect",
            &[("authorization", &format!("Bearer {access}"))],
            &json!({"token": refresh, "token_type_hint": "access_token"}).to_string(),
        )
        .await;
    assert_eq!(hinted, info);

    // Another client's tokens: exactly {"active": false}.
    let other = env.issue_for("c2", &env.secret2, "test-user").await;
    for t in [s(&other, "access_token"), s(&other, "refresh_token")] {
        let (status, info) = env.introspect(&access, &t).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info, json!({"active": false}));
    }
    // Unknown and garbage tokens.
    for t in ["garbage", "a.b.c", &"x".repeat(43), &"x".repeat(44)] {
        assert_eq!(env.introspect(&access, t).await.1, json!({"active": false}));
    }
    // A spent refresh token is inactive; the access token issued before stays active.
    let (status, next) = env.refresh(&access, &refresh).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        env.introspect(&access, &refresh).await.1,
        json!({"active": false})
    );
    assert_eq!(env.introspect(&access, &access).await.1["active"], true);
    let new_access = s(&next, "access_token");
    assert_eq!(
        env.introspect(&new_access, &new_access).await.1["active"],
        true
    );
    // An expired access token is inactive.
    let mut expired = claims_of(&access);
    expired.exp = identity_api::now() - 10;
    expired.jti = "expired".into();
    let expired = sign_with(&env.state, &expired);
    assert_eq!(
        env.introspect(&access, &expired).await.1,
        json!({"active": false})
    );
}

async fn introspect_errors(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let pair = env.issue().await;
    let access = s(&pair, "access_token");
    let r = env
        .post(
            "/api/v1/introspect",
            &[],
            &json!({"token": access}).to_string(),
        )
        .await;
    assert_error(&r, 401, "invalid_token");
    // An expired bearer is not active.
    let mut c = claims_of(&access);
    c.exp = identity_api::now() - 1;
    let expired = sign_with(&env.state, &c);
    assert_error(
        &env.introspect(&expired, &access).await,
        401,
        "invalid_token",
    );
    for bad in [
        r#"{}"#,
        r#"{"token": ""}"#,
        r#"{"token": 5}"#,
        r#"{"token": "x", "token_type_hint": 1}"#,
        "nope",
    ] {
        let r = env
            .post(
                "/api/v1/introspect",
                &[("authorization", &format!("Bearer {access}"))],
                bad,
            )
            .await;
        assert_error(&r, 400, "invalid_request");
    }
}

/// Bearer checks shared by introspect, refresh and revoke.
async fn bearer_variants(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let pair = env.issue().await;
    let access = s(&pair, "access_token");
    let refresh = s(&pair, "refresh_token");
    // Wrong issuer, signed with our own key.
    let mut c = claims_of(&access);
    c.iss = "https://elsewhere.test".into();
    let wrong_iss = sign_with(&env.state, &c);
    // Signed by a key this server never had (another instance with its own database).
    let Some(foreign) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let foreign_token = sign_with(&foreign.state, &claims_of(&access));
    // A valid signature over other claims: flip one byte of the signature.
    let mut tampered = access.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let none_alg = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.{}.",
        access.split('.').nth(1).unwrap()
    );
    let bad = [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        wrong_iss,
        foreign_token,
        tampered,
        none_alg,
        refresh.clone(),
    ];
    for bearer in &bad {
        assert_error(&env.introspect(bearer, &access).await, 401, "invalid_token");
        assert_error(&env.refresh(bearer, &refresh).await, 401, "invalid_token");
        assert_error(&env.revoke(bearer, &refresh).await, 401, "invalid_token");
    }
    // Other schemes and forms.
    for header in [
        format!("Basic {access}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        access.clone(),
    ] {
        let r = env
            .post(
                "/api/v1/introspect",
                &[("authorization", &header)],
                &json!({"token": access}).to_string(),
            )
            .await;
        assert_error(&r, 401, "invalid_token");
    }
    let r = env
        .post(
            "/api/v1/introspect",
            &[("authorization", &format!("bEaReR {access}"))],
            &json!({"token": access}).to_string(),
        )
        .await;
    assert_eq!(r.0, StatusCode::OK);
    // The family is still intact: none of the above revoked anything.
    assert_eq!(env.introspect(&access, &refresh).await.1["active"], true);
}

async fn refresh_rotation_and_reuse(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let pair = env.issue().await;
    let a1 = s(&pair, "access_token");
    let r1 = s(&pair, "refresh_token");
    let (status, p2) = env.refresh(&a1, &r1).await;
    assert_eq!(status, StatusCode::OK, "{p2}");
    assert_eq!(p2["token_type"], "Bearer");
    assert_eq!(p2["scope"], "orders.read orders.write");
    assert!(p2["refresh_expires_in"].as_i64().unwrap() > 0);
    let a2 = s(&p2, "access_token");
    let r2 = s(&p2, "refresh_token");
    assert_eq!(claims_of(&a1).fid, claims_of(&a2).fid, "same family");
    assert_ne!(r1, r2);
    // An expired bearer of the family may refresh.
    let mut c = claims_of(&a2);
    c.exp = identity_api::now() - 100;
    let expired_bearer = sign_with(&env.state, &c);
    let (status, p3) = env.refresh(&expired_bearer, &r2).await;
    assert_eq!(status, StatusCode::OK, "{p3}");
    let a3 = s(&p3, "access_token");
    let r3 = s(&p3, "refresh_token");

    // Presenting a spent token revokes the whole family.
    assert_error(&env.refresh(&a3, &r1).await, 400, "invalid_grant");
    for t in [&a1, &a2, &a3, &r3] {
        let other = env.issue_for("c1", &env.secret, "test-user").await;
        let bearer = s(&other, "access_token");
        assert_eq!(env.introspect(&bearer, t).await.1, json!({"active": false}));
    }
    // Every bearer of the family is now refused.
    assert_error(&env.introspect(&a3, &a3).await, 401, "invalid_token");
    assert_error(&env.refresh(&a3, &r3).await, 401, "invalid_token");
    // The audit trail saw it, without any token.
    let events = env.state.db().audit_events(20).await.unwrap();
    assert!(events.iter().any(|e| e.0 == "reuse_detected"));
    assert!(events.iter().filter(|e| e.0 == "refresh").count() >= 2);
    let (_, metrics) = common::send(&env.app, "GET", "/metrics", &[], vec![]).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    for line in [
        "identity_api_refresh_reuse_detected_total 1",
        r#"identity_api_refreshes_total{outcome="rotated"} 2"#,
        r#"identity_api_refreshes_total{outcome="reuse"} 1"#,
        "identity_api_revocations_total 1",
        // The pair of the family, and the four issued to introspect with.
        "identity_api_tokens_issued_total 5",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
}

async fn refresh_errors(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let pair = env.issue().await;
    let access = s(&pair, "access_token");
    let refresh = s(&pair, "refresh_token");
    let bearer = [("authorization", format!("Bearer {access}"))];
    let bearer: Vec<(&str, &str)> = bearer.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let post = |body: String| {
        let env = &env;
        let bearer = bearer.clone();
        async move { env.post("/api/v1/token", &bearer, &body).await }
    };
    assert_error(
        &post(json!({"refresh_token": refresh}).to_string()).await,
        400,
        "invalid_request",
    );
    assert_error(
        &post(json!({"grant_type": "password", "refresh_token": refresh}).to_string()).await,
        400,
        "unsupported_grant_type",
    );
    assert_error(
        &post(json!({"grant_type": "refresh_token"}).to_string()).await,
        400,
        "invalid_request",
    );
    assert_error(
        &post(json!({"grant_type": "refresh_token", "refresh_token": 1}).to_string()).await,
        400,
        "invalid_request",
    );
    assert_error(&post("{".into()).await, 400, "invalid_request");
    assert_error(&env.refresh(&access, "unknown").await, 400, "invalid_grant");

    // Another client's or another subject's token: refused, and nothing is revoked.
    let other_client = env.issue_for("c2", &env.secret2, "test-user").await;
    let other_subject = env.issue_for("c1", &env.secret, "someone-else").await;
    for other in [&other_client, &other_subject] {
        assert_error(
            &env.refresh(&access, &s(other, "refresh_token")).await,
            400,
            "invalid_grant",
        );
        let (status, _) = env
            .refresh(&s(other, "access_token"), &s(other, "refresh_token"))
            .await;
        assert_eq!(status, StatusCode::OK, "the other family is intact");
    }
    // Expired refresh token.
    let second = env.issue().await;
    exec(
        env.state.db(),
        "UPDATE refresh_tokens SET expires_at = 0 WHERE spent = FALSE",
    )
    .await;
    assert_error(
        &env.refresh(&s(&second, "access_token"), &s(&second, "refresh_token"))
            .await,
        400,
        "invalid_grant",
    );
    // A family past its absolute lifetime (30 days by default), its refresh token still fresh.
    let aged = env.issue().await;
    exec(
        env.state.db(),
        &format!(
            "UPDATE token_families SET expires_at = 0 WHERE family_id = '{}'",
            claims_of(&s(&aged, "access_token")).fid
        ),
    )
    .await;
    assert_error(
        &env.refresh(&s(&aged, "access_token"), &s(&aged, "refresh_token"))
            .await,
        400,
        "invalid_grant",
    );
    // A token of a revoked family, presented with a bearer of another family.
    let third = env.issue().await;
    let fourth = env.issue().await;
    let (status, _) = env
        .revoke(&s(&third, "access_token"), &s(&third, "access_token"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &env.refresh(&s(&fourth, "access_token"), &s(&third, "refresh_token"))
            .await,
        400,
        "invalid_grant",
    );
    // Its bearer is refused.
    assert_error(
        &env.refresh(&s(&third, "access_token"), &s(&fourth, "refresh_token"))
            .await,
        401,
        "invalid_token",
    );
}

async fn revoke_semantics(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let keeper = env.issue().await; // a bearer of another family
    let bearer = s(&keeper, "access_token");

    // Revoking the refresh token revokes the family: its access token too.
    let p = env.issue().await;
    assert_eq!(
        env.revoke(&bearer, &s(&p, "refresh_token")).await.1,
        json!({"revoked": true})
    );
    assert_eq!(
        env.introspect(&bearer, &s(&p, "access_token")).await.1,
        json!({"active": false})
    );
    // Already revoked: still true.
    assert_eq!(
        env.revoke(&bearer, &s(&p, "access_token")).await.1,
        json!({"revoked": true})
    );

    // Revoking by access token; a spent refresh token also names its family.
    let p = env.issue().await;
    let (_, p2) = env
        .refresh(&s(&p, "access_token"), &s(&p, "refresh_token"))
        .await;
    assert_eq!(
        env.revoke(&bearer, &s(&p, "refresh_token")).await.1,
        json!({"revoked": true})
    );
    assert_eq!(
        env.introspect(&bearer, &s(&p2, "refresh_token")).await.1,
        json!({"active": false})
    );

    // An expired access token names its family too, and the bearer may be expired.
    let p = env.issue().await;
    let mut c = claims_of(&s(&p, "access_token"));
    c.exp = identity_api::now() - 5;
    let expired = sign_with(&env.state, &c);
    let mut kc = claims_of(&bearer);
    kc.exp = identity_api::now() - 5;
    let expired_bearer = sign_with(&env.state, &kc);
    assert_eq!(
        env.revoke(&expired_bearer, &expired).await.1,
        json!({"revoked": true})
    );
    assert_eq!(
        env.introspect(&bearer, &s(&p, "refresh_token")).await.1["active"],
        false
    );

    // Unknown tokens.
    for t in ["unknown", "a.b.c"] {
        let (status, body) = env.revoke(&bearer, t).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"revoked": false}));
    }
    // Another client's or subject's token.
    let other_client = env.issue_for("c2", &env.secret2, "test-user").await;
    let other_subject = env.issue_for("c1", &env.secret, "someone-else").await;
    for other in [&other_client, &other_subject] {
        for t in [s(other, "refresh_token"), s(other, "access_token")] {
            assert_error(&env.revoke(&bearer, &t).await, 403, "unauthorized_client");
        }
        assert_eq!(
            env.introspect(&s(other, "access_token"), &s(other, "access_token"))
                .await
                .1["active"],
            true
        );
    }
    // Malformed.
    let r = env
        .post(
            "/api/v1/revoke",
            &[("authorization", &format!("Bearer {bearer}"))],
            r#"{"token_type_hint": "refresh_token"}"#,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    // A bearer of a revoked family is refused; revoking oneself works once.
    assert_eq!(
        env.revoke(&bearer, &bearer).await.1,
        json!({"revoked": true})
    );
    assert_error(&env.revoke(&bearer, &bearer).await, 401, "invalid_token");
    let events = env.state.db().audit_events(50).await.unwrap();
    assert!(events.iter().any(|e| e.0 == "revoke"));
}

async fn internal_token_enforced(b: Backend) {
    let Some(env) = TestEnv::with(b, |s| {
        s.internal_token = Some(InternalToken::new("sidecar-secret-7e4c1a9b2f5d8036").unwrap());
    })
    .await
    else {
        return;
    };
    let auth = basic("c1", &env.secret);
    let body = r#"{"subject": "u"}"#;
    for headers in [
        vec![("authorization", auth.as_str())],
        vec![
            ("authorization", auth.as_str()),
            (identity_protocol::headers::INTERNAL_TOKEN, "wrong"),
        ],
        vec![
            ("authorization", auth.as_str()),
            (
                identity_protocol::headers::INTERNAL_TOKEN,
                "sidecar-secret-7e4c1a9b2f5d803",
            ),
        ],
        vec![
            ("authorization", auth.as_str()),
            (identity_protocol::headers::INTERNAL_TOKEN, ""),
        ],
    ] {
        let r = env.post("/api/v1/token/issue", &headers, body).await;
        assert_error(&r, 403, "access_denied");
    }
    for path in ["/api/v1/introspect", "/api/v1/token", "/api/v1/revoke"] {
        assert_error(&env.post(path, &[], "{}").await, 403, "access_denied");
    }
    let r = env
        .post(
            "/api/v1/token/issue",
            &[
                ("authorization", &auth),
                (
                    identity_protocol::headers::INTERNAL_TOKEN,
                    "sidecar-secret-7e4c1a9b2f5d8036",
                ),
            ],
            body,
        )
        .await;
    assert_eq!(r.0, StatusCode::OK);
    // Health and discovery are not behind the token.
    assert_eq!(env.get("/health").await.0, StatusCode::OK);
    assert_eq!(env.get("/.well-known/jwks.json").await.0, StatusCode::OK);
}

async fn discovery_and_operations(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let (status, config) = env.get("/.well-known/openid-configuration").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["issuer"], common::ISSUER);
    assert_eq!(
        config["jwks_uri"],
        format!("{}/.well-known/jwks.json", common::ISSUER)
    );
    // The standard endpoints (their metadata in full: tests/oauth_introspect_revoke.rs); nothing
    // of /api/v1, which only the sealed channel reaches.
    assert_eq!(
        config["introspection_endpoint"],
        format!("{}/oauth/introspect", common::ISSUER)
    );
    assert_eq!(
        config["revocation_endpoint"],
        format!("{}/oauth/revoke", common::ISSUER)
    );
    assert_eq!(
        config["token_endpoint"],
        format!("{}/oauth/token", common::ISSUER)
    );
    assert!(!config.to_string().contains("/api/v1"), "{config}");
    assert!(!config.to_string().contains("\"bearer\""), "{config}");
    let (_, jwks) = env.get("/.well-known/jwks.json").await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0].get("d").is_none());

    assert_eq!(
        env.get("/health").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (status, ready) = env.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    assert_eq!(env.get("/version").await.1["name"], "identity-api");
    let _ = env.issue().await;
    let pair = env.issue().await;
    let access = s(&pair, "access_token");
    env.introspect(&access, &access).await;
    let (status, metrics) = env.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("identity_api_tokens_issued_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("identity_api_introspections_total{result=\"active_access\"} 1"));
    assert!(metrics.contains("identity_api_request_duration_seconds_bucket"));
    // One after the other, the two issues are a batch each.
    for line in [
        "identity_api_storage_batches_total{kind=\"writes\",outcome=\"answered\"} 2",
        "identity_api_storage_batches_total{kind=\"writes\",outcome=\"split\"} 0",
        "identity_api_storage_batch_calls_total{kind=\"writes\"} 2",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
    // 404 / 405 in the same JSON shape.
    assert_error(&env.get("/nope").await, 404, "not_found");
    assert_error(&env.get("/api/v1/token").await, 405, "method_not_allowed");

    // The ops app serves health, version and metrics, and nothing of the API.
    let ops = identity_api::ops_app(env.state.clone());
    let get = |path: &'static str| common::send(&ops, "GET", path, &[], Vec::new());
    assert_eq!(get("/health").await.0, StatusCode::OK);
    assert_eq!(get("/health/ready").await.0, StatusCode::OK);
    assert_eq!(get("/version").await.1["name"], "identity-api");
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("identity_api_tokens_issued_total 2")
    );
    for path in [
        "/api/v1/introspect",
        "/api/v1/token/issue",
        "/.well-known/jwks.json",
    ] {
        assert_error(
            &common::send(&ops, "POST", path, &[], b"{}".to_vec()).await,
            404,
            "not_found",
        );
    }
}

/// `client disable` stops more than Basic logins: every family of the client is revoked in the
/// same transaction, so its refresh tokens and access tokens stop working at once, with one
/// audit row for each family it revoked (not for one revoked before, nor another client's).
async fn disabling_a_client_revokes_its_families(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let pair = env.issue().await;
    let (a1, r1) = (s(&pair, "access_token"), s(&pair, "refresh_token"));
    let gone = env.issue().await;
    let (status, _) = env
        .revoke(&s(&gone, "access_token"), &s(&gone, "refresh_token"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let third = env.issue().await;
    let other = env.issue_for("c2", &env.secret2, "test-user").await;
    let other_bearer = s(&other, "access_token");
    assert_eq!(env.introspect(&a1, &a1).await.1["active"], true);

    identity_api::clients::set_enabled(
        env.state.db(),
        Scope::AnyTenant,
        "c1",
        false,
        &common::operator(),
    )
    .await
    .unwrap();
    // Its bearer belongs to a revoked family now: refused as a bearer, inactive as a token.
    assert_error(&env.refresh(&a1, &r1).await, 401, "invalid_token");
    assert_error(&env.introspect(&a1, &a1).await, 401, "invalid_token");
    assert_error(&env.revoke(&a1, &r1).await, 401, "invalid_token");
    let (status, body) = env.introspect(&other_bearer, &a1).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"active": false})));
    // Another client's family is untouched.
    assert_eq!(
        env.introspect(&other_bearer, &other_bearer).await.1["active"],
        true
    );
    assert_error(
        &env.refresh(&s(&third, "access_token"), &s(&third, "refresh_token"))
            .await,
        401,
        "invalid_token",
    );
    let events = env.state.db().audit_events(20).await.unwrap();
    let issued: Vec<_> = events
        .iter()
        .filter(|e| e.0 == "issue" && e.1.as_deref() == Some("c1"))
        .map(|e| e.2.clone())
        .collect();
    assert_eq!(issued.len(), 3, "{events:?}");
    let mut disabled: Vec<_> = events
        .iter()
        .filter(|e| e.3 == "client_disabled")
        .map(|e| (e.0.as_str(), e.1.as_deref(), e.2.clone()))
        .collect();
    disabled.sort();
    let mut expected = vec![
        ("revoke", Some("c1"), issued[0].clone()),
        ("revoke", Some("c1"), issued[2].clone()),
    ];
    expected.sort();
    assert_eq!(disabled, expected, "{events:?}");

    // Enabling it again does not bring the old families back.
    identity_api::clients::set_enabled(
        env.state.db(),
        Scope::AnyTenant,
        "c1",
        true,
        &common::operator(),
    )
    .await
    .unwrap();
    assert_error(&env.refresh(&a1, &r1).await, 401, "invalid_token");
    let fresh = env.issue().await;
    let bearer = s(&fresh, "access_token");
    assert_eq!(env.introspect(&bearer, &bearer).await.1["active"], true);
}

/// Issue answers from a cache of client rows once a client has authenticated; a
/// `rotate-secret`, `client disable` or `client enable` still acts on the very next issue: the
/// new secret works and the old one does not, a disabled client gets `invalid_client` and no
/// family is stored for it, an enabled one issues again. A request refused for its own fault
/// (a scope the client may not have) by a client whose cached row is stale gets
/// `invalid_client` too, as without the cache.
async fn client_changes_act_at_once_on_issue(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let db = env.state.db();
    let key = env.state.verifier_key();
    let issue_body = |secret: String, body: &'static str| {
        let env = &env;
        async move {
            env.post(
                "/api/v1/token/issue",
                &[("authorization", &basic("c1", &secret))],
                body,
            )
            .await
        }
    };
    let issue = |secret: String| issue_body(secret, r#"{"subject": "test-user"}"#);
    let bad_scope = |secret: String| issue_body(secret, r#"{"subject": "u", "scope": "nope"}"#);
    let issues_stored = || async {
        let events = db.audit_events(1000).await.unwrap();
        events.iter().filter(|e| e.0 == "issue").count()
    };
    let rotate = || async {
        identity_api::clients::rotate_secret(
            db,
            key,
            Scope::AnyTenant,
            "c1",
            None,
            &common::operator(),
            identity_api::now(),
        )
        .await
        .unwrap()
        .expose()
        .to_owned()
    };
    let set_enabled = |enabled: bool| async move {
        identity_api::clients::set_enabled(db, Scope::AnyTenant, "c1", enabled, &common::operator())
            .await
            .unwrap()
    };
    // Each change is met twice with the old row cached: by an issue, which the write refuses
    // (and which evicts the row), and by a bad request, which reads the client afresh.
    let old = env.secret.clone();
    assert_eq!(issue(old.clone()).await.0, StatusCode::OK);

    let new = rotate().await;
    let before = issues_stored().await;
    assert_error(&issue(old.clone()).await, 401, "invalid_client");
    assert_eq!(
        issues_stored().await,
        before,
        "nothing stored for the old secret"
    );
    assert_eq!(issue(new.clone()).await.0, StatusCode::OK);
    assert_error(&issue(old).await, 401, "invalid_client");
    let newer = rotate().await;
    assert_error(&bad_scope(new).await, 401, "invalid_client");
    let new = newer;

    assert_eq!(issue(new.clone()).await.0, StatusCode::OK);
    set_enabled(false).await;
    let before = issues_stored().await;
    for _ in 0..2 {
        assert_error(&issue(new.clone()).await, 401, "invalid_client");
    }
    assert_eq!(
        issues_stored().await,
        before,
        "nothing stored while disabled"
    );
    set_enabled(true).await;
    assert_eq!(issue(new.clone()).await.0, StatusCode::OK);
    set_enabled(false).await;
    assert_error(&bad_scope(new.clone()).await, 401, "invalid_client");

    set_enabled(true).await;
    let pair = issue(new.clone()).await;
    assert_eq!(pair.0, StatusCode::OK, "{}", pair.1);
    // A client still enabled with this secret gets its request's own error, from the cache too.
    assert_error(&bad_scope(new).await, 400, "invalid_scope");
    let bearer = s(&pair.1, "access_token");
    assert_eq!(env.introspect(&bearer, &bearer).await.1["active"], true);
}

/// Refresh tokens are stored only as SHA-256 hashes, and the audit trail (when, event, client,
/// subject, family, outcome) never holds a token or a secret.
async fn storage_holds_hashes_and_audit_holds_no_secret(b: Backend) {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::{Digest, Sha256};
    use sqlx::Row;
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let p1 = env.issue().await;
    let (a1, r1) = (s(&p1, "access_token"), s(&p1, "refresh_token"));
    let (status, p2) = env.refresh(&a1, &r1).await;
    assert_eq!(status, StatusCode::OK, "{p2}");
    let (a2, r2) = (s(&p2, "access_token"), s(&p2, "refresh_token"));
    assert_eq!(env.revoke(&a2, &r2).await.1, json!({"revoked": true}));

    let hashes_sql = "SELECT token_hash FROM refresh_tokens";
    // The events of requests (administrative changes, with an actor: tests/admin_audit.rs).
    let audit_sql = "SELECT at, event, client_id, subject, family_id, outcome FROM audit_events \
                     WHERE actor IS NULL ORDER BY id";
    /// at, event, client_id, subject, family_id, outcome
    type AuditRow = (
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let (hashes, audit): (Vec<Vec<u8>>, Vec<AuditRow>) = match env.state.db().pools() {
        identity_api::storage::Pools::Sqlite { read, .. } => (
            sqlx::query_scalar(hashes_sql)
                .fetch_all(read)
                .await
                .unwrap(),
            sqlx::query(audit_sql)
                .fetch_all(read)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect(),
        ),
        identity_api::storage::Pools::Postgres(pool) => (
            sqlx::query_scalar(hashes_sql)
                .fetch_all(pool)
                .await
                .unwrap(),
            sqlx::query(audit_sql)
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect(),
        ),
    };
    // Each key is the token's issue time (its first 6 bytes) and 26 bytes of its SHA-256.
    let mut expected: Vec<Vec<u8>> = [&r1, &r2]
        .iter()
        .map(|t| {
            let bytes = URL_SAFE_NO_PAD.decode(t).unwrap();
            assert_eq!(bytes.len(), 33, "a refresh token is 33 bytes");
            [&bytes[..6], &Sha256::digest(t.as_bytes())[..26]].concat()
        })
        .collect();
    let mut stored = hashes.clone();
    expected.sort();
    stored.sort();
    assert_eq!(
        stored, expected,
        "exactly the two refresh tokens, as time and SHA-256"
    );

    let family = claims_of(&a1).fid;
    let events: Vec<&str> = audit.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(events, ["issue", "refresh", "revoke"], "{audit:?}");
    let now = identity_api::now();
    for (at, _, client, subject, fid, _) in &audit {
        assert!((now - 60..=now).contains(at), "audit time {at}");
        assert_eq!(client.as_deref(), Some("c1"));
        assert_eq!(subject.as_deref(), Some("test-user"));
        assert_eq!(fid.as_deref(), Some(family.as_str()));
    }
    let text = format!("{audit:?}");
    for secret in [&a1, &r1, &a2, &r2, &env.secret] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret in the audit trail"
        );
    }
}
