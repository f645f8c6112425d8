//! The load generator behind the `loadgen` binary: C concurrent clients drive a running stack
//! (or one started here with `--local`), each scenario bounded by a duration *and* a request
//! count, every answer checked. docs/benchmarks.md records what it measured.
//!
//! Scenarios (each one a separate phase of the same run, on the same stack):
//! - `init`: anonymous session init through the sidecar (ECDH + the sidecar's signature, and the
//!   client's verification of it);
//! - `introspect`: encrypted `POST /api/v1/introspect` through the sidecar;
//! - `introspect-direct`: the same introspection in plaintext straight to the identity API
//!   (`X-Internal-Token`): the sidecar's overhead is the ratio of the two;
//! - `issue` / `issue-direct`: `POST /api/v1/token/issue`, through the sidecar / direct;
//! - `refresh` / `refresh-direct`: `POST /api/v1/token`, rotating the pair each time;
//! - `jwks` / `jwks-direct`: `GET /.well-known/jwks.json`, which the sidecar passes through in
//!   plaintext: what the extra hop costs without the protocol (not in the default list).
//!
//! An answer counts as a success only when its status is 200 and its body is what the route
//! promises (an active introspection, a token pair); a 4xx/5xx, a failed decrypt, a malformed
//! body or a transport error counts as an error and is reported by kind. The protocol is only
//! [`identity_sidecar::client`]'s; the calls are [`crate::calls`]'.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use identity_sidecar::client::{Client, Routes, no_retries};
use identity_sidecar::protocol::{ClientSession, paths};
use serde::Serialize;
use serde_json::{Value, json};

use crate::calls::{self, Answer, IssueBody, RefreshBody, TokenBody, TokenPair, basic, bearer};
use crate::local::{Binaries, Signing, Stack, StackConfig};

/// The identity API's header for the sidecar's shared secret.
const INTERNAL_TOKEN_HEADER: &str = "x-internal-token";

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for identity-sidecar and identity-api: req/s and p50/p99/max latency \
             of session init, encrypted and direct introspection, token issue and refresh",
    after_help = "Loopback only. Every scenario stops at --duration-secs or --requests, whichever \
                  comes first. With --local both release binaries are started on free ports \
                  (SQLite in a temporary directory) and stopped at the end."
)]
pub struct Cli {
    /// Base URL of the sidecar (loopback).
    #[arg(long, env = "SIDECAR_URL", default_value = "http://127.0.0.1:8141")]
    pub sidecar_url: String,

