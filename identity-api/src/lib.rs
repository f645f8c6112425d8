#![forbid(unsafe_code)]
//! identity-api: clients, token issuance, introspection, refresh-token families, revocation,
//! JWKS, over SQLite or PostgreSQL. Implements PROTOCOL.md section 5 behind the sidecar.

pub mod clients;
pub mod config;
pub mod error;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod secret;
pub mod service;
pub mod storage;
pub mod tokens;

use std::future::Future;
use std::time::Duration;

pub use error::ApiError;
pub use http::{app, ops_app};
pub use service::{AppState, Settings, StartError, now};
pub use storage::Db;

/// Serves `app(state)` until `shutdown` resolves, then drains in-flight requests.
/// Also reloads the signing keys every second, so that `keys rotate` takes effect at once.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reloader = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match state.reload_keys().await {
                    Ok(true) => tracing::info!("signing keys reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "signing key reload failed"),
                }
            }
        })
    };
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    reloader.abort();
    result
}

/// Serves [`ops_app`] (health, version, metrics) until `shutdown` resolves.
pub async fn serve_ops(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, ops_app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
