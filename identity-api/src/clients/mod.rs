//! Clients and their secrets.
//!
//! Secrets are 256 random bits generated here, so a keyed fast hash is the right verifier:
//! HMAC-SHA256 under a 256-bit random key stored sealed under the key-encryption key
//! (`kek::verifier_key`). Brute force against 2^256 is
//! hopeless whatever the hash speed, and a stolen database alone does not even allow an offline
//! check without the server key. A slow password hash (argon2, bcrypt) only helps low-entropy
//! human passwords and would cap issuance at a few hundred requests per second.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::clock::now;
use crate::operator::Operator;
use crate::secret::{ClientSecret, Key32, random_token};
use crate::storage::{
    AdminEvent, AuditRow, ClientChange, ClientRow, Db, Scope, StoreError, TenantId,
};

mod cache;
pub mod grant_types;
pub mod subject_policy;

pub use cache::ClientCache;

pub use grant_types::{
    CLIENT_CREDENTIALS, DEFAULT_GRANT_TYPES, GRANT_TYPES, PASSWORD, REFRESH_TOKEN, has_grant,
};
pub use subject_policy::{DEFAULT_SUBJECT_POLICY, SubjectPolicy};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client id must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -")]
    InvalidId,
    #[error("invalid scope list: {0}")]
    InvalidScope(String),
    #[error("invalid audience list: {0}")]
    InvalidAudience(String),
    #[error("invalid grant types: {0}")]
    InvalidGrantTypes(String),
    #[error("invalid subject policy: {0}")]
    InvalidSubjectPolicy(String),
    #[error("client {0} already exists")]
    Exists(String),
    #[error("no client {0}")]
    NotFound(String),
    #[error("no tenant {0}: create it first (identity-api tenant create {0})")]
    UnknownTenant(String),
    #[error(
        "nothing to change: give the new scopes, audiences, grant types or subject policy, or \
         whether the client may introspect every token"
    )]
    NoChange,
    #[error("invalid overlap: {0}")]
    Overlap(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        ClientError::Store(e)
    }
}

/// HMAC-SHA256(key, client_id || 0x00 || secret): binds the verifier to its client row.
pub fn verifier(key: &Key32, client_id: &str, secret: &str) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose()) {
        Ok(mac) => mac,
        Err(_) => return [0u8; 32], // unreachable: HMAC takes any key length
    };
    mac.update(client_id.as_bytes());
    mac.update(&[0]);
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().into()
}

pub fn verifier_matches(computed: &[u8; 32], stored: &[u8]) -> bool {
    computed.as_slice().ct_eq(stored).into()
}

/// Whether `row` accepts the secret whose verifier is `computed` at `now`: as its current
/// secret, or as the previous one until its overlap ends (`rotate-secret --overlap`). Both are
/// compared every time, in constant time, against `dummy` where there is no row or no previous
/// verifier, so that an unknown client, a client without an overlap and one within it cost the
/// same and take one path. Whether the client is enabled is the caller's to check. The group
/// commit applies the same rule in SQL to the row as it commits (`storage/commit/texts.rs`).
pub fn accepts(row: Option<&ClientRow>, computed: &[u8; 32], dummy: &[u8; 32], now: i64) -> bool {
    let (current, previous, in_overlap) = match row {
        Some(r) => match (&r.previous_secret_verifier, r.previous_verifier_expires_at) {
            (Some(previous), Some(until)) => (&r.secret_verifier[..], &previous[..], now < until),
            _ => (&r.secret_verifier[..], &dummy[..], false),
        },
        None => (&dummy[..], &dummy[..], false),
    };
    let current = computed.as_slice().ct_eq(current);
    let previous = computed.as_slice().ct_eq(previous) & Choice::from(u8::from(in_overlap));
    let known = Choice::from(u8::from(row.is_some()));
    ((current | previous) & known).into()
}

/// How long the secret replaced by `rotate-secret --overlap` keeps working: at least a second,
/// at most [`Overlap::MAX_SECS`]. Written as seconds (`600`, `600s`) or with a unit (`10m`,
/// `1h`, `2d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    secs: i64,
}

impl Overlap {
    /// Seven days: long enough for any rollout, short enough that a forgotten overlap does not
    /// leave a leaked secret working for long.
    pub const MAX_SECS: i64 = 7 * 86_400;

    pub fn from_secs(secs: i64) -> Result<Self, ClientError> {
        match secs {
            ..1 => Err(ClientError::Overlap(
                "it must be at least 1 second (leave --overlap out for none)".into(),
            )),
            s if s > Self::MAX_SECS => Err(ClientError::Overlap(format!(
                "it must be at most 7 days ({} seconds)",
                Self::MAX_SECS
            ))),
            secs => Ok(Self { secs }),
        }
    }