    /// Base URL of the identity API (loopback), for the direct scenarios.
    #[arg(
        long,
        env = "IDENTITY_API_URL",
        default_value = "http://127.0.0.1:8140"
    )]
    pub api_url: String,

    /// The identity API's internal token (sent as X-Internal-Token by the direct scenarios).
    #[arg(long, env = "IDENTITY_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: Option<String>,

    /// Client id registered with the identity API.
    #[arg(long, env = "CLIENT_ID")]
    pub client_id: Option<String>,

    /// That client's secret.
    #[arg(long, env = "CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,

    /// The sidecar's public signing key to pin (else trusted on first use).
    #[arg(long, env = "SIDECAR_PUBLIC_KEY")]
    pub sidecar_public_key: Option<String>,

    /// Subject of the issued tokens.
    #[arg(long, default_value = "loadgen-user")]
    pub subject: String,

    /// Concurrent clients.
    #[arg(short = 'c', long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub concurrency: u64,

    /// Upper bound on the measured time of each scenario, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_secs: u64,

    /// Upper bound on the requests of each scenario.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub requests: u64,

    /// Unmeasured warm-up of each scenario, in seconds (bounded by --requests too).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,

    /// Open loop: offer this many requests per second in all (each of the C clients sends on a
    /// schedule of its own) instead of sending each request as the previous one is answered.
    /// A request sent late because its client was still waiting for the previous answer counts
    /// its latency from when it was due, so a server that falls behind is not spared the wait
    /// (no coordinated omission); compare the p50 of two scenarios at one rate to see what a hop
    /// adds without the load changing. C must cover rate × latency.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: Option<u64>,

    /// Run the scenario list this many times, in turn, and report every round and the median
    /// of each figure: on a shared machine one run of each can land in different weather.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=50))]
    pub rounds: u64,

    /// Scenarios to run, comma-separated, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "init,introspect,introspect-direct,issue,issue-direct,refresh,refresh-direct"
    )]
    pub scenarios: Vec<String>,

    /// Instead of the scenarios: create this many live anonymous sessions and report the
    /// sidecar's RSS (VmRSS of /proc/<pid>/status) idle and after. Needs --local or --sidecar-pid.
    #[arg(long)]
    pub memory_sessions: Option<u64>,

    /// Process id of the sidecar (remote mode): CPU per request and RSS are read from /proc.
    #[arg(long)]
    pub sidecar_pid: Option<u32>,

    /// Process id of the identity API (remote mode), for CPU per request.
    #[arg(long)]
    pub api_pid: Option<u32>,

    /// Start release binaries of both services on free loopback ports and seed a client.
    #[arg(long)]
    pub local: bool,

    /// With --local: take identity-api and identity-sidecar from this directory instead of
    /// building them (default: the directory of this executable when it holds both).
    #[arg(long)]
    pub bin_dir: Option<std::path::PathBuf>,

    /// With --local: the identity API's database, e.g. a PostgreSQL URL with an empty schema
    /// (`?options[search_path]=loadgen`) where no client `loadgen` exists yet (default: SQLite in
    /// the temporary directory).
    #[arg(long)]
    pub database_url: Option<String>,

    /// With --local: extra environment of the sidecar, KEY=VALUE (repeatable).
    #[arg(long = "sidecar-env", value_parser = parse_key_value)]
    pub sidecar_env: Vec<(String, String)>,

    /// With --local: extra environment of `identity-api serve`, KEY=VALUE (repeatable).
    #[arg(long = "api-env", value_parser = parse_key_value)]
    pub api_env: Vec<(String, String)>,

    /// With --local: the sidecar reaches the identity API over a Unix socket, as in the pod.
    #[arg(long, requires = "local")]
    pub unix_socket: bool,

    /// With --local: pin the sidecar's threads to these CPUs (taskset list, e.g. `1`) and give
    /// it as many worker threads, and loadgen's and the identity API's to --other-cpus: the
    /// sidecar then has its own core, as with its own CPU limit in the pod, instead of competing
    /// with the processes it serves.
    #[arg(long, requires_all = ["other_cpus", "local"])]
    pub sidecar_cpus: Option<String>,

    /// With --sidecar-cpus: the CPUs of loadgen and the identity API (e.g. `0`).
    #[arg(long, requires = "sidecar_cpus")]
    pub other_cpus: Option<String>,

    /// With --local: run the sidecar under this command, split at spaces, its own command line
    /// appended: `--sidecar-wrapper 'valgrind --tool=callgrind --callgrind-out-file=cg.%p'`
    /// counts its instructions, which other load on the machine does not change
    /// (docs/benchmarks.md).
    #[arg(long, requires = "local")]
    pub sidecar_wrapper: Option<String>,

    /// With --local: run `identity-api serve` under this command (as --sidecar-wrapper).
    #[arg(long, requires = "local")]
    pub api_wrapper: Option<String>,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn words(command: Option<&str>) -> Vec<String> {
    command
        .map(|c| c.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Init,
    Introspect,
    IntrospectDirect,
    Issue,
    IssueDirect,
    Refresh,
    RefreshDirect,
    Jwks,
    JwksDirect,
}

impl Scenario {
    fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name.trim() {
            "init" => Self::Init,
            "introspect" => Self::Introspect,
            "introspect-direct" => Self::IntrospectDirect,
            "issue" => Self::Issue,
            "issue-direct" => Self::IssueDirect,
            "refresh" => Self::Refresh,
            "refresh-direct" => Self::RefreshDirect,
            "jwks" => Self::Jwks,
            "jwks-direct" => Self::JwksDirect,
            other => bail!("unknown scenario {other}"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Introspect => "introspect",
            Self::IntrospectDirect => "introspect-direct",
            Self::Issue => "issue",
            Self::IssueDirect => "issue-direct",
            Self::Refresh => "refresh",
            Self::RefreshDirect => "refresh-direct",
            Self::Jwks => "jwks",
            Self::JwksDirect => "jwks-direct",
        }
    }

    fn direct(self) -> bool {
        matches!(
            self,
            Self::IntrospectDirect | Self::IssueDirect | Self::RefreshDirect
        )
    }
}

/// What every worker shares.
#[derive(Debug)]
struct Target {
    client: Client,
    http: reqwest::Client,
    /// The identity API's routes, for the direct scenarios.
    api: Routes,
    internal_token: Option<String>,
    client_id: String,
    client_secret: String,
    subject: String,
}

impl Target {
    fn internal_token(&self) -> anyhow::Result<&str> {
        self.internal_token
            .as_deref()
            .ok_or_else(|| anyhow!("the direct scenarios need --internal-token"))
    }

    /// A plaintext `POST` straight to the identity API, as the sidecar sends it.
    async fn direct(
        &self,
        path: &str,
        authorization: &str,
        body: &impl Serialize,
    ) -> Result<Answer, String> {
        let token = self.internal_token().map_err(|e| e.to_string())?;
        let answer = self
            .http
            .post(self.api.url(path).map_err(|e| e.to_string())?)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(INTERNAL_TOKEN_HEADER, token)
            .json(body)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = answer.status().as_u16();
        let bytes = answer.bytes().await.map_err(|e| transport(&e))?;
        let body = serde_json::from_slice(&bytes)
            .map_err(|_| format!("HTTP {status}: body is not JSON"))?;
        Ok(Answer { status, body })
    }

    /// `GET /.well-known/jwks.json` from `routes`, which the sidecar passes through in
    /// plaintext: the cost of the hop without the protocol.
    async fn jwks(&self, routes: &Routes) -> Result<(), String> {
        let answer = self
            .http
            .get(routes.url(paths::JWKS).map_err(|e| e.to_string())?)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = answer.status().as_u16();
        let bytes = answer.bytes().await.map_err(|e| transport(&e))?;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|_| "HTTP 200: body is not JSON".to_owned())?;
        match body["keys"].as_array() {
            Some(keys) if !keys.is_empty() => Ok(()),
            _ => Err("HTTP 200 without keys".into()),
        }
    }

    async fn issue_direct(&self) -> Result<Answer, String> {
        self.direct(
            paths::TOKEN_ISSUE,
            &basic(&self.client_id, &self.client_secret),
            &IssueBody {
                subject: &self.subject,
                scope: None,
                audience: None,
            },
        )
        .await
    }
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "transport: timed out".into()
    } else if e.is_connect() {
        "transport: connect failed".into()
    } else {
        "transport: other".into()
    }
}

