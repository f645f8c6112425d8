//! A user proves itself with its password: the password grant (RFC 6749 section 4.3) at
//! /oauth/token and /api/v1/token/password, and the proof the /credentials routes ask for
//! ([`AppState::prove_user`]), under the limits of [`super::lockout`].
//!
//! No such user, a disabled one, one without a password and a wrong password take the same
//! path: one Argon2id verification (against a dummy hash when there is nothing to verify), one
//! failure counted for the username and the source, one audit row, and the same answer.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use crate::error::ApiError;
use crate::storage::{AuditRow, RequestEvent, TenantId, UserRow};
use crate::users::password::{Password, Verdict};
use crate::users::{password_expires_at, scopes_of, username_key};

use super::answers::TokenResponse;
use super::callers::{Authenticated, ClientSource, check_subject};
use super::granted::{self, Grantee};
use super::lockout::{LoginSource, Sources, Turns};
use super::oauth::{ClientCredentials, GrantRequest};
use super::state::AppState;

/// `grant_type=password`, and the client grant type that allows it (at /oauth/token, on the
/// sealed route and on the /credentials routes, which all check a password).
pub use crate::clients::PASSWORD as PASSWORD_GRANT;

/// The one answer to a wrong username or password, whichever it was.
pub const INVALID_CREDENTIALS: &str = "invalid username or password";
/// The answer to a password past the rotation window: RFC 6749's code, this description.
pub const PASSWORD_EXPIRED: &str = "password_expired: the password is older than the rotation \
     window; set a new one with POST /credentials/password/rotate";

/// What the logins share: the per-source counts, and how many verifications ran against a
/// stored hash and against the dummy (what the tests of user enumeration read).
#[derive(Debug, Default)]
pub struct LoginState {
    pub(super) sources: Sources,
    pub(super) turns: Turns,
    verified_stored: AtomicU64,
    verified_dummy: AtomicU64,
}

impl LoginState {
    /// Password verifications so far: (against a stored hash, against the dummy hash).
    pub fn verifications(&self) -> (u64, u64) {
        (
            self.verified_stored.load(Ordering::Relaxed),
            self.verified_dummy.load(Ordering::Relaxed),
        )
    }
}

/// What proves a user: its username and password, and a second factor when it has one.
pub struct Proof<'a> {
    pub username: &'a str,
    pub password: Password,
    /// The current TOTP code.
    pub otp: Option<&'a str>,
    pub recovery_code: Option<&'a str>,
}

impl std::fmt::Debug for Proof<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proof")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl<'a> Proof<'a> {
    /// From a request's fields: `username` and `password` required (`password_field` names the
    /// latter in the error), a too-long password refused before any hash.
    pub fn new(
        username: Option<&'a str>,
        password: Option<zeroize::Zeroizing<String>>,
        password_field: &str,
        otp: Option<&'a str>,
        recovery_code: Option<&'a str>,
    ) -> Result<Self, ApiError> {
        let username = username
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ApiError::invalid_request("username is required"))?;
        let password = password
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ApiError::invalid_request(format!("{password_field} is required")))?;
        let password = Password::new(password)
            .map_err(|e| ApiError::invalid_request(format!("{password_field}: {e}")))?;
        Ok(Self {
            username,
            password,
            otp: otp.filter(|c| !c.is_empty()),
            recovery_code: recovery_code.filter(|c| !c.is_empty()),
        })
    }
}

/// Why a proof is asked for: a login refuses an expired password; a rotation is how one gets
/// out of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Login,
    MfaEnroll,
    MfaConfirm,
    PasswordRotate,
}

impl Purpose {
    fn event(self) -> RequestEvent {
        match self {
            Self::Login => RequestEvent::Login,
            Self::MfaEnroll => RequestEvent::MfaEnroll,
            Self::MfaConfirm => RequestEvent::MfaConfirm,
            Self::PasswordRotate => RequestEvent::PasswordRotate,
        }
    }
}

/// A password grant's request, however it came.
#[derive(Debug)]
pub struct PasswordGrant<'a> {
    pub proof: Proof<'a>,
    pub scope: Option<&'a str>,
    pub audience: Option<&'a str>,
    /// With a refresh token (the sealed route always; /oauth/token with the client's
    /// refresh_token grant).
    pub with_refresh: bool,
    /// How the request names the audience, for the refusal's words.
    pub audience_named: &'static str,
}

