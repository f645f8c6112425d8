//! The second factor: TOTP enrolment and its confirmation (`/credentials/mfa/*`), and the code
//! a login of an enrolled user must bring. The secret is sealed with AES-256-GCM under
//! `AppState::mfa_key` (AAD = the user's id, a random 96-bit nonce before the ciphertext);
//! recovery codes are stored as their HMAC under `AppState::credential_key`. An enrolment is
//! pending until confirmed: the confirmed secret and its recovery codes keep working until
//! then, so that an enrolment left unconfirmed never turns the second factor off.

use serde::Serialize;
use serde::ser::SerializeStruct as _;
use serde_json::json;
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::secret::Key32;
use crate::storage::{AuditRow, RequestEvent, UserRow};
use crate::users::totp::{self, RECOVERY_CODE_COUNT, RecoveryCodes, TotpSecret};

use super::callers::{Authenticated, check_subject};
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
    /// enrolment already, its current code) proves the caller; a new secret and new recovery
    /// codes are stored pending, replacing an earlier pending enrolment. Logins go on as before
    /// (with the confirmed secret, or without a code) until the confirmation.
    pub async fn mfa_enroll(
        &self,
        client: &Authenticated,
        proof: Proof<'_>,
        source: Option<LoginSource>,
        session_subject: Option<&str>,
    ) -> Result<MfaEnrolled, ApiError> {
        let (user, ()) = self
            .prove_user(client, &proof, source, Purpose::MfaEnroll, |user| {
                check_subject(session_subject, &user.user_id)
            })
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
            Some(json!({
                "mfa_confirmed": user.totp_confirmed_at.is_some(),
                "replaced_pending": user.totp_pending_enc.is_some(),
            })),
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

    /// `POST /credentials/mfa/confirm`: the password and a first code of the pending secret
    /// make it the user's second factor, replacing the confirmed one and its recovery codes.
    /// The code of the pending secret is the second factor here (whoever enrols a confirmed
    /// user showed its current code already). A wrong code counts as a failed login.
    pub async fn mfa_confirm(
        &self,
        client: &Authenticated,
        proof: Proof<'_>,
        source: Option<LoginSource>,
        session_subject: Option<&str>,
    ) -> Result<MfaConfirmed, ApiError> {
        if proof.otp.is_none() {
            return Err(ApiError::invalid_request("otp is required"));
        }
        let (user, ()) = self
            .prove_user(client, &proof, source, Purpose::MfaConfirm, |user| {
                check_subject(session_subject, &user.user_id)
            })
            .await?;
        Ok(MfaConfirmed {
            mfa: "confirmed",
            confirmed_at: user
                .totp_confirmed_at
                .unwrap_or_else(|| self.settings().clock.now()),
        })
    }

    /// The second factor of a confirmation: a first code of the pending secret, which makes it
    /// the user's (`Db::confirm_totp`, a compare-and-set); the confirmation's time. A wrong code
    /// counts as a failed login; nothing pending gives the attempt back.
    pub(super) async fn confirm_pending(
        &self,
        attempt: &Attempt<'_>,
        user: &UserRow,
        proof: &Proof<'_>,
    ) -> Result<i64, ApiError> {
        let Some(sealed) = user.totp_pending_enc.as_deref() else {
            self.not_a_failure(attempt);
            return Err(ApiError::invalid_request(
                if user.totp_confirmed_at.is_some() {
                    "the second factor is confirmed already"
                } else {
                    "no enrolment to confirm: POST /credentials/mfa/enroll first"
                },
            ));
        };
        let Some(code) = proof.otp else {
            self.not_a_failure(attempt);
            return Err(ApiError::invalid_request("otp is required"));
        };
        let secret = open(self.mfa_key(), &user.user_id, Some(sealed))?;
        let now = attempt.now;
        let client = attempt.client;
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
            return Err(self
                .failed(attempt, Some(user), "invalid_otp", INVALID_CODE)
                .await);
        }
        Ok(now)
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
                let secret = open(
                    self.mfa_key(),
                    &user.user_id,
                    user.totp_secret_enc.as_deref(),
                )?;
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

/// A TOTP secret of `user_id` (confirmed or pending), opened. A secret missing or that does
/// not open (another key, another user's row) is a server error: the code cannot be judged.
fn open(key: &Key32, user_id: &str, sealed: Option<&[u8]>) -> Result<TotpSecret, ApiError> {
    let unreadable = || ApiError::Internal("a TOTP secret does not open".into());
    let sealed = sealed.ok_or_else(unreadable)?;
    let plain = key
        .open(user_id.as_bytes(), sealed)
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
        let opened = open(&key, "u1", Some(&sealed)).unwrap();
        assert_eq!(opened.expose(), secret.expose());
        assert!(open(&key, "u2", Some(&sealed)).is_err());
        assert!(open(&key, "u1", None).is_err());
        assert_eq!(label("Acme: prod", "acme"), "Acme  prod");
        assert_eq!(label(" ", "acme"), "acme");
    }
}
