//! `/oauth/introspect` (who may see which token, the service token, revocation seen at once),
//! `/oauth/revoke` (families, another client's token), their errors and the server's own, the
//! client cache under wrong secrets, and the metadata (RFC 8414), over HTTP (in-process,
//! `oneshot`) on SQLite and on PostgreSQL. Stock clients drive the real binary in
//! `tests/oauth-python`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::oauth::{
    Answer, FORM, SERVICE_TOKEN, assert_basic_challenge, assert_no_store, assert_oauth_error,
    claims, enc, setup,
};
use common::{Backend, TestEnv, basic, s, send_raw};
use identity_api::clients;
use identity_api::storage::Scope;
use identity_runtime::secret::SharedToken;
use serde_json::json;

both!(
    introspection_sees_what_the_caller_may_see,
    introspection_errors,
    revocation_revokes_families_of_the_caller_only,
    server_errors,
    revocation_errors,
    wrong_secret_keeps_the_cached_row,
    metadata_lists_what_exists,
);

async fn introspection_sees_what_the_caller_may_see(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let c1 = t.c1_token("grant_type=client_credentials").await.2;
    let access = s(&c1, "access_token");
    let rc = t
        .token("rc", &t.rc, "grant_type=client_credentials")
        .await
        .2;
    let c = claims(&access);

    // Its own token, by either method: the RFC 7662 fields.
    let info = t.introspect("c1", &env.secret, &access).await;
    assert_eq!(
        info,
        json!({
            "active": true, "scope": "orders.read orders.write", "client_id": "c1", "sub": "c1",
            "aud": ["orders-api"], "iss": common::ISSUER, "exp": c.exp, "iat": c.iat,
            "token_type": "Bearer", "jti": c.jti, "token_use": "access_token",
        })
    );
    let answer = t
        .in_body(
            "/oauth/introspect",
            "c1",
            &env.secret,
            &format!("token={access}"),
        )
        .await;
    assert_eq!(answer.2, info);
    assert_no_store(&answer);
    // A refresh token, with its hint or without: the hint orders the search, not the answer.
    let refresh = s(&rc, "refresh_token");
    let info = t.introspect("rc", &t.rc, &refresh).await;
    assert_eq!(info["token_use"], "refresh_token");
    assert_eq!(info["sub"], "rc");
    for hint in ["refresh_token", "access_token", "something_else"] {
        for token in [&refresh, &s(&rc, "access_token")] {
            let answer = t
                .basic(
                    "/oauth/introspect",
                    "rc",
                    &t.rc,
                    &format!("token={}&token_type_hint={hint}", enc(token)),
                )
                .await;
            assert_eq!(answer.2, t.introspect("rc", &t.rc, token).await, "{hint}");
        }
    }

    // Another client's token: inactive to a client without the right ...
    assert_eq!(
        t.introspect("c2", &env.secret2, &access).await,
        json!({"active": false})
    );
    assert_eq!(
        t.introspect("c2", &env.secret2, &refresh).await,
        json!({"active": false})
    );
    // ... the whole answer to the gateway client and to the service token.
    assert_eq!(
        t.introspect("gateway", &t.gateway, &access).await["sub"],
        "c1"
    );
    assert_eq!(
        t.introspect("gateway", &t.gateway, &refresh).await["active"],
        true
    );
    assert!(t.active(&access).await);
    // Garbage, unknown and expired tokens: inactive.
    let expired = common::sign_with(
        &env.state,
        &identity_api::tokens::Claims {
            exp: identity_api::now() - 1,
            ..c.clone()
        },
    );
    for token in ["nope", "a.b.c", &expired] {
        assert_eq!(
            t.introspect("c1", &env.secret, token).await,
            json!({"active": false})
        );
    }
    // Revocation is seen at once, by every caller.
    let answer = t.revoke("c1", &env.secret, &access).await;
    assert_eq!(answer.0, StatusCode::OK);
    assert_eq!(
        t.introspect("c1", &env.secret, &access).await,
        json!({"active": false})
    );
    assert!(!t.active(&access).await);
    // The same on /api/v1.
    let pair = env.issue().await;
    let (_, info) = env.introspect(&s(&pair, "access_token"), &access).await;
    assert_eq!(info, json!({"active": false}));
}

