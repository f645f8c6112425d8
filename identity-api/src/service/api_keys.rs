//! `POST /credentials/api-key/validate` and `POST /credentials/api-key/rotate` (docs/users.md).
//!
//! A client of the tenant authenticates (`Authorization: Basic`, as /api/v1/token/issue); only
//! the keys of its tenant are found. Validation answers as RFC 7662 introspection does: the
//! owner's identity with `"active": true`, or exactly `{"active": false}` for a key that is
//! malformed, unknown, of another tenant, revoked, replaced past its overlap or of a disabled
//! user; but `403 password_expired` when the owner's password is past the rotation window, as
//! the gateway this service replaces answered. Rotation takes the current key as the proof of
//! its caller and answers the new key once; a refused key is `401 invalid_api_key`.
//!
//! Validation is meant to be as cheap as an introspection: keys that validated lately are kept
//! for [`ApiKeys::TTL_SECS`] (only a success is answered from there; every refusal is decided
//! on a fresh read), `last_used_at` is written in batches (`Db::record_api_key_use`), and
//! only refusals are audited, at most one row per window of [`ApiKeys::AUDIT_WINDOW_SECS`] for
//! each client, reason and key (the row counts those it stands for). A rotation through this
//! instance drops the old key from its cache at once; a revocation (`api-key revoke`), a
//! disabled user or a change of roles reaches a running instance within `TTL_SECS`. The
//! validating client may likewise come from the client cache (`ClientCache::TTL_SECS`): a
//! client disabled elsewhere may validate keys that long; rotation reads the client afresh.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::json;

use crate::clients::split_list;
use crate::error::ApiError;
use crate::storage::{ApiKeyRow, AuditRow, RequestEvent, TenantId, UserRow};
use crate::users::api_keys::{ApiKey, verifier_matches};
use crate::users::{password_expires_at, scopes_of};

use super::callers::{ClientSource, Parsed, check_subject};
use super::state::AppState;

/// The body of `/credentials/api-key/validate`.
#[derive(Deserialize)]
pub struct ValidateRequest<'a> {
    #[serde(borrow)]
    pub api_key: Cow<'a, str>,
}

/// The body of `/credentials/api-key/rotate`: `new_key`, if given, is the secret part of the
/// new key (the server adds `isk_` and a new key id), checked for length and entropy.
#[derive(Deserialize)]
pub struct RotateRequest<'a> {
    #[serde(borrow)]
    pub api_key: Cow<'a, str>,
    #[serde(borrow, default)]
    pub new_key: Option<Cow<'a, str>>,
}

impl std::fmt::Debug for ValidateRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValidateRequest(<redacted>)")
    }
}

impl std::fmt::Debug for RotateRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotateRequest(<redacted>)")
    }
}

/// What a validation answers.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Validation {
    Active(Box<Identity>),
    Inactive { active: bool },
}

/// The owner of an active key.
#[derive(Debug, Serialize)]
pub struct Identity {
    pub active: bool,
    pub user_id: String,
    pub username: String,
    pub tenant: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// When the owner's password stops working (`null`: it does not expire).
    pub password_expires_at: Option<i64>,
    pub key_id: String,
    /// Set on a key replaced with an overlap: when it stops working.
    pub expires_at: Option<i64>,
}

/// The answer of a rotation: the new key, shown once.
#[derive(Debug, Serialize)]
pub struct Rotated {
    #[serde(serialize_with = "expose")]
    pub api_key: ApiKey,
    pub key_id: String,
    /// When the key presented stops working (`null`: it stopped now).
    pub previous_key_expires_at: Option<i64>,
}

fn expose<S: Serializer>(key: &ApiKey, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(key.expose())
}

/// A key that validated, with its owner and what the owner's roles grant.
#[derive(Debug)]
struct Known {
    key: ApiKeyRow,
    /// Without its password hash and TOTP secrets.
    user: UserRow,
    scopes: Vec<String>,
    read_at: i64,
}

/// Why a key was refused (the audit row's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Refusal {
    Malformed,
    Unknown,
    WrongSecret,
    Revoked,
    Expired,
    UserDisabled,
    PasswordExpired,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::WrongSecret => "wrong_secret",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::UserDisabled => "user_disabled",
            Self::PasswordExpired => "password_expired",
        }
    }

    /// Whether the key exists (then its id is audited; else refusals collapse per client).
    fn names_key(self) -> bool {
        !matches!(self, Self::Malformed | Self::Unknown)
    }
}

