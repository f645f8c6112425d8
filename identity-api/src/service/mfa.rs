//! The second factor: TOTP enrolment and its confirmation (`/credentials/mfa/*`), and the code
//! a login of an enrolled user must bring. The secret is sealed with AES-256-GCM under
//! `AppState::mfa_key` (AAD = the user's id, a random 96-bit nonce before the ciphertext);
//! recovery codes are stored as their HMAC under `AppState::credential_key`.

use serde::Serialize;
use serde::ser::SerializeStruct as _;
use serde_json::json;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::secret::Key32;
use crate::storage::{AuditRow, RequestEvent, UserRow};
use crate::users::totp::{self, RECOVERY_CODE_COUNT, RecoveryCodes, TotpSecret};
use crate::users::username_key;

use super::callers::Authenticated;
use super::lockout::LoginSource;
use super::login::{Attempt, Proof, Purpose};
use super::state::AppState;

/// The answer to a wrong second factor.
pub const INVALID_CODE: &str = "invalid one-time code or recovery code";

/// What an enrolment shows, once: the `otpauth://` URI (it holds the secret) and the recovery
/// codes.
pub struct MfaEnrolled {
    uri: Zeroizing<String>,
    codes: RecoveryCodes,
}

impl std::fmt::Debug for MfaEnrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaEnrolled(<redacted>)")
    }
}

impl Serialize for MfaEnrolled {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let codes: Vec<&str> = self.codes.codes().iter().map(|c| c.as_str()).collect();
        let mut s = serializer.serialize_struct("MfaEnrolled", 2)?;
        s.serialize_field("otpauth_uri", self.uri.as_str())?;
        s.serialize_field("recovery_codes", &codes)?;
        s.end()
    }
}

/// The answer of a confirmation.
#[derive(Debug, Serialize)]
pub struct MfaConfirmed {
    pub mfa: &'static str,
    pub confirmed_at: i64,
}

impl AppState {
    /// `POST /credentials/mfa/enroll`: the password (and, when the user has a confirmed
    /// enrolment already, its current code) proves the caller; a new secret, unconfirmed, and
    /// new recovery codes replace the old ones. Until the confirmation, logins ask for no code.
    pub async fn mfa_enroll(
        &self,
        client: &Authenticated,
        proof: Proof<'_>,
        source: Option<LoginSource>,
    ) -> Result<MfaEnrolled, ApiError> {
        let user = self
            .prove_user(client, &proof, source, Purpose::MfaEnroll)
            .await?;
        let secret = TotpSecret::generate();
        let sealed = seal(self.mfa_key(), &user.user_id, secret.expose())?;
        let codes = RecoveryCodes::generate(RECOVERY_CODE_COUNT);
        let verifiers = codes.verifiers(self.credential_key(), &user.user_id);
        let issuer = label(&client.tenant.display_name, client.tenant.id.as_str());
        let uri = secret
            .otpauth_uri(&issuer, &user.username)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let now = self.settings().clock.now();
        let audit = AuditRow::credential(
            now,
            RequestEvent::MfaEnroll,
            &client.tenant.id,
            Some(&client.row.client_id),
            Some(&user.user_id),
            "success",
            Some(json!({ "replaced": user.totp_secret_enc.is_some() })),
        );
        let stored = self
            .inner
            .db
            .enroll_totp(
                &client.tenant.id,
                &user.user_id,
                &sealed,
                &verifiers,
                now,
                &audit,
            )
            .await?;
        if !stored {
            // Deleted meanwhile: as if it had never existed.
            return Err(ApiError::InvalidGrant(super::login::INVALID_CREDENTIALS));
        }
        Ok(MfaEnrolled { uri, codes })
    }

    /// `POST /credentials/mfa/confirm`: the password and a first code of the enrolled secret
    /// turn the second factor on. A wrong code counts as a failed login.
    pub async fn mfa_confirm(
        &self,
        client: &Authenticated,
        proof: Proof<'_>,
        source: Option<LoginSource>,
    ) -> Result<MfaConfirmed, ApiError> {
        let code = proof
            .otp
            .ok_or_else(|| ApiError::invalid_request("otp is required"))?;
        let source_or_client = source
            .clone()
            .unwrap_or_else(|| LoginSource::Client(client.row.client_id.clone()));
        let user = self
            .prove_user(client, &proof, source, Purpose::MfaConfirm)
            .await?;
        if user.totp_confirmed_at.is_some() {
            return Err(ApiError::invalid_request(
                "the second factor is confirmed already",
            ));
        }
        let Some(sealed) = user.totp_secret_enc.as_deref() else {
            return Err(ApiError::invalid_request(
                "no enrolment to confirm: POST /credentials/mfa/enroll first",
            ));
        };
        let secret = open(self.mfa_key(), &user)?;
        let now = self.settings().clock.now();
        let audit = AuditRow::credential(
            now,
            RequestEvent::MfaConfirm,
            &client.tenant.id,
            Some(&client.row.client_id),
            Some(&user.user_id),
            "success",
            None,
        );
        let confirmed = match totp::verify(&secret, code, now, user.totp_last_step) {
            Some(step) => {
                self.inner
                    .db
                    .confirm_totp(&user.user_id, sealed, step, now, &audit)
                    .await?
            }
            None => false,
        };
        if !confirmed {
            let key = username_key(proof.username);
            let attempt = Attempt {
                client,
                username: proof.username,
                key: key.as_deref(),
                source: &source_or_client,
                purpose: Purpose::MfaConfirm,
                now,
            };
            return Err(self
                .failed(&attempt, Some(&user), "invalid_otp", INVALID_CODE)
                .await);
        }
        Ok(MfaConfirmed {
            mfa: "confirmed",
            confirmed_at: now,
        })
    }

