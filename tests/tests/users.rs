//! Users through the sidecar, with the real binaries: a role and a user made with the CLI (the
//! password on standard input), then the password grant sealed at /api/v1/token/password and
//! over the sidecar's TLS listener at /oauth/token, the token's subject the user's id and its
//! scope what the user's role grants of what the client may have; an API key made with the CLI
//! validated sealed and over TLS; and the user disabled with the CLI: no more grants, its tokens
//! inactive at once, its key refused once the validation cache lets it go (5 s).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use e2e_tests::tls_tunnel::TlsTunnel;
use e2e_tests::{Signing, Stack, StackConfig, binaries, calls, eventually};
use identity_client::{Client, no_retries};
use identity_launcher::SeededClient;
use identity_launcher::test_ca::TestCa;
use identity_protocol::identity::basic_header;
use identity_protocol::paths;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

struct Users {
    stack: Stack,
    tunnel: TlsTunnel,
    http: reqwest::Client,
    portal: SeededClient,
    user_id: String,
    _certs: tempfile::TempDir,
}

async fn setup() -> Users {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("identity-sidecar test CA").unwrap();
    let (cert, key) = ca.leaf().unwrap().write(certs.path()).unwrap();
    let stack = Stack::start(
        binaries().unwrap(),
        StackConfig {
            signing: Signing::KeyFile,
            sidecar_tls: Some((cert, key)),
            ..StackConfig::default()
        },
    )
    .await
    .unwrap();
    let portal = stack
        .create_client_with(
            "portal",
            "orders.read orders.write",
            "orders-api",
            &["--grant-types", "password refresh_token"],
        )
        .await
        .unwrap();
    stack
        .run_cli(&["role", "set", "viewer", "orders.read reports.read"])
        .await
        .unwrap();
    let created = stack
        .run_cli_with_input(
            &[
                "user",
                "create",
                "Alice",
                "--roles",
                "viewer",
                "--password-stdin",
                "--json",
            ],
            Some(format!("{PASSWORD}\n").as_bytes()),
        )
        .await
        .unwrap();
    assert!(!created.contains(PASSWORD), "{created}");
    let created: Value = created
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap();
    let user_id = created["user_id"].as_str().unwrap().to_owned();
    let tunnel = TlsTunnel::start(&stack.sidecar_url(), &ca.pem)
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Users {
        stack,
        tunnel,
        http,
        portal,
        user_id,
        _certs: certs,
    }
}

impl Users {
    fn basic(&self) -> String {
        basic_header(&self.portal.client_id, &self.portal.client_secret).to_string()
    }

    /// A `POST` over the sidecar's TLS listener with the portal's Basic credentials.
    async fn post(&self, path: &str, content_type: &str, body: String) -> (u16, Value) {
        let answer = self
            .http
            .post(format!("{}{path}", self.tunnel.url()))
            .header("authorization", self.basic())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap())
    }

    async fn oauth_password(&self, username: &str, password: &str) -> (u16, Value) {
        let form = format!(
            "grant_type=password&username={username}&password={}&scope=orders.read",
            password.replace(' ', "+")
        );
        self.post(
            paths::OAUTH_TOKEN,
            "application/x-www-form-urlencoded",
            form,
        )
        .await
    }

    async fn sealed(&self) -> (Client, identity_protocol::ClientSession) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .retry(no_retries())
            .build()
            .unwrap();
        let client = Client::with_http(http, &self.tunnel.url(), self.stack.pinned_key.as_deref())
            .await
            .unwrap();
        let session = client.init_anonymous().await.unwrap();
        (client, session)
    }

    async fn sealed_post(&self, path: &str, body: Value) -> calls::Answer {
        let (client, session) = self.sealed().await;
        calls::post(&client, &session, path, Some(&self.basic()), &body)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn users_sign_in_sealed_and_over_tls_and_stop_when_disabled() {
    let u = setup().await;

    // The password grant, sealed: the user's id as subject; the role's scopes that the client
    // may have (reports.read is the role's, not the client's); the role in the token.
    let answer = u
        .sealed_post(
            paths::TOKEN_PASSWORD,
            json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let access = answer.str("access_token").unwrap().to_owned();
    assert_eq!(answer.str("scope"), Some("orders.read"), "{answer:?}");
    let (status, body) = u
        .post(
            paths::OAUTH_INTROSPECT,
            "application/x-www-form-urlencoded",
            format!("token={access}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["sub"], u.user_id.as_str(), "{body}");
    let wrong = u
        .sealed_post(
            paths::TOKEN_PASSWORD,
            json!({"username": "alice", "password": "not the password"}),
        )
        .await;
    assert_eq!(wrong.status, 400, "{wrong:?}");
    assert_eq!(wrong.error(), Some("invalid_grant"), "{wrong:?}");

    // The same grant at the standard token endpoint, over TLS.
    let (status, body) = u.oauth_password("ALICE", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "orders.read", "{body}");
    assert!(body["refresh_token"].is_string(), "{body}");

    // An API key made with the CLI: validated sealed and over TLS.
    let created = u
        .stack
        .run_cli(&["api-key", "create", "--user", "alice", "--json"])
        .await
        .unwrap();
    let created: Value = created
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap();
    let key = created["api_key"].as_str().unwrap().to_owned();
    let body = json!({ "api_key": key });
    let sealed = u
        .sealed_post(paths::CREDENTIALS_API_KEY_VALIDATE, body.clone())
        .await;
    assert_eq!(sealed.status, 200, "{sealed:?}");
    assert_eq!(
        sealed.str("user_id"),
        Some(u.user_id.as_str()),
        "{sealed:?}"
    );
    let (status, over_tls) = u
        .post(
            paths::CREDENTIALS_API_KEY_VALIDATE,
            "application/json",
            body.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{over_tls}");
    assert_eq!(over_tls["username"], "Alice", "{over_tls}");

    // Disabled: no grant, the key refused, the token inactive.
    u.stack
        .run_cli(&["user", "disable", "alice"])
        .await
        .unwrap();
    let (status, refused) = u.oauth_password("alice", PASSWORD).await;
    assert_eq!(
        (status, &refused["error"]),
        (400, &json!("invalid_grant")),
        "{refused}"
    );
    // A key validated lately is answered from memory for up to 5 s (docs/users.md).
    let refused = eventually(80, || async {
        let (status, validated) = u
            .post(
                paths::CREDENTIALS_API_KEY_VALIDATE,
                "application/json",
                body.to_string(),
            )
            .await;
        (status, &validated) == (200, &json!({"active": false}))
    })
    .await;
    assert!(refused, "the disabled user's key is still valid after 8 s");
    let (status, introspected) = u
        .post(
            paths::OAUTH_INTROSPECT,
            "application/x-www-form-urlencoded",
            format!("token={access}"),
        )
        .await;
    assert_eq!(
        (status, &introspected["active"]),
        (200, &json!(false)),
        "{introspected}"
    );
}
