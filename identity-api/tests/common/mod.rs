//! Shared test helpers: a fresh database per test (SQLite file in a temp dir, or a fresh
//! PostgreSQL schema when IDENTITY_TEST_POSTGRES_URL is set), app state, and request helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use identity_api::clients::{self, NewClient};
use identity_api::kek::Kek;
use identity_api::{AppState, Settings};
use serde_json::Value;
use tower::ServiceExt as _;

pub mod cli;
pub mod oauth;
mod process;
#[allow(unused_imports)] // each test file uses some of them
pub use process::*;

pub const ISSUER: &str = "https://identity.test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod $case { sqlite(), postgres() }` running `$case(Backend)` on both databases.
#[macro_export]
macro_rules! both {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$case($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(postgres_tests), ignore = "needs PostgreSQL: set IDENTITY_TEST_POSTGRES_URL")]
                async fn postgres() {
                    super::$case($crate::common::Backend::Postgres).await
                }
            }
        )+
    };
}

pub fn pg_base_url() -> Option<String> {
    std::env::var("IDENTITY_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A fresh schema on the test server; the URL selects it through search_path.
/// Panics (fails the test) when the variable is set and the server cannot be reached.
pub async fn pg_schema_url(base: &str) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("IDENTITY_TEST_POSTGRES_URL is set but unreachable: {e}"));
    // Named with the creation time, so that schemas of earlier runs can be swept (after an hour:
    // never one of a test still running).
    let now = identity_api::now();
    let schema = format!(
        "idapi_t_{now}_{}",
        identity_api::secret::random_id()
            .to_ascii_lowercase()
            .replace(['-', '_'], "x")
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'idapi\\_t\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for name in old {
        let created = name.split('_').nth(2).and_then(|t| t.parse::<i64>().ok());
        if created.is_some_and(|t| t < now - 3600) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut conn)
                .await;
        }
    }
    conn.close().await.ok();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options[search_path]={schema}")
}

/// The operator the tests' administrative changes are audited as.
pub fn operator() -> identity_api::operator::Operator {
    identity_api::operator::Operator::new("test-operator", Some("test-host"))
}

pub fn new_kek_text() -> String {
    let (_, text) = Kek::generate();
    text.to_string()
}

/// A database URL for the backend, or None (with a printed notice) when PostgreSQL is not configured.
pub async fn database(backend: Backend) -> Option<(String, Option<tempfile::TempDir>)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("identity.db").display());
            Some((url, Some(dir)))
        }
        Backend::Postgres => match pg_base_url() {
            Some(base) => Some((pg_schema_url(&base).await, None)),
            None => {
                eprintln!("IDENTITY_TEST_POSTGRES_URL is not set: skipping the PostgreSQL variant");
                None
            }
        },
    }
}

pub struct TestEnv {
    pub state: AppState,
    pub app: Router,
    pub url: String,
    pub kek: String,
    pub secret: String,
    pub secret2: String,
    pub dir: Option<tempfile::TempDir>,
}

pub fn settings() -> Settings {
    Settings::new(ISSUER)
}

pub async fn state_on(url: &str, kek: &str, settings: Settings) -> AppState {
    AppState::open(url, Kek::parse(kek).unwrap(), settings)
        .await
        .unwrap()
}

impl TestEnv {
    pub async fn new(backend: Backend) -> Option<Self> {
        Self::with(backend, |_| {}).await
    }

