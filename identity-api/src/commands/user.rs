//! `user ...`: the operator's commands on users (the replaced project's manage_users). Every
//! change is audited with the operator; no output and no audit row holds a password or a hash.
//! The commands on credentials are in `user_credentials`, the listings in `user_show`.

use serde_json::json;

use super::user_credentials::{self as credentials, UserCommandError, new_password_hash};
use super::{CommandError, open, report, tenant};
use crate::clients::split_list;
use crate::clock::now;
use crate::config::{DbArgs, UserCommand, UserTenantArg};
use crate::operator::Operator;
use crate::storage::{AdminEvent, AuditRow, Db, TenantId, UserChange, UserRow};
use crate::users::{self, UserError, normalize_roles};

pub(super) async fn run(cmd: UserCommand) -> Result<(), CommandError> {
    let by = Operator::current();
    match cmd {
        UserCommand::Create {
            username,
            tenant,
            roles,
            email,
            display_name,
            password_stdin,
            json,
            passwords,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            users::username_key(&username).ok_or(UserError::InvalidUsername)?;
            let roles = normalize_roles(&roles)?;
            // Checked before stdin is read, so that a bad flag fails before a password is typed.
            let policy = password_stdin
                .then(|| passwords.policy())
                .transpose()
                .map_err(UserCommandError::from)?;
            let user = with_db(&db, async |db| {
                tenant::row(db, &tenant).await?;
                let password_hash = match &policy {
                    Some(policy) => Some(new_password_hash(&username, policy).await?),
                    None => None,
                };
                let new = users::NewUser {
                    tenant: &tenant,
                    username: &username,
                    email: email.as_deref(),
                    display_name: display_name.as_deref(),
                    roles: &roles,
                };
                let user = users::create(db, new, password_hash, &by, now()).await?;
                warn_undefined_roles(db, &tenant, &user.roles).await?;
                Ok(user)
            })
            .await?;
            if json {
                println!(
                    "{}",
                    json!({
                        "user_id": user.user_id, "username": user.username,
                        "tenant": user.tenant_id.as_str(), "roles": split_list(&user.roles),
                        "created_at": user.created_at,
                    })
                );
            } else {
                println!("{}", user.user_id);
                let password = if user.password_hash.is_some() {
                    "a password"
                } else {
                    "no password (the password grant refuses it)"
                };
                eprintln!(
                    "user {} created in tenant {tenant} with {password}; the line above is its \
                     id, the `sub` of its tokens",
                    user.username
                );
            }
        }
        UserCommand::List {
            tenant,
            json,
            rotation,
            db,
        } => super::user_show::list(&db, tenant.as_ref(), json, rotation).await?,
        UserCommand::Show {
            username,
            tenant,
            json,
            rotation,
            db,
        } => {
            super::user_show::show(&db, &tenant_of(&tenant, &db), &username, json, rotation).await?
        }
        UserCommand::Disable {
            username,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            let (said, object) = with_db(&db, async |db| {
                set_enabled(db, &tenant, &username, false, &by).await
            })
            .await?;
            report(out, said, object);
        }
        UserCommand::Enable {
            username,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            let (said, object) = with_db(&db, async |db| {
                set_enabled(db, &tenant, &username, true, &by).await
            })
            .await?;
            report(out, said, object);
        }
        UserCommand::SetRoles {
            username,
            roles,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            let roles = normalize_roles(&roles)?;
            let (before, after) = with_db(&db, async |db| {
                let user = user_of(db, &tenant, &username).await?;
                let now = now();
                let change = UserChange {
                    roles: Some(&roles),
                    ..UserChange::default()
                };
                let after = db
                    .update_user(&tenant, &user.user_id, change, now, |before| {
                        AuditRow::user_admin(
                            now,
                            AdminEvent::UserUpdate,
                            by.as_str(),
                            &tenant,
                            &user.user_id,
                            json!({
                                "username": before.username, "roles": roles,
                                "before": { "roles": before.roles },
                            }),
                        )
                    })
                    .await?
                    .ok_or_else(|| not_found(&tenant, &username))?;
                warn_undefined_roles(db, &tenant, &after.roles).await?;
                Ok((user.roles, after.roles))
            })
            .await?;
            report(
                out,
                format!("roles of {username} in tenant {tenant}: \"{after}\" (were \"{before}\")"),
                json!({
                    "username": username, "tenant": tenant.as_str(), "roles": split_list(&after),
                    "before": split_list(&before),
                }),
            );
        }
        UserCommand::RotatePassword {
            username,
            tenant,
            password_stdin: _,
            revoke_sessions,
            passwords,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            let (said, object) = credentials::rotate_password(
                &db,
                &tenant,
                &username,
                &passwords,
                revoke_sessions,
                &by,
            )
            .await?;
            report(out, said, object);
        }
        UserCommand::Delete {
            username,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            let (user, revoked) = with_db(&db, async |db| {
                let user = user_of(db, &tenant, &username).await?;
                let now = now();
                let audit = AuditRow::user_admin(
                    now,
                    AdminEvent::UserDelete,
                    by.as_str(),
                    &tenant,
                    &user.user_id,
                    json!({ "username": user.username }),
                );
                if !db.delete_user(&tenant, &user.user_id, now, &audit).await? {
                    return Err(not_found(&tenant, &username));
                }
                let revoked = db
                    .user_families_revoked_at(&tenant, &user.user_id, now, "user_deleted")
                    .await?;
                Ok((user, revoked))
            })
            .await?;
            report(
                out,
                format!(
                    "user {} ({}) of tenant {tenant} deleted, with its API keys and recovery \
                     codes; {revoked} token families revoked",
                    user.username, user.user_id
                ),
                json!({
                    "user_id": user.user_id, "username": user.username, "tenant": tenant.as_str(),
                    "deleted": true, "families_revoked": revoked,
                }),
            );
        }
        UserCommand::ResetMfa {
            username,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            let (said, object) = credentials::reset_mfa(&db, &tenant, &username, &by).await?;
            report(out, said, object);
        }
        UserCommand::Unlock {
            username,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            let (said, object) = credentials::unlock(&db, &tenant, &username, &by).await?;
            report(out, said, object);
        }
    }
    Ok(())
}

