//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! - `sidecar_sessions_live`: sessions whose keys this process holds (gauge): every live session
//!   of the memory store; with Redis, those cached here;
//! - `sidecar_session_inits_total{kind, outcome}`: kind `anonymous` | `authenticated`, outcome
//!   `ok` or the section 4 error code;
//! - `sidecar_requests_total{route, status}`: every answer, by route (`other` off the route list);
//! - `sidecar_decryption_failures_total`, `sidecar_replays_refused_total`;
//! - `sidecar_upstream_latency_seconds{route}`: time to the identity API's full answer;
//! - `sidecar_tls_reloads_total{outcome}`: changes of the TLS files, `ok` (served from then on)
//!   or `error` (the previous pair kept);
//! - `sidecar_session_store_errors_total{operation}`: Redis store operations that failed or
//!   timed out (each answered 503), by operation `create`, `get`, `accept` or `end`;
//! - `sidecar_session_store_refusals_total{reason}`: sessions found in Redis but refused (each
//!   answered 401 invalid_session), by reason: `unopenable`, their keys open under no key of
//!   `--session-store-key-file`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InitLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub sessions_live: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub session_inits: Family<InitLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub decryption_failures: Counter<u64, AtomicU64>,
    pub replays_refused: Counter<u64, AtomicU64>,
    pub upstream_latency: LatencyFamily,
    pub tls_reloads: Family<OutcomeLabels, Counter>,
    pub session_store_errors: Family<OperationLabels, Counter>,
    pub session_store_refusals: Family<ReasonLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sidecar");
        let sessions_live = Gauge::default();
        let session_inits = Family::default();
        let requests = Family::default();
        let decryption_failures = Counter::default();
        let replays_refused = Counter::default();
        let upstream_latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let tls_reloads = Family::default();
        let session_store_errors = Family::default();
        let session_store_refusals = Family::default();
        registry.register("sessions_live", "Live sessions", sessions_live.clone());
        registry.register(
            "session_inits",
            "Session inits by kind and outcome",
            session_inits.clone(),
        );
        registry.register("requests", "Answers by route and status", requests.clone());
        registry.register(
            "decryption_failures",
            "Encrypted requests whose GCM authentication failed",
            decryption_failures.clone(),
        );
        registry.register(
            "replays_refused",
            "Encrypted requests refused as replays",
            replays_refused.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time for the identity API to answer",
            upstream_latency.clone(),
        );
        registry.register(
            "tls_reloads",
            "Changes of the TLS certificate files, by outcome: ok (served) or error (previous kept)",
            tls_reloads.clone(),
        );
        registry.register(
            "session_store_errors",
            "Session store operations that failed or timed out, by operation",
            session_store_errors.clone(),
        );
        registry.register(
            "session_store_refusals",
            "Sessions found in the session store but refused as unknown, by reason",
            session_store_refusals.clone(),
        );
        Self {
            registry,
            sessions_live,
            session_inits,
            requests,
            decryption_failures,
            replays_refused,
            upstream_latency,
            tls_reloads,
            session_store_errors,
            session_store_refusals,
        }
    }

    pub fn tls_reload(&self, reload: identity_runtime::serve::Reload) {
        let outcome = match reload {
            identity_runtime::serve::Reload::Loaded => "ok",
            identity_runtime::serve::Reload::Failed => "error",
        };
        self.tls_reloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn session_init(&self, authenticated: bool, outcome: &'static str) {
        let kind = if authenticated {
            "authenticated"
        } else {
            "anonymous"
        };
        self.session_inits
            .get_or_create(&InitLabels { kind, outcome })
            .inc();
    }

    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    pub fn upstream_latency(&self, route: &str, seconds: f64) {
        self.upstream_latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self, live_sessions: usize) -> Result<String, std::fmt::Error> {
        self.sessions_live
            .set(i64::try_from(live_sessions).unwrap_or(i64::MAX));
        let mut text = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
