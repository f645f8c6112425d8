#![forbid(unsafe_code)]
//! Thin binary: parse the command line, run the command.

use anyhow::Context as _;
use clap::Parser as _;
use identity_api::config::{Cli, ClientCommand, Command, KeysCommand, LogFormat, ServeArgs};
use identity_api::secret::InternalToken;
use identity_api::{AppState, Db, Settings, clients, keys, now};
use tracing_subscriber::EnvFilter;

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
            let db = open(&db.database_url).await?;
            db.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Client(cmd) => client(cmd).await,
        Command::Keys(KeysCommand::Rotate { db, kek }) => {
            let kek = kek.resolve()?;
            let db = open(&db.database_url).await?;
            let kid = keys::rotate(&db, &kek, now()).await?;
            db.close().await;
            println!("new signing key {kid}; running servers use it within a second");
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

async fn open(url: &str) -> anyhow::Result<Db> {
    let db = Db::connect(url).await.context("cannot open the database")?;
    db.migrate().await.context("migrations failed")?;
    Ok(db)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let kek = args.kek.resolve()?;
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
    if args
        .internal_token
        .as_ref()
        .is_some_and(|t| t.expose().is_empty())
    {
        anyhow::bail!("IDENTITY_INTERNAL_TOKEN is set but empty");
    }
    settings.internal_token = args
        .internal_token
        .as_ref()
        .map(|t| InternalToken::new(t.expose().to_owned()));
    if settings.internal_token.is_none() {
        tracing::warn!(
            "IDENTITY_INTERNAL_TOKEN is not set: /api/v1/* accept requests from anyone who can reach this port"
        );
    }
    let db = open(&args.db.database_url).await?;
    let state = AppState::new(db, kek, settings).await?;
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
    tracing::info!(listen = %local, database = state.db().kind(), "identity-api serving");
    // One stdout line with the bound address (useful with --listen 127.0.0.1:0).
    println!("identity-api listening on http://{local}");
    identity_api::serve(state.clone(), listener, until_stopped(stopped)).await?;
    if let Some(ops) = ops {
        ops.await??;
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
            let key = kek.resolve()?.derive(clients::VERIFIER_LABEL);
            let db = open(&db.database_url).await?;
            let secret =
                clients::create(&db, &key, &client_id, &scope, &audience.join(" "), now()).await?;
            db.close().await;
            print_secret(&client_id, secret.expose(), json);
        }
        ClientCommand::List { json, db } => {
            let db = open(&db.database_url).await?;
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
            let key = kek.resolve()?.derive(clients::VERIFIER_LABEL);
            let db = open(&db.database_url).await?;
            let secret = clients::rotate_secret(&db, &key, &client_id, now()).await?;
            db.close().await;
            print_secret(&client_id, secret.expose(), json);
        }
        ClientCommand::Disable { client_id, db } => {
            let db = open(&db.database_url).await?;
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
