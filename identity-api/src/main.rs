#![forbid(unsafe_code)]
//! Thin binary: parse the command line, run the command.

use anyhow::Context as _;
use clap::Parser as _;
use identity_api::config::{
    Cli, ClientCommand, Command, DbArgs, KekCommand, KeysCommand, LogFormat, ServeArgs,
};
use identity_api::{AppState, Db, Settings, clients, keys, now};
use tracing_subscriber::EnvFilter;

// glibc's malloc took 14 % of the API's CPU (free-list consolidation across the runtime's and
// SQLite's threads); with mimalloc an issue costs 3-8 % less CPU, an introspection 5-20 % less
// (docs/benchmarks.md section 5d). The sidecar keeps glibc's: no gain measured there, and
// 8 MiB more RSS idle.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("identity-api: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(db) => {
            let db = open(&db).await?;
            db.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Client(cmd) => client(cmd).await,
        Command::Keys(KeysCommand::Rotate { db, kek }) => {
            let keks = kek.resolve()?;
            let db = open(&db).await?;
            let kid = keys::rotate(&db, &keks.current, now()).await?;
            db.close().await;
            println!("new signing key {kid}; running servers use it within a second");
            Ok(())
        }
        Command::Kek(KekCommand::Generate) => {
            let (kek, text) = keys::Kek::generate();
            println!("{}", text.as_str());
            eprintln!(
                "key-encryption key id {} (stored next to the rows it encrypts)",
                kek.id()
            );
            Ok(())
        }
        Command::Kek(KekCommand::Rewrap { db, kek }) => {
            let keks = kek.resolve()?;
            let db = open(&db).await?;
            let result = keys::rewrap(&db, &keks).await;
            db.close().await;
            let n = result.context("kek rewrap changed nothing")?;
            println!(
                "rewrapped {n} rows under key-encryption key id {}",
                keks.current.id()
            );
            Ok(())
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal; files and log collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn open(args: &DbArgs) -> anyhow::Result<Db> {
    let url = args.url()?;
    let db = Db::connect(&url)
        .await
        .context("cannot open the database")?;
    db.migrate().await.context("migrations failed")?;
    Ok(db)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let keks = args.kek.resolve()?;
    let internal_token = args.internal_token()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let mut settings = Settings::new(
        args.issuer
            .clone()
            .unwrap_or_else(|| format!("http://{local}")),
    );
    settings.access_ttl = args.access_token_ttl_secs;
    settings.refresh_ttl = args.refresh_token_ttl_secs;
    settings.family_ttl = args.family_ttl_secs;
    settings.max_body_bytes = args.max_body_bytes;
    settings.internal_token = internal_token;
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
    let state = AppState::new(db, keks, settings)
        .await
        .context("cannot start")?;
    if args.kek.dev
        && let Some(secret) = state.seed_dev_client().await?
    {
        tracing::warn!("DEVELOPMENT MODE: seeded client dev-client");
        println!(
            "dev-client created: client_id=dev-client client_secret={} (shown once)",
            secret.expose()
        );
    }
    // One signal, two servers: both drain when it comes.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        identity_api::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let ops = match args.ops_listen {
        Some(addr) => {
            let ops_listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--ops-listen)"))?;
            let ops_local = ops_listener.local_addr()?;
            println!("identity-api ops listening on http://{ops_local}");
            Some(tokio::spawn(identity_api::serve_ops(
                state.clone(),
                ops_listener,
                until_stopped(stopped.clone()),
            )))
        }
        None => None,
    };
    let unix = match &args.listen_unix {
        Some(path) => {
            let listener = identity_api::bind_unix(path)
                .with_context(|| format!("cannot listen on {} (--listen-unix)", path.display()))?;
            println!("identity-api listening on unix:{}", path.display());
            Some(tokio::spawn(identity_api::serve_unix(
                state.clone(),
                listener,
                path.clone(),
                until_stopped(stopped.clone()),
            )))
        }
        None => None,
    };
    tracing::info!(listen = %local, database = state.db().kind(), "identity-api serving");
    // One stdout line with the bound address (useful with --listen 127.0.0.1:0).
    println!("identity-api listening on http://{local}");
    identity_api::serve(state.clone(), listener, until_stopped(stopped)).await?;
    for server in [ops, unix].into_iter().flatten() {
        server.await??;
    }
    state.db().close().await;
    Ok(())
}

async fn client(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Create {
            client_id,
            scope,
            audience,
            json,
            db,
            kek,
        } => {
            let keks = kek.resolve()?;
            let db = open(&db).await?;
            let key = keys::bootstrap(&db, &keks).await?;
            let secret =
                clients::create(&db, &key, &client_id, &scope, &audience.join(" "), now()).await?;
            db.close().await;
            print_secret(&client_id, secret.expose(), json);
        }
        ClientCommand::List { json, db } => {
            let db = open(&db).await?;
            for c in db.clients().await? {
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
            db.close().await;
        }
        ClientCommand::RotateSecret {
            client_id,
            json,
            db,
            kek,
        } => {
            let keks = kek.resolve()?;
            let db = open(&db).await?;
            let key = keys::bootstrap(&db, &keks).await?;
            let secret = clients::rotate_secret(&db, &key, &client_id, now()).await?;
            db.close().await;
            print_secret(&client_id, secret.expose(), json);
        }
        ClientCommand::Disable { client_id, db } => {
            let db = open(&db).await?;
            clients::set_enabled(&db, &client_id, false).await?;
            db.close().await;
            println!("client {client_id} disabled");
        }
    }
    Ok(())
}

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
