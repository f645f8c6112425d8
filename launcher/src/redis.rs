//! Private `redis-server` processes on free loopback ports, without persistence: for the tests
//! that stop and restart Redis or need a Redis Cluster, and for the benchmarks. (The shared
//! Redis of `SIDECAR_TEST_REDIS_URL` is never stopped.) `redis-server` and `redis-cli` come from
//! PATH (Debian's `redis-server` package).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::process::{Process, free_port};

/// How long a redis-server may take to answer PING, and a cluster to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One redis-server, stopped on drop.
#[derive(Debug)]
pub struct RedisServer {
    process: Option<Process>,
    port: u16,
    dir: PathBuf,
    cluster: bool,
    /// Further `redis-server` arguments (TLS, a password).
    args: Vec<String>,
}

impl RedisServer {
    /// A standalone server, its files and log in `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, false, &[]).await
    }

    /// A standalone server with further arguments, e.g. `--tls-port` and `--requirepass`
    /// (its plain port stays open on loopback for the readiness check).
    pub async fn start_with_args(dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(dir, false, args).await
    }

    async fn start_with(dir: &Path, cluster: bool, args: &[&str]) -> anyhow::Result<Self> {
        let mut server = Self {
            process: None,
            port: free_port()?,
            dir: dir.to_owned(),
            cluster,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.resume().await?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::id)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM); what it held is gone (no persistence).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Starts the server again on its port, empty.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        if self.process.is_some() {
            bail!("redis-server on port {} runs already", self.port);
        }
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command
            .current_dir(&self.dir)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .args(&self.args);
        if self.cluster {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")]);
        }
        let log = self.dir.join(format!("redis-{port}.log"));
        self.process = Some(Process::spawn("redis-server", command, &log)?);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.answers().await {
            if Instant::now() > deadline {
                bail!(
                    "redis-server on port {port} does not answer PING; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Whether it answers PING (or refuses it for want of the password).
    pub async fn answers(&self) -> bool {
        command(self.port, "PING")
            .await
            .is_ok_and(|answer| answer.starts_with("+PONG") || answer.starts_with("-NOAUTH"))
    }

    /// `INFO <section>`, as text.
    pub async fn info(&self, section: &str) -> anyhow::Result<String> {
        command(self.port, &format!("INFO {section}")).await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of `masters` servers (no replicas), its slots spread by `redis-cli --cluster
/// create`, ready when every node reports `cluster_state:ok`.
pub async fn cluster(dir: &Path, masters: usize) -> anyhow::Result<Vec<RedisServer>> {
    let mut nodes = Vec::with_capacity(masters);
    for _ in 0..masters {
        nodes.push(RedisServer::start_with(dir, true, &[]).await?);
    }
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .context("cannot run redis-cli")?;
    if !created.status.success() {
        bail!(
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    for node in &nodes {
        loop {
            let info = command(node.port, "CLUSTER INFO").await.unwrap_or_default();
            if info.contains("cluster_state:ok") {
                break;
            }
            if Instant::now() > deadline {
                return Err(anyhow!("the cluster did not become ready: {info}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(nodes)
}

/// One inline command, its answer as text (enough for PING and INFO).
async fn command(port: u16, line: &str) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(format!("{line}\r\n").as_bytes()).await?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            answer.extend_from_slice(&buf[..n]);
            // A simple string or error ends at its first CRLF; a bulk string `$<len>\r\n...`
            // ends once its length has arrived.
            if n == 0 || complete(&answer) {
                break;
            }
        }
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| anyhow!("redis on port {port} did not answer in time"))?
}

fn complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    match answer.first() {
        Some(b'$') => std::str::from_utf8(&answer[1..end])
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .is_none_or(|len| answer.len() >= end + 2 + len + 2),
        _ => true,
    }
}