/// The error kind of an answer that is not a success (bounded label set: status and code).
fn not_ok(answer: &Answer) -> String {
    format!(
        "HTTP {} {}",
        answer.status,
        answer.error().unwrap_or("(no error code)")
    )
}

fn client_error(e: &identity_sidecar::client::ClientError) -> String {
    use identity_sidecar::client::ClientError as E;
    match e {
        E::Unreachable { reason, .. } => format!("transport: {reason}"),
        E::InvalidUrl { url, .. } => format!("invalid URL {url}"),
        E::Sidecar { status, code, .. } => format!("sidecar HTTP {status} {code}"),
        E::Protocol(p) => format!("protocol (decrypt/verify): {p}"),
        E::Unexpected(what) => format!("unexpected: {}", what.chars().take(60).collect::<String>()),
    }
}

fn expect_pair(answer: Answer) -> Result<TokenPair, String> {
    if !answer.is_ok() {
        return Err(not_ok(&answer));
    }
    answer
        .tokens()
        .ok_or_else(|| "HTTP 200 without a token pair".to_owned())
}

fn expect_active(answer: &Answer) -> Result<(), String> {
    if !answer.is_ok() {
        return Err(not_ok(answer));
    }
    match answer.active() {
        Some(true) => Ok(()),
        Some(false) => Err("HTTP 200 but active=false".into()),
        None => Err("HTTP 200 without active".into()),
    }
}

/// One concurrent client: what it holds between requests.
enum Worker {
    /// Holds nothing: session init, the JWKS.
    Stateless,
    Sealed {
        session: ClientSession,
        pair: TokenPair,
    },
    Direct {
        pair: TokenPair,
    },
}

impl Worker {
    async fn new(target: &Target, scenario: Scenario) -> anyhow::Result<Self> {
        if matches!(
            scenario,
            Scenario::Init | Scenario::Jwks | Scenario::JwksDirect
        ) {
            return Ok(Self::Stateless);
        }
        if scenario.direct() {
            target.internal_token()?;
            let pair = expect_pair(target.issue_direct().await.map_err(|e| anyhow!(e))?)
                .map_err(|e| anyhow!("setup: direct token issue failed: {e}"))?;
            return Ok(Self::Direct { pair });
        }
        let session = target
            .client
            .init_anonymous()
            .await
            .context("setup: session init failed")?;
        let answer = calls::issue(
            &target.client,
            &session,
            &target.client_id,
            &target.client_secret,
            &target.subject,
            None,
            None,
        )
        .await
        .context("setup: token issue failed")?;
        let pair = expect_pair(answer).map_err(|e| anyhow!("setup: token issue failed: {e}"))?;
        Ok(Self::Sealed { session, pair })
    }

    /// One request of `scenario`; `Ok` only for a checked success.
    async fn one(&mut self, target: &Target, scenario: Scenario) -> Result<(), String> {
        match (scenario, self) {
            (Scenario::Init, _) => target
                .client
                .init_anonymous()
                .await
                .map(drop)
                .map_err(|e| client_error(&e)),
            (Scenario::Introspect, Self::Sealed { session, pair }) => {
                let answer = calls::introspect(
                    &target.client,
                    session,
                    &pair.access_token,
                    &pair.access_token,
                    None,
                )
                .await
                .map_err(|e| client_error(&e))?;
                expect_active(&answer)
            }
            (Scenario::IntrospectDirect, Self::Direct { pair }) => {
                let answer = target
                    .direct(
                        paths::INTROSPECT,
                        &bearer(&pair.access_token),
                        &TokenBody {
                            token: &pair.access_token,
                            token_type_hint: None,
                        },
                    )
                    .await?;
                expect_active(&answer)
            }
            (Scenario::Issue, Self::Sealed { session, .. }) => {
                let answer = calls::issue(
                    &target.client,
                    session,
                    &target.client_id,
                    &target.client_secret,
                    &target.subject,
                    None,
                    None,
                )
                .await
                .map_err(|e| client_error(&e))?;
                expect_pair(answer).map(drop)
            }
            (Scenario::IssueDirect, Self::Direct { .. }) => {
                expect_pair(target.issue_direct().await?).map(drop)
            }
            (Scenario::Refresh, Self::Sealed { session, pair }) => {
                let answer = calls::refresh(
                    &target.client,
                    session,
                    &pair.access_token,
                    &pair.refresh_token,
                )
                .await
                .map_err(|e| client_error(&e))?;
                *pair = expect_pair(answer)?;
                Ok(())
            }
            (Scenario::RefreshDirect, Self::Direct { pair }) => {
                let body = RefreshBody::new(&pair.refresh_token);
                let answer = target
                    .direct(paths::TOKEN, &bearer(&pair.access_token), &body)
                    .await?;
                *pair = expect_pair(answer)?;
                Ok(())
            }
            (Scenario::Jwks, _) => target.jwks(target.client.routes()).await,
            (Scenario::JwksDirect, _) => target.jwks(&target.api).await,
            _ => Err("internal: worker does not match the scenario".into()),
        }
    }
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

/// The figures of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// 1-based, with `--rounds`.
    pub round: u64,
    pub concurrency: u64,
    /// Requests per second offered (`--rate`), or none for a closed loop.
    pub offered_per_sec: Option<u64>,
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub elapsed_secs: f64,
    pub req_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// CPU time (user + system) of each process per successful request, in µs, when known.
    pub sidecar_cpu_us_per_req: Option<f64>,
    pub api_cpu_us_per_req: Option<f64>,
    pub loadgen_cpu_us_per_req: Option<f64>,
}

