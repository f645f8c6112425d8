//! What `identity-api` and `identity-sidecar` share as processes, implemented once:
//! - [`secret`]: secrets from a flag, the environment or a file (every secret has a `_FILE`
//!   variant), and the internal token both read;
//! - [`LogFormat`] and [`init_tracing`]: logs on stderr, text or JSON, filtered by `RUST_LOG`;
//!   [`print_line`] and [`print_error`] for the lines a process writes itself, in the same format;
//! - [`shutdown_signal`]: SIGTERM or Ctrl-C;
//! - [`serve`]: the HTTP/1.1 server, with deadlines for slow clients and a connection cap, in
//!   plain HTTP or over TLS with certificate files reloaded when they change.
#![forbid(unsafe_code)]

pub mod secret;
pub mod serve;

use std::io::Write as _;
use std::sync::OnceLock;

pub use secret::{InternalToken, InternalTokenSpec, Secret, SecretError, SecretSpec};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The format [`init_tracing`] chose, for [`print_line`] and [`print_error`].
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Logs to stderr, text or JSON, filtered by `RUST_LOG` (default `info`). A second call (in
/// tests) keeps the first subscriber.
pub fn init_tracing(format: LogFormat) {
    let _ = FORMAT.set(format);
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal; files and log collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A line on stdout for whoever started the process (the bound address, a secret shown once):
/// `message` as it is with text logs; with JSON logs one object, `message` and `fields`, so that
/// every line the process writes is JSON.
/// A closed stdout (a launcher that read the line it wanted and went) is not an error.
pub fn print_line(message: &str, fields: &[(&str, &str)]) {
    let _ = writeln!(std::io::stdout(), "{}", line(message, fields));
}

/// The error that ends the process, on stderr, as [`print_line`] writes.
pub fn print_error(program: &str, error: &dyn std::fmt::Display) {
    let _ = writeln!(
        std::io::stderr(),
        "{}",
        line(&format!("{program}: error: {error}"), &[])
    );
}

fn line(message: &str, fields: &[(&str, &str)]) -> String {
    match FORMAT.get() {
        Some(LogFormat::Json) => {
            let mut object = serde_json::Map::new();
            object.insert("message".into(), message.into());
            for (name, value) in fields {
                object.insert((*name).into(), (*value).into());
            }
            serde_json::Value::Object(object).to_string()
        }
        _ => message.to_owned(),
    }
}

/// Completes on SIGTERM (what Kubernetes sends) or Ctrl-C.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// SIGTERM that comes after a server has said it is listening must drain it, even when the task
/// that awaits the signal has not run yet (otherwise the default action kills the process).
/// Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let (terminate, interrupt) = signals;
            tokio::select! {
                () = recv(terminate) => {},
                () = recv(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown signal received: draining in-flight requests");
    }
}