async fn introspection_errors(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let token = "token=abc";
    // Bad client, by Basic, by nothing, in the body.
    assert_basic_challenge(&t.basic("/oauth/introspect", "c1", "wrong", token).await);
    assert_basic_challenge(&t.basic("/oauth/introspect", "nobody", "x", token).await);
    assert_basic_challenge(&t.post("/oauth/introspect", &[], token).await);
    let answer = t.in_body("/oauth/introspect", "c1", "wrong", token).await;
    assert_oauth_error(&answer, 401, "invalid_client");
    assert!(answer.1.get("www-authenticate").is_none());
    // The service token: wrong, or with client credentials too, or twice.
    assert_basic_challenge(
        &t.post("/oauth/introspect", &[("x-service-token", "wrong")], token)
            .await,
    );
    let auth = basic("c1", &env.secret);
    assert_oauth_error(
        &t.post(
            "/oauth/introspect",
            &[("x-service-token", SERVICE_TOKEN), ("authorization", &auth)],
            token,
        )
        .await,
        400,
        "invalid_request",
    );
    assert_oauth_error(
        &t.post(
            "/oauth/introspect",
            &[
                ("x-service-token", SERVICE_TOKEN),
                ("x-service-token", SERVICE_TOKEN),
            ],
            token,
        )
        .await,
        400,
        "invalid_request",
    );
    // Both client methods at once; no token.
    let both = format!("{token}&client_id=c1&client_secret={}", enc(&env.secret));
    assert_oauth_error(
        &t.basic("/oauth/introspect", "c1", &env.secret, &both).await,
        400,
        "invalid_request",
    );
    let answer = t.basic("/oauth/introspect", "c1", &env.secret, "").await;
    assert_oauth_error(&answer, 400, "invalid_request");
    assert_eq!(answer.2["error_description"], "token is required");
    let answer = t
        .post(
            "/oauth/introspect",
            &[("x-service-token", SERVICE_TOKEN)],
            "token=",
        )
        .await;
    assert_oauth_error(&answer, 400, "invalid_request");

    // The header is the operator's to name: then only that one carries the token.
    let Some(named) = TestEnv::with(b, |s| {
        s.service_token = Some(SharedToken::new(SERVICE_TOKEN).unwrap());
        s.service_token_header = axum::http::HeaderName::from_static("x-gateway-token");
    })
    .await
    else {
        return;
    };
    let introspect = async |header: &'static str| {
        let headers = [("content-type", FORM), (header, SERVICE_TOKEN)];
        send_raw(
            &named.app,
            "POST",
            "/oauth/introspect",
            &headers,
            b"token=abc".to_vec(),
        )
        .await
    };
    let answer = introspect("X-Gateway-Token").await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert_eq!(answer.2, json!({"active": false}));
    assert_basic_challenge(&introspect("x-service-token").await);

    // Without a service token configured, the header is no credential.
    let Some(plain) = TestEnv::new(b).await else {
        return;
    };
    let answer = send_raw(
        &plain.app,
        "POST",
        "/oauth/introspect",
        &[("content-type", FORM), ("x-service-token", SERVICE_TOKEN)],
        b"token=abc".to_vec(),
    )
    .await;
    assert_basic_challenge(&answer);
}