/// Process ids whose CPU time is read around each scenario.
#[derive(Debug, Clone, Copy, Default)]
struct Pids {
    sidecar: Option<u32>,
    api: Option<u32>,
}

/// utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat).
fn cpu_seconds(pid: &str, ticks_per_sec: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: split after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// When each worker sends: as soon as its previous request is answered, or on a schedule.
#[derive(Debug, Clone, Copy)]
enum Pace {
    Closed,
    /// Requests per second, all workers together.
    Open(u64),
}

impl Pace {
    /// Worker `i` of `n`: its first send, after `start`, and the time between its sends. The
    /// workers' schedules interleave, so that the offered load is even.
    fn schedule(self, start: Instant, i: u64, n: u64) -> Option<(Instant, Duration)> {
        match self {
            Self::Closed => None,
            Self::Open(rate) => {
                let gap = Duration::from_secs_f64(1.0 / rate as f64);
                Some((start + gap.mul_f64(i as f64), gap.mul_f64(n as f64)))
            }
        }
    }
}

/// Runs `scenario` with `concurrency` workers until `duration` or `requests`, whichever first.
async fn phase(
    target: &Arc<Target>,
    workers: Vec<Worker>,
    scenario: Scenario,
    duration: Duration,
    requests: u64,
    pace: Pace,
) -> anyhow::Result<(Vec<Worker>, Tally, f64)> {
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let n = workers.len() as u64;
    let mut handles = Vec::with_capacity(workers.len());
    for (i, mut worker) in (0u64..).zip(workers) {
        let target = Arc::clone(target);
        let issued = Arc::clone(&issued);
        let mut schedule = pace.schedule(started, i, n);
        handles.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                // Open loop: latency counts from when the request was due if this worker was
                // still busy then, else from when the timer woke it (tokio's timer is
                // millisecond-grained: its lateness is ours, not the server's).
                let from = match &mut schedule {
                    None => Instant::now(),
                    Some((due, gap)) => {
                        let this = *due;
                        *due += *gap;
                        if Instant::now() < this {
                            tokio::time::sleep_until(this.into()).await;
                            Instant::now()
                        } else {
                            this
                        }
                    }
                };
                if from >= deadline || issued.fetch_add(1, Ordering::Relaxed) >= requests {
                    break;
                }
                let result = worker.one(&target, scenario).await;
                let us = u32::try_from(from.elapsed().as_micros()).unwrap_or(u32::MAX);
                match result {
                    Ok(()) => tally.latencies_us.push(us),
                    Err(kind) => *tally.errors.entry(kind).or_default() += 1,
                }
            }
            (worker, tally)
        }));
    }
    let mut all = Tally::default();
    let mut workers = Vec::with_capacity(handles.len());
    for handle in handles {
        let (worker, tally) = handle.await.context("a worker panicked")?;
        workers.push(worker);
        all.latencies_us.extend(tally.latencies_us);
        for (kind, n) in tally.errors {
            *all.errors.entry(kind).or_default() += n;
        }
    }
    Ok((workers, all, started.elapsed().as_secs_f64()))
}

fn pace(cli: &Cli) -> Pace {
    cli.rate.map_or(Pace::Closed, Pace::Open)
}

async fn run_scenario(
    target: &Arc<Target>,
    cli: &Cli,
    round: u64,
    scenario: Scenario,
    pids: Pids,
    ticks: f64,
) -> anyhow::Result<Report> {
    let mut workers = Vec::new();
    for _ in 0..cli.concurrency {
        workers.push(Worker::new(target, scenario).await?);
    }
    if cli.warmup_secs > 0 {
        let (w, _, _) = phase(
            target,
            workers,
            scenario,
            Duration::from_secs(cli.warmup_secs),
            cli.requests,
            pace(cli),
        )
        .await?;
        workers = w;
    }
    let me = std::process::id().to_string();
    let pid_str = |p: Option<u32>| p.map(|p| p.to_string());
    let (side, api) = (pid_str(pids.sidecar), pid_str(pids.api));
    let cpu = |p: &Option<String>| p.as_deref().and_then(|p| cpu_seconds(p, ticks));
    let before = (cpu(&side), cpu(&api), cpu_seconds(&me, ticks));
    let (_, mut tally, elapsed) = phase(
        target,
        workers,
        scenario,
        Duration::from_secs(cli.duration_secs),
        cli.requests,
        pace(cli),
    )
    .await?;
    let after = (cpu(&side), cpu(&api), cpu_seconds(&me, ticks));
    tally.latencies_us.sort_unstable();
    let ok = tally.latencies_us.len() as u64;
    let per_req = |b: Option<f64>, a: Option<f64>| match (b, a) {
        (Some(b), Some(a)) if ok > 0 => Some((a - b) * 1e6 / ok as f64),
        _ => None,
    };
    Ok(Report {
        scenario: scenario.name().to_owned(),
        round,
        concurrency: cli.concurrency,
        offered_per_sec: cli.rate,
        ok,
        errors: tally.errors.values().sum(),
        error_kinds: tally.errors,
        elapsed_secs: elapsed,
        req_per_sec: if elapsed > 0.0 {
            ok as f64 / elapsed
        } else {
            0.0
        },
        p50_ms: percentile(&tally.latencies_us, 50.0),
        p99_ms: percentile(&tally.latencies_us, 99.0),
        max_ms: tally
            .latencies_us
            .last()
            .map_or(0.0, |v| f64::from(*v) / 1000.0),
        sidecar_cpu_us_per_req: per_req(before.0, after.0),
        api_cpu_us_per_req: per_req(before.1, after.1),
        loadgen_cpu_us_per_req: per_req(before.2, after.2),
    })
}

