//! Tenants kept apart on every route: a client of one tenant cannot authenticate in another, a
//! token of one is inactive (or refused) in another, refresh and revocation across tenants fail
//! without side effects, discovery and JWKS list a tenant's own keys only, a disabled tenant's
//! tokens turn inactive at once, and a request naming an unknown or disabled tenant gets 404 or
//! 403, never the default tenant's answer. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::oauth::{self, Env, SERVICE_TOKEN, assert_basic_challenge, assert_oauth_error, enc};
use common::{Backend, ISSUER, assert_error, basic, s, send};
use identity_api::clients::{self, NewClient};
use identity_api::storage::{AdminEvent, AuditRow, TenantId, TenantRow};
use serde_json::Value;

struct Tenants {
    env: Env,
    acme: TenantId,
    /// The secret of `a1`, a client of `acme` (c1 and c2 are the default tenant's).
    a1: String,
}

async fn setup(b: Backend) -> Option<Tenants> {
    let env = oauth::setup(b).await?;
    let state = &env.env.state;
    let acme = TenantId::new("acme").unwrap();
    let now = identity_api::now();
    let row = TenantRow {
        display_name: "Acme".into(),
        ..identity_api::service::state::default_tenant_row(&acme, now)
    };
    common::create_tenant(state, row).await;
    let new = NewClient {
        grant_types: Some("client_credentials refresh_token"),
        subject_policy: Some("any"),
        ..NewClient::new(&acme, "orders.read orders.write", "orders-api")
    };
    let a1 = clients::create(
        state.db(),
        state.verifier_key(),
        "a1",
        new,
        &common::operator(),
        now,
    )
    .await
    .unwrap();
    // What `serve` does every second.
    assert!(state.reload_keys().await.unwrap());
    Some(Tenants {
        env,
        acme,
        a1: a1.expose().to_owned(),
    })
}

