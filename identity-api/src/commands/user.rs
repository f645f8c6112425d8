//! `user ...`: the operator's commands on users (the replaced project's manage_users). Every
//! change is audited with the operator; no output and no audit row holds a password or a hash.

use std::io::{BufRead as _, IsTerminal as _};

use serde_json::json;
use zeroize::Zeroizing;

use super::{CommandError, open, tenant};
use crate::audit::format_time;
use crate::clients::split_list;
use crate::clock::now;
use crate::config::{DbArgs, UserCommand, UserTenantArg};

use super::report;
use crate::operator::Operator;
use crate::storage::{AdminEvent, AuditRow, Db, TenantId, UserChange, UserRow};
use crate::users::password::{
    BadPolicy, HashError, Hasher, MAX_PASSWORD_BYTES, Password, PasswordPolicy, PasswordRejected,
};
use crate::users::{self, UserError, normalize_roles};

/// Why a user command refused, besides [`UserError`]; never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum UserCommandError {
    #[error("--password-stdin: stdin held no password (an empty line or nothing)")]
    EmptyPassword,
    #[error("--password-stdin: cannot read stdin: {0}")]
    Stdin(std::io::Error),
    #[error("the password is refused: {0}")]
    Rejected(#[from] PasswordRejected),
    #[error("cannot hash the password: {0}")]
    Hash(#[from] HashError),
    #[error(transparent)]
    Policy(#[from] BadPolicy),
}

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
            let policy = passwords.policy().map_err(UserCommandError::from)?;
            let revoked = with_db(&db, async |db| {
                let user = user_of(db, &tenant, &username).await?;
                let hash = new_password_hash(&user.username, &policy).await?;
                let now = now();
                let audit = AuditRow::user_admin(
                    now,
                    AdminEvent::UserSetPassword,
                    by.as_str(),
                    &tenant,
                    &user.user_id,
                    json!({ "username": user.username, "revoke_sessions": revoke_sessions }),
                );
                if !db
                    .set_user_password(&tenant, &user.user_id, &hash, now, revoke_sessions, &audit)
                    .await?
                {
                    return Err(not_found(&tenant, &username));
                }
                if !revoke_sessions {
                    return Ok(None);
                }
                Ok(Some(
                    db.user_families_revoked_at(&tenant, &user.user_id, now, "password_changed")
                        .await?,
                ))
            })
            .await?;
            let said = match revoked {
                Some(n) => {
                    format!(
                        "password of {username} in tenant {tenant} set; {n} token families revoked"
                    )
                }
                None => format!(
                    "password of {username} in tenant {tenant} set; its token families kept \
                     (--revoke-sessions revokes them)"
                ),
            };
            report(
                out,
                said,
                json!({
                    "username": username, "tenant": tenant.as_str(), "password": "set",
                    "families_revoked": revoked.unwrap_or(0),
                }),
            );
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
            let reset = with_db(&db, async |db| {
                let user = user_of(db, &tenant, &username).await?;
                let now = now();
                db.reset_user_mfa(&tenant, &user.user_id, now, |r| {
                    AuditRow::user_admin(
                        now,
                        AdminEvent::UserResetMfa,
                        by.as_str(),
                        &tenant,
                        &user.user_id,
                        json!({
                            "username": user.username, "totp": r.had_totp,
                            "recovery_codes": r.recovery_codes,
                        }),
                    )
                })
                .await?
                .ok_or_else(|| not_found(&tenant, &username))
            })
            .await?;
            report(
                out,
                format!(
                    "MFA of {username} in tenant {tenant} reset: {}, {} recovery codes deleted",
                    if reset.had_totp {
                        "TOTP secret removed"
                    } else {
                        "no TOTP secret was stored"
                    },
                    reset.recovery_codes
                ),
                json!({
                    "username": username, "tenant": tenant.as_str(), "totp_removed": reset.had_totp,
                    "recovery_codes_deleted": reset.recovery_codes,
                }),
            );
        }
        UserCommand::Unlock {
            username,
            tenant,
            out,
            db,
        } => {
            let tenant = tenant_of(&tenant, &db);
            let cleared = with_db(&db, async |db| {
                let user = user_of(db, &tenant, &username).await?;
                let now = now();
                Ok(db
                    .unlock_username(&tenant, &user.username_key, |before| {
                        AuditRow::user_admin(
                            now,
                            AdminEvent::UserUnlock,
                            by.as_str(),
                            &tenant,
                            &user.user_id,
                            json!({
                                "username": user.username,
                                "failures": before.map(|b| b.failures),
                                "locked_until": before.and_then(|b| b.locked_until),
                            }),
                        )
                    })
                    .await?)
            })
            .await?;
            let said = match &cleared {
                Some(c) => format!(
                    "{username} in tenant {tenant} unlocked: {} failed logins cleared{}",
                    c.failures,
                    c.locked_until
                        .filter(|&until| until > now())
                        .map(|until| format!(" (it was locked until {})", format_time(until)))
                        .unwrap_or_default()
                ),
                None => format!(
                    "{username} in tenant {tenant} had no failed logins counted; nothing to clear"
                ),
            };
            report(
                out,
                said,
                json!({
                    "username": username, "tenant": tenant.as_str(),
                    "failures_cleared": cleared.as_ref().map_or(0, |c| c.failures),
                    "was_locked_until": cleared.as_ref().and_then(|c| c.locked_until),
                }),
            );
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

fn not_found(tenant: &TenantId, username: &str) -> CommandError {
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

/// The password of --password-stdin for `username`, checked against `policy`, as the hash to
/// store.
async fn new_password_hash(
    username: &str,
    policy: &PasswordPolicy,
) -> Result<String, CommandError> {
    let password = Password::new(read_password_line(std::io::stdin().lock())?)
        .map_err(UserCommandError::from)?;
    policy
        .check_new(username, &password)
        .map_err(UserCommandError::from)?;
    let hasher = Hasher::new(policy).map_err(UserCommandError::from)?;
    Ok(hasher
        .hash(&password)
        .await
        .map_err(UserCommandError::from)?)
}

/// One line of `input`: the password given with --password-stdin, without its line ending.
/// Read into a buffer sized up front (so that no reallocation leaves a copy behind) and bounded
/// one byte past the longest password, which the password's own check then refuses.
fn read_password_line(input: impl std::io::BufRead) -> Result<Zeroizing<String>, CommandError> {
    const LIMIT: usize = MAX_PASSWORD_BYTES + 2;
    let mut line = Zeroizing::new(String::with_capacity(LIMIT + 1));
    if std::io::stdin().is_terminal() {
        eprint!("password (one line; shown as typed): ");
    }
    input
        .take(LIMIT as u64)
        .read_line(&mut line)
        .map_err(UserCommandError::Stdin)?;
    let trimmed = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if trimmed.is_empty() {
        return Err(UserCommandError::EmptyPassword.into());
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_password_is_one_line_without_its_ending() {
        let read = |input: &str| read_password_line(input.as_bytes()).map(|p| p.to_string());
        assert_eq!(read("hunter2 hunter2\n").unwrap(), "hunter2 hunter2");
        assert_eq!(read("pass\r\nsecond line\n").unwrap(), "pass");
        assert_eq!(read("no newline").unwrap(), "no newline");
        for empty in ["", "\n", "\r\n"] {
            assert!(matches!(
                read(empty),
                Err(CommandError::UserCommand(UserCommandError::EmptyPassword))
            ));
        }
    }
}
