//! The figures: a scenario's [`Report`], nearest-rank percentiles, medians across rounds, and
//! the sidecar's overhead against each scenario's direct twin.

use std::collections::BTreeMap;

use serde::Serialize;

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

/// The nearest-rank percentile `p` of latencies in µs, sorted ascending, in ms.
pub(super) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// What the sidecar adds to a request: its scenario against the direct twin.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Overhead {
    /// Through the sidecar over direct (closed loop; at a fixed `--rate` both are the
    /// rate while both keep up).
    pub(super) throughput_ratio: f64,
    pub(super) added_p50_ms: f64,
}

/// A scenario through the sidecar and its direct twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pair {
    /// Encrypted introspection, the pair the overhead targets are set for.
    Introspect,
    /// The plaintext JWKS pass-through: the hop alone.
    Jwks,
}

impl Pair {
    pub(super) const ALL: [Self; 2] = [Self::Introspect, Self::Jwks];

    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Introspect => ("introspect", "introspect-direct"),
            Self::Jwks => ("jwks", "jwks-direct"),
        }
    }
}

/// `pair`'s overhead in one round, when both of its scenarios ran.
pub(super) fn overhead(reports: &[Report], pair: Pair) -> Option<Overhead> {
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
pub(super) struct Summary {
    pub(super) scenario: String,
    pub(super) rounds: usize,
    pub(super) errors: u64,
    pub(super) req_per_sec_median: f64,
    pub(super) req_per_sec_min: f64,
    pub(super) req_per_sec_max: f64,
    pub(super) p50_ms_median: f64,
    pub(super) p99_ms_median: f64,
}

/// Each pair's overhead across rounds: the median of each round's own figures.
pub(super) type Overheads = Vec<(Pair, Overhead)>;

/// Each scenario's [`Summary`] and each pair's overhead across `rounds`.
pub(super) fn summarise(rounds: &[Vec<Report>]) -> (Vec<Summary>, Overheads) {
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
}
