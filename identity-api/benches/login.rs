//! A password grant at /oauth/token, in process through the router (the client's secret, the
//! user's lookup, one Argon2id verification at the default costs, the audit and the failure
//! count or the token family): a right password, a wrong one, and a user that does not exist,
//! which must cost the same as a wrong one. Then the three interleaved, their medians side by
//! side, and grants per second with as many logins at once as there are CPUs.
//!
//! `cargo bench -p identity-api --bench login`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench that cannot set up should stop

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{Criterion, criterion_group};
use identity_api::clients::{self, NewClient};
use identity_api::kek::Kek;
use identity_api::storage::TenantId;
use identity_api::users::password::Password;
use identity_api::users::{self, NewUser};
use identity_api::{AppState, Settings};
use tokio::runtime::Runtime;
use tower::ServiceExt as _;

const PASSWORD: &str = "correct horse battery staple";

struct Bench {
    app: Router,
    basic: String,
    _dir: tempfile::TempDir,
}

fn setup(runtime: &Runtime) -> Bench {
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("identity.db").display());
        let mut settings = Settings::new("https://identity.bench");
        // Every wrong password of the bench comes from one source on one username.
        settings.logins.max_failures = u32::MAX;
        settings.logins.source_max_failures = u32::MAX;
        let state = AppState::open(&url, Kek::generate().0, settings)
            .await
            .unwrap();
        let tenant = TenantId::primary();
        let new = NewClient {
            grant_types: Some("password"),
            ..NewClient::new(&tenant, "orders.read", "orders-api")
        };
        let operator = identity_api::operator::Operator::new("bench", None);
        let secret = clients::create(
            state.db(),
            state.verifier_key(),
            "bench",
            new,
            &operator,
            identity_api::now(),
        )
        .await
        .unwrap();
        let hash = state
            .hasher()
            .hash(&Password::new(PASSWORD.to_owned()).unwrap())
            .await
            .unwrap();
        // alice, and a user for each concurrent worker: logins of one user take turns.
        let workers = (0..MAX_WORKERS).map(|w| format!("worker{w}"));
        for username in std::iter::once("alice".to_owned()).chain(workers) {
            let user = NewUser {
                tenant: &tenant,
                username: &username,
                email: None,
                display_name: None,
                roles: "",
            };
            let hash = Some(hash.clone());
            users::create(state.db(), user, hash, &operator, identity_api::now())
                .await
                .unwrap();
        }
        Bench {
            app: identity_api::app(state),
            basic: identity_protocol::identity::basic_header("bench", secret.expose()).to_string(),
            _dir: dir,
        }
    })
}

impl Bench {
    async fn grant(&self, username: &str, password: &str) -> StatusCode {
        let body = format!("grant_type=password&username={username}&password={password}");
        let request = Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", &self.basic)
            .body(Body::from(body))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        black_box(
            axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap(),
        );
        status
    }
}

/// Concurrent logins at most, each as a user of its own.
const MAX_WORKERS: usize = 16;

const CASES: [(&str, &str, &str, StatusCode); 3] = [
    (
        "success",
        "alice",
        "correct+horse+battery+staple",
        StatusCode::OK,
    ),
    (
        "wrong_password",
        "alice",
        "correct+horse+battery+stapler",
        StatusCode::BAD_REQUEST,
    ),
    (
        "unknown_user",
        "nobody",
        "correct+horse+battery+staple",
        StatusCode::BAD_REQUEST,
    ),
];

fn grants(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bench = setup(&runtime);
    let mut group = c.benchmark_group("password_grant");
    group.sample_size(20);
    for (name, username, password, status) in CASES {
        group.bench_function(name, |b| {
            b.iter(|| assert_eq!(runtime.block_on(bench.grant(username, password)), status))
        });
    }
    group.finish();
}

/// The three interleaved, rotating the order each round, their medians printed; then grants
/// per second with one login per CPU at a time (success only, each CPU's as its own user).
fn interleaved() {
    const ROUNDS: usize = 40;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let bench = setup(&runtime);
    let mut times = [const { Vec::new() }; 3];
    for round in 0..ROUNDS {
        for k in 0..CASES.len() {
            let i = (round + k) % CASES.len();
            let (_, username, password, status) = CASES[i];
            let start = Instant::now();
            assert_eq!(runtime.block_on(bench.grant(username, password)), status);
            times[i].push(start.elapsed());
        }
    }
    println!("interleaved, {ROUNDS} rounds, median per grant:");
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    for ((name, ..), median) in CASES.iter().zip(&medians) {
        println!(
            "  {name:<16} {:>8.3} ms  ({:.1} grants/s one at a time, {:.3} x wrong_password)",
            median.as_secs_f64() * 1e3,
            1.0 / median.as_secs_f64(),
            median.as_secs_f64() / medians[1].as_secs_f64()
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS));
    let total = 20 * cpus;
    let bench = std::sync::Arc::new(bench);
    let start = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for worker in 0..cpus {
            let bench = std::sync::Arc::clone(&bench);
            tasks.push(tokio::spawn(async move {
                let (_, _, password, status) = CASES[0];
                let username = format!("worker{worker}");
                for _ in 0..total / cpus {
                    assert_eq!(bench.grant(&username, password).await, status, "{worker}");
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{total} successful grants, {cpus} at a time on {cpus} CPUs: {:.1} grants/s ({:.1} per CPU)",
        total as f64 / elapsed,
        total as f64 / elapsed / cpus as f64
    );
}

criterion_group!(benches, grants);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    interleaved();
}
