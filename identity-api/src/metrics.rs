//! Prometheus metrics (text exposition at GET /metrics).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::purge::Purged;
use crate::storage::BatchMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
    pub status: u16,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub tokens_issued: Counter,
    pub refreshes: Family<OutcomeLabel, Counter>,
    pub reuse_detected: Counter,
    pub revocations: Counter,
    pub introspections: Family<ResultLabel, Counter>,
    pub latency: HistogramFamily,
    pub purged: Family<TableLabel, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0002, 2.0, 16))
}

impl Metrics {
    /// The API's metrics, and the storage's batches (counted by the storage itself).
    pub fn new(storage: &BatchMetrics) -> Self {
        let mut registry = Registry::with_prefix("identity_api");
        let tokens_issued = Counter::default();
        let refreshes = Family::<OutcomeLabel, Counter>::default();
        let reuse_detected = Counter::default();
        let revocations = Counter::default();
        let introspections = Family::<ResultLabel, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let purged = Family::<TableLabel, Counter>::default();
        registry.register(
            "purged_rows",
            "Rows the purge deleted, by table",
            purged.clone(),
        );
        registry.register(
            "tokens_issued",
            "Token pairs issued (new families)",
            tokens_issued.clone(),
        );
        registry.register(
            "refreshes",
            "Refresh requests by outcome",
            refreshes.clone(),
        );
        registry.register(
            "refresh_reuse_detected",
            "Spent refresh tokens presented again (family revoked)",
            reuse_detected.clone(),
        );
        registry.register("revocations", "Token families revoked", revocations.clone());
        registry.register(
            "introspections",
            "Introspections by result",
            introspections.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency by route and status",
            latency.clone(),
        );
        registry.register(
            "storage_batches",
            "Batches of the storage hot path by kind and outcome (split: failed, its calls run again one by one)",
            storage.batches.clone(),
        );
        registry.register(
            "storage_batch_calls",
            "Calls served by the storage hot path's batches, by kind (over batches: the mean batch size)",
            storage.calls.clone(),
        );
        Self {
            registry,
            tokens_issued,
            refreshes,
            reuse_detected,
            revocations,
            introspections,
            latency,
            purged,
        }
    }

    /// Counts what a purge deleted.
    pub fn purged(&self, purged: &Purged) {
        for (table, n) in [
            ("token_families", purged.families),
            ("refresh_tokens", purged.refresh_tokens),
            ("audit_events", purged.audit_events),
            ("login_failures", purged.login_failures),
        ] {
            self.purged.get_or_create(&TableLabel { table }).inc_by(n);
        }
    }

    pub fn refresh(&self, outcome: &str) {
        self.refreshes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn introspection(&self, result: &str) {
        self.introspections
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
