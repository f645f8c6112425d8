//! `--memory-sessions`: the sidecar's RSS idle and with N live anonymous sessions.

use std::time::Duration;

use anyhow::anyhow;
use serde_json::{Value, json};

use super::cli::Cli;
use super::procfs::rss_kib;
use super::scenarios::{Scenario, Worker};
use super::setup::Setup;
use super::workers::{Pace, phase};

/// `--memory-sessions N`: RSS idle, then N live sessions, then RSS again.
pub(super) async fn memory(cli: &Cli, setup: &Setup, n: u64) -> anyhow::Result<Value> {
    let pid = setup
        .pids
        .sidecar
        .ok_or_else(|| anyhow!("--memory-sessions needs --local or --sidecar-pid"))?;
    let idle = rss_kib(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}/status"))?;
    let mut workers = Vec::new();
    for _ in 0..cli.concurrency {
        workers.push(Worker::stateless());
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

/// The human line of [`memory`]'s document.
pub(super) fn line(doc: &Value) -> String {
    format!(
        "sidecar RSS: idle {} KiB, with {} live sessions {} KiB ({:.1} MiB, target <= 64 MiB), \
         {:.0} bytes per session; {} errors",
        doc["idle_rss_kib"],
        doc["sessions_created"],
        doc["loaded_rss_kib"],
        doc["loaded_rss_mib"].as_f64().unwrap_or_default(),
        doc["bytes_per_session"].as_f64().unwrap_or_default(),
        doc["errors"]
    )
}
