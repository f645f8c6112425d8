//! `api-key ...`: the operator's commands on users' API keys.

use super::{CommandError, open};
use crate::audit::format_time;
use crate::clock::now;
use crate::config::{ApiKeyCommand, DbArgs, KekArgs};
use crate::kek;
use crate::operator::Operator;
use crate::secret::Key32;
use crate::storage::{ApiKeyRow, Db, TenantId, UserRow};
use crate::users::api_keys::{self, ApiKey, KeyChangeError};
use crate::users::{self, UserError};

/// Why an API-key command refused; names the user or the key id, never a key.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyCommandError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Key(#[from] KeyChangeError),
}

pub(super) async fn run(cmd: ApiKeyCommand) -> Result<(), CommandError> {
    let by = Operator::current();
    match cmd {
        ApiKeyCommand::Create {
            user,
            tenant,
            json,
            db,
            kek,
        } => {
            let tenant = tenant.unwrap_or_else(|| db.default_tenant.clone());
            let (key, owner) = with_credential_key(&db, &kek, async |db, key| {
                let owner = users::find(db, &tenant, &user).await?;
                let created = api_keys::create(db, key, &owner, &by, now())
                    .await
                    .map_err(UserError::from)?;
                Ok((created, owner))
            })
            .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "api_key": key.expose(), "key_id": key.key_id(),
                        "user_id": owner.user_id, "tenant": tenant.as_str(),
                    })
                );
            } else {
                print_key(&key, None);
            }
        }
        ApiKeyCommand::List {
            user,
            tenant,
            json,
            db,
        } => {
            let tenant = tenant.unwrap_or_else(|| db.default_tenant.clone());
            let db = open(&db).await?;
            let listed = list(&db, &tenant, &user).await;
            db.close().await;
            let (owner, keys) = listed?;
            let (owner, username) = (owner.user_id, owner.username);
            let now = now();
            for k in keys {
                let state = state(&k, now);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "key_id": k.key_id, "tenant": tenant.as_str(), "user_id": owner,
                            "username": username, "state": state, "created_at": k.created_at,
                            "expires_at": k.expires_at, "revoked_at": k.revoked_at,
                            "last_used_at": k.last_used_at,
                        })
                    );
                } else {
                    let time = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), format_time);
                    println!(
                        "{}\t{state}\tcreated={}\texpires={}\trevoked={}\tlast_used={}",
                        k.key_id,
                        format_time(k.created_at),
                        time(k.expires_at),
                        time(k.revoked_at),
                        time(k.last_used_at)
                    );
                }
            }
        }
        ApiKeyCommand::Rotate {
            key_id,
            tenant,
            overlap,
            json,
            db,
            kek,
        } => {
            let tenant = tenant.unwrap_or_else(|| db.default_tenant.clone());
            let now = now();
            let overlap = overlap.map(|o| o.secs());
            let key = with_credential_key(&db, &kek, async |db, key| {
                Ok(api_keys::rotate(db, key, &tenant, &key_id, overlap, &by, now).await?)
            })
            .await?;
            let until = overlap.map(|secs| now.saturating_add(secs));
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "api_key": key.expose(), "key_id": key.key_id(),
                        "previous_key_expires_at": until,
                    })
                );
            } else {
                print_key(&key, until);
            }
        }
        ApiKeyCommand::Revoke {
            key_id,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant.unwrap_or_else(|| db.default_tenant.clone());
            let db = open(&db).await?;
            let revoked = api_keys::revoke(&db, &tenant, &key_id, &by, now()).await;
            db.close().await;
            revoked.map_err(ApiKeyCommandError::from)?;
            super::report(
                out,
                format!(
                    "API key {key_id} revoked (running servers refuse it within {} seconds)",
                    crate::service::api_keys::ApiKeys::TTL_SECS
                ),
                serde_json::json!({ "key_id": key_id, "tenant": tenant.as_str(), "revoked": true }),
            );
        }
    }
    Ok(())
}

async fn list(
    db: &Db,
    tenant: &TenantId,
    username: &str,
) -> Result<(UserRow, Vec<ApiKeyRow>), CommandError> {
    let owner = users::find(db, tenant, username)
        .await
        .map_err(ApiKeyCommandError::from)?;
    let keys = db.api_keys_of(tenant, &owner.user_id).await?;
    Ok((owner, keys))
}

/// `active`, `replaced` (works until its `expires_at`), `expired` or `revoked`.
fn state(key: &ApiKeyRow, now: i64) -> &'static str {
    match (key.revoked_at, key.expires_at) {
        (Some(_), _) => "revoked",
        (None, Some(until)) if now >= until => "expired",
        (None, Some(_)) => "replaced",
        (None, None) => "active",
    }
}

/// Runs `f` with the database and the key of the API-key verifiers (which the key-encryption
/// key opens), then closes the database whatever `f` answered.
async fn with_credential_key<T>(
    db: &DbArgs,
    kek: &KekArgs,
    f: impl AsyncFnOnce(&Db, &Key32) -> Result<T, ApiKeyCommandError>,
) -> Result<T, CommandError> {
    let keks = kek.resolve(db.dev)?;
    let db = open(db).await?;
    let result = match kek::wrapped_key(&db, &keks, kek::API_KEY_VERIFIER_KEY_NAME).await {
        Ok(key) => f(&db, &key).await.map_err(CommandError::from),
        Err(e) => Err(e.into()),
    };
    db.close().await;
    result
}

/// The key is shown once: on stdout, never in a log.
fn print_key(key: &ApiKey, previous_until: Option<i64>) {
    println!("key_id:  {}", key.key_id());
    println!("api_key: {}", key.expose());
    if let Some(until) = previous_until {
        println!(
            "the previous key works until {} (then only this one)",
            format_time(until)
        );
    }
    println!("(the key is shown once; store it now)");
}
