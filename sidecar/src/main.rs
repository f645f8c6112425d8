//! `identity-sidecar`: parse the configuration, serve, drain on SIGTERM/Ctrl-C.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use identity_sidecar::Config;
use tokio::sync::watch;

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
    let grace = Duration::from_secs(config.shutdown_grace_secs);

    // One signal starts the drain and the clock on it: a client trickling its body must not
    // hold the process open until the kubelet kills it.
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        identity_runtime::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let signalled = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let deadline = {
        let stopped = stopped.clone();
        async move {
            signalled(stopped).await;
            tokio::time::sleep(grace).await;
        }
    };
    let server = match identity_sidecar::bind(&config).await {
        Ok(server) => server,
        Err(err) => {
            tracing::error!("identity-sidecar cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    // One stdout line with the bound address (useful with --listen 127.0.0.1:0).
    println!(
        "identity-sidecar listening on http://{}",
        server.local_addr()
    );
    tokio::select! {
        result = server.run(signalled(stopped)) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!("identity-sidecar failed: {err}");
                ExitCode::FAILURE
            }
        },
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "drain took longer than the grace period; exiting");
            ExitCode::SUCCESS
        }
    }
}
