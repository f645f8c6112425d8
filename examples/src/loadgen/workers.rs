//! The run loop: C concurrent worker tasks drive one scenario until its duration or request
//! count, in a closed loop or open loop at `--rate`, and yield the scenario's [`Report`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::cli::Cli;
use super::procfs::{Pids, cpu_seconds};
use super::scenarios::{Scenario, Target, Worker};
use super::stats::{Report, percentile};

/// What one worker saw.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) latencies_us: Vec<u32>,
    pub(super) errors: BTreeMap<String, u64>,
}

/// When each worker sends: as soon as its previous request is answered, or on a schedule.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pace {
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
pub(super) async fn phase(
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

/// One scenario of one round: its workers' setup, the warm-up, then the measured phase with
/// the CPU time of each process read around it.
pub(super) async fn run_scenario(
    target: &Arc<Target>,
    cli: &Cli,
    round: u64,
    scenario: Scenario,
    pids: Pids,
    ticks: f64,
) -> anyhow::Result<Report> {
    let mut workers = Vec::new();
    for i in 0..cli.concurrency {
        workers.push(Worker::new(target, scenario, i, cli.concurrency).await?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_schedules_interleave_at_the_rate() {
        let start = Instant::now();
        assert!(Pace::Closed.schedule(start, 0, 4).is_none());
        // 1,000/s over 4 workers: each sends every 4 ms, worker i first at i ms.
        let (first, gap) = Pace::Open(1000).schedule(start, 3, 4).unwrap();
        assert_eq!(first - start, Duration::from_millis(3));
        assert_eq!(gap, Duration::from_millis(4));
    }
}