/// The client may check passwords (its grant types include `password`), else 400
/// `unauthorized_client` as for the other grants.
pub fn require_password_grant(client: &Authenticated) -> Result<(), ApiError> {
    if crate::clients::has_grant(&client.row.grant_types, PASSWORD_GRANT) {
        Ok(())
    } else {
        Err(ApiError::GrantNotAllowed(
            "the client may not use the password grant".into(),
        ))
    }
}

impl AppState {
    /// The login state (hasher, counts).
    pub fn logins(&self) -> &LoginState {
        &self.inner.login
    }

    /// `POST /oauth/token` with `grant_type=password`: the client reads afresh (a password
    /// costs a hash anyway), then [`Self::password_grant`]; a refresh token when the client
    /// may use the refresh_token grant.
    pub(super) async fn password_grant_standard(
        &self,
        credentials: &ClientCredentials,
        request: &GrantRequest<'_>,
        named: Option<&TenantId>,
    ) -> Result<TokenResponse, ApiError> {
        let client = self
            .authenticate_standard(credentials, ClientSource::Database, named)
            .await?;
        require_password_grant(&client)?;
        let proof = Proof::new(
            request.username,
            request
                .password
                .map(|p| zeroize::Zeroizing::new(p.to_owned())),
            "password",
            request.otp,
            request.recovery_code,
        )?;
        let grant = PasswordGrant {
            proof,
            scope: request.scope,
            audience: request.audience()?,
            with_refresh: crate::clients::has_grant(
                &client.row.grant_types,
                crate::clients::REFRESH_TOKEN,
            ),
            audience_named: "resource (or audience)",
        };
        self.password_grant(&client, grant, request.source.clone(), None)
            .await
            .map_err(|e| credentials.refusal(e))
    }

    /// A password grant for a client allowed it: the request's scope and
    /// audience are judged against the client first (before any hash), then the user proves
    /// itself; its token carries its roles, and the scopes its roles grant that the client may
    /// give, narrowed by the request.
    pub async fn password_grant(
        &self,
        client: &Authenticated,
        grant: PasswordGrant<'_>,
        source: Option<LoginSource>,
        session_subject: Option<&str>,
    ) -> Result<TokenResponse, ApiError> {
        require_password_grant(client)?;
        let row = &*client.row;
        if let Some(requested) = grant.scope {
            granted::scope(&row.scopes, Some(requested), Grantee::Client)?;
        }
        let audience = granted::audience(&row.audiences, grant.audience, grant.audience_named)?;
        let db = &self.inner.db;
        let roles = db.roles(&client.tenant.id).await?;
        let client_scopes = crate::clients::split_list(&row.scopes);
        // Judged before the second factor, so that a refusal does not cost the user a code.
        let vet = |user: &UserRow| {
            check_subject(session_subject, &user.user_id)?;
            let allowed: Vec<String> = scopes_of(&roles, &user.roles)
                .into_iter()
                .filter(|s| client_scopes.contains(&s.as_str()))
                .collect();
            granted::scope(&allowed.join(" "), grant.scope, Grantee::User)
        };
        let (user, scope) = self
            .prove_user(client, &grant.proof, source, Purpose::Login, vet)
            .await?;
        let now = self.settings().clock.now();
        db.record_login(&user.user_id, now).await?;
        self.audit_credential(AuditRow::credential(
            now,
            RequestEvent::Login,
            &client.tenant.id,
            Some(&row.client_id),
            Some(&user.user_id),
            "success",
            Some(json!({ "scope": scope })),
        ))
        .await;
        self.open_family_with_roles(
            client,
            &user.user_id,
            scope,
            audience,
            grant.with_refresh,
            Some(user.roles.clone()),
        )
        .await
    }

