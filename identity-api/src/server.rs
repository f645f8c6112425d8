//! The identity API's HTTP servers: the API on TCP and, for a sidecar in the same pod, on a Unix
//! socket; the operational routes on their own address; the reload of the signing keys.

use std::future::Future;
use std::time::Duration;

use identity_runtime::serve::Limits;

use crate::clock::now;
use crate::http::{app, ops_app};
use crate::purge::{self, Retention};
use crate::service::AppState;

/// Serves `app(state)` until `shutdown` resolves, then drains in-flight requests (for at most
/// the shutdown grace of `limits`). Also reloads the signing keys every second, so that
/// `keys rotate` takes effect at once.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
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
    identity_runtime::serve::serve(listener, app(state), limits, shutdown).await;
    reloader.abort();
}

/// Purges what has ended every `every` (the first time `every` after the start), until the
/// returned task is aborted.
pub fn spawn_purge(
    state: AppState,
    every: Duration,
    retention: Retention,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = std::time::Instant::now();
            match purge::run(state.db(), retention, now(), purge::PAUSE).await {
                Ok(Some(purged)) => {
                    state.metrics().purged(&purged);
                    tracing::info!(
                        families = purged.families,
                        refresh_tokens = purged.refresh_tokens,
                        audit_events = purged.audit_events,
                        longest_hold_ms =
                            u64::try_from(purged.longest_hold.as_millis()).unwrap_or(u64::MAX),
                        elapsed_ms =
                            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "purge"
                    );
                }
                Ok(None) => tracing::debug!("purge skipped: another instance is purging"),
                Err(error) => tracing::warn!(%error, "purge failed; the next run starts over"),
            }
        }
    })
}

/// Serves [`ops_app`] (health, version, metrics) until `shutdown` resolves.
pub async fn serve_ops(
    state: AppState,
    listener: tokio::net::TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    identity_runtime::serve::serve(listener, ops_app(state), limits, shutdown).await;
}

/// Binds a Unix socket for [`serve_unix`], mode 0660. A socket file already at `path` is
/// removed first when nothing accepts on it (left by a process that was killed); a file that is
/// not a socket, or a socket in use, is an error.
pub fn bind_unix(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process accepts on this socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves `app(state)` on a Unix socket (bound by [`bind_unix`]) until `shutdown` resolves, then
/// drains and removes the socket. Runs beside [`serve`], which reloads the keys for both.
pub async fn serve_unix(
    state: AppState,
    listener: tokio::net::UnixListener,
    path: std::path::PathBuf,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    identity_runtime::serve::serve(listener, app(state), limits, shutdown).await;
    let _ = std::fs::remove_file(&path);
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::bind_unix;

    #[tokio::test]
    async fn a_unix_socket_replaces_only_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");

        // A socket left by a process that is gone: nothing accepts, so it is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = bind_unix(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);

        // A socket in use is not taken over.
        let err = bind_unix(&path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        drop(listener);

        // Nor is anything else at the path.
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"data").unwrap();
        let err = bind_unix(&file).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"data");
    }
}
