//! `POST /oauth/token` (docs/OAUTH.md) over HTTP (in-process, `oneshot`), on SQLite and on
//! PostgreSQL: client_credentials and refresh_token with both client authentication methods,
//! RFC 8707 resources, the one scope rule, every RFC 6749 section 5.2 error and the form's own,
//! and that grant types and the introspection right act at once when changed. Stock clients
//! (Python authlib, PyJWT) drive the real binary in `tests/oauth-python`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::oauth::{
    Answer, FORM, assert_basic_challenge, assert_no_store, assert_oauth_error, claims, enc, setup,
};
use common::{Backend, basic, s, send_raw};
use identity_api::clients;
use identity_api::storage::ClientChange;
use identity_api::storage::Scope;
use serde_json::{Value, json};

both!(
    client_credentials_with_either_authentication,
    client_credentials_resources_and_scopes,
    token_endpoint_errors,
    form_errors,
    refresh_grant_rotates_and_detects_reuse,
    one_scope_rule_for_grants_and_refreshes,
    grant_changes_act_at_once,
);

async fn client_credentials_with_either_authentication(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    for answer in [
        t.c1_token("grant_type=client_credentials").await,
        t.in_body(
            "/oauth/token",
            "c1",
            &env.secret,
            "grant_type=client_credentials",
        )
        .await,
    ] {
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
        assert_no_store(&answer);
        let body = &answer.2;
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["scope"], "orders.read orders.write");
        // No refresh token: c1 may not use the refresh_token grant.
        assert!(body.get("refresh_token").is_none(), "{body}");
        assert!(body.get("refresh_expires_in").is_none(), "{body}");
        let access = s(body, "access_token");
        let c = claims(&access);
        assert_eq!((c.sub.as_str(), c.client_id.as_str()), ("c1", "c1"));
        assert_eq!(c.aud, "orders-api");
        // The same token as /api/v1 issues: active there for its own client.
        let (status, info) = env.introspect(&access, &access).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info["active"], true, "{info}");
        assert_eq!(info["sub"], "c1");
    }

    // A client that may refresh gets a refresh token with its access token.
    let answer = t.token("rc", &t.rc, "grant_type=client_credentials").await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert!(answer.2["refresh_token"].is_string(), "{}", answer.2);
    assert_eq!(answer.2["refresh_expires_in"], 86_400);

    // Client ids and secrets are form-encoded before Basic (RFC 6749 section 2.3.1): an
    // encoded secret is decoded.
    let encoded = format!("Basic {}", {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("c%31:{}", enc(&env.secret)))
    });
    let answer = t
        .post(
            "/oauth/token",
            &[("authorization", &encoded)],
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    // Basic with the same client_id in the body, as some libraries send it.
    let answer = t
        .c1_token("grant_type=client_credentials&client_id=c1")
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    // Each issue is a family of its own, audited as an issue for the client itself.
    let audits = env.state.db().audit_events(50).await.unwrap();
    assert!(
        audits
            .iter()
            .any(|(event, client, _, outcome)| event == "issue"
                && client.as_deref() == Some("c1")
                && outcome == "issued"),
        "{audits:?}"
    );
}