    /// Clients: `c1` and `c2` (orders.read orders.write, audience orders-api), `multi` (two
    /// audiences); each may issue for any subject.
    pub async fn with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        let (url, dir) = database(backend).await?;
        let kek = new_kek_text();
        let mut s = settings();
        tweak(&mut s);
        let state = state_on(&url, &kek, s).await;
        let now = identity_api::now();
        let key = state.verifier_key();
        let db = state.db();
        let by = operator();
        let secret = clients::create(
            db,
            key,
            "c1",
            any_subject(NewClient::new(
                primary(),
                "orders.read orders.write",
                "orders-api",
            )),
            &by,
            now,
        )
        .await
        .unwrap();
        let secret2 = clients::create(
            db,
            key,
            "c2",
            any_subject(NewClient::new(
                primary(),
                "orders.read orders.write",
                "orders-api",
            )),
            &by,
            now,
        )
        .await
        .unwrap();
        clients::create(
            db,
            key,
            "multi",
            any_subject(NewClient::new(
                primary(),
                "orders.read",
                "orders-api billing-api",
            )),
            &by,
            now,
        )
        .await
        .unwrap();
        Some(Self {
            app: identity_api::app(state.clone()),
            state,
            url,
            kek,
            secret: secret.expose().to_owned(),
            secret2: secret2.expose().to_owned(),
            dir,
        })
    }

    pub async fn issue_for(&self, client: &str, secret: &str, subject: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/token/issue",
                &[("authorization", &basic(client, secret))],
                &format!(r#"{{"subject": "{subject}"}}"#),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// A pair for c1 / test-user.
    pub async fn issue(&self) -> Value {
        self.issue_for("c1", &self.secret, "test-user").await
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Value) {
        send(&self.app, "POST", path, headers, body.as_bytes().to_vec()).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(&self.app, "GET", path, &[], Vec::new()).await
    }

    pub async fn refresh(&self, bearer: &str, refresh_token: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/token",
            &[("authorization", &format!("Bearer {bearer}"))],
            &serde_json::json!({"grant_type": "refresh_token", "refresh_token": refresh_token})
                .to_string(),
        )
        .await
    }

    pub async fn introspect(&self, bearer: &str, token: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/introspect",
            &[("authorization", &format!("Bearer {bearer}"))],
            &serde_json::json!({ "token": token }).to_string(),
        )
        .await
    }

    pub async fn revoke(&self, bearer: &str, token: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/revoke",
            &[("authorization", &format!("Bearer {bearer}"))],
            &serde_json::json!({ "token": token }).to_string(),
        )
        .await
    }
}

/// `new` with the subject policy `any`: the tests issue for subjects of their choosing.
pub fn any_subject(new: NewClient<'_>) -> NewClient<'_> {
    NewClient {
        subject_policy: Some("any"),
        ..new
    }
}

/// `Authorization: Basic ...`, as the protocol crate builds it.
pub fn basic(id: &str, secret: &str) -> String {
    identity_protocol::identity::basic_header(id, secret).to_string()
}

pub fn s(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {v}"))
        .to_owned()
}

pub async fn send(
    app: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut all = Vec::new();
    if !body.is_empty() {
        all.push(("content-type", "application/json"));
    }
    all.extend_from_slice(headers);
    let (status, _, value) = send_raw(app, method, path, &all, body).await;
    (status, value)
}

/// A request with a body as it is (no Content-Type added), answered with its headers.
pub async fn send_raw(
    app: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 10 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, value)
}

