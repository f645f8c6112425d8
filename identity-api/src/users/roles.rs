//! Role definitions given at start: `ROLE_DEFINITIONS`, a JSON object of role name to the list
//! of scopes it grants (as the replaced gateway read it), set in the default tenant when the
//! server starts. Roles it does not name are left as they are; `identity-api role set` manages
//! them all.

use serde_json::Value;

use crate::clients::valid_scope_token;
use crate::operator::Operator;
use crate::storage::{AdminEvent, AuditRow, Db, RoleRow, StoreError, TenantId};

use super::valid_role_name;

/// Roles and their scopes, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleDefinitions(pub Vec<(String, String)>);

#[derive(Debug, thiserror::Error)]
pub enum RoleDefinitionsError {
    #[error(
        "ROLE_DEFINITIONS must be a JSON object of role name to a list of scopes, \
         like {{\"admin\": [\"orders.read\", \"orders.write\"]}}"
    )]
    NotAnObject,
    #[error(
        "ROLE_DEFINITIONS: {0:?} is not a role name (1 to 64 characters of A-Z a-z 0-9 . _ : -)"
    )]
    BadRole(String),
    #[error("ROLE_DEFINITIONS: role {role}: {problem}")]
    BadScopes { role: String, problem: String },
}

impl std::str::FromStr for RoleDefinitions {
    type Err = RoleDefinitionsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
            return Err(RoleDefinitionsError::NotAnObject);
        };
        let mut roles = Vec::with_capacity(map.len());
        for (role, scopes) in map {
            if !valid_role_name(&role) {
                return Err(RoleDefinitionsError::BadRole(
                    role.chars().take(80).collect(),
                ));
            }
            let scopes =
                scope_list(&scopes).map_err(|problem| RoleDefinitionsError::BadScopes {
                    role: role.clone(),
                    problem,
                })?;
            roles.push((role, scopes));
        }
        Ok(Self(roles))
    }
}

/// A JSON list of scopes (or one space-separated string) as stored: single spaces, checked.
fn scope_list(value: &Value) -> Result<String, String> {
    let items: Vec<&str> = match value {
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().ok_or("every scope must be a string"))
            .collect::<Result<_, _>>()?,
        Value::String(list) => list.split(' ').filter(|s| !s.is_empty()).collect(),
        _ => return Err("its scopes must be a list of strings".into()),
    };
    normalize_scopes(&items.join(" "))
}

/// A space- or comma-separated scope list as stored (may be empty: a role that grants nothing).
pub fn normalize_scopes(list: &str) -> Result<String, String> {
    let spaced = list.replace(',', " ");
    let scopes = crate::clients::split_list(&spaced);
    if let Some(bad) = scopes.iter().find(|s| !valid_scope_token(s)) {
        return Err(format!(
            "{bad:?} is not a valid scope (RFC 6749 section 3.3)"
        ));
    }
    Ok(scopes.join(" "))
}

/// Sets a role of `tenant` (created or replaced); audited as `role_set` by `by` with the
/// scopes before and after, only when they change. Returns whether it changed.
pub async fn set(
    db: &Db,
    tenant: &TenantId,
    role: &str,
    scopes: &str,
    by: &Operator,
    now: i64,
) -> Result<bool, StoreError> {
    let row = RoleRow {
        tenant_id: tenant.clone(),
        role: role.to_owned(),
        scopes: scopes.to_owned(),
        updated_at: now,
    };
    let mut changed = false;
    db.set_role(&row, |before| {
        changed = true;
        AuditRow::admin(
            now,
            AdminEvent::RoleSet,
            by.as_str(),
            tenant,
            None,
            serde_json::json!({ "role": role, "scopes": scopes, "before": before }),
        )
    })
    .await?;
    Ok(changed)
}

/// Sets every role of `definitions` in `tenant` (at start, from `ROLE_DEFINITIONS`); returns how
/// many changed.
pub async fn apply(
    db: &Db,
    tenant: &TenantId,
    definitions: &RoleDefinitions,
    by: &Operator,
    now: i64,
) -> Result<usize, StoreError> {
    let mut changed = 0;
    for (role, scopes) in &definitions.0 {
        if set(db, tenant, role, scopes, by, now).await? {
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_a_json_object_of_roles_to_scopes() {
        let defs: RoleDefinitions =
            r#"{"admin": ["orders.read", "orders.write", "orders.read"], "viewer": "orders.read", "none": []}"#
                .parse()
                .unwrap();
        assert_eq!(
            defs.0,
            [
                ("admin".to_owned(), "orders.read orders.write".to_owned()),
                ("none".to_owned(), String::new()),
                ("viewer".to_owned(), "orders.read".to_owned()),
            ]
        );
        for (bad, says) in [
            ("[]", "JSON object"),
            ("{", "JSON object"),
            (r#"{"a b": []}"#, "not a role name"),
            (r#"{"a": [1]}"#, "must be a string"),
            (r#"{"a": {}}"#, "list of strings"),
            (r#"{"a": ["x\"y"]}"#, "not a valid scope"),
        ] {
            let err = bad.parse::<RoleDefinitions>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