type CacheKey = (TenantId, String);
/// Why a key was refused, and its id and its owner's when it exists.
type Refused = (Refusal, Option<(String, String)>);
/// Tenant, client, event, reason, key id (`-` for a key that does not exist).
type AuditKey = (TenantId, String, RequestEvent, Refusal, String);

/// The keys that validated lately and the refusals audited lately (one per `AppState`).
#[derive(Debug, Default)]
pub struct ApiKeys {
    known: RwLock<HashMap<CacheKey, Arc<Known>>>,
    /// How many keys were forgotten: a read that began before a key was forgotten may have read
    /// it as it was before, and must not put it back.
    forgotten: AtomicU64,
    /// When a row was last written for each kind of refusal, and how many were not since.
    refusals: Mutex<HashMap<AuditKey, (i64, u64)>>,
}

impl ApiKeys {
    /// Seconds a validated key is answered from memory: the bound on how long a revocation by
    /// the command line or another instance takes to reach this one.
    pub const TTL_SECS: i64 = 5;
    /// Entries held at most, in each map; emptied when full.
    pub const CAPACITY: usize = 4096;
    /// At most one audit row per client, reason and key in this many seconds.
    pub const AUDIT_WINDOW_SECS: i64 = 60;

    fn get(&self, key: &CacheKey, now: i64) -> Option<Arc<Known>> {
        let known = self.known.read().ok()?;
        let k = known.get(key)?;
        (now.saturating_sub(k.read_at) < Self::TTL_SECS && now >= k.read_at).then(|| Arc::clone(k))
    }

    /// The count of forgotten keys, to give [`ApiKeys::insert`] what was read after it.
    fn generation(&self) -> u64 {
        self.forgotten.load(Ordering::Acquire)
    }

    /// Remembers `value`, read after `generation`, unless a key was forgotten meanwhile.
    fn insert(&self, key: CacheKey, value: Arc<Known>, generation: u64) {
        if let Ok(mut known) = self.known.write() {
            // Checked under the lock that `forget` takes: no forget slips in between.
            if self.generation() != generation {
                return;
            }
            if known.len() >= Self::CAPACITY {
                known.clear();
            }
            known.insert(key, value);
        }
    }

    fn forget(&self, key: &CacheKey) {
        if let Ok(mut known) = self.known.write() {
            self.forgotten.fetch_add(1, Ordering::AcqRel);
            known.remove(key);
        }
    }

    /// `Some(refusals not audited since the last row)` when this one is to be audited.
    fn audit_due(&self, key: AuditKey, now: i64) -> Option<u64> {
        let mut refusals = self.refusals.lock().ok()?;
        if let Some((at, suppressed)) = refusals.get_mut(&key) {
            if now.saturating_sub(*at) < Self::AUDIT_WINDOW_SECS && now >= *at {
                *suppressed += 1;
                return None;
            }
            let before = *suppressed;
            (*at, *suppressed) = (now, 0);
            return Some(before);
        }
        // Full: the windows that ended make room. Emptying the map instead would let a burst
        // of refusals restart every window and write a row each.
        if refusals.len() >= Self::CAPACITY {
            refusals.retain(|_, (at, _)| {
                now.saturating_sub(*at) < Self::AUDIT_WINDOW_SECS && now >= *at
            });
        }
        if refusals.len() < Self::CAPACITY {
            refusals.insert(key, (now, 0));
        }
        Some(0)
    }
}

/// Compared against when the key id is unknown, so that both paths cost the same.
const DUMMY_VERIFIER: [u8; 32] = [0u8; 32];

