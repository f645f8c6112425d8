//! The load generator behind the `loadgen` binary: C concurrent clients drive a running stack
//! (or one started here with `--local`), each scenario bounded by a duration *and* a request
//! count, every answer checked. docs/benchmarks.md records what it measured.
//!
//! With `--local --tenants N` the workers send as a client in each of N tenants created for the
//! run, in turn, so that tokens spread over the tenants (`scenarios::clients_of`); by default
//! every request is the default tenant's, as before tenants.
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
//!   plaintext: what the extra hop costs without the protocol (not in the default list);
//! - `oauth-token-direct` / `oauth-introspect-direct`: the standard endpoints (docs/OAUTH.md)
//!   straight to the identity API, form bodies and Basic: `POST /oauth/token` with
//!   client_credentials, `POST /oauth/introspect` of the client's own access token; beside
//!   `issue-direct` and `introspect-direct`, what the standard surface costs (not in the
//!   default list).
//!
//! An answer counts as a success only when its status is 200 and its body is what the route
//! promises (an active introspection, a token pair); a 4xx/5xx, a failed decrypt, a malformed
//! body or a transport error counts as an error and is reported by kind. The sealing is
//! [`identity_client`]'s; the calls are [`identity_client::calls`]'.
//!
//! Where things live: `cli` (the command line), `scenarios` (each scenario's request and its
//! check), `workers` (the run loop and `--rate`), `stats` (the figures: percentiles, medians,
//! overheads), `report` (the tables and the JSON document), `setup` (the `--local` stack or the
//! remote target), `procfs` (CPU time and RSS) and `memory` (`--memory-sessions`).

mod cli;
mod memory;
mod procfs;
mod report;
mod scenarios;
mod setup;
mod stats;
mod workers;

use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;
pub use procfs::rss_kib;
pub use stats::Report;

use procfs::clock_ticks;
use report::{summary_table, table};
use scenarios::Scenario;
use stats::summarise;
use workers::run_scenario;

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
    let setup = setup::setup(cli).await?;
    if let Some(n) = cli.memory_sessions {
        let doc = memory::memory(cli, &setup, n).await?;
        let clean = doc["errors"].as_u64() == Some(0);
        if cli.json {
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            println!("{}", memory::line(&doc));
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
    if cli.json {
        let doc = report::json(cli, &rounds, &summaries, &medians);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if cli.rounds > 1 {
        print!("{}", summary_table(&summaries, &medians, cli));
    }
    if let Some(stack) = setup.stack {
        stack.shutdown();
    }
    Ok(clean)
}