/// What the sidecar adds to a request: its scenario against the direct twin.
#[derive(Debug, Clone, Copy, Serialize)]
struct Overhead {
    /// Through the sidecar over direct (closed loop; at a fixed `--rate` both are the
    /// rate while both keep up).
    throughput_ratio: f64,
    added_p50_ms: f64,
}

const TARGET_RATIO_MIN: f64 = 0.70;
const TARGET_ADDED_P50_MS_MAX: f64 = 0.2;

/// A scenario through the sidecar and its direct twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pair {
    /// Encrypted introspection: the targets of issue 6.
    Introspect,
    /// The plaintext JWKS pass-through: the hop alone.
    Jwks,
}

impl Pair {
    const ALL: [Self; 2] = [Self::Introspect, Self::Jwks];

    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Introspect => ("introspect", "introspect-direct"),
            Self::Jwks => ("jwks", "jwks-direct"),
        }
    }
}

/// `pair`'s overhead in one round, when both of its scenarios ran.
fn overhead(reports: &[Report], pair: Pair) -> Option<Overhead> {
    let find = |name: &str| reports.iter().find(|r| r.scenario == name);
    let (through, direct) = pair.names();
    let (through, direct) = (find(through)?, find(direct)?);
    if direct.req_per_sec <= 0.0 {
        return None;
    }
    Some(Overhead {
        throughput_ratio: through.req_per_sec / direct.req_per_sec,
        added_p50_ms: through.p50_ms - direct.p50_ms,
    })
}

fn overhead_line(o: &Overhead, pair: Pair, offered: Option<u64>) -> String {
    let what = match pair {
        Pair::Introspect => "sidecar overhead on introspect",
        Pair::Jwks => "plaintext pass-through (the hop alone)",
    };
    let (ratio_target, p50_target) = if pair == Pair::Introspect {
        (
            format!(" (target >= {TARGET_RATIO_MIN:.2})"),
            format!(" (target <= {TARGET_ADDED_P50_MS_MAX} ms)"),
        )
    } else {
        (String::new(), String::new())
    };
    match offered {
        None => format!(
            "{what}: throughput {:.2} of direct{ratio_target}, added p50 {:.3} ms{p50_target}",
            o.throughput_ratio, o.added_p50_ms
        ),
        Some(rate) => format!(
            "{what} at {rate} req/s offered: added p50 {:.3} ms{p50_target}; achieved \
             throughput {:.2} of direct",
            o.added_p50_ms, o.throughput_ratio
        ),
    }
}

/// The middle value (the mean of the two middle ones for an even count); `None` when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// Per scenario across rounds: the median, lowest and highest req/s, the median p50 and p99.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    scenario: String,
    rounds: usize,
    errors: u64,
    req_per_sec_median: f64,
    req_per_sec_min: f64,
    req_per_sec_max: f64,
    p50_ms_median: f64,
    p99_ms_median: f64,
}

/// Each pair's overhead across rounds: the median of each round's own figures.
type Overheads = Vec<(Pair, Overhead)>;