impl AppState {
    /// `POST /credentials/api-key/validate` (see the module's text).
    pub async fn validate_api_key(
        &self,
        authorization: Option<&[u8]>,
        named: Option<&TenantId>,
        session_subject: Option<&str>,
        body: Parsed<ValidateRequest<'_>>,
    ) -> Result<Validation, ApiError> {
        let client = self
            .authenticate_client(authorization, ClientSource::CacheOrDatabase, named)
            .await?;
        let req = body?;
        let tenant = &client.row.tenant_id;
        let client_id = client.row.client_id.as_str();
        let now = self.settings().clock.now();
        let event = RequestEvent::ApiKeyValidate;
        let known = match self.known_key(tenant, &req.api_key, true, now).await? {
            Ok(known) => known,
            Err((refusal, owner)) => {
                let (key_id, user_id) = owner.unzip();
                let user_id = user_id.as_deref();
                self.audit_refusal(event, tenant, client_id, user_id, refusal, key_id, now)
                    .await;
                return Ok(Validation::Inactive { active: false });
            }
        };
        // On a session bound to a user, another user's key is as unknown as another subject's
        // token is to introspection.
        if check_subject(session_subject, &known.user.user_id).is_err() {
            return Ok(Validation::Inactive { active: false });
        }
        let expires = password_expires_at(&known.user, self.settings().password_rotation_days);
        if expires.is_some_and(|at| now >= at) {
            let (user, key_id) = (Some(known.user.user_id.as_str()), Some(&known.key.key_id));
            self.audit_refusal(
                event,
                tenant,
                client_id,
                user,
                Refusal::PasswordExpired,
                key_id.cloned(),
                now,
            )
            .await;
            return Err(ApiError::PasswordExpired);
        }
        self.db().record_api_key_use(&known.key.key_id, now);
        let user = &known.user;
        Ok(Validation::Active(Box::new(Identity {
            active: true,
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            tenant: user.tenant_id.to_string(),
            roles: split_list(&user.roles)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            scopes: known.scopes.clone(),
            password_expires_at: expires,
            key_id: known.key.key_id.clone(),
            expires_at: known.key.expires_at,
        })))
    }

    /// `POST /credentials/api-key/rotate` (see the module's text): the key presented keeps
    /// working for `Settings::api_key_overlap_secs`, or stops at once.
    pub async fn rotate_api_key(
        &self,
        authorization: Option<&[u8]>,
        named: Option<&TenantId>,
        session_subject: Option<&str>,
        body: Parsed<RotateRequest<'_>>,
    ) -> Result<Rotated, ApiError> {
        let client = self
            .authenticate_client(authorization, ClientSource::Database, named)
            .await?;
        let req = body?;
        let tenant = &client.row.tenant_id;
        let client_id = client.row.client_id.as_str();
        let now = self.settings().clock.now();
        let event = RequestEvent::ApiKeyRotate;
        let known = match self.known_key(tenant, &req.api_key, false, now).await? {
            Ok(known) => known,
            Err((refusal, owner)) => {
                let (key_id, user_id) = owner.unzip();
                let user_id = user_id.as_deref();
                self.audit_refusal(event, tenant, client_id, user_id, refusal, key_id, now)
                    .await;
                return Err(ApiError::InvalidApiKey(
                    "the api_key is not a valid API key of this tenant",
                ));
            }
        };
        let user = &known.user;
        check_subject(session_subject, &user.user_id)?;
        let old = known.key.key_id.as_str();
        let expires = password_expires_at(user, self.settings().password_rotation_days);
        if expires.is_some_and(|at| now >= at) {
            let user_id = Some(user.user_id.as_str());
            self.audit_refusal(
                event,
                tenant,
                client_id,
                user_id,
                Refusal::PasswordExpired,
                Some(old.to_owned()),
                now,
            )
            .await;
            return Err(ApiError::PasswordExpired);
        }
        let superseded = || {
            ApiError::invalid_request(
                "this API key was replaced by a rotation already: rotate the key that replaced it",
            )
        };
        if known.key.expires_at.is_some() {
            return Err(superseded());
        }
        let new = match &req.new_key {
            Some(secret) => ApiKey::successor_with(&req.api_key, secret)
                .map_err(|e| ApiError::invalid_request(format!("new_key: {e}")))?,
            None => ApiKey::generate(),
        };
        let overlap = self.settings().api_key_overlap_secs;
        let until = (overlap > 0).then(|| now.saturating_add(overlap));
        let row = new.row(self.credential_key(), user, now);
        let audit = AuditRow::credential(
            now,
            event,
            tenant,
            Some(client_id),
            Some(&user.user_id),
            "rotated",
            Some(json!({
                "key_id": old, "new_key_id": row.key_id, "overlap_secs": overlap,
                "supplied": req.new_key.is_some(),
            })),
        );
        let rotated = self
            .db()
            .rotate_api_key(tenant, old, &row, now, until, &audit)
            .await?;
        self.inner
            .api_keys
            .forget(&(tenant.clone(), old.to_owned()));
        if !rotated {
            return Err(superseded());
        }
        Ok(Rotated {
            key_id: row.key_id,
            api_key: new,
            previous_key_expires_at: until,
        })
    }

