//! Tenants kept apart through the sidecar, with the real binaries: a tenant and its client made
//! with the CLI against a running stack; over the sidecar's TLS listener (reached through
//! [`TlsTunnel`]), the tenant's standard routes issue tokens of its own issuer and keys that the
//! default tenant neither accepts nor lists, an unknown tenant is the identity API's 404 and a
//! tenant that is no slug the sidecar's 400, forwarding nothing; on the sealed routes the outer
//! `X-Tenant-ID` can only narrow a credential's tenant; and a tenant disabled with the CLI issues
//! nothing and its tokens are inactive at once, requests naming it 403 from the next reload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use e2e_tests::tls_tunnel::TlsTunnel;
use e2e_tests::{Signing, Stack, StackConfig, binaries, calls, eventually, ok_tokens, refusal};
use identity_client::{Client, no_retries};
use identity_launcher::SeededClient;
use identity_launcher::test_ca::TestCa;
use identity_protocol::ClientSession;
use identity_protocol::identity::basic_header;
use serde_json::{Value, json};

const SCOPE: &str = "orders.read orders.write";
const AUDIENCE: &str = "orders-api";

/// A stack whose sidecar serves TLS, tenant `acme` with its client `a1`, and `gateway`, a
/// client of the default tenant that may introspect every client's tokens.
struct Tenanted {
    stack: Stack,
    /// Plain HTTP to the sidecar's TLS listener.
    tunnel: TlsTunnel,
    http: reqwest::Client,
    a1: SeededClient,
    gateway: SeededClient,
    _certs: tempfile::TempDir,
}

async fn setup() -> Tenanted {
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
    // With the API running: it finds the tenant at its next reload (every second), or when a
    // request names it.
    stack.run_cli(&["tenant", "create", "acme"]).await.unwrap();
    let grants = ["--grant-types", "client_credentials refresh_token"];
    let a1 = stack
        .create_client_with(
            "a1",
            SCOPE,
            AUDIENCE,
            &[&["--tenant", "acme"][..], &grants].concat(),
        )
        .await
        .unwrap();
    let gateway = stack
        .create_client_with("gateway", SCOPE, AUDIENCE, &["--may-introspect"])
        .await
        .unwrap();
    let tunnel = TlsTunnel::start(&stack.sidecar_url(), &ca.pem)
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Asked directly, so that the sidecar's metrics count only the test's requests: a request
    // naming the tenant within 200 ms of a reload that came before its creation is a 404.
    let jwks = format!("{}/t/acme/.well-known/jwks.json", stack.api_url());
    let known = eventually(30, || async {
        let answer = http
            .get(&jwks)
            .header("x-internal-token", stack.internal_token())
            .send()
            .await;
        answer.is_ok_and(|a| a.status() == 200)
    })
    .await;
    assert!(known, "the identity API does not serve the new tenant");
    Tenanted {
        stack,
        tunnel,
        http,
        a1,
        gateway,
        _certs: certs,
    }
}

impl Tenanted {
    /// The default tenant's issuer: the sidecar's https URL.
    fn issuer(&self) -> String {
        self.stack.sidecar_url()
    }

    /// The sidecar's metrics, from its plain ops listener.
    async fn sidecar_metrics(&self) -> String {
        let url = format!("{}/metrics", self.stack.sidecar_ops_url());
        let answer = self.http.get(url).send().await.unwrap();
        answer.text().await.unwrap()
    }

    /// A form `POST` with Basic credentials: the status and the JSON body.
    async fn form(&self, path: &str, client: &SeededClient, body: &str) -> (u16, Value) {
        let answer = self
            .http
            .post(format!("{}{path}", self.tunnel.url()))
            .header(
                "authorization",
                basic_header(&client.client_id, &client.client_secret).as_str(),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let answer = self
            .http
            .get(format!("{}{path}", self.tunnel.url()))
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap())
    }

    /// A client_credentials grant of `client` at `path`.
    async fn grant(&self, path: &str, client: &SeededClient) -> (u16, Value) {
        self.form(path, client, "grant_type=client_credentials")
            .await
    }

