#![forbid(unsafe_code)]
//! `journey`: walks the six-step journey through a running identity-sidecar, or with `--local`
//! builds and starts both binaries first. See `journey --help`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    identity_sidecar_examples::cli::main().await
}