async fn revocation_revokes_families_of_the_caller_only(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let revoked_ok = |answer: &Answer| {
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
        assert_eq!(answer.2, json!({}));
        assert_no_store(answer);
    };
    // A refresh token revokes its family: the access tokens of it too.
    let first = t
        .token("rc", &t.rc, "grant_type=client_credentials")
        .await
        .2;
    revoked_ok(&t.revoke("rc", &t.rc, &s(&first, "refresh_token")).await);
    assert!(!t.active(&s(&first, "access_token")).await);
    // An access token revokes its family too (the stricter choice): its refresh token stops.
    let second = t
        .token("rc", &t.rc, "grant_type=client_credentials")
        .await
        .2;
    let answer = t
        .in_body(
            "/oauth/revoke",
            "rc",
            &t.rc,
            &format!(
                "token={}&token_type_hint=access_token",
                s(&second, "access_token")
            ),
        )
        .await;
    revoked_ok(&answer);
    assert!(!t.active(&s(&second, "refresh_token")).await);
    let body = format!(
        "grant_type=refresh_token&refresh_token={}",
        enc(&s(&second, "refresh_token"))
    );
    assert_oauth_error(&t.token("rc", &t.rc, &body).await, 400, "invalid_grant");
    // Again, and unknown tokens: 200 all the same.
    revoked_ok(&t.revoke("rc", &t.rc, &s(&second, "access_token")).await);
    for token in ["nope", "a.b.c"] {
        revoked_ok(&t.revoke("rc", &t.rc, token).await);
    }
    // Another client's token: 200, and it stays active; the attempt is audited.
    let c1 = t.c1_token("grant_type=client_credentials").await.2;
    revoked_ok(&t.revoke("c2", &env.secret2, &s(&c1, "access_token")).await);
    revoked_ok(
        &t.revoke("gateway", &t.gateway, &s(&c1, "access_token"))
            .await,
    );
    assert!(t.active(&s(&c1, "access_token")).await);
    let audits = env.state.db().audit_events(100).await.unwrap();
    let refused: Vec<_> = audits
        .iter()
        .filter(|(event, _, _, outcome)| event == "revoke" && outcome == "refused_other_client")
        .map(|(_, client, ..)| client.clone().unwrap())
        .collect();
    assert_eq!(refused, ["c2", "gateway"]);
    // A token issued on /api/v1 is revoked here by its client.
    let pair = env.issue().await;
    revoked_ok(
        &t.revoke("c1", &env.secret, &s(&pair, "refresh_token"))
            .await,
    );
    assert!(!t.active(&s(&pair, "access_token")).await);
}

/// A failure of the server (here a table gone from the database, an error no retry mends) is
/// `500 server_error` at each endpoint, in the RFC 6749 shape with `no-store`, and says nothing
/// of its cause.
async fn server_errors(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let pair = env.issue_for("rc", &t.rc, "alice").await;
    let refresh = s(&pair, "refresh_token");
    let rename = "ALTER TABLE refresh_tokens RENAME TO refresh_tokens_gone";
    match env.state.db().pools() {
        identity_api::storage::Pools::Sqlite { write, .. } => {
            sqlx::query(rename).execute(write).await.unwrap();
        }
        identity_api::storage::Pools::Postgres(pool) => {
            sqlx::query(rename).execute(pool).await.unwrap();
        }
    }
    let token = format!("token={}", enc(&refresh));
    for answer in [
        t.token(
            "rc",
            &t.rc,
            &format!("grant_type=refresh_token&refresh_token={}", enc(&refresh)),
        )
        .await,
        t.basic("/oauth/introspect", "rc", &t.rc, &token).await,
        t.basic("/oauth/revoke", "rc", &t.rc, &token).await,
    ] {
        assert_oauth_error(&answer, 500, "server_error");
        assert_eq!(answer.2["error_description"], "internal error");
    }
}

async fn revocation_errors(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    assert_basic_challenge(&t.revoke("c1", "wrong", "abc").await);
    assert_basic_challenge(&t.revoke("nobody", "x", "abc").await);
    assert_basic_challenge(&t.post("/oauth/revoke", &[], "token=abc").await);
    let answer = t.in_body("/oauth/revoke", "c1", "wrong", "token=abc").await;
    assert_oauth_error(&answer, 401, "invalid_client");
    assert!(answer.1.get("www-authenticate").is_none());
    // The service token is for introspection only.
    assert_basic_challenge(
        &t.post(
            "/oauth/revoke",
            &[("x-service-token", SERVICE_TOKEN)],
            "token=abc",
        )
        .await,
    );
    let answer = t
        .basic(
            "/oauth/revoke",
            "c1",
            &env.secret,
            "token_type_hint=access_token",
        )
        .await;
    assert_oauth_error(&answer, 400, "invalid_request");
    let both = format!("token=abc&client_id=c1&client_secret={}", enc(&env.secret));
    assert_oauth_error(
        &t.basic("/oauth/revoke", "c1", &env.secret, &both).await,
        400,
        "invalid_request",
    );
}