    pub fn secs(self) -> i64 {
        self.secs
    }
}

impl std::str::FromStr for Overlap {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<Self, ClientError> {
        let text = text.trim();
        let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => text.split_at(i),
            None => (text, "s"),
        };
        let multiplier = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => 0,
        };
        let secs = number
            .parse::<i64>()
            .ok()
            .filter(|_| multiplier > 0)
            .ok_or_else(|| {
                ClientError::Overlap(
                    "expected seconds, or a number with s, m, h or d (600, 10m, 1h)".into(),
                )
            })?;
        Self::from_secs(secs.saturating_mul(multiplier))
    }
}

pub fn valid_client_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// RFC 6749 §3.3 scope-token characters: %x21 / %x23-5B / %x5D-7E.
pub fn valid_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 255
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Splits a space-separated list, dropping duplicates and keeping the order.
pub fn split_list(list: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for item in list.split(' ').filter(|s| !s.is_empty()) {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn normalize(list: &str, what: fn(String) -> ClientError) -> Result<String, ClientError> {
    let items = split_list(list);
    if items.is_empty() {
        return Err(what("empty".into()));
    }
    if let Some(bad) = items.iter().find(|s| !valid_scope_token(s)) {
        return Err(what(format!("{bad:?} has characters that are not allowed")));
    }
    Ok(items.join(" "))
}

/// A subject policy as given, as stored ([`SubjectPolicy`]).
fn normalize_policy(text: &str) -> Result<String, ClientError> {
    text.parse::<SubjectPolicy>()
        .map(|policy| policy.to_string())
        .map_err(ClientError::InvalidSubjectPolicy)
}

/// What a new client may do.
#[derive(Debug, Clone, Copy)]
pub struct NewClient<'a> {
    /// The tenant it belongs to, for good.
    pub tenant: &'a TenantId,
    /// Allowed scopes, space-separated.
    pub scopes: &'a str,
    /// Allowed audiences, space-separated.
    pub audiences: &'a str,
    /// The grants of /oauth/token ([`grant_types::normalize`]); `None`: [`DEFAULT_GRANT_TYPES`].
    pub grant_types: Option<&'a str>,
    /// May introspect every client's tokens at /oauth/introspect, not only its own.
    pub may_introspect: bool,
    /// Whom it may name as the subject of /api/v1/token/issue ([`SubjectPolicy`], as stored);
    /// `None`: [`DEFAULT_SUBJECT_POLICY`].
    pub subject_policy: Option<&'a str>,
}

impl<'a> NewClient<'a> {
    /// A client of `tenant` with the default grant types and subject policy, which may not
    /// introspect others' tokens.
    pub fn new(tenant: &'a TenantId, scopes: &'a str, audiences: &'a str) -> Self {
        Self {
            tenant,
            scopes,
            audiences,
            grant_types: None,
            may_introspect: false,
            subject_policy: None,
        }
    }
}

/// Creates a client and returns its secret (shown once); audited as `client_create` by `by`.
pub async fn create(
    db: &Db,
    key: &Key32,
    client_id: &str,
    new: NewClient<'_>,
    by: &Operator,
    now: i64,
) -> Result<ClientSecret, ClientError> {
    if !valid_client_id(client_id) {
        return Err(ClientError::InvalidId);
    }
    let scopes = normalize(new.scopes, ClientError::InvalidScope)?;
    let audiences = normalize(new.audiences, ClientError::InvalidAudience)?;
    let grant_types = grant_types::normalize(new.grant_types.unwrap_or(DEFAULT_GRANT_TYPES))
        .map_err(ClientError::InvalidGrantTypes)?;
    let subject_policy = normalize_policy(new.subject_policy.unwrap_or(DEFAULT_SUBJECT_POLICY))?;
    if !db
        .tenants()
        .await?
        .iter()
        .any(|t| t.tenant_id == *new.tenant)
    {
        return Err(ClientError::UnknownTenant(new.tenant.to_string()));
    }
    let secret = ClientSecret::new(random_token().to_string());
    let audit = AuditRow::admin(
        now,
        AdminEvent::ClientCreate,
        by.as_str(),
        new.tenant,
        Some(client_id),
        serde_json::json!({
            "scope": scopes, "audience": audiences, "grant_types": grant_types,
            "may_introspect": new.may_introspect, "subject_policy": subject_policy,
        }),
    );
    let row = ClientRow {
        client_id: client_id.to_owned(),
        secret_verifier: verifier(key, client_id, secret.expose()).to_vec(),
        scopes,
        audiences,
        enabled: true,
        created_at: now,
        rotated_at: now,
        previous_secret_verifier: None,
        previous_verifier_expires_at: None,
        grant_types,
        may_introspect: new.may_introspect,
        tenant_id: new.tenant.clone(),
        subject_policy,
    };
    match db.insert_client(&row, &audit).await {
        Ok(()) => Ok(secret),
        Err(StoreError::Conflict) => Err(ClientError::Exists(client_id.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// Replaces what `change` gives (at least one thing), with the rules of [`create`];
/// returns the client as it is now. New issues are judged by the new grants at once, on every
/// instance (the cached rows included: see [`ClientCache`]); families issued before keep the
/// scope and audience they were issued with. Audited as `client_update`, with the old and the
/// new values of what it changed.
pub async fn update(
    db: &Db,
    scope: Scope<'_>,
    client_id: &str,
    change: ClientChange<'_>,
    by: &Operator,
    now: i64,
) -> Result<ClientRow, ClientError> {
    if change == ClientChange::default() {
        return Err(ClientError::NoChange);
    }
    let scopes = change
        .scopes
        .map(|s| normalize(s, ClientError::InvalidScope))
        .transpose()?;
    let audiences = change
        .audiences
        .map(|a| normalize(a, ClientError::InvalidAudience))
        .transpose()?;
    let grant_types = change
        .grant_types
        .map(grant_types::normalize)
        .transpose()
        .map_err(ClientError::InvalidGrantTypes)?;
    let subject_policy = change.subject_policy.map(normalize_policy).transpose()?;
    let audit = |before: &ClientRow| {
        let mut detail = serde_json::Map::new();
        if let Some(scopes) = &scopes {
            detail.insert("scope".into(), scopes.as_str().into());
            detail.insert("previous_scope".into(), before.scopes.as_str().into());
        }
        if let Some(audiences) = &audiences {
            detail.insert("audience".into(), audiences.as_str().into());
            detail.insert("previous_audience".into(), before.audiences.as_str().into());
        }
        if let Some(grant_types) = &grant_types {
            detail.insert("grant_types".into(), grant_types.as_str().into());
            detail.insert(
                "previous_grant_types".into(),
                before.grant_types.as_str().into(),
            );
        }
        if let Some(policy) = &subject_policy {
            detail.insert("subject_policy".into(), policy.as_str().into());
            detail.insert(
                "previous_subject_policy".into(),
                before.subject_policy.as_str().into(),
            );
        }
        if let Some(may) = change.may_introspect {
            detail.insert("may_introspect".into(), may.into());
            detail.insert(
                "previous_may_introspect".into(),
                before.may_introspect.into(),
            );
        }
        AuditRow::admin(
            now,
            AdminEvent::ClientUpdate,
            by.as_str(),
            &before.tenant_id,
            Some(client_id),
            detail.into(),
        )
    };
    let normalized = ClientChange {
        scopes: scopes.as_deref(),
        audiences: audiences.as_deref(),
        grant_types: grant_types.as_deref(),
        may_introspect: change.may_introspect,
        subject_policy: subject_policy.as_deref(),
    };
    db.update_client(scope, client_id, normalized, audit)
        .await?
        .ok_or_else(|| ClientError::NotFound(client_id.to_owned()))
}

/// Replaces the secret. With an `overlap`, the secret replaced keeps working until
/// `now + overlap` (so that instances can roll over to the new one); without, it stops at once.
/// Either way an earlier overlap ends: only the secret replaced can still work. Every server
/// sees it at once (see [`ClientCache`]). Audited as `client_rotate_secret` with the overlap.
pub async fn rotate_secret(
    db: &Db,
    key: &Key32,
    scope: Scope<'_>,
    client_id: &str,
    overlap: Option<Overlap>,
    by: &Operator,
    now: i64,
) -> Result<ClientSecret, ClientError> {
    let tenant = tenant_of(db, scope, client_id).await?;
    let secret = ClientSecret::new(random_token().to_string());
    let v = verifier(key, client_id, secret.expose());
    let previous_until = overlap.map(|o| now.saturating_add(o.secs()));
    let audit = AuditRow::admin(
        now,
        AdminEvent::ClientRotateSecret,
        by.as_str(),
        &tenant,
        Some(client_id),
        serde_json::json!({
            "overlap_secs": overlap.map_or(0, Overlap::secs),
            "previous_secret_expires_at": previous_until,
        }),
    );
    if db
        .set_client_verifier(
            Scope::Tenant(&tenant),
            client_id,
            &v,
            now,
            previous_until,
            &audit,
        )
        .await?
    {
        Ok(secret)
    } else {
        Err(ClientError::NotFound(client_id.to_owned()))
    }
}

/// Disabling revokes the client's token families too (see `Db::set_client_enabled`); enabling
/// leaves them revoked. Audited as `client_disable` (with the number of families revoked) or
/// `client_enable`.
pub async fn set_enabled(
    db: &Db,
    scope: Scope<'_>,
    client_id: &str,
    enabled: bool,
    by: &Operator,
) -> Result<(), ClientError> {
    let tenant = tenant_of(db, scope, client_id).await?;
    let now = now();
    let audit = |revoked: u64| {
        let (event, detail) = match enabled {
            true => (AdminEvent::ClientEnable, serde_json::json!({})),
            false => (
                AdminEvent::ClientDisable,
                serde_json::json!({ "families_revoked": revoked }),
            ),
        };
        AuditRow::admin(now, event, by.as_str(), &tenant, Some(client_id), detail)
    };
    if db
        .set_client_enabled(Scope::Tenant(&tenant), client_id, enabled, now, audit)
        .await?
    {
        Ok(())
    } else {
        Err(ClientError::NotFound(client_id.to_owned()))
    }
}

/// The tenant of the client `client_id` in `scope`, or [`ClientError::NotFound`].
async fn tenant_of(db: &Db, scope: Scope<'_>, client_id: &str) -> Result<TenantId, ClientError> {
    db.client_tenant(scope, client_id)
        .await?
        .ok_or_else(|| ClientError::NotFound(client_id.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    pub(super) fn row(client_id: &str) -> Arc<ClientRow> {
        Arc::new(ClientRow {
            client_id: client_id.to_owned(),
            secret_verifier: vec![1; 32],
            scopes: "a".into(),
            audiences: "b".into(),
            enabled: true,
            created_at: 0,
            rotated_at: 0,
            previous_secret_verifier: None,
            previous_verifier_expires_at: None,
            grant_types: DEFAULT_GRANT_TYPES.into(),
            may_introspect: false,
            tenant_id: TenantId::primary(),
            subject_policy: "any".into(),
        })
    }

    #[test]
    fn the_previous_secret_is_accepted_only_within_its_overlap() {
        let key = Key32::random();
        let dummy = verifier(&key, "", "");
        let (old, new) = (verifier(&key, "c1", "old"), verifier(&key, "c1", "new"));
        let mut r = ClientRow {
            secret_verifier: new.to_vec(),
            ..(*row("c1")).clone()
        };
        assert!(accepts(Some(&r), &new, &dummy, 100));
        assert!(!accepts(Some(&r), &old, &dummy, 100), "no overlap");
        r.previous_secret_verifier = Some(old.to_vec());
        r.previous_verifier_expires_at = Some(200);
        assert!(accepts(Some(&r), &old, &dummy, 199));
        assert!(
            !accepts(Some(&r), &old, &dummy, 200),
            "the overlap has ended"
        );
        assert!(accepts(Some(&r), &new, &dummy, 200));
        assert!(!accepts(
            Some(&r),
            &verifier(&key, "c1", "other"),
            &dummy,
            100
        ));
        // No previous verifier without its expiry, nor the other way round.
        r.previous_verifier_expires_at = None;
        assert!(!accepts(Some(&r), &old, &dummy, 100));
        // An unknown client is compared against the dummy and refused, even by the dummy.
        assert!(!accepts(None, &dummy, &dummy, 100));
    }

    #[test]
    fn overlaps_in_seconds_or_with_a_unit_up_to_seven_days() {
        let secs = |text: &str| text.parse::<Overlap>().map(Overlap::secs);
        assert_eq!(secs("600").unwrap(), 600);
        assert_eq!(secs("600s").unwrap(), 600);
        assert_eq!(secs("10m").unwrap(), 600);
        assert_eq!(secs("1h").unwrap(), 3600);
        assert_eq!(secs("7d").unwrap(), Overlap::MAX_SECS);
        for (bad, says) in [
            ("0", "at least 1 second"),
            ("0m", "at least 1 second"),
            ("8d", "at most 7 days"),
            ("604801", "at most 7 days"),
            ("99999999999999999d", "at most 7 days"),
            ("", "expected seconds"),
            ("10x", "expected seconds"),
            ("m", "expected seconds"),
            ("1h30m", "expected seconds"),
            ("-5", "expected seconds"),
        ] {
            let err = secs(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
