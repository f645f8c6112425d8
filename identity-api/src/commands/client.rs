//! `client ...`: the operator's commands on clients.

use super::{CommandError, open};
use crate::audit::format_time;
use crate::clients::{self, ClientError, NewClient};
use crate::clock::now;
use crate::config::{ClientCommand, DbArgs, KekArgs};
use crate::kek;
use crate::operator::Operator;
use crate::secret::Key32;
use crate::storage::{ClientChange, Db, Scope};

pub(super) async fn run(cmd: ClientCommand) -> Result<(), CommandError> {
    // Who runs the command, for the audit row each change writes.
    let by = Operator::current();
    match cmd {
        ClientCommand::Create {
            client_id,
            tenant,
            scope,
            audience,
            grant_types,
            may_introspect,
            subject_policy,
            json,
            db,
            kek,
        } => {
            let audience = audience.join(" ");
            let tenant = tenant.unwrap_or_else(|| db.default_tenant.clone());
            let new = NewClient {
                tenant: &tenant,
                scopes: &scope,
                audiences: &audience,
                grant_types: Some(&grant_types),
                may_introspect,
                subject_policy: Some(&subject_policy),
            };
            let secret = with_verifier_key(&db, &kek, async |db, key| {
                clients::create(db, key, &client_id, new, &by, now()).await
            })
            .await?;
            print_secret(&client_id, secret.expose(), json, None);
        }
        ClientCommand::List { tenant, json, db } => {
            let db = open(&db).await?;
            let rows = db.clients(Scope::from(tenant.as_ref())).await;
            db.close().await;
            let now = now();
            for c in rows? {
                // Until when the secret replaced by `rotate-secret --overlap` still works.
                let overlap = c
                    .previous_verifier_expires_at
                    .filter(|&until| until > now && c.previous_secret_verifier.is_some());
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "client_id": c.client_id, "tenant": c.tenant_id.as_str(), "scope": c.scopes, "audience": c.audiences,
                            "grant_types": c.grant_types, "may_introspect": c.may_introspect,
                            "subject_policy": c.subject_policy,
                            "enabled": c.enabled, "created_at": c.created_at, "rotated_at": c.rotated_at,
                            "previous_secret_expires_at": overlap,
                        })
                    );
                } else {
                    let overlap = overlap
                        .map(|until| format!("\tprevious_secret_until={}", format_time(until)))
                        .unwrap_or_default();
                    println!(
                        "{}\ttenant={}\tenabled={}\tscope=\"{}\"\taudience=\"{}\"\tgrant_types=\"{}\"\
                         \tmay_introspect={}\tsubject_policy=\"{}\"{overlap}",
                        c.client_id,
                        c.tenant_id,
                        c.enabled,
                        c.scopes,
                        c.audiences,
                        c.grant_types,
                        c.may_introspect,
                        c.subject_policy
                    );
                }
            }
        }
        ClientCommand::RotateSecret {
            client_id,
            tenant,
            overlap,
            json,
            db,
            kek,
        } => {
            let now = now();
            let secret = with_verifier_key(&db, &kek, async |db, key| {
                clients::rotate_secret(db, key, tenant.scope(), &client_id, overlap, &by, now).await
            })
            .await?;
            let previous_until = overlap.map(|o| now.saturating_add(o.secs()));
            print_secret(&client_id, secret.expose(), json, previous_until);
        }
        ClientCommand::Disable {
            client_id,
            tenant,
            db,
        } => {
            let db = open(&db).await?;
            let disabled = clients::set_enabled(&db, tenant.scope(), &client_id, false, &by).await;
            db.close().await;
            disabled?;
            println!("client {client_id} disabled");
        }
        ClientCommand::Enable {
            client_id,
            tenant,
            db,
        } => {
            let db = open(&db).await?;
            let enabled = clients::set_enabled(&db, tenant.scope(), &client_id, true, &by).await;
            db.close().await;
            enabled?;
            println!(
                "client {client_id} enabled (token families revoked while it was disabled stay \
                 revoked)"
            );
        }
        ClientCommand::Update {
            client_id,
            tenant,
            scope,
            audience,
            grant_types,
            may_introspect,
            subject_policy,
            db,
        } => {
            let audience = (!audience.is_empty()).then(|| audience.join(" "));
            let change = ClientChange {
                scopes: scope.as_deref(),
                audiences: audience.as_deref(),
                grant_types: grant_types.as_deref(),
                may_introspect,
                subject_policy: subject_policy.as_deref(),
            };
            let db = open(&db).await?;
            let updated =
                clients::update(&db, tenant.scope(), &client_id, change, &by, now()).await;
            db.close().await;
            let c = updated?;
            println!(
                "client {client_id} updated: scope=\"{}\" audience=\"{}\" grant_types=\"{}\" \
                 may_introspect={} subject_policy=\"{}\"",
                c.scopes, c.audiences, c.grant_types, c.may_introspect, c.subject_policy
            );
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

/// The secret is shown once: on stdout, never in a log. After `rotate-secret --overlap`, with
/// when the previous secret stops working.
fn print_secret(client_id: &str, secret: &str, json: bool, previous_until: Option<i64>) {
    if json {
        let mut object = serde_json::json!({ "client_id": client_id, "client_secret": secret });
        if let Some(until) = previous_until {
            object["previous_secret_expires_at"] = until.into();
        }
        println!("{object}");
    } else {
        println!("client_id:     {client_id}");
        println!("client_secret: {secret}");
        if let Some(until) = previous_until {
            println!(
                "the previous secret works until {} (then only this one)",
                format_time(until)
            );
        }
        println!("(the secret is shown once; store it now)");
    }
}
