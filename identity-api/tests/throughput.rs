//! A rough, informative measurement (ignored by default; asserts nothing about time):
//! token issues and introspections per second over real HTTP, 32 concurrent connections,
//! client and server sharing the machine. Run:
//! `cargo test -p identity-api --release --test throughput -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestEnv, basic, s};
use serde_json::{Value, json};

const CONNECTIONS: usize = 32;
const PER_CONNECTION: usize = 300;

async fn run(
    label: &str,
    make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Clone + Send + 'static,
) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let client = client.clone();
        let make = make.clone();
        tasks.spawn(async move {
            for _ in 0..PER_CONNECTION {
                let r = make(&client).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
            }
        });
    }
    tasks.join_all().await;
    let n = CONNECTIONS * PER_CONNECTION;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{label}: {n} requests in {secs:.2} s = {:.0}/s",
        n as f64 / secs
    );
}

async fn measure(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(identity_api::serve(
        env.state.clone(),
        listener,
        identity_runtime::serve::Limits::default(),
        std::future::pending(),
    ));
    let auth = basic("c1", &env.secret);
    let issue_url = format!("{base}/api/v1/token/issue");
    run(&format!("{b:?} issue"), move |c| {
        c.post(&issue_url)
            .header("authorization", &auth)
            .json(&json!({"subject": "bench"}))
    })
    .await;
    let pair: Value = env.issue().await;
    let access = s(&pair, "access_token");
    let introspect_url = format!("{base}/api/v1/introspect");
    run(&format!("{b:?} introspect"), move |c| {
        c.post(&introspect_url)
            .bearer_auth(&access)
            .json(&json!({"token": access}))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, run explicitly"]
async fn throughput_sqlite() {
    measure(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, run explicitly"]
async fn throughput_postgres() {
    measure(Backend::Postgres).await;
}
