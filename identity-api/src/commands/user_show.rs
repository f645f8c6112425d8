//! `user list` and `user show`: users as operators read them, in text or JSON; never a
//! password hash, a TOTP secret or a credential.

use serde_json::{Value, json};

use super::user::{user_of, with_db};
use super::{CommandError, tenant};
use crate::audit::format_time;
use crate::clients::split_list;
use crate::clock::now;
use crate::config::{DbArgs, RotationArgs};
use crate::storage::{Scope, TenantId, UserRow};
use crate::users::{password_expires_at, scopes_of};

pub(super) async fn list(
    db: &DbArgs,
    tenant: Option<&TenantId>,
    json: bool,
    rotation: RotationArgs,
) -> Result<(), CommandError> {
    let rows = with_db(db, async |db| {
        if let Some(t) = tenant {
            tenant::row(db, t).await?;
        }
        Ok(db.users(Scope::from(tenant)).await?)
    })
    .await?;
    let days = rotation.password_rotation_days;
    for u in rows {
        if json {
            println!("{}", user_json(&u, days));
        } else {
            println!("{}", user_line(&u, days));
        }
    }
    Ok(())
}

pub(super) async fn show(
    db: &DbArgs,
    tenant: &TenantId,
    username: &str,
    json: bool,
    rotation: RotationArgs,
) -> Result<(), CommandError> {
    let now = now();
    let (user, scopes, counts) = with_db(db, async |db| {
        let user = user_of(db, tenant, username).await?;
        let scopes = scopes_of(&db.roles(tenant).await?, &user.roles);
        let counts = db.user_credential_counts(&user.user_id, now).await?;
        Ok((user, scopes, counts))
    })
    .await?;
    let days = rotation.password_rotation_days;
    let expires = password_expires_at(&user, days);
    let expired = expires.is_some_and(|at| at <= now);
    if json {
        let mut object = user_json(&user, days);
        object["scopes"] = scopes.into();
        object["password_expired"] = expired.into();
        object["api_keys"] = counts.api_keys.into();
        object["recovery_codes_left"] = counts.recovery_codes.into();
        println!("{object}");
    } else {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let password = match (user.password_changed_at, expires) {
            (None, _) if user.password_hash.is_none() => "none".to_owned(),
            (changed, Some(at)) => format!(
                "set {}, {} {}",
                changed.map_or_else(|| "-".to_owned(), format_time),
                if expired { "EXPIRED since" } else { "expires" },
                format_time(at)
            ),
            (changed, None) => format!(
                "set {}, does not expire{}",
                changed.map_or_else(|| "-".to_owned(), format_time),
                if days.is_none() {
                    " (no --password-rotation-days)"
                } else {
                    ""
                }
            ),
        };
        let confirmed = match (&user.totp_secret_enc, user.totp_confirmed_at) {
            (Some(_), Some(at)) => Some(format!("TOTP, confirmed {}", format_time(at))),
            _ => None,
        };
        let mfa = match (confirmed, user.totp_pending_enc.is_some()) {
            (Some(on), true) => format!("{on}; a new enrolment awaits its confirmation"),
            (Some(on), false) => on,
            (None, true) => "TOTP enrolled, not confirmed (not asked yet)".to_owned(),
            (None, false) => "none".to_owned(),
        };
        for (name, value) in [
            ("user_id", user.user_id.clone()),
            ("username", user.username.clone()),
            ("tenant", user.tenant_id.to_string()),
            ("email", or_none(&user.email)),
            ("display_name", or_none(&user.display_name)),
            ("enabled", user.enabled.to_string()),
            ("roles", or_dash(user.roles.clone())),
            ("scopes", or_dash(scopes.join(" "))),
            ("password", password),
            (
                "last_login",
                user.last_login_at
                    .map_or_else(|| "never".into(), format_time),
            ),
            ("mfa", mfa),
            ("recovery_codes_left", counts.recovery_codes.to_string()),
            ("api_keys", counts.api_keys.to_string()),
            ("created", format_time(user.created_at)),
            ("updated", format_time(user.updated_at)),
        ] {
            println!("{:<20} {value}", format!("{name}:"));
        }
    }
    Ok(())
}

fn or_dash(list: String) -> String {
    if list.is_empty() {
        "-".to_owned()
    } else {
        list
    }
}

/// A user as one JSON object: never its password hash nor its TOTP secret.
fn user_json(u: &UserRow, rotation_days: Option<i64>) -> Value {
    json!({
        "user_id": u.user_id, "username": u.username, "tenant": u.tenant_id.as_str(),
        "email": u.email, "display_name": u.display_name, "enabled": u.enabled,
        "roles": split_list(&u.roles), "password": u.password_hash.is_some(),
        "password_changed_at": u.password_changed_at,
        "password_expires_at": password_expires_at(u, rotation_days),
        "last_login_at": u.last_login_at, "mfa_enrolled": u.totp_secret_enc.is_some(),
        "mfa_confirmed_at": u.totp_confirmed_at, "mfa_pending": u.totp_pending_enc.is_some(),
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    })
}

fn user_line(u: &UserRow, rotation_days: Option<i64>) -> String {
    let password = match (&u.password_hash, password_expires_at(u, rotation_days)) {
        (None, _) => "none".to_owned(),
        (Some(_), Some(at)) => format!("expires {}", format_time(at)),
        (Some(_), None) => "set".to_owned(),
    };
    // A login asks for a code only of a confirmed secret; an enrolment pending beside it is
    // shown too, since it replaces that secret once confirmed.
    let confirmed = u.totp_secret_enc.is_some() && u.totp_confirmed_at.is_some();
    let mfa = match (confirmed, u.totp_pending_enc.is_some()) {
        (true, false) => "on",
        (true, true) => "on+pending",
        (false, true) => "pending",
        (false, false) => "off",
    };
    format!(
        "{}\ttenant={}\tenabled={}\troles=\"{}\"\tpassword={password}\tmfa={mfa}\tlast_login={}\
         \tid={}",
        u.username,
        u.tenant_id,
        u.enabled,
        u.roles,
        u.last_login_at.map_or_else(|| "never".into(), format_time),
        u.user_id
    )
}
