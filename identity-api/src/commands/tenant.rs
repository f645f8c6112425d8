//! `tenant ...`: the operator's commands on tenants.

use super::{CommandError, open};
use crate::audit::format_time;
use crate::clock::now;
use crate::config::TenantCommand;
use crate::keys;
use crate::operator::Operator;
use crate::signing::{Algorithm, KeyReference};
use crate::storage::{AdminEvent, AuditRow, Db, StoreError, TenantId, TenantRow};

/// Why a tenant command refused; names the tenant or the reference, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0} already exists")]
    Exists(TenantId),
    #[error("no tenant {0} (identity-api tenant list shows them)")]
    NotFound(TenantId),
    #[error("--issuer {0:?} is not an absolute http(s) URL without query or fragment")]
    BadIssuer(String),
    #[error("--display-name must be 1 to 200 characters without control characters")]
    BadDisplayName,
    #[error("--signing-key-ref {reference}: {message}")]
    BadReference { reference: String, message: String },
}

pub(super) async fn run(cmd: TenantCommand) -> Result<(), CommandError> {
    let by = Operator::current();
    match cmd {
        TenantCommand::Create {
            slug,
            display_name,
            issuer,
            algorithm,
            signing_key_ref,
            access_token_ttl_secs,
            refresh_token_ttl_secs,
            family_ttl_secs,
            json,
            db,
        } => {
            let display_name = display_name.unwrap_or_else(|| slug.to_string());
            if display_name.is_empty()
                || display_name.chars().count() > 200
                || display_name.chars().any(char::is_control)
            {
                return Err(TenantError::BadDisplayName.into());
            }
            if let Some(issuer) = &issuer
                && !valid_issuer(issuer)
            {
                return Err(TenantError::BadIssuer(issuer.clone()).into());
            }
            let db = open(&db).await?;
            if let Some(reference) = &signing_key_ref
                && let Err(e) = check_reference(&db, &slug, reference, algorithm).await
            {
                db.close().await;
                return Err(e);
            }
            let now = now();
            let row = TenantRow {
                tenant_id: slug.clone(),
                display_name,
                issuer,
                enabled: true,
                algorithm: algorithm.as_str().to_owned(),
                signing_key_ref,
                access_ttl: access_token_ttl_secs,
                refresh_ttl: refresh_token_ttl_secs,
                family_ttl: family_ttl_secs,
                created_at: now,
                updated_at: now,
            };
            let audit = AuditRow::admin(
                now,
                AdminEvent::TenantCreate,
                by.as_str(),
                &slug,
                None,
                serde_json::json!({
                    "issuer": row.issuer, "algorithm": row.algorithm,
                    "signing_key_ref": row.signing_key_ref,
                }),
            );
            let inserted = db.insert_tenant(&row, &audit).await;
            db.close().await;
            match inserted {
                Ok(()) => {}
                Err(StoreError::Conflict) => return Err(TenantError::Exists(slug).into()),
                Err(e) => return Err(e.into()),
            }
            if json {
                println!("{}", tenant_json(&row));
            } else {
                println!(
                    "tenant {slug} created ({}); running servers serve it within a second",
                    row.algorithm
                );
            }
        }
        TenantCommand::List { json, db } => {
            let db = open(&db).await?;
            let rows = db.tenants().await;
            db.close().await;
            for t in rows? {
                if json {
                    println!("{}", tenant_json(&t));
                } else {
                    println!(
                        "{}\tenabled={}\talgorithm={}\tissuer={}\tkey={}\tcreated={}\tname=\"{}\"",
                        t.tenant_id,
                        t.enabled,
                        t.algorithm,
                        t.issuer.as_deref().unwrap_or("(derived)"),
                        t.signing_key_ref.as_deref().unwrap_or("(generated)"),
                        format_time(t.created_at),
                        t.display_name,
                    );
                }
            }
        }
        TenantCommand::Disable { slug, db } => {
            set_enabled(&db, &slug, false, &by).await?;
            println!("tenant {slug} disabled: its clients and tokens stop working at once");
        }
        TenantCommand::Enable { slug, db } => {
            set_enabled(&db, &slug, true, &by).await?;
            println!("tenant {slug} enabled");
        }
    }
    Ok(())
}

async fn set_enabled(
    args: &crate::config::DbArgs,
    slug: &TenantId,
    enabled: bool,
    by: &Operator,
) -> Result<(), CommandError> {
    let now = now();
    let event = if enabled {
        AdminEvent::TenantEnable
    } else {
        AdminEvent::TenantDisable
    };
    let audit = AuditRow::admin(now, event, by.as_str(), slug, None, serde_json::json!({}));
    let db = open(args).await?;
    let changed = db.set_tenant_enabled(slug, enabled, now, &audit).await;
    db.close().await;
    if changed? {
        Ok(())
    } else {
        Err(TenantError::NotFound(slug.clone()).into())
    }
}

/// The stored row of tenant `slug`.
pub(super) async fn row(db: &Db, slug: &TenantId) -> Result<TenantRow, CommandError> {
    db.tenants()
        .await?
        .into_iter()
        .find(|t| t.tenant_id == *slug)
        .ok_or_else(|| TenantError::NotFound(slug.clone()).into())
}

/// An issuer is an https (or, for development, http) URL with no query or fragment (RFC 8414
/// section 2).
fn valid_issuer(issuer: &str) -> bool {
    let rest = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && r.chars()
                .all(|c| c.is_ascii_graphic() && c != '?' && c != '#')
    })
}

/// Reads the key a reference names, now, so that a bad one fails here and not at the first
/// token; a key of another algorithm, or one another tenant signs with, is refused.
async fn check_reference(
    db: &Db,
    tenant: &TenantId,
    reference: &str,
    algorithm: Algorithm,
) -> Result<(), CommandError> {
    // Cut as the reference's own parse error cuts it: a key pasted here must not be printed.
    let bad = |message: String| TenantError::BadReference {
        reference: reference.chars().take(48).collect(),
        message,
    };
    let parsed: KeyReference = reference.parse().map_err(|e| bad(format!("{e}")))?;
    let key = parsed.load().await.map_err(|e| bad(e.to_string()))?;
    if let Some(problem) = keys::unusable_external_key(db, &key, tenant, algorithm).await? {
        return Err(bad(problem).into());
    }
    Ok(())
}

fn tenant_json(t: &TenantRow) -> serde_json::Value {
    serde_json::json!({
        "tenant": t.tenant_id.as_str(), "display_name": t.display_name, "issuer": t.issuer,
        "enabled": t.enabled, "algorithm": t.algorithm, "signing_key_ref": t.signing_key_ref,
        "access_token_ttl_secs": t.access_ttl, "refresh_token_ttl_secs": t.refresh_ttl,
        "family_ttl_secs": t.family_ttl, "created_at": t.created_at, "updated_at": t.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::valid_issuer;

    #[test]
    fn issuers_are_absolute_urls_without_query_or_fragment() {
        assert!(valid_issuer("https://id.example.com"));
        assert!(valid_issuer("https://id.example.com/t/acme"));
        assert!(valid_issuer("http://127.0.0.1:8140"));
        for bad in [
            "",
            "id.example.com",
            "https://",
            "https:///path",
            "https://id.example.com/?x=1",
            "https://id.example.com/#f",
            "https://id example.com",
            "ftp://id.example.com",
        ] {
            assert!(!valid_issuer(bad), "{bad}");
        }
    }
}