impl Tenants {
    async fn issue(
        &self,
        client: &str,
        secret: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let auth = basic(client, secret);
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.env
            .env
            .post("/api/v1/token/issue", &all, r#"{"subject": "u1"}"#)
            .await
    }

    async fn a1_pair(&self) -> Value {
        let (status, body) = self.issue("a1", &self.a1, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn c1_pair(&self) -> Value {
        let (status, body) = self.issue("c1", &self.env.env.secret, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The service token's introspection, naming `tenant` by header (or none).
    async fn service_active(&self, token: &str, tenant: Option<&str>) -> (StatusCode, Value) {
        let mut headers = vec![("x-service-token", SERVICE_TOKEN)];
        if let Some(t) = tenant {
            headers.push(("x-tenant-id", t));
        }
        let answer = self
            .env
            .post(
                "/oauth/introspect",
                &headers,
                &format!("token={}", enc(token)),
            )
            .await;
        (answer.0, answer.2)
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        send(&self.env.env.app, "GET", path, headers, Vec::new()).await
    }

    async fn kids(&self, path: &str, headers: &[(&str, &str)]) -> Vec<String> {
        let (status, body) = self.get(path, headers).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| s(k, "kid"))
            .collect()
    }
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Tokens name their tenant's issuer and are signed with its key; each tenant's JWKS and
/// discovery list its own, by path prefix, by RFC 8414's inserted path and by header.
async fn issuers_keys_and_discovery(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let a = t.a1_pair().await;
    let c = t.c1_pair().await;
    let a_access = s(&a, "access_token");
    let c_access = s(&c, "access_token");
    assert_eq!(common::claims_of(&a_access).iss, format!("{ISSUER}/t/acme"));
    assert_eq!(common::claims_of(&c_access).iss, ISSUER);

    let acme_kids = t.kids("/t/acme/.well-known/jwks.json", &[]).await;
    let primary_kids = t.kids("/.well-known/jwks.json", &[]).await;
    assert_eq!(acme_kids, [kid_of(&a_access)]);
    assert_eq!(primary_kids, [kid_of(&c_access)]);
    assert_eq!(
        t.kids("/.well-known/jwks.json", &[("x-tenant-id", "acme")])
            .await,
        acme_kids
    );
    assert_eq!(
        t.kids("/.well-known/jwks.json", &[("x-realm", "acme")])
            .await,
        acme_kids
    );
    assert_eq!(
        t.kids("/t/primary/.well-known/jwks.json", &[]).await,
        primary_kids
    );

    for path in [
        "/t/acme/.well-known/openid-configuration",
        "/t/acme/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/t/acme",
    ] {
        let (status, doc) = t.get(path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {doc}");
        assert_eq!(doc["issuer"], format!("{ISSUER}/t/acme"), "{path}");
        assert_eq!(
            doc["token_endpoint"],
            format!("{ISSUER}/t/acme/oauth/token")
        );
        assert_eq!(
            doc["jwks_uri"],
            format!("{ISSUER}/t/acme/.well-known/jwks.json")
        );
        assert_eq!(
            doc["scopes_supported"],
            serde_json::json!(["orders.read", "orders.write"])
        );
    }
    let (_, doc) = t.get("/.well-known/openid-configuration", &[]).await;
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["token_endpoint"], format!("{ISSUER}/oauth/token"));
}

/// A tenant named by path or header that does not exist is 404, never the default tenant's
/// answer; a name that is not a slug is 400; a path and a header that disagree are 400.
async fn unknown_and_malformed_tenants(b: Backend) {
    let Some(t) = setup(b).await else { return };
    for (path, headers) in [
        ("/t/nope/.well-known/jwks.json", vec![]),
        ("/.well-known/oauth-authorization-server/t/nope", vec![]),
        ("/.well-known/jwks.json", vec![("x-tenant", "nope")]),
    ] {
        let answer = t.get(path, &headers).await;
        assert_error(&answer, 404, "unknown_tenant");
        assert!(
            s(&answer.1, "error_description").contains("nope"),
            "{}",
            answer.1
        );
    }
    let c = t.c1_pair().await;
    let (status, body) = t.service_active(&s(&c, "access_token"), Some("nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for (path, headers) in [
        ("/t/Acme/.well-known/jwks.json", vec![]),
        ("/t/-x/.well-known/jwks.json", vec![]),
        ("/.well-known/jwks.json", vec![("x-tenant-id", "a b")]),
        ("/.well-known/jwks.json", vec![("x-tenant-id", "")]),
    ] {
        assert_error(&t.get(path, &headers).await, 400, "invalid_request");
    }
    let both = t
        .get(
            "/t/acme/.well-known/jwks.json",
            &[("x-tenant-id", "primary")],
        )
        .await;
    assert_error(&both, 400, "invalid_request");
    // The same header twice is ambiguous.
    let twice = t
        .get(
            "/.well-known/jwks.json",
            &[("x-tenant-id", "acme"), ("x-tenant-id", "primary")],
        )
        .await;
    assert_error(&twice, 400, "invalid_request");
    // A route that does not exist under a tenant is still not found.
    assert_error(&t.get("/t/acme/nothing-here", &[]).await, 404, "not_found");
}

/// A client of acme authenticates only in acme (or with no tenant named); under the default
/// tenant's name it is an unknown client, on the sealed and the standard routes.
async fn clients_authenticate_in_their_tenant_only(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let (status, _) = t.issue("a1", &t.a1, &[("x-tenant-id", "acme")]).await;
    assert_eq!(status, StatusCode::OK);
    let refused = t.issue("a1", &t.a1, &[("x-tenant-id", "primary")]).await;
    assert_error(&refused, 401, "invalid_client");
    let refused = t
        .issue("c1", &t.env.env.secret, &[("x-tenant-id", "acme")])
        .await;
    assert_error(&refused, 401, "invalid_client");

    let grant = "grant_type=client_credentials";
    let ok = t.env.basic("/t/acme/oauth/token", "a1", &t.a1, grant).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.2);
    assert_eq!(
        common::claims_of(&s(&ok.2, "access_token")).iss,
        format!("{ISSUER}/t/acme")
    );
    assert_basic_challenge(
        &t.env
            .basic("/t/primary/oauth/token", "a1", &t.a1, grant)
            .await,
    );
    assert_basic_challenge(
        &t.env
            .post(
                "/oauth/token",
                &[
                    ("authorization", &basic("a1", &t.a1)),
                    ("x-tenant-id", "primary"),
                ],
                grant,
            )
            .await,
    );
    let in_body = t
        .env
        .post(
            "/t/primary/oauth/token",
            &[],
            &format!("{grant}&client_id=a1&client_secret={}", enc(&t.a1)),
        )
        .await;
    assert_oauth_error(&in_body, 401, "invalid_client");
}

/// A token of acme: inactive when introspected in the default tenant (by a client, by the
/// service token), refused as a bearer under the default tenant's name.
async fn tokens_are_inactive_in_other_tenants(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let a = t.a1_pair().await;
    let c = t.c1_pair().await;
    let (a_access, a_refresh) = (s(&a, "access_token"), s(&a, "refresh_token"));
    let c_access = s(&c, "access_token");

    for token in [&a_access, &a_refresh] {
        // The service token, in acme: active; in the default tenant (named or not): inactive.
        assert_eq!(
            t.service_active(token, Some("acme")).await.1["active"],
            true
        );
        assert_eq!(
            t.service_active(token, Some("primary")).await.1["active"],
            false
        );
        assert_eq!(t.service_active(token, None).await.1["active"], false);
        // The gateway may introspect every token of its own tenant only.
        let seen = t.env.introspect("gateway", &t.env.gateway, token).await;
        assert_eq!(seen["active"], false, "{seen}");
        // A client of the default tenant, as a bearer of its own token.
        let (status, body) = t.env.env.introspect(&c_access, token).await;
        assert_eq!(
            (status, &body["active"]),
            (StatusCode::OK, &Value::Bool(false))
        );
    }
    // The default tenant's token is inactive in acme.
    assert_eq!(
        t.service_active(&c_access, Some("acme")).await.1["active"],
        false
    );
    let seen = t
        .env
        .basic(
            "/t/acme/oauth/introspect",
            "a1",
            &t.a1,
            &format!("token={}", enc(&c_access)),
        )
        .await;
    assert_eq!(seen.2["active"], false, "{}", seen.2);

    // As a bearer: fine in acme, refused under the default tenant's name, on every route.
    let bearer = format!("Bearer {a_access}");
    let body = serde_json::json!({ "token": a_access }).to_string();
    let (status, _) = t
        .env
        .env
        .post(
            "/api/v1/introspect",
            &[("authorization", &bearer), ("x-tenant-id", "acme")],
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/api/v1/introspect", "/api/v1/revoke", "/api/v1/token"] {
        let answer = t
            .env
            .env
            .post(
                path,
                &[("authorization", &bearer), ("x-tenant-id", "primary")],
                &body,
            )
            .await;
        assert_error(&answer, 401, "invalid_token");
        let answer = t
            .env
            .env
            .post(
                &format!("/t/primary{path}"),
                &[("authorization", &bearer)],
                &body,
            )
            .await;
        assert_error(&answer, 401, "invalid_token");
    }
    assert_eq!(
        t.service_active(&a_access, Some("acme")).await.1["active"],
        true
    );
}

/// Refreshing or revoking acme's tokens from the default tenant fails and changes nothing:
/// acme's refresh token still rotates afterwards, its access token stays active.
async fn refresh_and_revoke_across_tenants_change_nothing(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let a = t.a1_pair().await;
    let c = t.c1_pair().await;
    let (a_access, a_refresh) = (s(&a, "access_token"), s(&a, "refresh_token"));
    let c_access = s(&c, "access_token");

    // /api/v1/token with a default-tenant bearer: unknown refresh token (nothing revoked).
    let (status, body) = t.env.env.refresh(&c_access, &a_refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    // /oauth/token by a client of the default tenant allowed to refresh.
    let grant = format!("grant_type=refresh_token&refresh_token={}", enc(&a_refresh));
    let answer = t.env.token("rc", &t.env.rc, &grant).await;
    assert_oauth_error(&answer, 400, "invalid_grant");
    // Revocation from the default tenant: "revoked": false, and RFC 7009's 200 that says nothing.
    for token in [&a_access, &a_refresh] {
        let (status, body) = t.env.env.revoke(&c_access, token).await;
        assert_eq!(
            (status, &body["revoked"]),
            (StatusCode::OK, &Value::Bool(false))
        );
        let answer = t.env.revoke("rc", &t.env.rc, token).await;
        assert_eq!(answer.0, StatusCode::OK);
    }
    assert_eq!(
        t.service_active(&a_access, Some("acme")).await.1["active"],
        true
    );
    // Still acme's to rotate: no reuse was detected, the family is not revoked.
    let answer = t.env.basic("/oauth/token", "a1", &t.a1, &grant).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert_eq!(
        t.service_active(&s(&answer.2, "access_token"), Some("acme"))
            .await
            .1["active"],
        true
    );
}

/// Disabling a tenant: at once its tokens are inactive and cannot be refreshed, its clients
/// cannot authenticate, and requests naming it get 403; the default tenant is untouched.
/// Enabling it again brings back what has not ended.
async fn a_disabled_tenants_tokens_turn_inactive_at_once(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let a = t.a1_pair().await;
    let c = t.c1_pair().await;
    let (a_access, a_refresh) = (s(&a, "access_token"), s(&a, "refresh_token"));
    let db = t.env.env.state.db();
    let now = identity_api::now();
    let audit = AuditRow::admin(
        now,
        AdminEvent::TenantDisable,
        "test",
        &t.acme,
        None,
        serde_json::json!({}),
    );
    assert!(
        db.set_tenant_enabled(&t.acme, false, now, &audit)
            .await
            .unwrap()
    );

    // Before any reload: the database decides.
    let (status, body) = t.env.env.introspect(&a_access, &a_access).await;
    assert_error(&(status, body), 401, "invalid_token");
    let grant = format!("grant_type=refresh_token&refresh_token={}", enc(&a_refresh));
    assert!(
        t.env
            .basic("/oauth/token", "a1", &t.a1, &grant)
            .await
            .0
            .is_client_error()
    );

    t.env.env.state.reload_keys().await.unwrap();
    assert_error(
        &t.get("/t/acme/.well-known/jwks.json", &[]).await,
        403,
        "tenant_disabled",
    );
    let (status, _) = t.service_active(&a_access, Some("acme")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_basic_challenge(
        &t.env
            .basic("/oauth/token", "a1", &t.a1, "grant_type=client_credentials")
            .await,
    );
    let refused = t.issue("a1", &t.a1, &[]).await;
    assert_error(&refused, 401, "invalid_client");
    // The default tenant works on.
    let c_access = s(&c, "access_token");
    assert_eq!(t.service_active(&c_access, None).await.1["active"], true);

    let audit = AuditRow::admin(
        now,
        AdminEvent::TenantEnable,
        "test",
        &t.acme,
        None,
        serde_json::json!({}),
    );
    assert!(
        db.set_tenant_enabled(&t.acme, true, now, &audit)
            .await
            .unwrap()
    );
    t.env.env.state.reload_keys().await.unwrap();
    assert_eq!(
        t.service_active(&a_access, Some("acme")).await.1["active"],
        true
    );
    let answer = t.env.basic("/oauth/token", "a1", &t.a1, &grant).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
}

/// `keys rotate` of one tenant leaves the other's key ring as it was.
async fn rotating_one_tenants_keys_leaves_the_others(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let state = &t.env.env.state;
    let before_primary = t.kids("/.well-known/jwks.json", &[]).await;
    let before_acme = t.kids("/t/acme/.well-known/jwks.json", &[]).await;
    let acme = state
        .db()
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.tenant_id == t.acme)
        .unwrap();
    let kek = identity_api::kek::Kek::parse(&t.env.env.kek).unwrap();
    let kid = identity_api::keys::rotate(
        state.db(),
        &kek,
        &acme,
        identity_api::now(),
        &common::operator(),
    )
    .await
    .unwrap();
    state.reload_keys().await.unwrap();
    assert_eq!(t.kids("/.well-known/jwks.json", &[]).await, before_primary);
    let after_acme = t.kids("/t/acme/.well-known/jwks.json", &[]).await;
    assert_eq!(after_acme.len(), 2);
    assert!(after_acme.contains(&kid) && after_acme.contains(&before_acme[0]));
    assert_eq!(kid_of(&s(&t.a1_pair().await, "access_token")), kid);
}

/// Without the internal token, /api/v1 is refused before any tenant is looked up: a caller
/// without it learns nothing of the tenants (403 whether the tenant exists or not).
async fn api_v1_without_the_internal_token_names_no_tenant(b: Backend) {
    use identity_runtime::InternalToken;
    const TOKEN: &str = "sidecar-secret-7e4c1a9b2f5d8036";
    let Some(env) = common::TestEnv::with(b, |s| {
        s.internal_token = Some(InternalToken::new(TOKEN).unwrap());
    })
    .await
    else {
        return;
    };
    let body = r#"{"token": "x"}"#;
    for (path, tenant) in [
        ("/api/v1/introspect", "nope"),
        ("/api/v1/introspect", "primary"),
        ("/t/nope/api/v1/introspect", "primary"),
    ] {
        let answer = env.post(path, &[("x-tenant-id", tenant)], body).await;
        assert_error(&answer, 403, "access_denied");
    }
    // With the token, the tenant is looked up as anywhere else.
    let answer = env
        .post(
            "/api/v1/introspect",
            &[("x-tenant-id", "nope"), ("x-internal-token", TOKEN)],
            body,
        )
        .await;
    assert_error(&answer, 404, "unknown_tenant");
}

both!(
    api_v1_without_the_internal_token_names_no_tenant,
    issuers_keys_and_discovery,
    unknown_and_malformed_tenants,
    clients_authenticate_in_their_tenant_only,
    tokens_are_inactive_in_other_tenants,
    refresh_and_revoke_across_tenants_change_nothing,
    a_disabled_tenants_tokens_turn_inactive_at_once,
    rotating_one_tenants_keys_leaves_the_others,
);