async fn client_credentials_resources_and_scopes(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let ok = |answer: &Answer| {
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
        claims(&s(&answer.2, "access_token"))
    };
    // Scope narrowing.
    let answer = t
        .c1_token("grant_type=client_credentials&scope=orders.write")
        .await;
    assert_eq!(ok(&answer).scope, "orders.write");
    assert_eq!(answer.2["scope"], "orders.write");
    // An empty scope is an absent one (RFC 6749 section 3.1): the client's scopes.
    let answer = t.c1_token("grant_type=client_credentials&scope=").await;
    assert_eq!(ok(&answer).scope, "orders.read orders.write");
    // A client with two audiences picks one by resource (RFC 8707) or audience.
    let token = |body: &'static str| t.token("multi2", &t.multi, body);
    let answer = token("grant_type=client_credentials&resource=billing-api").await;
    assert_eq!(ok(&answer).aud, "billing-api");
    let answer = token("grant_type=client_credentials&audience=orders-api").await;
    assert_eq!(ok(&answer).aud, "orders-api");
    let answer =
        token("grant_type=client_credentials&resource=orders-api&audience=orders-api").await;
    assert_eq!(ok(&answer).aud, "orders-api");
    // ... and must pick one: the audience rule of /api/v1, in this endpoint's words.
    let answer = token("grant_type=client_credentials").await;
    assert_oauth_error(&answer, 400, "invalid_request");
    assert_eq!(
        answer.2["error_description"],
        "resource (or audience) is required: the client has several audiences"
    );
    let answer = token("grant_type=client_credentials&audience=other-api").await;
    assert_eq!(
        answer.2["error_description"],
        "resource (or audience) is not allowed for this client"
    );
    for body in [
        "grant_type=client_credentials&resource=other-api",
        "grant_type=client_credentials&audience=other-api",
        "grant_type=client_credentials&resource=orders-api&audience=billing-api",
        "grant_type=client_credentials&resource=orders-api&resource=billing-api",
    ] {
        assert_oauth_error(&token(body).await, 400, "invalid_target");
    }
    // A client with one audience may name it, and only it.
    ok(&t
        .c1_token("grant_type=client_credentials&resource=orders-api")
        .await);
    assert_oauth_error(
        &t.c1_token("grant_type=client_credentials&resource=billing-api")
            .await,
        400,
        "invalid_target",
    );
}

async fn token_endpoint_errors(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let cc = "grant_type=client_credentials";
    // Client authentication: a wrong secret and an unknown client answer alike, with the Basic
    // challenge when Basic was used or nothing, without it for client_secret_post.
    assert_basic_challenge(&t.token("c1", "wrong", cc).await);
    assert_basic_challenge(&t.token("nobody", "wrong", cc).await);
    assert_basic_challenge(&t.post("/oauth/token", &[], cc).await);
    assert_basic_challenge(
        &t.post("/oauth/token", &[], &format!("{cc}&client_id=c1"))
            .await,
    );
    assert_basic_challenge(
        &t.post("/oauth/token", &[("authorization", "Bearer abc")], cc)
            .await,
    );
    assert_basic_challenge(
        &t.post("/oauth/token", &[("authorization", "Basic !!")], cc)
            .await,
    );
    for answer in [
        t.in_body("/oauth/token", "c1", "wrong", cc).await,
        t.in_body("/oauth/token", "nobody", "wrong", cc).await,
    ] {
        assert_oauth_error(&answer, 401, "invalid_client");
        assert!(answer.1.get("www-authenticate").is_none(), "{answer:?}");
    }
    // Both methods at once, or a body's client_id that contradicts Basic.
    let both = format!("{cc}&client_id=c1&client_secret={}", enc(&env.secret));
    assert_oauth_error(&t.c1_token(&both).await, 400, "invalid_request");
    assert_oauth_error(
        &t.c1_token(&format!("{cc}&client_id=c2")).await,
        400,
        "invalid_request",
    );
    assert_oauth_error(
        &t.post("/oauth/token", &[], &format!("{cc}&client_secret=x"))
            .await,
        400,
        "invalid_request",
    );
    // Grant types: missing, unsupported, not the client's (password: tests/password_grant.rs).
    let answer = t.c1_token("scope=orders.read").await;
    assert_oauth_error(&answer, 400, "invalid_request");
    assert!(
        answer.2["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type")
    );
    for grant in [
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ] {
        let answer = t.c1_token(&format!("grant_type={}", enc(grant))).await;
        assert_oauth_error(&answer, 400, "unsupported_grant_type");
    }
    let answer = t
        .c1_token("grant_type=password&username=u&password=p")
        .await;
    assert_oauth_error(&answer, 400, "unauthorized_client");
    assert!(
        answer.2["error_description"]
            .as_str()
            .unwrap()
            .contains("password grant")
    );
    assert_oauth_error(
        &t.c1_token("grant_type=refresh_token&refresh_token=x").await,
        400,
        "unauthorized_client",
    );
    assert_oauth_error(
        &t.token("gateway", &t.gateway, cc).await,
        400,
        "unauthorized_client",
    );
    // An unauthenticated caller learns nothing of the grant: invalid_client first.
    assert_basic_challenge(&t.token("c1", "wrong", "grant_type=password").await);
    // A missing parameter.
    assert_oauth_error(
        &t.token("rc", &t.rc, "grant_type=refresh_token").await,
        400,
        "invalid_request",
    );
    // Scope beyond the client's, and malformed.
    for scope in ["orders.admin", "orders.read%20orders.admin", "bad%22scope"] {
        assert_oauth_error(
            &t.c1_token(&format!("{cc}&scope={scope}")).await,
            400,
            "invalid_scope",
        );
    }
    // No token was issued by any of these.
    let issued = env
        .state
        .db()
        .audit_events(500)
        .await
        .unwrap()
        .into_iter()
        .filter(|(event, ..)| event == "issue")
        .count();
    assert_eq!(issued, 0);
    // Only POST.
    let answer = send_raw(&env.app, "GET", "/oauth/token", &[], Vec::new()).await;
    assert_eq!(answer.0, StatusCode::METHOD_NOT_ALLOWED);
}