    /// The second factor of a user with a confirmed enrolment: a TOTP code of a step not used
    /// yet, or an unused recovery code; each is spent by a compare-and-set, so two concurrent
    /// requests with one code cannot both pass. None: `mfa_required`. A wrong one counts as a
    /// failed login.
    pub(super) async fn second_factor(
        &self,
        attempt: &Attempt<'_>,
        user: &UserRow,
        proof: &Proof<'_>,
    ) -> Result<(), ApiError> {
        let db = &self.inner.db;
        match (proof.otp, proof.recovery_code) {
            (None, None) => {
                self.not_a_failure(attempt);
                self.audit_attempt(attempt, Some(user), "mfa_required")
                    .await;
                Err(ApiError::MfaRequired)
            }
            (Some(_), Some(_)) => {
                self.not_a_failure(attempt);
                Err(ApiError::invalid_request(
                    "send otp or recovery_code, not both",
                ))
            }
            (Some(code), None) => {
                let secret = open(self.mfa_key(), user)?;
                let spent = match totp::verify(&secret, code, attempt.now, user.totp_last_step) {
                    Some(step) => db.use_totp_step(&user.user_id, step).await?,
                    None => false,
                };
                if !spent {
                    return Err(self
                        .failed(attempt, Some(user), "invalid_otp", INVALID_CODE)
                        .await);
                }
                Ok(())
            }
            (None, Some(code)) => {
                let spent = match RecoveryCodes::normalize(code) {
                    Some(code) => {
                        let verifier =
                            RecoveryCodes::verifier(self.credential_key(), &user.user_id, &code);
                        db.use_recovery_code(&user.user_id, &verifier, attempt.now)
                            .await?
                    }
                    None => false,
                };
                if !spent {
                    return Err(self
                        .failed(attempt, Some(user), "invalid_recovery_code", INVALID_CODE)
                        .await);
                }
                let left = db.unused_recovery_codes(&user.user_id).await?;
                let row = AuditRow {
                    detail: Some(json!({ "recovery_codes_left": left }).to_string()),
                    ..attempt.row(Some(user), RequestEvent::MfaRecoveryCodeUse, "success")
                };
                self.audit_credential(row).await;
                Ok(())
            }
        }
    }
}

/// The issuer an authenticator app shows: the tenant's display name (`:` is the label's
/// separator, so it becomes a space), else its id.
fn label(display_name: &str, id: &str) -> String {
    let name = display_name.replace(':', " ");
    if name.trim().is_empty() {
        id.to_owned()
    } else {
        name.trim().to_owned()
    }
}

/// `plaintext` sealed under `key`, bound to `user_id` ([`Key32::seal`]).
fn seal(key: &Key32, user_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, ApiError> {
    key.seal(user_id.as_bytes(), plaintext)
        .map_err(|e| ApiError::Internal(format!("sealing a TOTP secret failed: {e}")))
}

/// The user's TOTP secret, opened. A secret that does not open (another key, another user's
/// row) is a server error: the login cannot be judged.
fn open(key: &Key32, user: &UserRow) -> Result<TotpSecret, ApiError> {
    let unreadable = || ApiError::Internal("a TOTP secret does not open".into());
    let sealed = user.totp_secret_enc.as_deref().ok_or_else(unreadable)?;
    let plain = key
        .open(user.user_id.as_bytes(), sealed)
        .ok_or_else(unreadable)?;
    TotpSecret::from_bytes(&plain).ok_or_else(unreadable)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_user() {
        let key = Key32::random();
        let secret = TotpSecret::generate();
        let sealed = seal(&key, "u1", secret.expose()).unwrap();
        let mut user = UserRow {
            user_id: "u1".into(),
            tenant_id: crate::storage::TenantId::primary(),
            username: "alice".into(),
            username_key: "alice".into(),
            email: None,
            display_name: None,
            enabled: true,
            roles: String::new(),
            password_hash: None,
            password_changed_at: None,
            last_login_at: None,
            totp_secret_enc: Some(sealed),
            totp_confirmed_at: None,
            totp_last_step: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(open(&key, &user).unwrap().expose(), secret.expose());
        user.user_id = "u2".into();
        assert!(open(&key, &user).is_err());
        assert_eq!(label("Acme: prod", "acme"), "Acme  prod");
        assert_eq!(label(" ", "acme"), "acme");
    }
}
