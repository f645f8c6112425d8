//! What each command of `identity-api` does, once its arguments are parsed (`config`): `serve`,
//! and the operator's commands on clients, signing keys and the key-encryption key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use identity_runtime::print_line;
use identity_runtime::secret::BadInternalToken;
use identity_runtime::serve::Shutdown;
use zeroize::Zeroizing;

use crate::clients::{self, ClientError};
use crate::clock::now;
use crate::config::{ClientCommand, Command, DbArgs, KekArgs, KekCommand, KeysCommand, ServeArgs};
use crate::kek::{self, Kek, KeyError};
use crate::keys;
use crate::purge;
use crate::secret::Key32;
use crate::server;
use crate::service::{AppState, StartError};
use crate::storage::{Db, StoreError};

/// Why a command failed; every text is safe to print (no secret is in any of them).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot open the database: {0}")]
    Open(StoreError),
    #[error("migrations failed: {0}")]
    Migrate(StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start: {0}")]
    Start(#[from] StartError),
    #[error(transparent)]
    InternalToken(#[from] BadInternalToken),
    #[error("kek rewrap changed nothing: {0}")]
    Rewrap(KeyError),
    #[error("cannot listen on {addr}{what}: {source}")]
    Listen {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot listen on {} (--listen-unix): {source}", path.display())]
    ListenUnix {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Runs a parsed command to its end.
pub async fn run(command: Command) -> Result<(), CommandError> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(db) => {
            open(&db).await?.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Client(cmd) => client(cmd).await,
        Command::Keys(KeysCommand::Rotate { db, kek }) => {
            let keks = kek.resolve(db.dev)?;
            let db = open(&db).await?;
            let kid = keys::rotate(&db, &keks.current, now()).await;
            db.close().await;
            println!(
                "new signing key {}; running servers use it within a second",
                kid?
            );
            Ok(())
        }
        Command::Kek(KekCommand::Generate) => {
            let (kek, text) = Kek::generate();
            println!("{}", text.as_str());
            eprintln!(
                "key-encryption key id {} (stored next to the rows it encrypts)",
                kek.id()
            );
            Ok(())
        }
        Command::Purge {
            db,
            retention,
            json,
        } => {
            let db = open(&db).await?;
            let purged = purge::run(&db, retention.retention(), now(), Duration::ZERO).await;
            db.close().await;
            match purged? {
                None => println!("another instance is purging; nothing done"),
                Some(p) if json => println!(
                    "{}",
                    serde_json::json!({
                        "families": p.families,
                        "refresh_tokens": p.refresh_tokens,
                        "audit_events": p.audit_events,
                    })
                ),
                Some(p) => println!(
                    "purged {} token families, {} refresh tokens, {} audit events",
                    p.families, p.refresh_tokens, p.audit_events
                ),
            }
            Ok(())
        }
        Command::Kek(KekCommand::Rewrap { db, kek }) => {
            let keks = kek.resolve(db.dev)?;
            let db = open(&db).await?;
            let result = kek::rewrap(&db, &keks).await;
            db.close().await;
            let n = result.map_err(CommandError::Rewrap)?;
            println!(
                "rewrapped {n} rows under key-encryption key id {}",
                keks.current.id()
            );
            Ok(())
        }
    }
}

/// Connects and runs the migrations.
async fn open(args: &DbArgs) -> Result<Db, CommandError> {
    let db = Db::connect(args.url()).await.map_err(CommandError::Open)?;
    db.migrate().await.map_err(CommandError::Migrate)?;
    Ok(db)
}

/// `serve`: the API on `--listen` (and `--listen-unix`), the operational routes on
/// `--ops-listen`, until SIGTERM or Ctrl-C, then every server drains.
async fn serve(args: ServeArgs) -> Result<(), CommandError> {
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
    if let Some(previous) = &keks.previous {
        tracing::warn!(
            current = keks.current.id(),
            previous = previous.id(),
            "a previous key-encryption key is configured: run `identity-api kek rewrap`, then remove it"
        );
    }
    let db = open(&args.db).await?;
    let state = AppState::new(db, keks, settings).await?;
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

async fn client(cmd: ClientCommand) -> Result<(), CommandError> {
    match cmd {
        ClientCommand::Create {
            client_id,
            scope,
            audience,
            json,
            db,
            kek,
        } => {
            let audience = audience.join(" ");
            let secret = with_verifier_key(&db, &kek, async |db, key| {
                clients::create(db, key, &client_id, &scope, &audience, now()).await
            })
            .await?;
            print_secret(&client_id, secret.expose(), json);
        }
        ClientCommand::List { json, db } => {
            let db = open(&db).await?;
            let rows = db.clients().await;
            db.close().await;
            for c in rows? {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "client_id": c.client_id, "scope": c.scopes, "audience": c.audiences,
                            "enabled": c.enabled, "created_at": c.created_at, "rotated_at": c.rotated_at,
                        })
                    );
                } else {
                    println!(
                        "{}\tenabled={}\tscope=\"{}\"\taudience=\"{}\"",
                        c.client_id, c.enabled, c.scopes, c.audiences
                    );
                }
            }
        }
        ClientCommand::RotateSecret {
            client_id,
            json,
            db,
            kek,
        } => {
            let secret = with_verifier_key(&db, &kek, async |db, key| {
                clients::rotate_secret(db, key, &client_id, now()).await
            })
            .await?;
            print_secret(&client_id, secret.expose(), json);
        }
        ClientCommand::Disable { client_id, db } => {
            let db = open(&db).await?;
            let disabled = clients::set_enabled(&db, &client_id, false).await;
            db.close().await;
            disabled?;
            println!("client {client_id} disabled");
        }
    }
    Ok(())
}

/// Runs `f` with the database and the client-secret verifier key (which the key-encryption key
/// opens), then closes the database whatever `f` answered.
async fn with_verifier_key<T>(
    db: &DbArgs,
    kek: &KekArgs,
    f: impl AsyncFnOnce(&Db, &Key32) -> Result<T, ClientError>,
) -> Result<T, CommandError> {
    let keks = kek.resolve(db.dev)?;
    let db = open(db).await?;
    let result = match kek::verifier_key(&db, &keks).await {
        Ok(key) => f(&db, &key).await.map_err(CommandError::from),
        Err(e) => Err(e.into()),
    };
    db.close().await;
    result
}

/// The secret is shown once: on stdout, never in a log.
fn print_secret(client_id: &str, secret: &str, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "client_id": client_id, "client_secret": secret })
        );
    } else {
        println!("client_id:     {client_id}");
        println!("client_secret: {secret}");
        println!("(the secret is shown once; store it now)");
    }
}
