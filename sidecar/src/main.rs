//! `identity-sidecar`: parse the configuration, serve, drain on SIGTERM/Ctrl-C.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use identity_sidecar::Config;

fn main() -> ExitCode {
    let config = Config::parse();
    identity_runtime::init_tracing(config.log_format);
    match identity_sidecar::runtime(config.worker_threads) {
        Ok(runtime) => runtime.block_on(run(config)),
        Err(err) => {
            tracing::error!("identity-sidecar cannot start its runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> ExitCode {
    let server = match identity_sidecar::bind(&config).await {
        Ok(server) => server,
        Err(err) => {
            tracing::error!("identity-sidecar cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Before the address goes out: whoever reads it may send SIGTERM at once.
    let signal = identity_runtime::shutdown_signal();
    // One stdout line with the bound address (useful with --listen 127.0.0.1:0).
    let url = server.url();
    identity_runtime::print_line(
        &format!("identity-sidecar listening on {url}"),
        &[("url", &url)],
    );
    if let Some(ops) = server.ops_addr() {
        let url = format!("http://{ops}");
        identity_runtime::print_line(
            &format!("identity-sidecar ops listening on {url}"),
            &[("ops_url", &url)],
        );
    }
    // The drain after the signal is bounded by --shutdown-grace-secs, so a client trickling its
    // body cannot hold the process open until the kubelet kills it.
    server.run(signal).await;
    ExitCode::SUCCESS
}
