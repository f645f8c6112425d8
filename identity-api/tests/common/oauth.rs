//! What the tests of the standard OAuth 2.0 endpoints share (`oauth_token.rs`,
//! `oauth_introspect_revoke.rs`): clients made for them, requests with either client
//! authentication method, and the assertions every RFC 6749 answer meets.

use axum::http::{HeaderMap, StatusCode};
use identity_api::clients::{self, NewClient};
use identity_runtime::secret::SharedToken;
use serde_json::Value;

use super::{Backend, TestEnv, assert_error, basic, send_raw};

pub const SERVICE_TOKEN: &str = "svc-7Hq2xZ9pLm4Vb8Nc3Rd6Tf1Yg5Kj0Wa";
pub const FORM: &str = "application/x-www-form-urlencoded";

pub type Answer = (StatusCode, HeaderMap, Value);

/// c1, c2, multi as `TestEnv` makes them; `rc` (client_credentials and refresh_token) and
/// `gateway` (may introspect every token, no grant of its own), with their secrets.
pub struct Env {
    pub env: TestEnv,
    pub rc: String,
    pub gateway: String,
    pub multi: String,
}

pub async fn setup(b: Backend) -> Option<Env> {
    let env = TestEnv::with(b, |s| {
        s.service_token = Some(SharedToken::new(SERVICE_TOKEN).unwrap());
    })
    .await?;
    let create = |id: &'static str, new: NewClient<'static>| {
        let state = env.state.clone();
        async move {
            clients::create(
                state.db(),
                state.verifier_key(),
                id,
                new,
                &super::operator(),
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
            tenant: super::primary(),
            scopes: "orders.read orders.write",
            audiences: "orders-api",
            grant_types: Some("client_credentials refresh_token"),
            may_introspect: false,
            subject_policy: Some("any"),
        },
    )
    .await;
    let gateway = create(
        "gateway",
        NewClient {
            tenant: super::primary(),
            scopes: "gateway",
            audiences: "orders-api",
            grant_types: Some("refresh_token"),
            may_introspect: true,
            subject_policy: Some("any"),
        },
    )
    .await;
    // `multi` of TestEnv, again with a secret this test knows.
    let multi = create(
        "multi2",
        NewClient {
            tenant: super::primary(),
            scopes: "orders.read",
            audiences: "orders-api billing-api",
            grant_types: None,
            may_introspect: false,
            subject_policy: Some("any"),
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
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut all = vec![("content-type", FORM)];
        all.extend_from_slice(headers);
        send_raw(&self.env.app, "POST", path, &all, body.as_bytes().to_vec()).await
    }

    /// `client_secret_basic`.
    pub async fn basic(&self, path: &str, client: &str, secret: &str, body: &str) -> Answer {
        self.post(path, &[("authorization", &basic(client, secret))], body)
            .await
    }

    /// `client_secret_post`.
    pub async fn in_body(&self, path: &str, client: &str, secret: &str, body: &str) -> Answer {
        let credentials = format!("client_id={client}&client_secret={}", enc(secret));
        let body = if body.is_empty() {
            credentials
        } else {
            format!("{body}&{credentials}")
        };
        self.post(path, &[], &body).await
    }

    pub async fn token(&self, client: &str, secret: &str, body: &str) -> Answer {
        self.basic("/oauth/token", client, secret, body).await
    }

    pub async fn c1_token(&self, body: &str) -> Answer {
        self.token("c1", &self.env.secret, body).await
    }

    pub async fn introspect(&self, client: &str, secret: &str, token: &str) -> Value {
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

    pub async fn active(&self, token: &str) -> bool {
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

    pub async fn revoke(&self, client: &str, secret: &str, token: &str) -> Answer {
        self.basic(
            "/oauth/revoke",
            client,
            secret,
            &format!("token={}", enc(token)),
        )
        .await
    }
}

pub fn enc(text: &str) -> String {
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
pub fn assert_no_store(answer: &Answer) {
    assert_eq!(answer.1["cache-control"], "no-store", "{answer:?}");
    assert_eq!(answer.1["pragma"], "no-cache", "{answer:?}");
}

/// An RFC 6749 section 5.2 error, with the headers every answer has.
#[track_caller]
pub fn assert_oauth_error(answer: &Answer, status: u16, code: &str) {
    assert_error(&(answer.0, answer.2.clone()), status, code);
    assert_no_store(answer);
    let keys: Vec<&String> = answer.2.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error", "error_description"], "{}", answer.2);
}

/// 401 invalid_client with the Basic challenge (Basic was used, or nothing).
#[track_caller]
pub fn assert_basic_challenge(answer: &Answer) {
    assert_oauth_error(answer, 401, "invalid_client");
    assert_eq!(
        answer.1["www-authenticate"], "Basic realm=\"identity-api\"",
        "{answer:?}"
    );
}

pub fn claims(token: &str) -> identity_api::tokens::Claims {
    super::claims_of(token)
}