    /// The live key `text` of `tenant` with its owner, enabled; or why not (with the key's id
    /// and its owner's when it exists). From the cache when `cached` allows and the key validated lately.
    async fn known_key(
        &self,
        tenant: &TenantId,
        text: &str,
        cached: bool,
        now: i64,
    ) -> Result<Result<Arc<Known>, Refused>, ApiError> {
        let Ok(key) = ApiKey::parse(text) else {
            return Ok(Err((Refusal::Malformed, None)));
        };
        let computed = key.verifier(self.credential_key());
        let cache_key = (tenant.clone(), key.key_id().to_owned());
        let cache = &self.inner.api_keys;
        if cached
            && let Some(known) = cache.get(&cache_key, now)
            && verifier_matches(&computed, &known.key.verifier)
            && live(&known.key, now)
        {
            return Ok(Ok(known));
        }
        let generation = cache.generation();
        // The roles are read beside the key, not after it: one round trip's latency, and an
        // unknown key costs what a known one does.
        let (found, roles) = tokio::join!(
            self.db().api_key_with_user(tenant, key.key_id()),
            self.db().roles(tenant)
        );
        let (found, roles) = (found?, roles?);
        let stored = found
            .as_ref()
            .map_or(&DUMMY_VERIFIER[..], |(k, _)| &k.verifier);
        let matches = verifier_matches(&computed, stored);
        let Some((row, mut user)) = found else {
            return Ok(Err((Refusal::Unknown, None)));
        };
        let refusal = if !matches {
            Some(Refusal::WrongSecret)
        } else if row.revoked_at.is_some() {
            Some(Refusal::Revoked)
        } else if !live(&row, now) {
            Some(Refusal::Expired)
        } else if !user.enabled {
            Some(Refusal::UserDisabled)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            if refusal != Refusal::WrongSecret {
                cache.forget(&cache_key);
            }
            return Ok(Err((refusal, Some((row.key_id, user.user_id)))));
        }
        user.password_hash = None;
        user.totp_secret_enc = None;
        user.totp_pending_enc = None;
        user.totp_pending_enc = None;
        let known = Arc::new(Known {
            scopes: scopes_of(&roles, &user.roles),
            key: row,
            user,
            read_at: now,
        });
        cache.insert(cache_key, Arc::clone(&known), generation);
        Ok(Ok(known))
    }

    /// Audits a refused key, unless a row for the same client, reason and key was written
    /// within the window (then it is counted in the next one). Never the key itself.
    #[allow(clippy::too_many_arguments)]
    async fn audit_refusal(
        &self,
        event: RequestEvent,
        tenant: &TenantId,
        client_id: &str,
        user_id: Option<&str>,
        refusal: Refusal,
        key_id: Option<String>,
        now: i64,
    ) {
        let key_id = key_id.filter(|_| refusal.names_key());
        let audit_key = (
            tenant.clone(),
            client_id.to_owned(),
            event,
            refusal,
            key_id.clone().unwrap_or_else(|| "-".to_owned()),
        );
        let Some(suppressed) = self.inner.api_keys.audit_due(audit_key, now) else {
            return;
        };
        let row = AuditRow::credential(
            now,
            event,
            tenant,
            Some(client_id),
            user_id,
            "refused",
            Some(json!({
                "reason": refusal.reason(), "key_id": key_id, "not_audited_before": suppressed,
            })),
        );
        self.audit_credential(row).await;
    }
}

/// Neither revoked nor past the end of its overlap.
fn live(key: &ApiKeyRow, now: i64) -> bool {
    key.revoked_at.is_none() && key.expires_at.is_none_or(|until| now < until)
}

#[cfg(test)]
mod tests;