fn summarise(rounds: &[Vec<Report>]) -> (Vec<Summary>, Overheads) {
    let mut names: Vec<&str> = Vec::new();
    for r in rounds.iter().flatten() {
        if !names.contains(&r.scenario.as_str()) {
            names.push(&r.scenario);
        }
    }
    let summaries = names
        .into_iter()
        .map(|name| {
            let of: Vec<&Report> = rounds
                .iter()
                .flatten()
                .filter(|r| r.scenario == name)
                .collect();
            let pick = |f: fn(&Report) -> f64| of.iter().map(|r| f(r)).collect::<Vec<_>>();
            let rates = pick(|r| r.req_per_sec);
            Summary {
                scenario: name.to_owned(),
                rounds: of.len(),
                errors: of.iter().map(|r| r.errors).sum(),
                req_per_sec_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
                req_per_sec_max: rates.iter().copied().fold(0.0, f64::max),
                req_per_sec_median: median(rates).unwrap_or_default(),
                p50_ms_median: median(pick(|r| r.p50_ms)).unwrap_or_default(),
                p99_ms_median: median(pick(|r| r.p99_ms)).unwrap_or_default(),
            }
        })
        .collect();
    let overheads = Pair::ALL
        .into_iter()
        .filter_map(|pair| {
            let each: Vec<Overhead> = rounds.iter().filter_map(|r| overhead(r, pair)).collect();
            let median_of = |f: fn(&Overhead) -> f64| median(each.iter().map(f).collect());
            Some((
                pair,
                Overhead {
                    throughput_ratio: median_of(|o| o.throughput_ratio)?,
                    added_p50_ms: median_of(|o| o.added_p50_ms)?,
                },
            ))
        })
        .collect();
    (summaries, overheads)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>4} {:>8} {:>6} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "scenario",
        "C",
        "ok",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "sidecar",
        "api",
        "loadgen"
    );
    let _ = writeln!(
        out,
        "{:<18} {:>4} {:>8} {:>6} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "", "", "", "", "", "", "", "", "CPU µs/req", "CPU µs/req", "CPU µs/req"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<18} {:>4} {:>8} {:>6} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>10} {:>10} {:>10}",
            r.scenario,
            r.concurrency,
            r.ok,
            r.errors,
            r.req_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            fmt_opt(r.sidecar_cpu_us_per_req),
            fmt_opt(r.api_cpu_us_per_req),
            fmt_opt(r.loadgen_cpu_us_per_req),
        );
        for (kind, n) in &r.error_kinds {
            let _ = writeln!(out, "    error x{n}: {kind}");
        }
    }
    let offered = reports.first().and_then(|r| r.offered_per_sec);
    for pair in Pair::ALL {
        if let Some(o) = overhead(reports, pair) {
            let _ = writeln!(out, "\n{}", overhead_line(&o, pair, offered));
        }
    }
    out
}

fn summary_table(summaries: &[Summary], overheads: &Overheads, cli: &Cli) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "median of {} rounds\n{:<18} {:>6} {:>9} {:>17} {:>8} {:>8}",
        cli.rounds, "scenario", "errors", "req/s", "(lowest-highest)", "p50 ms", "p99 ms"
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>9.0} {:>17} {:>8.3} {:>8.3}",
            s.scenario,
            s.errors,
            s.req_per_sec_median,
            format!("({:.0}-{:.0})", s.req_per_sec_min, s.req_per_sec_max),
            s.p50_ms_median,
            s.p99_ms_median,
        );
    }
    for (pair, o) in overheads {
        let _ = writeln!(out, "\nmedian {}", overhead_line(o, *pair, cli.rate));
    }
    out
}

/// What the run was pointed at, and how.
struct Setup {
    target: Arc<Target>,
    pids: Pids,
    /// Keeps a `--local` stack running until the end.
    stack: Option<Stack>,
}

fn require_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("{url}: only http:// on loopback is supported"))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("{url} is not a loopback address: the load generator only drives loopback");
    }
    Ok(())
}

/// How many CPUs a taskset list (`1`, `0-3`, `0,2-3`) names.
fn cpu_count(list: &str) -> Option<usize> {
    let mut n = 0;
    for item in list.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let cpu = item.trim().parse::<usize>().ok()?;
                (cpu, cpu)
            }
        };
        n += last.checked_sub(first)? + 1;
    }
    (n > 0).then_some(n)
}

