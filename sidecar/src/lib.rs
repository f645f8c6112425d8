//! identity-sidecar: terminates the encrypted session channel of PROTOCOL.md and forwards
//! plaintext to the identity API. The protocol itself is [`identity_protocol`]'s.
//!
//! - [`config`]: flags and environment variables;
//! - [`state`]: signing keys, the session store and the rest of the shared state;
//! - [`sessions`]: live sessions, their replay windows and request counts, in memory or in
//!   Redis shared by the replicas;
//! - [`routes`]: the HTTP routes of sections 1 to 4 ([`app`]);
//! - [`forward`]: the identity API client, over [`connect`]'s TCP or Unix socket;
//! - [`error`]: the section 4 errors, mapped to HTTP in one place;
//! - [`metrics`], [`rate_limit`].
//!
//! [`bind`] then [`Server::run`] (or [`serve`]) run the real server; tests bind port 0.

#![forbid(unsafe_code)]

pub mod config;
pub mod connect;
pub mod error;
pub mod forward;
pub mod metrics;
pub mod rate_limit;
pub mod routes;
pub mod sessions;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Instant;

use identity_runtime::serve::{Limits, Shutdown, Tls};
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;

pub use config::Config;
pub use error::ApiError;
pub use routes::{app, ops_app};
pub use state::{AppState, Keys, StartError};

/// A bound, not yet running sidecar.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: AppState,
    local_addr: SocketAddr,
    /// `--ops-listen`, bound.
    ops: Option<(TcpListener, SocketAddr)>,
    limits: Limits,
    /// `--tls-cert-file`, loaded.
    tls: Option<Tls>,
}

/// Loads the keys the configuration names and binds `--listen`.
pub async fn bind(config: &Config) -> Result<Server, StartError> {
    let keys = Keys::load(config)?;
    bind_with_keys(config, keys).await
}

/// [`bind`] with keys already loaded.
pub async fn bind_with_keys(config: &Config, keys: Keys) -> Result<Server, StartError> {
    let state = AppState::new(config, keys)?;
    if config.internal_token.get().is_none() {
        // An identity API with IDENTITY_INTERNAL_TOKEN set then answers every forwarded request
        // 403 and every authenticated init fails: say why now rather than per request.
        tracing::warn!(
            "no internal token (IDENTITY_INTERNAL_TOKEN or IDENTITY_INTERNAL_TOKEN_FILE): requests \
             are forwarded without X-Internal-Token, which an identity API that requires one refuses"
        );
    }
    let tls = match config.tls.files() {
        Some(files) => {
            let metrics = state.clone();
            Some(Tls::load(files)?.on_reload(move |reload| metrics.metrics.tls_reload(reload)))
        }
        None if config.tls.standard_routes_behind_tls_proxy => {
            tracing::warn!(
                "the standard OAuth routes are served in plain HTTP on --listen \
                 (--standard-routes-behind-tls-proxy): client secrets and tokens cross the \
                 network in the clear unless TLS ends in front of the sidecar and nothing else \
                 reaches this port"
            );
            None
        }
        None => None,
    };
    let (listener, local_addr) = listen(config.listen).await?;
    let ops = match config.ops_listen {
        Some(addr) => Some(listen(addr).await?),
        None => None,
    };
    Ok(Server {
        listener,
        state,
        local_addr,
        ops,
        limits: config.server.limits,
        tls,
    })
}

async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The ops listener's address (`--ops-listen`), once bound.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|&(_, addr)| addr)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The public listener's URL: `https://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Serves until `shutdown` completes, then stops accepting and drains in-flight requests
    /// for at most the shutdown grace. The expired-session sweep runs in the background meanwhile.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let sweeper = tokio::spawn(sweep(self.state.clone()));
        tracing::info!(
            listen = %self.local_addr,
            tls = self.tls.is_some(),
            standard_routes = self.state.settings.standard_routes,
            key_id = self.state.keys.signing.key_id(),
            "identity-sidecar listening"
        );
        let shutdown = Shutdown::on(shutdown);
        let ops = self.ops.map(|(listener, _)| {
            tokio::spawn(identity_runtime::serve::serve(
                listener,
                ops_app(self.state.clone()),
                self.limits,
                shutdown.wait(),
            ))
        });
        match self.tls {
            Some(tls) => {
                identity_runtime::serve::serve_tls(
                    self.listener,
                    app(self.state),
                    self.limits,
                    tls,
                    shutdown.wait(),
                )
                .await;
            }
            None => {
                identity_runtime::serve::serve(
                    self.listener,
                    app(self.state),
                    self.limits,
                    shutdown.wait(),
                )
                .await;
            }
        }
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        sweeper.abort();
        tracing::info!("identity-sidecar stopped");
    }
}

/// Binds and serves until `shutdown`.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    bind(&config).await?.run(shutdown).await;
    Ok(())
}

/// Drops expired sessions (and idle rate-limit buckets) every sweep interval.
async fn sweep(state: AppState) {
    let mut interval = tokio::time::interval(state.settings.sweep_interval);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let dropped = state.sessions.sweep(now);
        state.limiter.sweep(now);
        if dropped > 0 {
            tracing::debug!(
                dropped,
                live = state.sessions.len(),
                "swept expired sessions"
            );
        }
    }
}

/// The tokio runtime for `worker_threads` threads (default: the CPUs this process may use).
/// One thread gets a current-thread runtime, as linkerd2-proxy does on one core: the accept
/// loop, the connections and the upstream client's tasks share it, so no request waits for a
/// thread to be woken. (With two workers on one CPU, strace showed a futex wake of the other
/// worker on every request, as the request handed itself to the upstream connection's task.)
pub fn runtime(worker_threads: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = worker_threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic here is a failed test

    use tokio::runtime::RuntimeFlavor;

    use super::*;

    #[test]
    fn one_worker_thread_is_a_current_thread_runtime() {
        let flavor = |n| {
            runtime(NonZeroUsize::new(n))
                .unwrap()
                .handle()
                .runtime_flavor()
        };
        assert_eq!(flavor(1), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(2), RuntimeFlavor::MultiThread);
        // None: the CPUs this process may use, whatever this machine has.
        runtime(None).unwrap();
    }
}
