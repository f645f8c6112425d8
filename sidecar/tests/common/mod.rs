//! Shared helpers of the sidecar's HTTP tests: an in-process stub of the identity API, the real
//! sidecar on port 0, and clients (the crate's own `client` module, raw reqwest for malformed
//! requests).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use identity_client::Client;
use identity_protocol::{ClientSession, SigningKey};
use identity_runtime::Secret;
use identity_sidecar::{AppState, Config, Keys};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub const INTERNAL_TOKEN: &str = "test-internal-token-5d1e8b3a9c07f264";
/// Bearer tokens the stub knows as active, with their subject.
pub const ALICE_TOKEN: &str = "alice-access-token";
pub const BOB_TOKEN: &str = "bob-access-token";
/// A token the stub introspects as `{"active": false}` with 200.
pub const INACTIVE_TOKEN: &str = "inactive-access-token";
/// A refresh token: active, but not an access token.
pub const REFRESH_TOKEN: &str = "alice-refresh-token";

/// The header names, and values, one request reached the stub with.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&[String]> {
        self.headers.get(name).map(Vec::as_slice)
    }
}

#[derive(Default)]
pub struct StubState {
    pub records: Mutex<Vec<Recorded>>,
    /// Notified whenever a request arrives.
    pub arrived: Notify,
}

