//! How results are printed: the human tables (per round, and the medians of rounds) and the
//! JSON document.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::cli::Cli;
use super::stats::{Overhead, Overheads, Pair, Report, Summary, overhead};

/// What sealed introspection should cost against direct: at least this share of its throughput,
/// at most this much added p50.
const TARGET_RATIO_MIN: f64 = 0.70;
const TARGET_ADDED_P50_MS_MAX: f64 = 0.2;

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

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

/// One round: a line per scenario, its error kinds, then each pair's overhead.
pub(super) fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>4} {:>8} {:>6} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}",
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
        "{:<24} {:>4} {:>8} {:>6} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "", "", "", "", "", "", "", "", "CPU µs/req", "CPU µs/req", "CPU µs/req"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<24} {:>4} {:>8} {:>6} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>10} {:>10} {:>10}",
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

/// With `--rounds`: the median of each figure across rounds.
pub(super) fn summary_table(summaries: &[Summary], overheads: &Overheads, cli: &Cli) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "median of {} rounds\n{:<24} {:>6} {:>9} {:>17} {:>8} {:>8}",
        cli.rounds, "scenario", "errors", "req/s", "(lowest-highest)", "p50 ms", "p99 ms"
    );
    for s in summaries {
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:>9.0} {:>17} {:>8.3} {:>8.3}",
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

/// The `--json` document: every round's reports, each pair's overhead per round and their medians.
pub(super) fn json(
    cli: &Cli,
    rounds: &[Vec<Report>],
    summaries: &[Summary],
    medians: &Overheads,
) -> Value {
    let per_round = |pair| rounds.iter().map(|r| overhead(r, pair)).collect::<Vec<_>>();
    let median_of = |pair| medians.iter().find(|(p, _)| *p == pair).map(|(_, o)| *o);
    json!({
        "concurrency": cli.concurrency,
        "offered_per_sec": cli.rate,
        "duration_secs_max": cli.duration_secs,
        "requests_max": cli.requests,
        "rounds": cli.rounds,
        "tenants": cli.tenant_count(),
        "algorithm": cli.algorithm,
        "scenarios": rounds.iter().flatten().collect::<Vec<_>>(),
        "introspect_overhead": per_round(Pair::Introspect),
        "jwks_pass_through_overhead": per_round(Pair::Jwks),
        "median": summaries,
        "median_introspect_overhead": median_of(Pair::Introspect),
        "median_jwks_pass_through_overhead": median_of(Pair::Jwks),
        "targets": { "throughput_ratio_min": TARGET_RATIO_MIN, "added_p50_ms_max": TARGET_ADDED_P50_MS_MAX },
    })
}