    /// An access token of a1, from its tenant's token endpoint.
    async fn a1_token(&self) -> String {
        let (status, body) = self.grant("/t/acme/oauth/token", &self.a1).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn introspect(&self, path: &str, client: &SeededClient, token: &str) -> (u16, Value) {
        self.form(path, client, &format!("token={token}")).await
    }

    /// A client of the sidecar whose every request carries `X-Tenant-ID: tenant`, if any: the
    /// outer header, outside the sealed envelope.
    async fn sealed_client(&self, tenant: Option<&str>) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(tenant) = tenant {
            headers.insert("x-tenant-id", tenant.parse().unwrap());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .retry(no_retries())
            .default_headers(headers)
            .build()
            .unwrap();
        Client::with_http(http, &self.tunnel.url(), self.stack.pinned_key.as_deref())
            .await
            .unwrap()
    }

    /// A sealed issue for `u1` with a1's credentials.
    async fn sealed_issue(&self, client: &Client, session: &ClientSession) -> calls::Answer {
        let a1 = &self.a1;
        calls::issue(
            client,
            session,
            &a1.client_id,
            &a1.client_secret,
            "u1",
            None,
            None,
        )
        .await
        .unwrap()
    }
}

/// The JSON of a JWT's header (`part` 0) or claims (`part` 1), unverified.
fn jwt_part(token: &str, part: usize) -> Value {
    let segment = token.split('.').nth(part).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn kids(jwks: &Value) -> Vec<&str> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_kept_apart_through_the_sidecar() {
    let t = setup().await;
    let acme_issuer = format!("{}/t/acme", t.issuer());

    // A tenant that is no slug never leaves the sidecar (first: the metrics show nothing of
    // these routes went upstream).
    let (status, body) = t.grant("/t/Bad/oauth/token", &t.a1).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    let (status, body) = t.get("/t/Bad/.well-known/jwks.json").await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    let metrics = t.sidecar_metrics().await;
    for series in [
        r#"sidecar_requests_total{route="/t/{tenant}/oauth/token",status="400"} 1"#,
        r#"sidecar_requests_total{route="/t/{tenant}/.well-known/jwks.json",status="400"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
    // Nothing went upstream on these routes yet.
    assert!(
        !metrics.contains("sidecar_upstream_latency_seconds_count{route=\"/t/"),
        "{metrics}"
    );

    // The tenant's token endpoint: a token of the tenant's issuer. A request naming no tenant
    // belongs to its credential's (the same issuer); one naming the default tenant refuses a1.
    let token = t.a1_token().await;
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["iss"], acme_issuer.as_str(), "{claims}");
    assert_eq!(claims["client_id"], "a1");
    let (status, body) = t.grant("/oauth/token", &t.a1).await;
    assert_eq!(status, 200, "{body}");
    let claims = jwt_part(body["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["iss"], acme_issuer.as_str(), "{claims}");
    let (status, body) = t.grant("/t/primary/oauth/token", &t.a1).await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("invalid_client")),
        "{body}"
    );
    // And the default tenant's client is refused in acme.
    let (status, body) = t.grant("/t/acme/oauth/token", &t.gateway).await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("invalid_client")),
        "{body}"
    );

    // The tenant's JWKS lists its key only; the default JWKS does not list it.
    let kid = jwt_part(&token, 0)["kid"].as_str().unwrap().to_owned();
    let (status, jwks) = t.get("/t/acme/.well-known/jwks.json").await;
    assert_eq!(status, 200, "{jwks}");
    assert_eq!(kids(&jwks), [kid.as_str()], "{jwks}");
    let (status, jwks) = t.get("/.well-known/jwks.json").await;
    assert_eq!(status, 200, "{jwks}");
    assert!(!kids(&jwks).contains(&kid.as_str()), "{jwks}");
    assert!(!kids(&jwks).is_empty(), "{jwks}");

    // The tenant's metadata, at RFC 8414's address and under its prefix.
    for path in [
        "/.well-known/oauth-authorization-server/t/acme",
        "/t/acme/.well-known/oauth-authorization-server",
        "/t/acme/.well-known/openid-configuration",
    ] {
        let (status, doc) = t.get(path).await;
        assert_eq!(status, 200, "{path}: {doc}");
        assert_eq!(doc["issuer"], acme_issuer.as_str(), "{path}");
        assert_eq!(
            doc["jwks_uri"],
            format!("{acme_issuer}/.well-known/jwks.json")
        );
    }
    let (_, doc) = t.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(doc["issuer"], t.issuer(), "{doc}");

    // The default tenant's gateway sees other clients' tokens of its tenant, never acme's.
    let (status, body) = t.grant("/oauth/token", &t.stack.client).await;
    assert_eq!(status, 200, "{body}");
    let primary_token = body["access_token"].as_str().unwrap();
    let (status, body) = t
        .introspect("/oauth/introspect", &t.gateway, primary_token)
        .await;
    assert_eq!((status, &body["active"]), (200, &json!(true)), "{body}");
    let (status, body) = t.introspect("/oauth/introspect", &t.gateway, &token).await;
    assert_eq!((status, body), (200, json!({ "active": false })));
    // a1 sees its own token in its tenant.
    let (status, body) = t
        .introspect("/t/acme/oauth/introspect", &t.a1, &token)
        .await;
    assert_eq!((status, &body["active"]), (200, &json!(true)), "{body}");

