#![forbid(unsafe_code)]
//! Harness of the end-to-end tests: the real `identity-api` and `identity-sidecar` binaries as
//! child processes, on free loopback ports, each test in its own temporary directory with its
//! own database, keys and seeded client; stopped when the [`Env`] is dropped.
//!
//! The binaries are found next to the test executable (`target/<profile>/deps/<test>` →
//! `target/<profile>/`), whatever CARGO_TARGET_DIR is. `cargo test --workspace` builds them
//! before running any test; `cargo test -p e2e-tests` alone does not.

pub mod tls_tunnel;

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use identity_client::Client;
pub use identity_client::calls::{self, Answer, TokenPair};
pub use identity_launcher::{Binaries, Signing, Stack, StackConfig};
use identity_protocol::ClientSession;

/// The scopes and audience of the seeded client.
pub const SCOPE: &str = "orders.read orders.write";
pub const AUDIENCE: &str = "orders-api";

/// The directory holding the test executable's sibling binaries (`target/<profile>`).
pub fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the test executable")?;
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .context("the test executable is not in target/<profile>/deps")
}

/// The two binaries, or an error that says how to build them.
pub fn binaries() -> anyhow::Result<Binaries> {
    let binaries = Binaries::in_dir(&profile_dir()?);
    let missing = binaries.missing();
    if !missing.is_empty() {
        bail!(
            "{} not found. Build the binaries first with `cargo build --workspace` (same profile \
             and CARGO_TARGET_DIR as the tests), or run the tests with `cargo test --workspace`, \
             which builds every binary before running any test.",
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    Ok(binaries)
}

/// A running stack and a client of its sidecar that pins the sidecar's key.
#[derive(Debug)]
pub struct Env {
    pub stack: Stack,
    pub client: Client,
}

impl Env {
    /// SQLite in a temporary directory; the sidecar signs with a key generated here and pinned.
    pub async fn start() -> anyhow::Result<Self> {
        Self::with(StackConfig::default()).await
    }

    /// Any configuration; the signing key is always generated here and pinned.
    pub async fn with(config: StackConfig) -> anyhow::Result<Self> {
        let config = StackConfig {
            signing: Signing::KeyFile,
            ..config
        };
        let stack = Stack::start(binaries()?, config).await?;
        let client = Client::connect(&stack.sidecar_url(), stack.pinned_key.as_deref())
            .await
            .context("cannot connect to the sidecar")?;
        Ok(Self { stack, client })
    }

    pub fn client_id(&self) -> &str {
        &self.stack.client.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.stack.client.client_secret
    }

    /// Step 1.
    pub async fn anonymous(&self) -> anyhow::Result<ClientSession> {
        Ok(self.client.init_anonymous().await?)
    }

    /// Step 2 for `subject`, expecting 200.
    pub async fn issue(&self, session: &ClientSession, subject: &str) -> anyhow::Result<TokenPair> {
        let answer = calls::issue(
            &self.client,
            session,
            self.client_id(),
            self.client_secret(),
            subject,
            None,
            None,
        )
        .await?;
        ok_tokens(&answer)
    }

    /// Step 5, the answer as it comes.
    pub async fn refresh(
        &self,
        session: &ClientSession,
        bearer: &str,
        refresh_token: &str,
    ) -> anyhow::Result<Answer> {
        Ok(calls::refresh(&self.client, session, bearer, refresh_token).await?)
    }

    /// Step 3, the answer as it comes.
    pub async fn introspect(
        &self,
        session: &ClientSession,
        bearer: &str,
        token: &str,
    ) -> anyhow::Result<Answer> {
        Ok(calls::introspect(&self.client, session, bearer, token, None).await?)
    }

    /// The settings that make the example client walk the journey against this stack.
    pub fn journey_settings(&self, subject: &str) -> identity_sidecar_examples::journey::Settings {
        identity_sidecar_examples::journey::Settings {
            sidecar_url: self.stack.sidecar_url(),
            client_id: self.client_id().to_owned(),
            client_secret: self.client_secret().to_owned(),
            subject: subject.to_owned(),
            scope: None,
            audience: None,
            pinned_key: self.stack.pinned_key.clone(),
        }
    }
}

/// The token pair of a 200 answer, or an error that shows the answer.
pub fn ok_tokens(answer: &Answer) -> anyhow::Result<TokenPair> {
    if !answer.is_ok() {
        bail!("expected 200 with a token pair, got {answer:?}");
    }
    answer
        .tokens()
        .with_context(|| format!("no token pair in {answer:?}"))
}

/// IDENTITY_TEST_POSTGRES_URL, when set and not empty.
pub fn postgres_base_url() -> Option<String> {
    std::env::var("IDENTITY_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// A fresh, uniquely named schema on the PostgreSQL test server.
#[derive(Debug)]
pub struct PgSchema {
    base: String,
    name: String,
    /// A database URL that selects the schema through `search_path`.
    pub url: String,
}

impl PgSchema {
    /// Creates the schema. Fails (never skips) when the server cannot be reached.
    pub async fn create(base: &str) -> anyhow::Result<Self> {
        use sqlx::Connection as _;
        let mut connection = sqlx::PgConnection::connect(base)
            .await
            .context("IDENTITY_TEST_POSTGRES_URL is set but the server cannot be reached")?;
        let name = format!(
            "e2e_{}",
            identity_launcher::random_b64u_32()
                .to_ascii_lowercase()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(20)
                .collect::<String>()
        );
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut connection)
            .await
            .with_context(|| format!("cannot create schema {name}"))?;
        connection.close().await.ok();
        let separator = if base.contains('?') { '&' } else { '?' };
        Ok(Self {
            url: format!("{base}{separator}options[search_path]={name}"),
            base: base.to_owned(),
            name,
        })
    }

    /// Drops the schema and everything in it (call after the stack has stopped).
    pub async fn drop_schema(self) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        let mut connection = sqlx::PgConnection::connect(&self.base).await?;
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&mut connection)
            .await?;
        connection.close().await.ok();
        Ok(())
    }
}

/// The status and code of a plaintext sidecar refusal (section 4), or an error saying what came
/// instead.
pub fn refusal<T: std::fmt::Debug>(
    result: Result<T, identity_client::ClientError>,
) -> anyhow::Result<(u16, String)> {
    match result {
        Err(identity_client::ClientError::Sidecar { status, code, .. }) => Ok((status, code)),
        other => bail!("expected a plaintext refusal of the sidecar, got {other:?}"),
    }
}

/// The raw answer to a sealed request sent with extra headers: status, whether it carries
/// `X-Session-Id` (encrypted answers do), and the body.
pub async fn raw_post(
    env: &Env,
    session: &ClientSession,
    path: &str,
    authorization: Option<&str>,
    envelope: Vec<u8>,
    extra_headers: &[(&str, &str)],
) -> anyhow::Result<(u16, bool, Vec<u8>)> {
    let http = reqwest::Client::new();
    let mut request = http
        .post(format!("{}{path}", env.stack.sidecar_url()))
        .header(identity_protocol::headers::SESSION_ID, session.id())
        .header("content-type", "application/json")
        .body(envelope);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    for (name, value) in extra_headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().await?;
    let status = answer.status().as_u16();
    let encrypted = answer
        .headers()
        .contains_key(identity_protocol::headers::SESSION_ID);
    Ok((status, encrypted, answer.bytes().await?.to_vec()))
}

/// Polls `check` every 100 ms until it returns true, at most `attempts` times.
pub async fn eventually<F, Fut>(attempts: usize, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..attempts {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}