/// Sets the CPU affinity of every thread of `pid` (`taskset -a -cp`); threads started later
/// inherit it from the thread that starts them.
fn pin(pid: Option<u32>, cpus: &str) -> anyhow::Result<()> {
    let pid = pid.ok_or_else(|| anyhow!("no process id to pin"))?;
    let status = std::process::Command::new("taskset")
        .args(["-a", "-cp", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset -a -cp {cpus} {pid} failed: {status}");
    }
    Ok(())
}

async fn setup(cli: &Cli) -> anyhow::Result<Setup> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(usize::try_from(cli.concurrency).unwrap_or(usize::MAX) * 2)
        .retry(no_retries())
        .build()
        .context("cannot build an HTTP client")?;
    if cli.local {
        let beside_us = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Binaries::in_dir))
            .filter(|b| b.missing().is_empty());
        let binaries = match (&cli.bin_dir, beside_us) {
            (Some(dir), _) => Binaries::in_dir(dir),
            (None, Some(found)) => found,
            (None, None) => {
                eprintln!(
                    "loadgen: building the binaries (cargo build -p identity-api -p identity-sidecar --bins)"
                );
                Binaries::build()?
            }
        };
        eprintln!(
            "loadgen: starting {} and {}",
            binaries.identity_api.display(),
            binaries.sidecar.display()
        );
        let mut sidecar_env = vec![
            // One client address makes every init: the per-IP limit would measure itself.
            ("SIDECAR_INIT_RATE_PER_SEC".to_owned(), "1000000".to_owned()),
            ("SIDECAR_INIT_BURST".to_owned(), "1000000".to_owned()),
        ];
        if let Some(n) = cli.memory_sessions {
            sidecar_env.push(("SIDECAR_MAX_SESSIONS".into(), (n + 1000).to_string()));
            sidecar_env.push(("SIDECAR_ANONYMOUS_TTL_SECS".into(), "3600".into()));
        }
        if let Some(cpus) = &cli.sidecar_cpus {
            // As a CPU limit does in the pod: the sidecar sizes its runtime to its CPUs, which
            // pinning after the start would not tell it.
            let n =
                cpu_count(cpus).ok_or_else(|| anyhow!("--sidecar-cpus {cpus}: not a CPU list"))?;
            sidecar_env.push(("SIDECAR_WORKER_THREADS".into(), n.to_string()));
        }
        sidecar_env.extend(cli.sidecar_env.iter().cloned());
        let config = StackConfig {
            client_id: "loadgen".into(),
            signing: Signing::KeyFile,
            sidecar_env,
            api_env: cli.api_env.clone(),
            database_url: cli.database_url.clone(),
            unix_socket: cli.unix_socket,
            sidecar_wrapper: words(cli.sidecar_wrapper.as_deref()),
            api_wrapper: words(cli.api_wrapper.as_deref()),
            ..StackConfig::default()
        };
        let stack = Stack::start(binaries, config).await?;
        if let (Some(sidecar), Some(others)) = (&cli.sidecar_cpus, &cli.other_cpus) {
            pin(stack.sidecar_pid(), sidecar)?;
            pin(stack.api_pid(), others)?;
            pin(Some(std::process::id()), others)?;
            eprintln!(
                "loadgen: sidecar on CPUs {sidecar}, loadgen and identity-api on CPUs {others}"
            );
        }
        eprintln!(
            "loadgen: identity-api at {} (pid {:?}), identity-sidecar at {} (pid {:?}), data in {}",
            stack.api_url(),
            stack.api_pid(),
            stack.sidecar_url(),
            stack.sidecar_pid(),
            stack.dir().display()
        );
        let client = Client::with_http(
            http.clone(),
            &stack.sidecar_url(),
            stack.pinned_key.as_deref(),
        )
        .await?;
        let target = Target {
            client,
            http,
            api: Routes::new(&stack.api_url())?,
            internal_token: Some(stack.internal_token().to_owned()),
            client_id: stack.client.client_id.clone(),
            client_secret: stack.client.client_secret.clone(),
            subject: cli.subject.clone(),
        };
        let pids = Pids {
            sidecar: stack.sidecar_pid(),
            api: stack.api_pid(),
        };
        return Ok(Setup {
            target: Arc::new(target),
            pids,
            stack: Some(stack),
        });
    }
    require_loopback(&cli.sidecar_url)?;
    require_loopback(&cli.api_url)?;
    let (Some(client_id), Some(client_secret)) = (&cli.client_id, &cli.client_secret) else {
        bail!("CLIENT_ID and CLIENT_SECRET are required (or use --local)");
    };
    let client = Client::with_http(
        http.clone(),
        &cli.sidecar_url,
        cli.sidecar_public_key.as_deref(),
    )
    .await?;
    Ok(Setup {
        target: Arc::new(Target {
            client,
            http,
            api: Routes::new(&cli.api_url)?,
            internal_token: cli.internal_token.clone(),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            subject: cli.subject.clone(),
        }),
        pids: Pids {
            sidecar: cli.sidecar_pid,
            api: cli.api_pid,
        },
        stack: None,
    })
}

