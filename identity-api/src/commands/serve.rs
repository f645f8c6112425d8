//! `serve`: the HTTP servers until a shutdown signal.

use std::time::Duration;

use identity_runtime::print_line;
use identity_runtime::serve::Shutdown;
use zeroize::Zeroizing;

use super::{CommandError, open};
use crate::config::ServeArgs;
use crate::server;
use crate::service::AppState;

/// `serve`: the API on `--listen` (and `--listen-unix`), the operational routes on
/// `--ops-listen`, until SIGTERM or Ctrl-C, then every server drains.
pub(super) async fn serve(args: ServeArgs) -> Result<(), CommandError> {
    let keks = args.kek.resolve(args.db.dev)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| CommandError::Listen {
            addr: args.listen,
            what: "",
            source,
        })?;
    let local = listener.local_addr().map_err(CommandError::Serve)?;
    let settings = args.settings(local)?;
    let limits = args.server.limits;
    if settings.internal_token.is_none() {
        tracing::warn!(
            "IDENTITY_INTERNAL_TOKEN is not set: /api/v1/* accept requests from anyone who can reach this port"
        );
    }
    if !local.ip().is_loopback() {
        tracing::warn!(
            listen = %local,
            "the API listens beyond loopback: /oauth/* carry client secrets in plaintext; let \
             clients reach them only through TLS (the sidecar's, or a terminator in front)"
        );
    }
    if let Some(previous) = &keks.previous {
        tracing::warn!(
            current = keks.current.id(),
            previous = previous.id(),
            "a previous key-encryption key is configured: run `identity-api kek rewrap`, then remove it"
        );
    }
    let db = open(&args.db).await?;
    let state = AppState::new(db, keks, settings).await?;
    if let Some(definitions) = &args.role_definitions {
        super::role::apply_definitions(state.db(), &args.db.default_tenant, definitions).await?;
    }
    if args.db.dev
        && let Some(secret) = state.seed_dev_client().await?
    {
        tracing::warn!("DEVELOPMENT MODE: seeded client dev-client");
        let line = Zeroizing::new(format!(
            "dev-client created: client_id=dev-client client_secret={} (shown once)",
            secret.expose()
        ));
        print_line(&line, &[("client_id", "dev-client")]);
    }
    // One signal, every server: all drain when it comes.
    let shutdown = Shutdown::on(identity_runtime::shutdown_signal());
    let ops = match args.ops_listen {
        Some(addr) => {
            let listen_error = |source| CommandError::Listen {
                addr,
                what: " (--ops-listen)",
                source,
            };
            let ops_listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(listen_error)?;
            let ops_local = ops_listener.local_addr().map_err(listen_error)?;
            let url = format!("http://{ops_local}");
            print_line(
                &format!("identity-api ops listening on {url}"),
                &[("ops_url", &url)],
            );
            Some(tokio::spawn(server::serve_ops(
                state.clone(),
                ops_listener,
                limits,
                shutdown.wait(),
            )))
        }
        None => None,
    };
    let unix = match &args.listen_unix {
        Some(path) => {
            let listener = server::bind_unix(path).map_err(|source| CommandError::ListenUnix {
                path: path.clone(),
                source,
            })?;
            let socket = path.display().to_string();
            print_line(
                &format!("identity-api listening on unix:{socket}"),
                &[("socket", &socket)],
            );
            Some(tokio::spawn(server::serve_unix(
                state.clone(),
                listener,
                path.clone(),
                limits,
                shutdown.wait(),
            )))
        }
        None => None,
    };
    let purging = (args.purge_interval_secs > 0).then(|| {
        server::spawn_purge(
            state.clone(),
            Duration::from_secs(args.purge_interval_secs),
            args.retention.retention(),
        )
    });
    tracing::info!(listen = %local, database = state.db().kind(), "identity-api serving");
    // One stdout line with the bound address (useful with --listen 127.0.0.1:0).
    let url = format!("http://{local}");
    print_line(
        &format!("identity-api listening on {url}"),
        &[("url", &url)],
    );
    server::serve(state.clone(), listener, limits, shutdown.wait()).await;
    if let Some(purging) = purging {
        purging.abort();
    }
    for task in [ops, unix].into_iter().flatten() {
        task.await
            .map_err(|join| CommandError::Serve(std::io::Error::other(join)))?;
    }
    state.db().close().await;
    Ok(())
}