/// `--tenant`, or the default tenant.
pub(super) fn tenant_of(arg: &UserTenantArg, db: &DbArgs) -> TenantId {
    arg.tenant
        .clone()
        .unwrap_or_else(|| db.default_tenant.clone())
}

/// Runs `f` on the database, then closes it whatever `f` answered.
pub(super) async fn with_db<T>(
    args: &DbArgs,
    f: impl AsyncFnOnce(&Db) -> Result<T, CommandError>,
) -> Result<T, CommandError> {
    let db = open(args).await?;
    let result = f(&db).await;
    db.close().await;
    result
}

pub(super) fn not_found(tenant: &TenantId, username: &str) -> CommandError {
    UserError::NotFound {
        tenant: tenant.to_string(),
        username: username.to_owned(),
    }
    .into()
}

/// The user `username` of `tenant`; says which of the tenant, the username's form or the user
/// is missing.
pub(super) async fn user_of(
    db: &Db,
    tenant: &TenantId,
    username: &str,
) -> Result<UserRow, CommandError> {
    users::username_key(username).ok_or(UserError::InvalidUsername)?;
    tenant::row(db, tenant).await?;
    Ok(users::find(db, tenant, username).await?)
}

/// Disables or enables a user; what to print. Disabling revokes its token families (in the
/// storage's transaction); a user already so is left alone, unaudited.
async fn set_enabled(
    db: &Db,
    tenant: &TenantId,
    username: &str,
    enabled: bool,
    by: &Operator,
) -> Result<(String, serde_json::Value), CommandError> {
    let user = user_of(db, tenant, username).await?;
    let state = if enabled { "enabled" } else { "disabled" };
    let object = |changed: bool, revoked: i64| {
        json!({
            "user_id": user.user_id, "username": user.username, "tenant": tenant.as_str(),
            "enabled": enabled, "changed": changed, "families_revoked": revoked,
        })
    };
    if user.enabled == enabled {
        return Ok((
            format!("user {username} of tenant {tenant} is already {state}"),
            object(false, 0),
        ));
    }
    let now = now();
    let event = if enabled {
        AdminEvent::UserEnable
    } else {
        AdminEvent::UserDisable
    };
    let change = UserChange {
        enabled: Some(enabled),
        ..UserChange::default()
    };
    db.update_user(tenant, &user.user_id, change, now, |before| {
        AuditRow::user_admin(
            now,
            event,
            by.as_str(),
            tenant,
            &user.user_id,
            json!({ "username": before.username }),
        )
    })
    .await?
    .ok_or_else(|| not_found(tenant, username))?;
    if enabled {
        return Ok((
            format!(
                "user {username} of tenant {tenant} enabled (token families revoked while it \
                 was disabled stay revoked)"
            ),
            object(true, 0),
        ));
    }
    let revoked = db
        .user_families_revoked_at(tenant, &user.user_id, now, "user_disabled")
        .await?;
    Ok((
        format!("user {username} of tenant {tenant} disabled; {revoked} token families revoked"),
        object(true, revoked),
    ))
}

/// A role the tenant does not define grants nothing: said on stderr, not refused, since the
/// roles may be defined afterwards (`role set`, ROLE_DEFINITIONS at the next start).
async fn warn_undefined_roles(db: &Db, tenant: &TenantId, roles: &str) -> Result<(), CommandError> {
    let defined = db.roles(tenant).await?;
    for role in split_list(roles) {
        if !defined.iter().any(|d| d.role == role) {
            eprintln!(
                "note: tenant {tenant} defines no role {role}: it grants nothing until \
                 `identity-api role set {role} ...`"
            );
        }
    }
    Ok(())
}
