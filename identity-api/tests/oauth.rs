//! The standard OAuth 2.0 endpoints (docs/OAUTH.md) over HTTP (in-process, `oneshot`), on SQLite
//! and on PostgreSQL: `/oauth/token` (client_credentials and refresh_token, both client
//! authentication methods, RFC 8707 resources, every RFC 6749 section 5.2 error and the form's
//! own), `/oauth/introspect` (who may see which token, the service token, revocation seen at
//! once), `/oauth/revoke` (families, another client's token), the metadata, and that the grant
//! types and the introspection right act at once when changed. Stock clients (Python authlib,
//! PyJWT) drive the real binary in `tests/oauth-python`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{HeaderMap, StatusCode};
use common::{Backend, TestEnv, assert_error, basic, s, send_raw};
use identity_api::clients::{self, NewClient};
use identity_api::storage::ClientChange;
use identity_runtime::secret::SharedToken;
use serde_json::{Value, json};

both!(
    client_credentials_with_either_authentication,
    client_credentials_resources_and_scopes,
    token_endpoint_errors,
    form_errors,
    refresh_grant_rotates_and_detects_reuse,
    one_scope_rule_for_grants_and_refreshes,
    introspection_sees_what_the_caller_may_see,
    introspection_errors,
    revocation_revokes_families_of_the_caller_only,
    revocation_errors,
    server_errors,
    grant_changes_act_at_once,
    wrong_secret_keeps_the_cached_row,
    metadata_lists_what_exists,
);

const SERVICE_TOKEN: &str = "svc-7Hq2xZ9pLm4Vb8Nc3Rd6Tf1Yg5Kj0Wa";
const FORM: &str = "application/x-www-form-urlencoded";

type Answer = (StatusCode, HeaderMap, Value);

/// c1, c2, multi as `TestEnv` makes them; `rc` (client_credentials and refresh_token) and
/// `gateway` (may introspect every token, no grant of its own), with their secrets.
struct Env {
    env: TestEnv,
    rc: String,
    gateway: String,
    multi: String,
}

async fn setup(b: Backend) -> Option<Env> {
    let env = TestEnv::with(b, |s| {
        s.service_token = Some(SharedToken::new(SERVICE_TOKEN).unwrap());
    })
    .await?;
    let create = |id: &'static str, new: NewClient<'static>| {
        let state = env.state.clone();
        async move {
            clients::create_with(
                state.db(),
                state.verifier_key(),
                id,
                new,
                &common::operator(),
                identity_api::now(),
            )
            .await
            .unwrap()
            .expose()
            .to_owned()
        }
    };
    let rc = create(
        "rc",
        NewClient {
            scopes: "orders.read orders.write",
            audiences: "orders-api",
            grant_types: Some("client_credentials refresh_token"),
            may_introspect: false,
        },
    )
    .await;
    let gateway = create(
        "gateway",
        NewClient {
            scopes: "gateway",
            audiences: "orders-api",
            grant_types: Some("refresh_token"),
            may_introspect: true,
        },
    )
    .await;
    // `multi` of TestEnv, again with a secret this test knows.
    let multi = create(
        "multi2",
        NewClient {
            scopes: "orders.read",
            audiences: "orders-api billing-api",
            grant_types: None,
            may_introspect: false,
        },
    )
    .await;
    Some(Env {
        env,
        rc,
        gateway,
        multi,
    })
}

impl Env {
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut all = vec![("content-type", FORM)];
        all.extend_from_slice(headers);
        send_raw(&self.env.app, "POST", path, &all, body.as_bytes().to_vec()).await
    }

    /// `client_secret_basic`.
    async fn basic(&self, path: &str, client: &str, secret: &str, body: &str) -> Answer {
        self.post(path, &[("authorization", &basic(client, secret))], body)
            .await
    }

    /// `client_secret_post`.
    async fn in_body(&self, path: &str, client: &str, secret: &str, body: &str) -> Answer {
        let credentials = format!("client_id={client}&client_secret={}", enc(secret));
        let body = if body.is_empty() {
            credentials
        } else {
            format!("{body}&{credentials}")
        };
        self.post(path, &[], &body).await
    }

    async fn token(&self, client: &str, secret: &str, body: &str) -> Answer {
        self.basic("/oauth/token", client, secret, body).await
    }

    async fn c1_token(&self, body: &str) -> Answer {
        self.token("c1", &self.env.secret, body).await
    }

    async fn introspect(&self, client: &str, secret: &str, token: &str) -> Value {
        let answer = self
            .basic(
                "/oauth/introspect",
                client,
                secret,
                &format!("token={}", enc(token)),
            )
            .await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
        answer.2
    }

    async fn active(&self, token: &str) -> bool {
        let answer = self
            .post(
                "/oauth/introspect",
                &[("x-service-token", SERVICE_TOKEN)],
                &format!("token={}", enc(token)),
            )
            .await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
        answer.2["active"].as_bool().unwrap()
    }

    async fn revoke(&self, client: &str, secret: &str, token: &str) -> Answer {
        self.basic(
            "/oauth/revoke",
            client,
            secret,
            &format!("token={}", enc(token)),
        )
        .await
    }
}

fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// RFC 6749 section 5.1: no caching of any answer, success or error.
#[track_caller]
fn assert_no_store(answer: &Answer) {
    assert_eq!(answer.1["cache-control"], "no-store", "{answer:?}");
    assert_eq!(answer.1["pragma"], "no-cache", "{answer:?}");
}

/// An RFC 6749 section 5.2 error, with the headers every answer has.
#[track_caller]
fn assert_oauth_error(answer: &Answer, status: u16, code: &str) {
    assert_error(&(answer.0, answer.2.clone()), status, code);
    assert_no_store(answer);
    let keys: Vec<&String> = answer.2.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error", "error_description"], "{}", answer.2);
}

/// 401 invalid_client with the Basic challenge (Basic was used, or nothing).
#[track_caller]
fn assert_basic_challenge(answer: &Answer) {
    assert_oauth_error(answer, 401, "invalid_client");
    assert_eq!(
        answer.1["www-authenticate"], "Basic realm=\"identity-api\"",
        "{answer:?}"
    );
}

fn claims(token: &str) -> identity_api::tokens::Claims {
    common::claims_of(token)
}

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
    // Grant types: missing, unsupported (password too: there are no users), not the client's.
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
        "password",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ] {
        let answer = t.c1_token(&format!("grant_type={}", enc(grant))).await;
        assert_oauth_error(&answer, 400, "unsupported_grant_type");
    }
    let answer = t
        .c1_token("grant_type=password&username=u&password=p")
        .await;
    assert!(
        answer.2["error_description"]
            .as_str()
            .unwrap()
            .contains("no users")
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

/// `client update --grant-types` and `--may-introspect` act at once, though the client's row
/// is cached from the request before.
async fn grant_changes_act_at_once(b: Backend) {
    let Some(t) = setup(b).await else { return };
    let env = &t.env;
    let db = env.state.db();
    let update = |id: &'static str, change: ClientChange<'static>| async move {
        clients::update(db, id, change, &common::operator(), identity_api::now())
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
    identity_api::clients::set_enabled(db, "c1", false, &common::operator())
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
    clients::set_enabled(env.state.db(), "c1", false, &common::operator())
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
            "grant_types_supported": ["client_credentials", "refresh_token"],
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