/// Issues a pair for `subject` on /api/v1/token/issue and rotates it once on /api/v1/token, as
/// a caller of the hot path does; panics unless both answer 200.
pub async fn issue_and_refresh(app: &Router, auth: &str, subject: &str) {
    let body = serde_json::json!({ "subject": subject })
        .to_string()
        .into_bytes();
    let (status, pair) = send(
        app,
        "POST",
        "/api/v1/token/issue",
        &[("authorization", auth)],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let body = serde_json::json!({
        "grant_type": "refresh_token",
        "refresh_token": s(&pair, "refresh_token"),
    })
    .to_string()
    .into_bytes();
    let bearer = format!("Bearer {}", s(&pair, "access_token"));
    let (status, answer) = send(
        app,
        "POST",
        "/api/v1/token",
        &[("authorization", &bearer)],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Asserts an RFC 6749 §5.2 error body with the given status and code.
#[track_caller]
pub fn assert_error(result: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(result.0.as_u16(), status, "body: {}", result.1);
    assert_eq!(result.1["error"], code, "body: {}", result.1);
    assert!(
        result.1["error_description"].is_string(),
        "body: {}",
        result.1
    );
}

/// Runs raw SQL on the test database (to age rows, for example).
pub async fn exec(db: &identity_api::Db, sql: &str) {
    match db.pools() {
        identity_api::storage::Pools::Sqlite { write, .. } => {
            sqlx::query(sql).execute(write).await.unwrap();
        }
        identity_api::storage::Pools::Postgres(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
    }
}

/// Every audit row in the order written, read with SQL of its own (not with the reader the
/// tests check).
pub async fn audit_rows(db: &identity_api::Db) -> Vec<identity_api::storage::AuditRow> {
    const SQL: &str = "SELECT at, event, client_id, subject, family_id, outcome, actor, detail, \
                       tenant_id FROM audit_events ORDER BY id";
    type Row = (
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        String,
    );
    let rows: Vec<Row> = match db.pools() {
        identity_api::storage::Pools::Sqlite { write, .. } => {
            sqlx::query_as(SQL).fetch_all(write).await.unwrap()
        }
        identity_api::storage::Pools::Postgres(pool) => {
            sqlx::query_as(SQL).fetch_all(pool).await.unwrap()
        }
    };
    rows.into_iter()
        .map(
            |(at, event, client_id, subject, family_id, outcome, actor, detail, tenant)| {
                identity_api::storage::AuditRow {
                    at,
                    event,
                    client_id,
                    subject,
                    family_id,
                    outcome,
                    actor,
                    detail,
                    // The empty tenant: the deployment's own events (kek rewrap).
                    tenant_id: identity_api::storage::TenantId::new(&tenant)
                        .unwrap_or_else(|| identity_api::storage::TenantId::new("server").unwrap()),
                }
            },
        )
        .collect()
}

/// The audit rows of administrative changes (those with an actor), in the order written.
pub async fn admin_rows(db: &identity_api::Db) -> Vec<identity_api::storage::AuditRow> {
    let mut rows = audit_rows(db).await;
    rows.retain(|r| r.actor.is_some());
    rows
}

/// Signs arbitrary claims with the default tenant's active key (expired or wrong-issuer
/// tokens).
pub fn sign_with(state: &AppState, claims: &identity_api::tokens::Claims) -> String {
    let directory = state.directory();
    identity_api::tokens::sign(directory.default_tenant().unwrap(), claims).unwrap()
}

/// The claims of a token, without verification (to build variants of it).
pub fn claims_of(token: &str) -> identity_api::tokens::Claims {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A pair for c1 / test-user from a server at `base` (a real listener, not `oneshot`).
pub async fn issue_over_http(base: &str, secret: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/token/issue"))
        .header("authorization", basic("c1", secret))
        .json(&serde_json::json!({"subject": "test-user"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The default tenant of [`settings`].
pub fn primary() -> &'static identity_api::storage::TenantId {
    static PRIMARY: std::sync::LazyLock<identity_api::storage::TenantId> =
        std::sync::LazyLock::new(identity_api::storage::TenantId::primary);
    &PRIMARY
}

/// The default tenant's row.
pub async fn primary_row(db: &identity_api::Db) -> identity_api::storage::TenantRow {
    db.tenants()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.tenant_id == *primary())
        .unwrap()
}

/// A form POST, as the standard endpoints take it.
pub async fn send_form(
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    let (status, _, value) = send_raw(app, "POST", path, &all, body.as_bytes().to_vec()).await;
    (status, value)
}

/// Creates the tenant `row` (audited as an operator's `tenant create` would be).
pub async fn create_tenant(state: &AppState, row: identity_api::storage::TenantRow) {
    use identity_api::storage::{AdminEvent, AuditRow};
    let audit = AuditRow::admin(
        row.created_at,
        AdminEvent::TenantCreate,
        "test",
        &row.tenant_id,
        None,
        serde_json::json!({}),
    );
    state.db().insert_tenant(&row, &audit).await.unwrap();
}
