#![forbid(unsafe_code)]
//! `identity-api`: parse the command line, run the command (`identity_api::commands`).

use clap::Parser as _;
use identity_api::config::Cli;

// glibc's malloc spent a seventh of the API's CPU consolidating free lists across the runtime's
// and SQLite's threads; mimalloc does not. The sidecar keeps glibc's: no gain measured there,
// and more memory idle.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    identity_runtime::init_tracing(cli.log_format);
    match identity_api::commands::run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            identity_runtime::print_error("identity-api", &e);
            std::process::ExitCode::FAILURE
        }
    }
}