/// The form itself: each fault a clear `invalid_request`, before any client is looked at.
async fn form_errors(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let auth = basic("c1", &env.secret);
    let raw = |content_type: &'static str, body: Vec<u8>| {
        let auth = auth.clone();
        async move {
            send_raw(
                &env.app,
                "POST",
                "/oauth/token",
                &[("authorization", &auth), ("content-type", content_type)],
                body,
            )
            .await
        }
    };
    let says = |answer: &Answer, text: &str| {
        assert_oauth_error(answer, 400, "invalid_request");
        let description = answer.2["error_description"].as_str().unwrap();
        assert!(description.contains(text), "{description}");
    };
    says(
        &raw(
            FORM,
            b"grant_type=client_credentials&scope=orders.read%FF".to_vec(),
        )
        .await,
        "not UTF-8 (in parameter scope)",
    );
    says(
        &raw(FORM, b"grant_type=client_credentials&scope=\xe9".to_vec()).await,
        "not UTF-8",
    );
    says(
        &raw(FORM, b"grant_type=client_credentials&scope=%G1".to_vec()).await,
        "malformed percent-escape",
    );
    says(
        &raw(
            FORM,
            b"grant_type=client_credentials&grant_type=client_credentials".to_vec(),
        )
        .await,
        "grant_type is given more than once",
    );
    says(
        &raw(
            FORM,
            b"grant_type=client_credentials&scope=a&scope=b".to_vec(),
        )
        .await,
        "scope is given more than once",
    );
    // Over the body limit (64 KiB by default): refused unread when declared, as it arrives
    // otherwise (oneshot gives the length).
    let mut big = b"grant_type=client_credentials&pad=".to_vec();
    big.resize(65_537, b'a');
    says(&raw(FORM, big).await, "over the limit of 65536 bytes");
    says(
        &raw(
            "application/json",
            br#"{"grant_type":"client_credentials"}"#.to_vec(),
        )
        .await,
        "must be application/x-www-form-urlencoded",
    );
    says(
        &raw("", b"grant_type=client_credentials".to_vec()).await,
        "must be application",
    );
    says(
        &raw(
            "application/x-www-form-urlencoded; charset=iso-8859-1",
            b"grant_type=client_credentials".to_vec(),
        )
        .await,
        "charset must be UTF-8",
    );
    // A charset of UTF-8, in any case, is fine.
    let answer = raw(
        "Application/X-WWW-Form-Urlencoded; charset=\"UTF-8\"",
        b"grant_type=client_credentials".to_vec(),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    // The same faults on the other two endpoints.
    for path in ["/oauth/introspect", "/oauth/revoke"] {
        let answer = send_raw(
            &env.app,
            "POST",
            path,
            &[("authorization", &auth), ("content-type", FORM)],
            b"token=a&token=b".to_vec(),
        )
        .await;
        says(&answer, "token is given more than once");
        let answer = send_raw(
            &env.app,
            "POST",
            path,
            &[("authorization", &auth), ("content-type", FORM)],
            b"token=%C3%28".to_vec(),
        )
        .await;
        says(&answer, "not UTF-8");
    }
}

