//! `role ...`: the operator's commands on roles, and `ROLE_DEFINITIONS` applied when `serve`
//! starts.

use serde_json::json;

use super::user::{tenant_of, with_db};
use super::{CommandError, tenant};
use crate::audit::format_time;
use crate::clients::split_list;
use crate::clock::now;
use crate::config::RoleCommand;
use crate::operator::Operator;
use crate::storage::{AdminEvent, AuditRow, Db, Scope, StoreError, TenantId};
use crate::users::roles::{self, RoleDefinitions, normalize_scopes};
use crate::users::valid_role_name;

/// Why a role command refused; names the role, never more than 80 characters of it.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("{0:?} is not a role name (1 to 64 characters of A-Z a-z 0-9 . _ : -)")]
    BadName(String),
    #[error("invalid scope list: {0}")]
    BadScopes(String),
    #[error("tenant {tenant} has no role {role} (identity-api role list --tenant {tenant})")]
    NotFound { tenant: TenantId, role: String },
    #[error("ROLE_DEFINITIONS could not be set in tenant {tenant}: {source}")]
    Apply {
        tenant: TenantId,
        source: StoreError,
    },
}

pub(super) async fn run(cmd: RoleCommand) -> Result<(), CommandError> {
    let by = Operator::current();
    match cmd {
        RoleCommand::Set {
            role,
            scopes,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            check_name(&role)?;
            let scopes = normalize_scopes(&scopes).map_err(RoleError::BadScopes)?;
            let changed = with_db(&db, async |db| {
                tenant::row(db, &tenant).await?;
                Ok(roles::set(db, &tenant, &role, &scopes, &by, now()).await?)
            })
            .await?;
            let unchanged = if changed { "" } else { " (unchanged)" };
            super::report(
                out,
                format!("role {role} of tenant {tenant} grants \"{scopes}\"{unchanged}"),
                serde_json::json!({
                    "role": role, "tenant": tenant.as_str(), "scopes": crate::clients::split_list(&scopes),
                    "changed": changed,
                }),
            );
        }
        RoleCommand::List { tenant, json, db } => {
            let rows = with_db(&db, async |db| {
                let tenants = match &tenant {
                    Some(t) => vec![tenant::row(db, t).await?.tenant_id],
                    None => db
                        .tenants()
                        .await?
                        .into_iter()
                        .map(|t| t.tenant_id)
                        .collect(),
                };
                let mut rows = Vec::new();
                for t in &tenants {
                    rows.extend(db.roles(t).await?);
                }
                Ok(rows)
            })
            .await?;
            for r in rows {
                if json {
                    println!(
                        "{}",
                        json!({
                            "tenant": r.tenant_id.as_str(), "role": r.role,
                            "scopes": split_list(&r.scopes), "updated_at": r.updated_at,
                        })
                    );
                } else {
                    println!(
                        "{}\ttenant={}\tscopes=\"{}\"\tupdated={}",
                        r.role,
                        r.tenant_id,
                        r.scopes,
                        format_time(r.updated_at)
                    );
                }
            }
        }
        RoleCommand::Delete {
            role,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            check_name(&role)?;
            let holders = with_db(&db, async |db| {
                tenant::row(db, &tenant).await?;
                let not_found = || RoleError::NotFound {
                    tenant: tenant.clone(),
                    role: role.clone(),
                };
                let before = db
                    .roles(&tenant)
                    .await?
                    .into_iter()
                    .find(|r| r.role == role)
                    .ok_or_else(not_found)?;
                let audit = AuditRow::admin(
                    now(),
                    AdminEvent::RoleDelete,
                    by.as_str(),
                    &tenant,
                    None,
                    json!({ "role": role, "before": before.scopes }),
                );
                if !db.delete_role(&tenant, &role, &audit).await? {
                    return Err(not_found().into());
                }
                let users = db.users(Scope::from(Some(&tenant))).await?;
                Ok(users
                    .iter()
                    .filter(|u| split_list(&u.roles).contains(&role.as_str()))
                    .count())
            })
            .await?;
            super::report(
                out,
                format!(
                    "role {role} of tenant {tenant} deleted; {holders} users hold it, which \
                     grants them nothing now"
                ),
                json!({ "role": role, "tenant": tenant.as_str(), "deleted": true, "holders": holders }),
            );
        }
    }
    Ok(())
}

/// Sets the roles of `definitions` in `tenant` when `serve` starts, audited as the operator
/// who started it; logs how many changed.
pub(super) async fn apply_definitions(
    db: &Db,
    tenant: &TenantId,
    definitions: &RoleDefinitions,
) -> Result<(), CommandError> {
    let changed = roles::apply(db, tenant, definitions, &Operator::current(), now())
        .await
        .map_err(|source| RoleError::Apply {
            tenant: tenant.clone(),
            source,
        })?;
    tracing::info!(
        tenant = %tenant,
        roles = definitions.0.len(),
        changed,
        "ROLE_DEFINITIONS set"
    );
    Ok(())
}

fn check_name(role: &str) -> Result<(), RoleError> {
    if valid_role_name(role) {
        Ok(())
    } else {
        Err(RoleError::BadName(role.chars().take(80).collect()))
    }
}
