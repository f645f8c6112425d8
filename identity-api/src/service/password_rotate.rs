//! `POST /credentials/password/rotate`: a user replaces its password, proving itself with the
//! current one (and its second factor, if it has one) under the lockout rules. It works past
//! the rotation window: that is how one gets out of it.

use serde::Serialize;
use serde_json::json;

use crate::error::ApiError;
use crate::storage::{AuditRow, RequestEvent};
use crate::users::password::{Password, check_changed};
use crate::users::password_expires_at;

use super::callers::{Authenticated, check_subject};
use super::lockout::LoginSource;
use super::login::{Proof, Purpose};
use super::state::AppState;

/// The answer of a rotation.
#[derive(Debug, Serialize)]
pub struct PasswordRotated {
    pub password_changed_at: i64,
    /// `None` when passwords do not expire.
    pub password_expires_at: Option<i64>,
}

impl AppState {
    /// The new password is checked by the policy before the current one is verified (a refusal
    /// there tells nothing about the user, and costs no hash); `revoke_sessions` revokes the
    /// user's token families in the same transaction as the change.
    pub async fn rotate_password(
        &self,
        client: &Authenticated,
        proof: Proof<'_>,
        new_password: Password,
        revoke_sessions: bool,
        source: Option<LoginSource>,
        session_subject: Option<&str>,
    ) -> Result<PasswordRotated, ApiError> {
        let policy = &self.settings().passwords;
        policy
            .check_new(proof.username, &new_password)
            .and_then(|()| check_changed(&proof.password, &new_password))
            .map_err(|e| ApiError::invalid_request(format!("new_password: {e}")))?;
        let (user, ()) = self
            .prove_user(client, &proof, source, Purpose::PasswordRotate, |user| {
                check_subject(session_subject, &user.user_id)
            })
            .await?;
        let hash = self
            .inner
            .hasher
            .hash(&new_password)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let now = self.settings().clock.now();
        let audit = AuditRow::credential(
            now,
            RequestEvent::PasswordRotate,
            &client.tenant.id,
            Some(&client.row.client_id),
            Some(&user.user_id),
            "success",
            Some(json!({ "revoke_sessions": revoke_sessions })),
        );
        let changed = self
            .inner
            .db
            .set_user_password(
                &client.tenant.id,
                &user.user_id,
                &hash,
                now,
                revoke_sessions,
                &audit,
            )
            .await?;
        if !changed {
            // Deleted meanwhile: as if it had never existed.
            return Err(ApiError::InvalidGrant(super::login::INVALID_CREDENTIALS));
        }
        let after = crate::storage::UserRow {
            password_changed_at: Some(now),
            ..user
        };
        Ok(PasswordRotated {
            password_changed_at: now,
            password_expires_at: password_expires_at(
                &after,
                self.settings().password_rotation_days,
            ),
        })
    }
}