async fn refresh_grant_rotates_and_detects_reuse(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let t = &t;
    let env = &t.env;
    let first = t
        .token("rc", &t.rc, "grant_type=client_credentials")
        .await
        .2;
    let refresh = |token: String, extra: &'static str| {
        let body = format!(
            "grant_type=refresh_token&refresh_token={}{extra}",
            enc(&token)
        );
        async move { t.token("rc", &t.rc, &body).await }
    };
    let second = refresh(s(&first, "refresh_token"), "").await;
    assert_eq!(second.0, StatusCode::OK, "{}", second.2);
    assert_no_store(&second);
    let second = second.2;
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(
        claims(&s(&second, "access_token")).fid,
        claims(&s(&first, "access_token")).fid
    );
    // client_secret_post refreshes too; a narrower scope narrows the access token only.
    let body = format!(
        "grant_type=refresh_token&scope=orders.read&refresh_token={}",
        enc(&s(&second, "refresh_token"))
    );
    let third = t.in_body("/oauth/token", "rc", &t.rc, &body).await;
    assert_eq!(third.0, StatusCode::OK, "{}", third.2);
    let third = third.2;
    assert_eq!(third["scope"], "orders.read");
    assert_eq!(claims(&s(&third, "access_token")).scope, "orders.read");
    let info = t.introspect("rc", &t.rc, &s(&third, "refresh_token")).await;
    assert_eq!(
        info["scope"], "orders.read orders.write",
        "the family keeps its scope"
    );
    // Beyond the family's scope, or another resource: refused, the token not spent.
    let answer = refresh(s(&third, "refresh_token"), "&scope=orders.admin").await;
    assert_oauth_error(&answer, 400, "invalid_scope");
    let answer = refresh(s(&third, "refresh_token"), "&resource=billing-api").await;
    assert_oauth_error(&answer, 400, "invalid_target");
    assert!(t.active(&s(&third, "refresh_token")).await);

    // Another client's refresh token: invalid_grant, and nothing revoked. A token issued on
    // /api/v1 to rc, for a user, refreshes here.
    let pair = env.issue_for("c1", &env.secret, "alice").await;
    let body = format!(
        "grant_type=refresh_token&refresh_token={}",
        enc(&s(&pair, "refresh_token"))
    );
    let answer = t.token("rc", &t.rc, &body).await;
    assert_oauth_error(&answer, 400, "invalid_grant");
    assert!(
        answer.2["error_description"]
            .as_str()
            .unwrap()
            .contains("another client")
    );
    assert!(t.active(&s(&pair, "refresh_token")).await);
    let users = env.issue_for("rc", &t.rc, "alice").await;
    let answer = refresh(s(&users, "refresh_token"), "").await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert_eq!(claims(&s(&answer.2, "access_token")).sub, "alice");

    // The spent token again: invalid_grant, and its whole family is revoked.
    let answer = refresh(s(&first, "refresh_token"), "").await;
    assert_oauth_error(&answer, 400, "invalid_grant");
    for token in [
        s(&third, "access_token"),
        s(&third, "refresh_token"),
        s(&first, "access_token"),
    ] {
        assert!(!t.active(&token).await);
    }
    let answer = refresh(s(&third, "refresh_token"), "").await;
    assert_oauth_error(&answer, 400, "invalid_grant");
    // Unknown and malformed refresh tokens.
    for token in ["nope", "a.b.c", &"x".repeat(300)] {
        assert_oauth_error(&refresh(token.to_owned(), "").await, 400, "invalid_grant");
    }
    let metrics = env.state.metrics().encode();
    assert!(
        metrics.contains("identity_api_refresh_reuse_detected_total 1"),
        "{metrics}"
    );
}

