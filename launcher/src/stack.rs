//! The identity API and the sidecar started together in a temporary directory, with a seeded
//! client, fresh secrets and free ports.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use identity_protocol::SigningKey;
use identity_protocol::signing::published_key_from_pem;
use rand_core::{OsRng, RngCore as _};

use crate::binaries::Binaries;
use crate::process::{Process, Ready, free_port, wait_ready};

mod cli;

pub use cli::SeededClient;

/// The file `identity-sidecar --dev` creates in its working directory (docs/CONVENTIONS.md).
pub const SIDECAR_DEV_KEY_FILE: &str = "sidecar-dev-signing-key.pem";

/// Attempts at starting a binary on a fresh free port when the previous one was taken.
const PORT_ATTEMPTS: usize = 4;

/// 32 random bytes, base64url without padding: the format of the key-encryption key.
pub fn random_b64u_32() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How the sidecar gets its signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// `--dev`: the sidecar generates `sidecar-dev-signing-key.pem` in its working directory.
    Dev,
    /// A key generated here, passed with `--signing-key-file`, and pinned by the client.
    KeyFile,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The client seeded with `identity-api client create`.
    pub client_id: String,
    pub scope: String,
    pub audience: String,
    /// Further arguments of the seeded client's `client create` (e.g. `--grant-types`).
    pub client_args: Vec<String>,
    /// `None`: SQLite in the temporary directory.
    pub database_url: Option<String>,
    pub signing: Signing,
    /// Further environment for the sidecar (e.g. `SIDECAR_UPSTREAM_TIMEOUT_MS`).
    pub sidecar_env: Vec<(String, String)>,
    /// Further environment for `identity-api serve`.
    pub api_env: Vec<(String, String)>,
    /// The sidecar reaches the identity API over a Unix socket in the temporary directory, as
    /// in the pod (the API keeps its TCP port for the direct calls of tests and loadgen).
    pub unix_socket: bool,
    /// Commands the sidecar and `identity-api serve` run under (a profiler: `valgrind
    /// --tool=callgrind`), with the binary and its arguments appended; empty: none.
    pub sidecar_wrapper: Vec<String>,
    pub api_wrapper: Vec<String>,
    /// TLS on the sidecar's listener, from these PEM files (certificate chain, key). The sidecar
    /// URL is then `https://127.0.0.1:<port>` and the identity API's issuer; readiness is read
    /// from an ops listener, in plain HTTP.
    pub sidecar_tls: Option<(PathBuf, PathBuf)>,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            client_id: "journey-client".into(),
            scope: "orders.read orders.write".into(),
            audience: "orders-api".into(),
            client_args: Vec::new(),
            database_url: None,
            signing: Signing::Dev,
            sidecar_env: Vec::new(),
            api_env: Vec::new(),
            unix_socket: false,
            sidecar_wrapper: Vec::new(),
            api_wrapper: Vec::new(),
            sidecar_tls: None,
        }
    }
}