/// `--memory-sessions N`: RSS idle, then N live sessions, then RSS again.
async fn memory(cli: &Cli, setup: &Setup, n: u64) -> anyhow::Result<Value> {
    let pid = setup
        .pids
        .sidecar
        .ok_or_else(|| anyhow!("--memory-sessions needs --local or --sidecar-pid"))?;
    let idle = rss_kib(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}/status"))?;
    let mut workers = Vec::new();
    for _ in 0..cli.concurrency {
        workers.push(Worker::Stateless);
    }
    // Bounded: n requests, and at most ten minutes.
    let (_, tally, elapsed) = phase(
        &setup.target,
        workers,
        Scenario::Init,
        Duration::from_secs(600),
        n,
        Pace::Closed,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = rss_kib(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}/status"))?;
    let ok = tally.latencies_us.len() as u64;
    let errors: u64 = tally.errors.values().sum();
    Ok(json!({
        "sidecar_pid": pid,
        "idle_rss_kib": idle,
        "sessions_created": ok,
        "errors": errors,
        "error_kinds": tally.errors,
        "elapsed_secs": elapsed,
        "loaded_rss_kib": loaded,
        "loaded_rss_mib": loaded as f64 / 1024.0,
        "bytes_per_session": if ok > 0 { (loaded.saturating_sub(idle) as f64 * 1024.0) / ok as f64 } else { 0.0 },
        "target_mib_max": 64,
    }))
}

/// Parses, runs, prints; the exit code is non-zero when a scenario saw an error.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(clean) => {
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<bool> {
    let scenarios = cli
        .scenarios
        .iter()
        .map(|s| Scenario::parse(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let setup = setup(cli).await?;
    if let Some(n) = cli.memory_sessions {
        let doc = memory(cli, &setup, n).await?;
        let clean = doc["errors"].as_u64() == Some(0);
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            println!(
                "sidecar RSS: idle {} KiB, with {} live sessions {} KiB ({:.1} MiB, target <= 64 MiB), \
                 {:.0} bytes per session; {} errors",
                doc["idle_rss_kib"],
                doc["sessions_created"],
                doc["loaded_rss_kib"],
                doc["loaded_rss_mib"].as_f64().unwrap_or_default(),
                doc["bytes_per_session"].as_f64().unwrap_or_default(),
                doc["errors"]
            );
        }
        if let Some(stack) = setup.stack {
            stack.shutdown();
        }
        return Ok(clean);
    }
    let ticks = clock_ticks();
    let mut rounds = Vec::new();
    for round in 1..=cli.rounds {
        let mut reports = Vec::new();
        for &scenario in &scenarios {
            if !cli.json {
                eprintln!("loadgen: {} ...", scenario.name());
            }
            reports
                .push(run_scenario(&setup.target, cli, round, scenario, setup.pids, ticks).await?);
        }
        if !cli.json {
            if cli.rounds > 1 {
                println!("round {round} of {}", cli.rounds);
            }
            println!("{}", table(&reports));
        }
        rounds.push(reports);
    }
    let clean = rounds.iter().flatten().all(|r| r.errors == 0);
    let (summaries, medians) = summarise(&rounds);
    let per_round = |pair| rounds.iter().map(|r| overhead(r, pair)).collect::<Vec<_>>();
    let median_of = |pair| medians.iter().find(|(p, _)| *p == pair).map(|(_, o)| *o);
    if cli.json {
        let doc = json!({
            "concurrency": cli.concurrency,
            "offered_per_sec": cli.rate,
            "duration_secs_max": cli.duration_secs,
            "requests_max": cli.requests,
            "rounds": cli.rounds,
            "scenarios": rounds.iter().flatten().collect::<Vec<_>>(),
            "introspect_overhead": per_round(Pair::Introspect),
            "jwks_pass_through_overhead": per_round(Pair::Jwks),
            "median": summaries,
            "median_introspect_overhead": median_of(Pair::Introspect),
            "median_jwks_pass_through_overhead": median_of(Pair::Jwks),
            "targets": { "throughput_ratio_min": TARGET_RATIO_MIN, "added_p50_ms_max": TARGET_ADDED_P50_MS_MAX },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if cli.rounds > 1 {
        print!("{}", summary_table(&summaries, &medians, cli));
    }
    if let Some(stack) = setup.stack {
        stack.shutdown();
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    fn report(scenario: &str, round: u64, req_per_sec: f64, p50_ms: f64) -> Report {
        Report {
            scenario: scenario.into(),
            round,
            concurrency: 16,
            offered_per_sec: None,
            ok: 1,
            errors: round - 1,
            error_kinds: BTreeMap::new(),
            elapsed_secs: 1.0,
            req_per_sec,
            p50_ms,
            p99_ms: p50_ms * 2.0,
            max_ms: p50_ms * 3.0,
            sidecar_cpu_us_per_req: None,
            api_cpu_us_per_req: None,
            loadgen_cpu_us_per_req: None,
        }
    }

    #[test]
    fn rounds_summarise_by_median_and_pair_within_a_round() {
        let rounds: Vec<Vec<Report>> = [(800.0, 1000.0), (600.0, 1000.0), (900.0, 1000.0)]
            .iter()
            .zip(1..)
            .map(|(&(sealed, direct), round)| {
                vec![
                    report("introspect", round, sealed, 1.5),
                    report(
                        "introspect-direct",
                        round,
                        direct,
                        1.0 + round as f64 / 10.0,
                    ),
                ]
            })
            .collect();
        let (summaries, overheads) = summarise(&rounds);
        let sealed = &summaries[0];
        assert_eq!(sealed.scenario, "introspect");
        assert_eq!(
            (
                sealed.req_per_sec_median,
                sealed.req_per_sec_min,
                sealed.req_per_sec_max
            ),
            (800.0, 600.0, 900.0)
        );
        assert_eq!(sealed.errors, 3);
        // Each round's ratio is of its own pair: 0.8, 0.6, 0.9; added p50 0.4, 0.3, 0.2.
        assert_eq!(overheads.len(), 1, "no jwks pair ran");
        let (pair, overhead) = overheads[0];
        assert_eq!(pair, Pair::Introspect);
        assert!((overhead.throughput_ratio - 0.8).abs() < 1e-9);
        assert!((overhead.added_p50_ms - 0.3).abs() < 1e-9);
    }

    #[test]
    fn open_loop_schedules_interleave_at_the_rate() {
        let start = Instant::now();
        assert!(Pace::Closed.schedule(start, 0, 4).is_none());
        // 1,000/s over 4 workers: each sends every 4 ms, worker i first at i ms.
        let (first, gap) = Pace::Open(1000).schedule(start, 3, 4).unwrap();
        assert_eq!(first - start, Duration::from_millis(3));
        assert_eq!(gap, Duration::from_millis(4));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_count("1"), Some(1));
        assert_eq!(cpu_count("0-3"), Some(4));
        assert_eq!(cpu_count("0,2-3"), Some(3));
        assert_eq!(cpu_count("3-1"), None);
        assert_eq!(cpu_count("x"), None);
        assert_eq!(cpu_count(""), None);
    }

    #[test]
    fn loopback_only() {
        assert!(require_loopback("http://127.0.0.1:8141").is_ok());
        assert!(require_loopback("http://localhost:8141/").is_ok());
        assert!(require_loopback("http://[::1]:8141").is_ok());
        assert!(require_loopback("http://10.0.0.1:8141").is_err());
        assert!(require_loopback("https://127.0.0.1:8141").is_err());
    }
}
