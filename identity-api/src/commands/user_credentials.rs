//! `user rotate-password|reset-mfa|unlock`: the operator's commands on a user's credentials.
//! A password comes from stdin only; no output and no audit row holds it or its hash.

use std::io::{BufRead as _, IsTerminal as _};

use serde_json::json;
use zeroize::Zeroizing;

use super::CommandError;
use super::user::{not_found, user_of, with_db};
use crate::audit::format_time;
use crate::clock::now;
use crate::config::{DbArgs, PasswordArgs};
use crate::operator::Operator;
use crate::storage::{AdminEvent, AuditRow, TenantId};
use crate::users::password::{
    BadPolicy, HashError, Hasher, MAX_PASSWORD_BYTES, Password, PasswordPolicy, PasswordRejected,
};

/// Why a user command refused, besides [`crate::users::UserError`]; never holds the password.
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

/// What a command prints: the sentence, and the object of --json.
type Said = (String, serde_json::Value);

/// `user rotate-password`: sets the password read from stdin; revokes the user's token families
/// with `revoke_sessions`.
pub(super) async fn rotate_password(
    db: &DbArgs,
    tenant: &TenantId,
    username: &str,
    passwords: &PasswordArgs,
    revoke_sessions: bool,
    by: &Operator,
) -> Result<Said, CommandError> {
    let policy = passwords.policy().map_err(UserCommandError::from)?;
    let revoked = with_db(db, async |db| {
        let user = user_of(db, tenant, username).await?;
        let hash = new_password_hash(&user.username, &policy).await?;
        let now = now();
        let audit = AuditRow::user_admin(
            now,
            AdminEvent::UserSetPassword,
            by.as_str(),
            tenant,
            &user.user_id,
            json!({ "username": user.username, "revoke_sessions": revoke_sessions }),
        );
        if !db
            .set_user_password(tenant, &user.user_id, &hash, now, revoke_sessions, &audit)
            .await?
        {
            return Err(not_found(tenant, username));
        }
        if !revoke_sessions {
            return Ok(None);
        }
        Ok(Some(
            db.user_families_revoked_at(tenant, &user.user_id, now, "password_changed")
                .await?,
        ))
    })
    .await?;
    let said = match revoked {
        Some(n) => {
            format!("password of {username} in tenant {tenant} set; {n} token families revoked")
        }
        None => format!(
            "password of {username} in tenant {tenant} set; its token families kept \
             (--revoke-sessions revokes them)"
        ),
    };
    Ok((
        said,
        json!({
            "username": username, "tenant": tenant.as_str(), "password": "set",
            "families_revoked": revoked.unwrap_or(0),
        }),
    ))
}

/// `user reset-mfa`: removes the TOTP secret, a pending enrolment and the recovery codes.
pub(super) async fn reset_mfa(
    db: &DbArgs,
    tenant: &TenantId,
    username: &str,
    by: &Operator,
) -> Result<Said, CommandError> {
    let reset = with_db(db, async |db| {
        let user = user_of(db, tenant, username).await?;
        let now = now();
        db.reset_user_mfa(tenant, &user.user_id, now, |r| {
            AuditRow::user_admin(
                now,
                AdminEvent::UserResetMfa,
                by.as_str(),
                tenant,
                &user.user_id,
                json!({
                    "username": user.username, "totp": r.had_totp,
                    "totp_pending": r.had_pending, "recovery_codes": r.recovery_codes,
                }),
            )
        })
        .await?
        .ok_or_else(|| not_found(tenant, username))
    })
    .await?;
    Ok((
        format!(
            "MFA of {username} in tenant {tenant} reset: {}{}, {} recovery codes deleted",
            if reset.had_totp {
                "TOTP secret removed"
            } else {
                "no TOTP secret was stored"
            },
            if reset.had_pending {
                ", pending enrolment removed"
            } else {
                ""
            },
            reset.recovery_codes
        ),
        json!({
            "username": username, "tenant": tenant.as_str(), "totp_removed": reset.had_totp,
            "pending_removed": reset.had_pending,
            "recovery_codes_deleted": reset.recovery_codes,
        }),
    ))
}

/// `user unlock`: clears the username's failed logins and its lock.
pub(super) async fn unlock(
    db: &DbArgs,
    tenant: &TenantId,
    username: &str,
    by: &Operator,
) -> Result<Said, CommandError> {
    let cleared = with_db(db, async |db| {
        let user = user_of(db, tenant, username).await?;
        let now = now();
        Ok(db
            .unlock_username(tenant, &user.username_key, |before| {
                AuditRow::user_admin(
                    now,
                    AdminEvent::UserUnlock,
                    by.as_str(),
                    tenant,
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
        None => {
            format!("{username} in tenant {tenant} had no failed logins counted; nothing to clear")
        }
    };
    Ok((
        said,
        json!({
            "username": username, "tenant": tenant.as_str(),
            "failures_cleared": cleared.as_ref().map_or(0, |c| c.failures),
            "was_locked_until": cleared.as_ref().and_then(|c| c.locked_until),
        }),
    ))
}

/// The password of --password-stdin for `username`, checked against `policy`, as the hash to
/// store.
pub(super) async fn new_password_hash(
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
