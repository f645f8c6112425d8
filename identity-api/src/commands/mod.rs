//! What each command of `identity-api` does, once its arguments are parsed (`config`): `serve`
//! (`serve`), the operator's commands on clients (`client`) and on the audit trail (`audit`),
//! on tenants (`tenant`), on users (`user`) and roles (`role`), and here those on signing keys
//! and the key-encryption key.

mod api_key;
mod audit;
mod client;
mod role;
mod serve;
mod tenant;
mod user;
mod user_credentials;
mod user_show;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::audit::AuditError;
use crate::clients::ClientError;
use crate::clock::now;
use crate::config::{BadSettings, Command, DbArgs, KekCommand, KeysCommand};
use crate::kek::{self, Kek, KeyError};
use crate::keys;
use crate::operator::Operator;
use crate::purge;
use crate::service::StartError;
use crate::service::state::default_tenant_row;
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
    Tenant(#[from] tenant::TenantError),
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error(transparent)]
    UserCommand(#[from] user_credentials::UserCommandError),
    #[error(transparent)]
    Role(#[from] role::RoleError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    ApiKey(#[from] api_key::ApiKeyCommandError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start: {0}")]
    Start(#[from] StartError),
    #[error(transparent)]
    Settings(#[from] BadSettings),
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
        Command::Serve(args) => serve::serve(*args).await,
        Command::Migrate(db) => {
            open(&db).await?.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Client(cmd) => client::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Tenant(cmd) => tenant::run(cmd).await,
        Command::User(cmd) => user::run(cmd).await,
        Command::Role(cmd) => role::run(cmd).await,
        Command::ApiKey(cmd) => api_key::run(cmd).await,
        Command::Keys(KeysCommand::Rotate { tenant, db, kek }) => {
            let keks = kek.resolve(db.dev)?;
            let slug = tenant.unwrap_or_else(|| db.default_tenant.clone());
            let db = open(&db).await?;
            let rotated = async {
                let row = tenant::row(&db, &slug).await?;
                Ok::<_, CommandError>(
                    keys::rotate(&db, &keks.current, &row, now(), &Operator::current()).await?,
                )
            }
            .await;
            db.close().await;
            println!(
                "new signing key {} of tenant {slug}; running servers use it within a second",
                rotated?
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
                        "login_failures": p.login_failures,
                    })
                ),
                Some(p) => println!(
                    "purged {} token families, {} refresh tokens, {} audit events, {} failed-login \
                     counts",
                    p.families, p.refresh_tokens, p.audit_events, p.login_failures
                ),
            }
            Ok(())
        }
        Command::Kek(KekCommand::Rewrap { db, kek }) => {
            let keks = kek.resolve(db.dev)?;
            let db = open(&db).await?;
            let result = kek::rewrap(&db, &keks, &Operator::current()).await;
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

/// Connects, runs the migrations and makes sure the default tenant exists (adopting the rows
/// made before tenants), as `serve` does: an operator's first command may come before it.
async fn open(args: &DbArgs) -> Result<Db, CommandError> {
    let db = Db::connect(args.url()).await.map_err(CommandError::Open)?;
    db.migrate().await.map_err(CommandError::Migrate)?;
    db.ensure_default_tenant(&default_tenant_row(&args.default_tenant, now()))
        .await?;
    Ok(db)
}

/// What a command that changed one user, role or API key prints: `object` as one JSON line
/// with --json, else the sentence.
fn report(out: crate::config::JsonArg, said: String, object: serde_json::Value) {
    if out.json {
        println!("{object}");
    } else {
        println!("{said}");
    }
}