    // A tenant that does not exist is the identity API's 404, never the default tenant.
    let (status, body) = t.grant("/t/nope/oauth/token", &t.a1).await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("unknown_tenant")),
        "{body}"
    );
    let (status, body) = t.get("/t/nope/.well-known/jwks.json").await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("unknown_tenant")),
        "{body}"
    );

    // Sealed: the outer header can only narrow the tenant of a1's credentials.
    let plain = t.sealed_client(None).await;
    let acme = t.sealed_client(Some("acme")).await;
    let primary = t.sealed_client(Some("primary")).await;
    let session = plain.init_anonymous().await.unwrap();
    let issued = ok_tokens(&t.sealed_issue(&acme, &session).await).unwrap();
    assert_eq!(
        jwt_part(&issued.access_token, 1)["iss"],
        acme_issuer.as_str()
    );
    ok_tokens(&t.sealed_issue(&plain, &session).await).unwrap();
    let refused = t.sealed_issue(&primary, &session).await;
    assert_eq!(
        (refused.status, refused.error()),
        (401, Some("invalid_client")),
        "{refused:?}"
    );
    let bearer = &issued.access_token;
    let answer = calls::introspect(&acme, &session, bearer, bearer, None)
        .await
        .unwrap();
    assert_eq!(
        (answer.status, answer.active()),
        (200, Some(true)),
        "{answer:?}"
    );
    let answer = calls::introspect(&primary, &session, bearer, bearer, None)
        .await
        .unwrap();
    assert_eq!(
        (answer.status, answer.error()),
        (401, Some("invalid_token")),
        "{answer:?}"
    );

    // A tenant header naming no tenant: the identity API's 404, sealed; one that is no slug:
    // the sidecar's plaintext 400.
    let nope = t.sealed_client(Some("nope")).await;
    let answer = t.sealed_issue(&nope, &session).await;
    assert_eq!(
        (answer.status, answer.error()),
        (404, Some("unknown_tenant")),
        "{answer:?}"
    );
    let bad = t.sealed_client(Some("Bad")).await;
    let refused = calls::introspect(&bad, &session, bearer, bearer, None).await;
    assert_eq!(refusal(refused).unwrap(), (400, "invalid_request".into()));

    // The tenant's token route did reach the identity API once its tenant was a slug: the
    // metric that showed nothing forwarded at the start counts forwarded requests.
    let metrics = t.sidecar_metrics().await;
    let forwarded = r#"sidecar_upstream_latency_seconds_count{route="/t/{tenant}/oauth/token"} "#;
    assert!(metrics.contains(forwarded), "{metrics}");
    for (name, status) in t.stack.shutdown() {
        assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_tenant_stops_through_the_sidecar() {
    let t = setup().await;
    let token = t.a1_token().await;
    let acme = t.sealed_client(Some("acme")).await;
    let plain = t.sealed_client(None).await;
    let session = plain.init_anonymous().await.unwrap();
    let issued = ok_tokens(&t.sealed_issue(&acme, &session).await).unwrap();
    let bearer = issued.access_token.clone();
    let answer = calls::introspect(&plain, &session, &bearer, &token, None)
        .await
        .unwrap();
    assert_eq!(answer.active(), Some(true), "{answer:?}");
    let (status, body) = t.introspect("/oauth/introspect", &t.a1, &token).await;
    assert_eq!((status, &body["active"]), (200, &json!(true)), "{body}");

    t.stack
        .run_cli(&["tenant", "disable", "acme"])
        .await
        .unwrap();

    // At once, whether or not the identity API has reloaded its tenants yet: the database
    // refuses the tenant's tokens, and its client gets none.
    let answer = calls::introspect(&plain, &session, &bearer, &token, None)
        .await
        .unwrap();
    assert_eq!(answer.status, 401, "{answer:?}");
    // a1 itself: its token inactive, or (once the API has reloaded) a1 refused.
    let (status, body) = t.introspect("/oauth/introspect", &t.a1, &token).await;
    assert!(
        (status, &body) == (200, &json!({ "active": false }))
            || (status, &body["error"]) == (401, &json!("invalid_client")),
        "{status} {body}"
    );
    let (status, body) = t.introspect("/oauth/introspect", &t.gateway, &token).await;
    assert_eq!((status, body), (200, json!({ "active": false })));
    let (status, body) = t.grant("/oauth/token", &t.a1).await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("invalid_client")),
        "{body}"
    );
    let refresh = format!(
        "grant_type=refresh_token&refresh_token={}",
        issued.refresh_token
    );
    let (status, body) = t.form("/oauth/token", &t.a1, &refresh).await;
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("invalid_client")),
        "{body}"
    );
    let answer = t.sealed_issue(&plain, &session).await;
    assert_eq!(
        (answer.status, answer.error()),
        (401, Some("invalid_client")),
        "{answer:?}"
    );

    // From its next reload (every second) on, a request naming the tenant is 403.
    let reloaded = eventually(30, || async {
        t.get("/t/acme/.well-known/jwks.json").await.0 == 403
    })
    .await;
    assert!(
        reloaded,
        "the tenant's JWKS is still served after it was disabled"
    );
    for path in ["/t/acme/oauth/token", "/t/acme/oauth/introspect"] {
        let (status, body) = t
            .form(
                path,
                &t.a1,
                &format!("grant_type=client_credentials&token={token}"),
            )
            .await;
        assert_eq!(
            (status, &body["error"]),
            (403, &json!("tenant_disabled")),
            "{path}: {body}"
        );
    }
    let answer = t.sealed_issue(&acme, &session).await;
    assert_eq!(
        (answer.status, answer.error()),
        (403, Some("tenant_disabled")),
        "{answer:?}"
    );
    // The default tenant works on.
    let (status, body) = t.grant("/oauth/token", &t.gateway).await;
    assert_eq!(status, 200, "{body}");
    for (name, status) in t.stack.shutdown() {
        assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}");
    }
}