/// A wrong secret, at any endpoint and by either method, leaves the client's cached row alone
/// (else anyone could keep a client off the cache by naming it); the re-check of a request
/// that the cached row let in evicts the row when the client is refused. The row shows itself
/// by still authenticating a client disabled meanwhile (as by another instance), which a read
/// afresh refuses.
async fn wrong_secret_keeps_the_cached_row(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let issued = t.c1_token("grant_type=client_credentials").await; // c1's row is cached
    assert_eq!(issued.0, StatusCode::OK, "{}", issued.2);
    let own = s(&issued.2, "access_token");
    let other = t.token("rc", &t.rc, "grant_type=client_credentials").await;
    let other = s(&other.2, "access_token");
    clients::set_enabled(
        env.state.db(),
        Scope::AnyTenant,
        "c1",
        false,
        &common::operator(),
    )
    .await
    .unwrap();

    let about_own = format!("token={}", enc(&own));
    for (path, body) in [
        ("/oauth/revoke", about_own.as_str()),
        ("/oauth/introspect", about_own.as_str()),
        ("/oauth/token", "grant_type=client_credentials"),
        ("/oauth/token", "grant_type=refresh_token&refresh_token=x"),
        ("/oauth/token", "grant_type=password"),
        ("/oauth/token", ""),
    ] {
        assert_basic_challenge(&t.basic(path, "c1", "wrong", body).await);
        let answer = t.in_body(path, "c1", "wrong", body).await;
        assert_oauth_error(&answer, 401, "invalid_client");
    }
    // Still cached: c1 authenticates, and its own token is inactive (the disable revoked it).
    let answer = t
        .basic("/oauth/introspect", "c1", &env.secret, &about_own)
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert_eq!(answer.2, json!({"active": false}));

    // Another client's token: whether c1 may see it is decided on its row read afresh, which
    // refuses c1 and evicts the row; the next request reads afresh too.
    let about_other = format!("token={}", enc(&other));
    let answer = t
        .basic("/oauth/introspect", "c1", &env.secret, &about_other)
        .await;
    assert_basic_challenge(&answer);
    let answer = t
        .basic("/oauth/introspect", "c1", &env.secret, &about_own)
        .await;
    assert_basic_challenge(&answer);
}

async fn metadata_lists_what_exists(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let (status, metadata) = env.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(status, StatusCode::OK);
    let iss = common::ISSUER;
    assert_eq!(
        metadata,
        json!({
            "issuer": iss,
            "token_endpoint": format!("{iss}/oauth/token"),
            "introspection_endpoint": format!("{iss}/oauth/introspect"),
            "revocation_endpoint": format!("{iss}/oauth/revoke"),
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials", "refresh_token", "password"],
            "response_types_supported": [],
            "scopes_supported": ["gateway", "orders.read", "orders.write"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post"],
            "access_token_signing_alg_values_supported": ["ES256"],
        })
    );
    let (_, openid) = env.get("/.well-known/openid-configuration").await;
    assert_eq!(openid, metadata);
    // The JWKS's cache lifetime is the setting's.
    let answer = send_raw(&env.app, "GET", "/.well-known/jwks.json", &[], Vec::new()).await;
    assert_eq!(answer.1["cache-control"], "max-age=300");
    let Some(other) = TestEnv::with(b, |s| s.jwks_cache_secs = 42).await else {
        return;
    };
    let answer = send_raw(&other.app, "GET", "/.well-known/jwks.json", &[], Vec::new()).await;
    assert_eq!(answer.1["cache-control"], "max-age=42");
}
