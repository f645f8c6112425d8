//! The `loadgen` command line (clap) and the parsing and checks of its values.

use anyhow::{anyhow, bail};
use clap::Parser;

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

    /// With --local: create this many tenants, t1 to tN (`identity-api tenant create`), a
    /// client in each, and spread every worker's requests over them, so that the tokens are
    /// spread over the tenants; 0: the default tenant's client only.
    #[arg(long, default_value_t = 0, requires = "local", value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub tenants: u64,

    /// With --local: the signing algorithm of the tenants created; with --tenants 0 and
    /// anything but ES256, one tenant t1 of it is created and used.
    #[arg(long, default_value = "ES256", requires = "local", value_parser = ["ES256", "RS256", "EdDSA"])]
    pub algorithm: String,

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

impl Cli {
    /// How many tenants the run creates (see --tenants and --algorithm).
    pub(super) fn tenant_count(&self) -> u64 {
        if self.tenants == 0 && self.algorithm != "ES256" {
            1
        } else {
            self.tenants
        }
    }
}

pub(super) fn words(command: Option<&str>) -> Vec<String> {
    command
        .map(|c| c.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text}"))
}

/// Refuses anything but `http://` on a loopback host.
pub(super) fn require_loopback(url: &str) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(require_loopback("http://127.0.0.1:8141").is_ok());
        assert!(require_loopback("http://localhost:8141/").is_ok());
        assert!(require_loopback("http://[::1]:8141").is_ok());
        assert!(require_loopback("http://10.0.0.1:8141").is_err());
        assert!(require_loopback("https://127.0.0.1:8141").is_err());
    }
}