    /// The user `proof` names, if the proof holds: not locked out (the username, the source),
    /// the password right, not expired (unless rotating it), accepted by `vet` (what the caller
    /// asks of the user, judged before a code is spent), and the second factor given when the
    /// user has one (for a confirmation, a code of the pending secret, which it confirms). A
    /// failure is counted and audited; a success clears the username's failures.
    pub(super) async fn prove_user<T>(
        &self,
        client: &Authenticated,
        proof: &Proof<'_>,
        source: Option<LoginSource>,
        purpose: Purpose,
        vet: impl FnOnce(&UserRow) -> Result<T, ApiError>,
    ) -> Result<(UserRow, T), ApiError> {
        let inner = &self.inner;
        let settings = &inner.settings;
        let limits = &settings.logins;
        let now = settings.clock.now();
        let tenant = &client.tenant.id;
        let source = source.unwrap_or_else(|| LoginSource::Client(client.row.client_id.clone()));
        let key = username_key(proof.username);
        let attempt = Attempt {
            client,
            username: proof.username,
            key: key.as_deref(),
            source: &source,
            purpose,
            now,
        };
        let sources = &inner.login.sources;
        sources
            .begin(limits, &source, tenant, key.as_deref(), now)
            .map_err(|wait| ApiError::LoginLocked { retry_after: wait })?;
        let _turn = match &key {
            Some(key) => Some(inner.login.turns.take(tenant, key).await),
            None => None,
        };
        if let Some(key) = &key
            && let Some(wait) = self.locked(tenant, key, now).await?
        {
            // Not a failure: attempts during a lock neither extend it nor count against the
            // source afterwards.
            sources.release(limits, &source, tenant, Some(key.as_str()));
            return Err(ApiError::LoginLocked { retry_after: wait });
        }
        let user = match &key {
            Some(key) => inner.db.user_by_username(tenant, key).await?,
            None => None,
        };
        let stored = user
            .as_ref()
            .filter(|u| u.enabled)
            .and_then(|u| u.password_hash.clone());
        let counter = match stored {
            Some(_) => &inner.login.verified_stored,
            None => &inner.login.verified_dummy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let verdict = inner
            .hasher
            .verify(stored.as_deref(), &proof.password)
            .await;
        let (user, rehash) = match (user, verdict) {
            (Some(user), Verdict::Match { rehash }) if stored.is_some() => (user, rehash),
            (user, _) => {
                let outcome = match &user {
                    None => "unknown_user",
                    Some(u) if !u.enabled => "user_disabled",
                    Some(u) if u.password_hash.is_none() => "no_password",
                    Some(_) => "wrong_password",
                };
                return Err(self
                    .failed(&attempt, user.as_ref(), outcome, INVALID_CREDENTIALS)
                    .await);
            }
        };
        if rehash {
            self.rehash(&user, &proof.password).await;
        }
        if purpose != Purpose::PasswordRotate
            && password_expires_at(&user, settings.password_rotation_days)
                .is_some_and(|at| at <= now)
        {
            self.not_a_failure(&attempt);
            self.audit_attempt(&attempt, Some(&user), "password_expired")
                .await;
            return Err(ApiError::InvalidGrant(PASSWORD_EXPIRED));
        }
        let vetted = match vet(&user) {
            Ok(vetted) => vetted,
            Err(refused) => {
                self.not_a_failure(&attempt);
                return Err(refused);
            }
        };
        let mut user = user;
        match purpose {
            // A confirmation's second factor is a first code of the pending secret, judged in
            // the username's turn as any code is; the row is returned as it left it.
            Purpose::MfaConfirm => {
                user.totp_confirmed_at = Some(self.confirm_pending(&attempt, &user, proof).await?);
            }
            _ if user.totp_confirmed_at.is_some() => {
                self.second_factor(&attempt, &user, proof).await?;
            }
            _ => {}
        }
        self.succeeded(&attempt).await?;
        Ok((user, vetted))
    }

    /// Seconds until the username `key` of `tenant` is unlocked, if it is locked at `now`.
    pub(super) async fn locked(
        &self,
        tenant: &TenantId,
        key: &str,
        now: i64,
    ) -> Result<Option<i64>, ApiError> {
        let row = self.inner.db.login_failures(tenant, key).await?;
        Ok(row
            .and_then(|r| r.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now))
    }

    /// A proof that held: the username's failed logins and the source's are forgotten.
    pub(super) async fn succeeded(&self, attempt: &Attempt<'_>) -> Result<(), ApiError> {
        if let Some(key) = attempt.key {
            let tenant = tenant_of(attempt.client);
            self.inner.db.clear_login_failures(tenant, key).await?;
            self.inner.login.sources.succeeded(
                &self.inner.settings.logins,
                attempt.source,
                tenant,
                key,
            );
        }
        Ok(())
    }

    /// Stores the hash of the same password under the current parameters. A failure only
    /// delays the upgrade to the next login.
    async fn rehash(&self, user: &UserRow, password: &Password) {
        let (Some(old), Ok(new)) = (
            user.password_hash.as_deref(),
            self.inner.hasher.hash(password).await,
        ) else {
            return;
        };
        match self
            .inner
            .db
            .rehash_user_password(&user.user_id, old, &new)
            .await
        {
            Ok(_) => tracing::info!(user_id = %user.user_id, "password hash upgraded"),
            Err(e) => tracing::warn!(error = %e, "password hash upgrade failed"),
        }
    }

    /// Counts a failed attempt for the username and the source, audits it (and the lockout it
    /// causes, in the same transaction), and gives the error to answer.
    pub(super) async fn failed(
        &self,
        attempt: &Attempt<'_>,
        user: Option<&UserRow>,
        outcome: &str,
        answer: &'static str,
    ) -> ApiError {
        let inner = &self.inner;
        let limits = &inner.settings.logins;
        let tenant = &attempt.client.tenant.id;
        if let Some(key) = attempt.key {
            let lockout = |until: i64| AuditRow {
                detail: Some(
                    json!({
                        "username": attempt.username.chars().take(128).collect::<String>(),
                        "locked_until": until,
                        "source": attempt.source.to_string(),
                    })
                    .to_string(),
                ),
                ..attempt.row(user, RequestEvent::LoginLockout, "locked")
            };
            match inner
                .db
                .record_login_failure(tenant, key, attempt.now, limits.storage(), lockout)
                .await
            {
                Ok(count) => {
                    if let Some(until) = count.locked_now {
                        tracing::warn!(tenant = %tenant, until, "a username is locked");
                    }
                }
                Err(e) => return e.into(),
            }
        }
        self.audit_attempt(attempt, user, outcome).await;
        ApiError::InvalidGrant(answer)
    }

    /// Gives back the source's count of an attempt whose password was right but that goes no
    /// further (an expired password, a second factor not sent).
    pub(super) fn not_a_failure(&self, attempt: &Attempt<'_>) {
        let tenant = &attempt.client.tenant.id;
        self.inner.login.sources.release(
            &self.inner.settings.logins,
            attempt.source,
            tenant,
            attempt.key,
        );
    }

    /// An attempt's audit row: the user when one matched, else the username in `detail`.
    pub(super) async fn audit_attempt(
        &self,
        attempt: &Attempt<'_>,
        user: Option<&UserRow>,
        outcome: &str,
    ) {
        self.audit_credential(attempt.row(user, attempt.purpose.event(), outcome))
            .await;
    }

    pub(super) async fn audit_credential(&self, row: AuditRow) {
        if let Err(e) = self.inner.db.audit(&row).await {
            tracing::warn!(error = %e, "audit write failed");
        }
    }
}

/// One attempt to prove a user, for its failure's count and audit row.
#[derive(Debug)]
pub(super) struct Attempt<'a> {
    pub client: &'a Authenticated,
    pub username: &'a str,
    /// The username's key, if it is a username a user may have.
    pub key: Option<&'a str>,
    pub source: &'a LoginSource,
    pub purpose: Purpose,
    pub now: i64,
}

impl Attempt<'_> {
    pub(super) fn row(
        &self,
        user: Option<&UserRow>,
        event: RequestEvent,
        outcome: &str,
    ) -> AuditRow {
        let detail = match user {
            Some(_) => json!({ "source": self.source.to_string() }),
            // A username no user has may be anything typed there: kept short.
            None => json!({
                "username": self.username.chars().take(128).collect::<String>(),
                "source": self.source.to_string(),
            }),
        };
        AuditRow::credential(
            self.now,
            event,
            tenant_of(self.client),
            Some(&self.client.row.client_id),
            user.map(|u| u.user_id.as_str()),
            outcome,
            Some(detail),
        )
    }
}

fn tenant_of(client: &Authenticated) -> &TenantId {
    &client.tenant.id
}
