//! The HTTP/1.1 server both binaries run, with the limits a server facing slow or hostile
//! clients needs, which `axum::serve` does not have: a deadline for a request's header and for
//! its body, an idle timeout for kept-alive connections, a cap on open connections, and a grace
//! period after which a drain stops waiting.
//!
//! - [`Limits`] and the flags that set them ([`ServerArgs`]);
//! - [`serve`]: the accept loop and the drain; [`Shutdown`], one signal for several servers;
//! - [`serve_tls`]: the same over TLS ([`tls`]: the certificate files, reloaded when they
//!   change, and the handshake deadline);
//! - `connection`: one connection and its deadlines;
//! - [`body`]: the body deadline and [`read_body`], the one way a route reads a body.

mod args;
pub mod body;
mod connection;
pub mod tls;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use args::{ServerArgs, ServerEnv};
pub use body::{BodyError, read_body};
pub use tls::{Reload, Tls, TlsError, TlsFiles};

/// What a server allows its clients. The defaults are the flags' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From a connection's start, or from the first byte of a request on a kept-alive
    /// connection, to the end of the request's header; then the connection is closed.
    pub header_read_timeout: Duration,
    /// From the end of a request's header to the end of its body; then the route answers 408.
    pub body_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// After shutdown begins, how long in-flight requests may take before every connection
    /// still open is dropped.
    pub shutdown_grace: Duration,
}

/// Each default once: a number for [`Limits::default`], and its text for the flags' help.
macro_rules! defaults {
    ($($number:ident, $text:ident = $value:literal;)*) => {
        $(
            const $number: u64 = $value;
            const $text: &str = stringify!($value);
        )*
    };
}

defaults! {
    HEADER_READ_TIMEOUT_SECS, HEADER_READ_TIMEOUT_TEXT = 10;
    BODY_READ_TIMEOUT_SECS, BODY_READ_TIMEOUT_TEXT = 10;
    // Above the 60 to 90 s most HTTP clients keep an idle pooled connection, so that a client
    // rarely sends a request on a connection this side is closing.
    IDLE_TIMEOUT_SECS, IDLE_TIMEOUT_TEXT = 120;
    MAX_CONNECTIONS, MAX_CONNECTIONS_TEXT = 4096;
    SHUTDOWN_GRACE_SECS, SHUTDOWN_GRACE_TEXT = 20;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(HEADER_READ_TIMEOUT_SECS),
            body_read_timeout: Duration::from_secs(BODY_READ_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS),
            #[allow(clippy::cast_possible_truncation)] // 4096
            max_connections: MAX_CONNECTIONS as usize,
            shutdown_grace: Duration::from_secs(SHUTDOWN_GRACE_SECS),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets every
/// connection finish its request in flight (kept-alive ones close after it), and drops the
/// connections still open after [`Limits::shutdown_grace`]. Each request carries its peer as
/// `axum::extract::ConnectInfo<L::Addr>`.
pub async fn serve<L>(
    listener: L,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    run(listener, app, limits, None, shutdown).await;
}

/// [`serve`] over TLS: each connection first completes its handshake within
/// [`TlsFiles::handshake_timeout`] (holding one of [`Limits::max_connections`] meanwhile), then
/// is served as [`serve`] serves it. The certificate files are checked for a change every
/// [`TlsFiles::reload_interval`] while the server runs.
pub async fn serve_tls<L>(
    listener: L,
    app: Router,
    limits: Limits,
    tls: Tls,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let watcher = tls.watch();
    run(listener, app, limits, Some(tls), shutdown).await;
    watcher.abort();
}

async fn run<L>(
    mut listener: L,
    app: Router,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut full = false;
    loop {
        // Results of finished connections are dropped here, so the set holds open ones only.
        while connections.try_join_next().is_some() {}
        if permits.available_permits() == 0 && !full {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached: new connections wait in the listen backlog"
            );
        }
        full = permits.available_permits() == 0;
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed; nothing to serve without permits
            },
            () = &mut shutdown => break,
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (app, stopping) = (app.clone(), stopping.clone());
        match tls.clone() {
            None => {
                let connection = connection::serve(io, peer, app, limits, stopping);
                connections.spawn(async move {
                    connection.await;
                    drop(permit);
                });
            }
            // The handshake runs in the connection's task, so a slow one holds up no other.
            Some(tls) => {
                connections.spawn(async move {
                    if let Some(io) = tls.handshake(io).await {
                        connection::serve(io, peer, app, limits, stopping).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace period: dropping them"
        );
        connections.shutdown().await;
    }
}

/// One shutdown signal for the several servers of a process (API, Unix socket, ops listener):
/// each [`Shutdown::wait`] completes once the signal has come.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Waits for `signal` in a task of its own.
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = stop.send(true);
        });
        Self(stopping)
    }

    /// Completes when the signal has come (or its task is gone, as the runtime stops).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.0.clone();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    }
}

#[cfg(test)]
mod tests;