/// One scope rule (RFC 6749 section 3.3) for a client_credentials grant, within the client's
/// scopes, and for a refresh, within the family's (section 6): `scope` without a value is
/// absent (section 3.1), so all of them; spaces only ask for no scope and are refused, as a
/// malformed scope is, with the same words.
async fn one_scope_rule_for_grants_and_refreshes(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let t = &t;
    let grant = |scope: &str| {
        let body = format!("grant_type=client_credentials&scope={scope}");
        async move { t.token("rc", &t.rc, &body).await }
    };
    let refresh = |token: &str, scope: &str| {
        let body = format!(
            "grant_type=refresh_token&refresh_token={}&scope={scope}",
            enc(token)
        );
        async move { t.token("rc", &t.rc, &body).await }
    };
    let first = grant("").await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    assert_eq!(first.2["scope"], "orders.read orders.write");
    let second = refresh(&s(&first.2, "refresh_token"), "").await;
    assert_eq!(second.0, StatusCode::OK, "{}", second.2);
    assert_eq!(second.2["scope"], "orders.read orders.write");
    let refresh_token = s(&second.2, "refresh_token");
    for (scope, description) in [
        ("+", "scope is empty"),
        ("%20%20", "scope is empty"),
        ("orders.read+bad%22scope", "scope is malformed"),
    ] {
        for answer in [grant(scope).await, refresh(&refresh_token, scope).await] {
            assert_oauth_error(&answer, 400, "invalid_scope");
            assert_eq!(answer.2["error_description"], description, "{scope}");
        }
    }
    assert!(t.active(&refresh_token).await, "refused, so not spent");
}

/// `client update --grant-types` and `--may-introspect` act at once, though the client's row
/// is cached from the request before.
async fn grant_changes_act_at_once(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let db = env.state.db();
    let update = |id: &'static str, change: ClientChange<'static>| async move {
        clients::update(
            db,
            Scope::AnyTenant,
            id,
            change,
            &common::operator(),
            identity_api::now(),
        )
        .await
        .unwrap()
    };
    let c1 = t.c1_token("grant_type=client_credentials").await;
    assert_eq!(c1.0, StatusCode::OK);
    let after = update(
        "c1",
        ClientChange {
            grant_types: Some("refresh_token"),
            ..ClientChange::default()
        },
    )
    .await;
    assert_eq!(after.grant_types, "refresh_token");
    assert_oauth_error(
        &t.c1_token("grant_type=client_credentials").await,
        400,
        "unauthorized_client",
    );
    update(
        "c1",
        ClientChange {
            grant_types: Some("client_credentials,refresh_token"),
            ..ClientChange::default()
        },
    )
    .await;
    let answer = t.c1_token("grant_type=client_credentials").await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
    assert!(
        answer.2["refresh_token"].is_string(),
        "now with a refresh token"
    );

    // The introspection right: given, then taken away.
    let access = s(&answer.2, "access_token");
    assert_eq!(
        t.introspect("c2", &env.secret2, &access).await["active"],
        false
    );
    update(
        "c2",
        ClientChange {
            may_introspect: Some(true),
            ..ClientChange::default()
        },
    )
    .await;
    assert_eq!(
        t.introspect("c2", &env.secret2, &access).await["active"],
        true
    );
    update(
        "c2",
        ClientChange {
            may_introspect: Some(false),
            ..ClientChange::default()
        },
    )
    .await;
    assert_eq!(
        t.introspect("c2", &env.secret2, &access).await,
        json!({"active": false})
    );
    // Disabling a client refuses it at once, on a cached row too.
    identity_api::clients::set_enabled(db, Scope::AnyTenant, "c1", false, &common::operator())
        .await
        .unwrap();
    assert_basic_challenge(&t.c1_token("grant_type=client_credentials").await);
    // The audit trail has the changes, old and new.
    let details: Vec<Value> = common::admin_rows(db)
        .await
        .iter()
        .filter(|r| r.event == "client_update")
        .map(|r| serde_json::from_str(r.detail.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(
        details[0],
        json!({"grant_types": "refresh_token", "previous_grant_types": "client_credentials"})
    );
    assert_eq!(
        details[2],
        json!({"may_introspect": true, "previous_may_introspect": false})
    );
}