/// An in-process imitation of the identity API.
pub struct Stub {
    pub addr: SocketAddr,
    pub url: String,
    pub state: Arc<StubState>,
    task: JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stub {
    pub async fn start() -> Self {
        let state = Arc::new(StubState::default());
        let app = Router::new()
            .route("/api/v1/introspect", post(introspect))
            .route(
                "/health",
                get(|| async { axum::Json(json!({"status": "ok"})) }),
            )
            .route(
                "/.well-known/jwks.json",
                get(|| async { axum::Json(json!({"keys": [{"kid": "stub"}]})) }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(|| async { axum::Json(json!({"issuer": "http://stub.test"})) }),
            )
            .route("/oauth/token", post(oauth))
            .route("/oauth/introspect", post(oauth))
            .route("/oauth/revoke", post(oauth))
            .route("/.well-known/oauth-authorization-server", get(oauth))
            .fallback(echo)
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.state.records.lock().unwrap().clone()
    }

    pub fn records_for(&self, path: &str) -> Vec<Recorded> {
        self.records()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        map.entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    map
}

async fn record(state: &StubState, request: Request) -> Recorded {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let recorded = Recorded {
        path: parts.uri.path().to_owned(),
        headers: header_map(&parts.headers),
        body,
    };
    state.records.lock().unwrap().push(recorded.clone());
    state.arrived.notify_waiters();
    recorded
}

/// `POST /api/v1/introspect` as the identity API answers it: 401 for a bearer that is not
/// active, else RFC 7662 for the token in the body.
async fn introspect(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let recorded = record(&state, request).await;
    let bearer = recorded
        .header("authorization")
        .and_then(|v| v.first())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let body: Value = serde_json::from_slice(&recorded.body).unwrap_or(Value::Null);
    let token = body["token"].as_str().unwrap_or_default();
    let (status, answer) = match (bearer.as_str(), token) {
        (ALICE_TOKEN, ALICE_TOKEN) => (
            200,
            json!({"active": true, "sub": "alice", "token_use": "access_token", "token_type": "Bearer"}),
        ),
        (BOB_TOKEN, BOB_TOKEN) => (
            200,
            json!({"active": true, "sub": "bob", "token_use": "access_token", "token_type": "Bearer"}),
        ),
        (INACTIVE_TOKEN, INACTIVE_TOKEN) => (200, json!({"active": false})),
        (REFRESH_TOKEN, REFRESH_TOKEN) => (
            200,
            json!({"active": true, "sub": "alice", "token_use": "refresh_token"}),
        ),
        _ => (
            401,
            json!({"error": "invalid_token", "error_description": "bearer token is not active"}),
        ),
    };
    (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
}

/// A JSON string of `len` bytes of `x`, sent in 1 KiB chunks without a Content-Length (hyper
/// then sends it chunked): an answer whose size is known only by reading it.
struct Chunked {
    left: usize,
    opened: bool,
    closed: bool,
}

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let chunk = if !self.opened {
            self.opened = true;
            Bytes::from_static(b"\"")
        } else if self.left > 0 {
            let n = self.left.min(1024);
            self.left -= n;
            Bytes::from(vec![b'x'; n])
        } else if !self.closed {
            self.closed = true;
            Bytes::from_static(b"\"")
        } else {
            return std::task::Poll::Ready(None);
        };
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }
}

/// Any other path: echoes what arrived. The JSON body steers it: `status` (the answer's status),
/// `sleep_ms` (answer late), `non_json` (answer text), `big` (pad the answer to that many bytes),
/// `chunked` (answer a JSON string of that many bytes, chunked, without Content-Length).
async fn echo(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let method = request.method().to_string();
    let recorded = record(&state, request).await;
    let body: Value = serde_json::from_slice(&recorded.body).unwrap_or(Value::Null);
    if let Some(ms) = body["sleep_ms"].as_u64() {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = StatusCode::from_u16(body["status"].as_u64().unwrap_or(200) as u16).unwrap();
    if let Some(len) = body["chunked"].as_u64() {
        let chunked = Chunked {
            left: len as usize,
            opened: false,
            closed: false,
        };
        return (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            axum::body::Body::new(chunked),
        )
            .into_response();
    }
    if body["non_json"].as_bool() == Some(true) {
        return (status, [(header::CONTENT_TYPE, "text/plain")], "not json").into_response();
    }
    let padding = "x".repeat(body["big"].as_u64().unwrap_or(0) as usize);
    let answer = json!({
        "method": method,
        "path": recorded.path,
        "headers": recorded.headers,
        "body": body,
        "padding": padding,
    });
    (status, axum::Json(answer)).into_response()
}

/// The standard OAuth routes as the identity API answers them, as far as a pass-through can
/// tell: `Authorization: Basic bad` gets RFC 6749's 401 with `WWW-Authenticate`; `/oauth/revoke`
/// RFC 7009's empty 200; anything else a JSON echo of the method, the path and query, the
/// headers and the body (as text), with `Cache-Control: no-store` and `Pragma: no-cache`.
async fn oauth(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let method = request.method().to_string();
    let target = request.uri().to_string();
    let recorded = record(&state, request).await;
    let no_store = [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ];
    if recorded
        .header("authorization")
        .and_then(|v| v.first())
        .map(String::as_str)
        == Some("Basic bad")
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Basic realm="identity-api""#)],
            no_store,
            axum::Json(json!({"error": "invalid_client", "error_description": "bad client"})),
        )
            .into_response();
    }
    if recorded.path == "/oauth/revoke" {
        return (StatusCode::OK, no_store).into_response();
    }
    let answer = json!({
        "method": method,
        "target": target,
        "headers": recorded.headers,
        "body": String::from_utf8_lossy(&recorded.body),
    });
    (StatusCode::OK, no_store, axum::Json(answer)).into_response()
}

/// The real sidecar on 127.0.0.1:0.
pub struct Sidecar {
    pub addr: SocketAddr,
    pub url: String,
    /// The ops listener's base URL, with `--ops-listen`.
    pub ops_url: Option<String>,
    /// b64u of the signing key's public key: what a client pins.
    pub public_key: String,
    pub key_id: String,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The test configuration: port 0, the given upstream, the internal token, generous init limits.
pub fn config(upstream: &str) -> Config {
    let mut config = Config::try_parse_from([
        "identity-sidecar",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream,
        "--init-rate-per-sec",
        "10000",
        "--init-burst",
        "10000",
        "--upstream-timeout-ms",
        "5000",
    ])
    .unwrap();
    config.internal_token = Secret::from_value(INTERNAL_TOKEN);
    config
}

impl Sidecar {
    pub async fn start(upstream: &str) -> Self {
        Self::start_with(upstream, |_| {}).await
    }