/// `binary`, or `wrapper[0] wrapper[1..] binary` (its arguments follow).
fn wrapped(wrapper: &[String], binary: &Path) -> Command {
    match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

/// The identity API and the sidecar, running.
pub struct Stack {
    // Declared first so that the processes stop before the directory is removed.
    api: Option<Process>,
    sidecar: Option<Process>,
    /// Further sidecars on the same identity API ([`Stack::start_replica`]).
    replicas: Vec<Process>,
    binaries: Binaries,
    config: StackConfig,
    database_url: String,
    kek: String,
    internal_token: String,
    api_port: u16,
    sidecar_port: u16,
    /// The sidecar's ops listener, with TLS (readiness in plain HTTP).
    sidecar_ops_port: u16,
    /// The client seeded at start.
    pub client: SeededClient,
    /// b64u of the sidecar's public signing key, when known (always with [`Signing::KeyFile`]).
    pub pinned_key: Option<String>,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Stack {
    /// Creates the temporary directory and the secrets, seeds the client, starts the identity
    /// API and then the sidecar, and waits until both are ready.
    pub async fn start(binaries: Binaries, config: StackConfig) -> anyhow::Result<Self> {
        let missing = binaries.missing();
        if !missing.is_empty() {
            bail!(
                "binary not found: {}",
                missing
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("identity-sidecar-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let database_url = config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("identity.db").display()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build an HTTP client")?;
        let mut stack = Self {
            api: None,
            sidecar: None,
            replicas: Vec::new(),
            binaries,
            config,
            database_url,
            kek: random_b64u_32(),
            internal_token: random_b64u_32(),
            api_port: 0,
            sidecar_port: 0,
            sidecar_ops_port: 0,
            client: SeededClient {
                client_id: String::new(),
                client_secret: String::new(),
            },
            pinned_key: None,
            http,
            dir,
        };
        if stack.config.signing == Signing::KeyFile {
            let key = SigningKey::generate();
            let pem = key
                .to_pkcs8_pem()
                .map_err(|e| anyhow!("cannot encode the signing key: {e}"))?;
            write_private(&stack.key_file(), pem.as_bytes())?;
            stack.pinned_key = Some(key.public_key().to_b64u());
        }
        let (id, scope, audience) = (
            stack.config.client_id.clone(),
            stack.config.scope.clone(),
            stack.config.audience.clone(),
        );
        stack.client = stack.create_client(&id, &scope, &audience).await?;
        if stack.config.sidecar_tls.is_some() {
            // Known before the API starts, since its URL is the API's issuer.
            stack.sidecar_port = free_port()?;
            stack.sidecar_ops_port = free_port()?;
        }
        stack.start_api_on_free_port().await?;
        stack.start_sidecar_on_free_port().await?;
        if stack.config.signing == Signing::Dev {
            let pem_path = stack.dir.path().join(SIDECAR_DEV_KEY_FILE);
            if let Ok(pem) = std::fs::read_to_string(&pem_path) {
                stack.pinned_key = published_key_from_pem(&pem).ok().map(|k| k.public_key);
            }
        }
        Ok(stack)
    }

    pub fn sidecar_url(&self) -> String {
        self.sidecar_url_on(self.sidecar_port)
    }

    /// The URL of a sidecar of this stack on `port`: `https` with TLS.
    fn sidecar_url_on(&self, port: u16) -> String {
        let scheme = match self.config.sidecar_tls {
            Some(_) => "https",
            None => "http",
        };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// Where the sidecar serves its health, readiness and metrics: with TLS its plain ops
    /// listener, else its own URL.
    pub fn sidecar_ops_url(&self) -> String {
        self.sidecar_ready_url()
    }

    /// Where the sidecar's readiness is read: its own URL, or with TLS its ops listener.
    fn sidecar_ready_url(&self) -> String {
        self.ready_url(self.sidecar_port, self.sidecar_ops_port)
    }

    /// Readiness of a sidecar on `port`: there, or with TLS on its plain ops listener `ops_port`.
    fn ready_url(&self, port: u16, ops_port: u16) -> String {
        match self.config.sidecar_tls {
            Some(_) => format!("http://127.0.0.1:{ops_port}"),
            None => self.sidecar_url_on(port),
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The identity API's Unix socket, with [`StackConfig::unix_socket`].
    pub fn api_socket(&self) -> PathBuf {
        self.dir.path().join("identity-api.sock")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process id of the identity API, while it runs.
    pub fn api_pid(&self) -> Option<u32> {
        self.api.as_ref().and_then(Process::id)
    }

    /// Process id of the sidecar, while it runs.
    pub fn sidecar_pid(&self) -> Option<u32> {
        self.sidecar.as_ref().and_then(Process::id)
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The internal token shared by both (tests use it to call the identity API directly).
    pub fn internal_token(&self) -> &str {
        &self.internal_token
    }

    pub fn api_log(&self) -> PathBuf {
        self.dir.path().join("identity-api.log")
    }

    pub fn sidecar_log(&self) -> PathBuf {
        self.dir.path().join("identity-sidecar.log")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("sidecar-signing-key.pem")
    }

    /// An identity-api command with a clean environment (no inherited IDENTITY_* or SIDECAR_*),
    /// under `wrapper` (see [`StackConfig::api_wrapper`]).
    fn api_command(&self, wrapper: &[String]) -> Command {
        let mut command = wrapped(wrapper, &self.binaries.identity_api);
        clean_env(&mut command);
        command
            .current_dir(self.dir.path())
            .env("IDENTITY_KEY_ENCRYPTION_KEY", &self.kek);
        command
    }

    fn spawn_api(&self) -> anyhow::Result<Process> {
        let mut command = self.api_command(&self.config.api_wrapper);
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .arg("--database-url")
            .arg(&self.database_url)
            .env("IDENTITY_INTERNAL_TOKEN", &self.internal_token)
            .envs(self.config.api_env.iter().map(|(k, v)| (k, v)));
        if self.config.sidecar_tls.is_some() {
            // Clients discover the API through the sidecar: its https URL is the issuer.
            command.env("IDENTITY_ISSUER", self.sidecar_url());
        }
        if self.config.unix_socket {
            command.arg("--listen-unix").arg(self.api_socket());
        }
        Process::spawn("identity-api", command, &self.api_log())
    }

    fn spawn_sidecar(&self) -> anyhow::Result<Process> {
        self.spawn_sidecar_on(
            self.sidecar_port,
            self.sidecar_ops_port,
            &self.sidecar_log(),
        )
    }

    /// A sidecar on `port`; with TLS, its probes on the ops listener `ops_port`.
    fn spawn_sidecar_on(&self, port: u16, ops_port: u16, log: &Path) -> anyhow::Result<Process> {
        let mut command = wrapped(&self.config.sidecar_wrapper, &self.binaries.sidecar);
        clean_env(&mut command);
        command
            .current_dir(self.dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("IDENTITY_INTERNAL_TOKEN", &self.internal_token)
            .envs(self.config.sidecar_env.iter().map(|(k, v)| (k, v)));
        if self.config.unix_socket {
            // A host that resolves nowhere: the sidecar can only reach the API by the socket.
            command
                .arg("--upstream")
                .arg("http://identity-api.invalid")
                .arg("--upstream-socket")
                .arg(self.api_socket());
        } else {
            command.arg("--upstream").arg(self.api_url());
        }
        match self.config.signing {
            Signing::Dev => command.arg("--dev"),
            Signing::KeyFile => command.arg("--signing-key-file").arg(self.key_file()),
        };
        if let Some((cert, key)) = &self.config.sidecar_tls {
            command
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--ops-listen")
                .arg(format!("127.0.0.1:{ops_port}"));
        }
        Process::spawn("identity-sidecar", command, log)
    }

    /// Starts one more sidecar, configured as the first (same signing key, identity API,
    /// environment and TLS files: a replica), on a free port (and with TLS, its own ops port);
    /// returns its URL once it is ready.
    pub async fn start_replica(&mut self) -> anyhow::Result<String> {
        let log = self
            .dir
            .path()
            .join(format!("identity-sidecar-{}.log", self.replicas.len() + 2));
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let (port, ops_port) = (free_port()?, free_port()?);
            let mut process = self.spawn_sidecar_on(port, ops_port, &log)?;
            match wait_ready(&self.http, &mut process, &self.ready_url(port, ops_port)).await {
                Ok(()) => {
                    self.replicas.push(process);
                    return Ok(self.sidecar_url_on(port));
                }
                Err(Ready::Exited(e)) => last = Some(e),
                Err(Ready::TimedOut(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("identity-sidecar did not start")))
    }

    /// The logs of the replicas, in the order they started.
    pub fn replica_logs(&self) -> Vec<PathBuf> {
        self.replicas
            .iter()
            .map(|process| process.log_path().to_owned())
            .collect()
    }

    async fn start_api_on_free_port(&mut self) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            self.api_port = free_port()?;
            let mut process = self.spawn_api()?;
            match wait_ready(&self.http, &mut process, &self.api_url()).await {
                Ok(()) => {
                    self.api = Some(process);
                    return Ok(());
                }
                Err(Ready::Exited(e)) => last = Some(e),
                Err(Ready::TimedOut(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("identity-api did not start")))
    }

    async fn start_sidecar_on_free_port(&mut self) -> anyhow::Result<()> {
        let mut last = None;
        // With TLS the port is the issuer's already: one attempt.
        let attempts = match self.config.sidecar_tls {
            Some(_) => 1,
            None => PORT_ATTEMPTS,
        };
        for _ in 0..attempts {
            if self.config.sidecar_tls.is_none() {
                self.sidecar_port = free_port()?;
            }
            let mut process = self.spawn_sidecar()?;
            match wait_ready(&self.http, &mut process, &self.sidecar_ready_url()).await {
                Ok(()) => {
                    self.sidecar = Some(process);
                    return Ok(());
                }
                Err(Ready::Exited(e)) => last = Some(e),
                Err(Ready::TimedOut(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("identity-sidecar did not start")))
    }

    /// Stops the identity API (SIGTERM); the sidecar keeps running.
    pub fn stop_api(&mut self) -> Option<ExitStatus> {
        self.api.take().and_then(|mut p| p.stop())
    }

    /// Starts the identity API again on its port, with the same database and keys.
    pub async fn start_api(&mut self) -> anyhow::Result<()> {
        if self.api.is_some() {
            bail!("identity-api is running already");
        }
        let mut process = self.spawn_api()?;
        match wait_ready(&self.http, &mut process, &self.api_url()).await {
            Ok(()) => {
                self.api = Some(process);
                Ok(())
            }
            Err(Ready::Exited(e) | Ready::TimedOut(e)) => Err(e),
        }
    }

    /// Stops the identity API and starts it again on the same port and database.
    pub async fn restart_api(&mut self) -> anyhow::Result<()> {
        self.stop_api();
        self.start_api().await
    }

    /// Waits until the sidecar reports ready again (after the identity API came back).
    pub async fn wait_sidecar_ready(&mut self) -> anyhow::Result<()> {
        let url = self.sidecar_ready_url();
        let process = self
            .sidecar
            .as_mut()
            .ok_or_else(|| anyhow!("identity-sidecar is not running"))?;
        wait_ready(&self.http, process, &url)
            .await
            .map_err(|(Ready::Exited(e) | Ready::TimedOut(e))| e)
    }

    /// The first of the two that has exited, and how: `None` while both run.
    pub fn exited(&mut self) -> Option<(&'static str, ExitStatus)> {
        [self.sidecar.as_mut(), self.api.as_mut()]
            .into_iter()
            .flatten()
            .find_map(|p| p.exited().map(|status| (p.name(), status)))
    }

    /// Stops the sidecar, then the identity API; says how each ended.
    pub fn shutdown(mut self) -> Vec<(&'static str, Option<ExitStatus>)> {
        let mut ended = Vec::new();
        for mut process in self.replicas.drain(..) {
            ended.push((process.name(), process.stop()));
        }
        for process in [self.sidecar.take(), self.api.take()].into_iter().flatten() {
            let mut process = process;
            ended.push((process.name(), process.stop()));
        }
        ended
    }
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key-encryption key and the internal token stay out of test output.
        f.debug_struct("Stack")
            .field("dir", &self.dir.path())
            .field("api_url", &self.api_url())
            .field("sidecar_url", &self.sidecar_url())
            .field(
                "database",
                &self.database_url.split(':').next().unwrap_or_default(),
            )
            .field("client", &self.client)
            .field("pinned_key", &self.pinned_key)
            .finish_non_exhaustive()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Sidecars first: they must not see their upstream vanish mid-request.
        for mut p in self.replicas.drain(..) {
            p.stop();
        }
        if let Some(mut p) = self.sidecar.take() {
            p.stop();
        }
        if let Some(mut p) = self.api.take() {
            p.stop();
        }
    }
}

/// Removes inherited configuration of either binary, so that a developer's environment (or the
/// journey's .env) cannot change what the launcher starts.
fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(name) = key.to_str() else { continue };
        if name.starts_with("IDENTITY_") || name.starts_with("SIDECAR_") {
            command.env_remove(&key);
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
