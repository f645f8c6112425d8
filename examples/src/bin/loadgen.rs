#![forbid(unsafe_code)]
//! `loadgen`: drives a running identity-sidecar and identity-api (or, with `--local`, release
//! builds started here) with concurrent clients and reports req/s and latency. See
//! `loadgen --help` and docs/benchmarks.md.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    identity_sidecar_examples::loadgen::main().await
}