    pub async fn start_with(upstream: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = config(upstream);
        tweak(&mut config);
        let keys = Keys::new(SigningKey::generate(), Vec::new());
        let server = identity_sidecar::bind_with_keys(&config, keys)
            .await
            .unwrap();
        Self::run(server)
    }

    /// Runs a bound server until [`Sidecar::shutdown`].
    pub fn run(server: identity_sidecar::Server) -> Self {
        let addr = server.local_addr();
        let url = server.url();
        let ops_url = server.ops_addr().map(|ops| format!("http://{ops}"));
        let state = server.state().clone();
        let public_key = state.keys.signing.public_key().to_b64u();
        let key_id = state.keys.signing.key_id().to_owned();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            url,
            ops_url,
            public_key,
            key_id,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits (bounded) for the server to drain and stop.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the sidecar stops within 20 s")
            .unwrap();
    }

    /// A client pinned to this sidecar's key.
    pub async fn client(&self) -> Client {
        Client::with_http(http(), &self.url, Some(&self.public_key))
            .await
            .unwrap()
    }

    pub async fn anonymous(&self) -> (Client, ClientSession) {
        let client = self.client().await;
        let session = client.init_anonymous().await.unwrap();
        (client, session)
    }

    pub async fn alice(&self) -> (Client, ClientSession) {
        let client = self.client().await;
        let session = client
            .init_authenticated(ALICE_TOKEN, "alice", None)
            .await
            .unwrap();
        (client, session)
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends a sealed envelope over raw reqwest: returns status, headers and body.
    pub async fn post_sealed(
        &self,
        session: &ClientSession,
        path: &str,
        authorization: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, HeaderMap, Bytes) {
        let mut request = http()
            .post(self.endpoint(path))
            .header(identity_protocol::headers::SESSION_ID, session.id())
            .header("content-type", "application/json")
            .body(body);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let answer = request.send().await.unwrap();
        parts(answer).await
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap()
}

pub async fn parts(answer: reqwest::Response) -> (u16, HeaderMap, Bytes) {
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.unwrap();
    (status, headers, body)
}

/// Asserts a section 4 error: status, code, plaintext JSON body, no X-Session-Id.
pub fn assert_error(got: &(u16, HeaderMap, Bytes), status: u16, code: &str) {
    let (got_status, headers, body) = got;
    let text = String::from_utf8_lossy(body);
    assert_eq!(*got_status, status, "status; body {text}");
    let json: Value = serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(json["error"], code, "body {text}");
    assert!(json["error_description"].is_string(), "body {text}");
    assert!(!headers.contains_key(identity_protocol::headers::SESSION_ID));
}

/// `POST` with a JSON content type and no session.
pub async fn post_raw(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, HeaderMap, Bytes) {
    let mut request = http().post(url).body(body);
    let mut has_content_type = false;
    for (name, value) in headers {
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        request = request.header(*name, *value);
    }
    if !has_content_type {
        request = request.header("content-type", "application/json");
    }
    parts(request.send().await.unwrap()).await
}

/// Sends request headers and part of a body that never ends, then reads the answer: until its
/// JSON body is whole, or the connection closes.
pub async fn answer_to_unfinished_body(addr: SocketAddr, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may stop reading once it has refused: a failed write is fine.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&answer);
                    if text
                        .split_once("\r\n\r\n")
                        .is_some_and(|(_, body)| serde_json::from_str::<Value>(body).is_ok())
                    {
                        break;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the sidecar answers before the body ends");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A fresh, valid session init body.
pub fn init_body() -> String {
    serde_json::to_string(&identity_protocol::ClientHandshake::new().request()).unwrap()
}

/// The decrypted echo of the stub.
pub fn echoed(response: &identity_client::Response) -> Value {
    response.json::<Value>().unwrap()
}

/// A port where nothing listens.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Polls `check` every 25 ms, at most `tries` times.
pub async fn eventually(tries: usize, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check()
}

/// A unique scratch directory under the system temp dir.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sidecar-test-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
