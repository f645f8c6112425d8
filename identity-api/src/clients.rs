//! Clients and their secrets.
//!
//! Secrets are 256 random bits generated here, so a keyed fast hash is the right verifier:
//! HMAC-SHA256 under a 256-bit random key stored sealed under the key-encryption key
//! (`kek::verifier_key`). Brute force against 2^256 is
//! hopeless whatever the hash speed, and a stolen database alone does not even allow an offline
//! check without the server key. A slow password hash (argon2, bcrypt) only helps low-entropy
//! human passwords and would cap issuance at a few hundred requests per second.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::clock::now;
use crate::operator::Operator;
use crate::secret::{ClientSecret, Key32, random_token};
use crate::storage::{AdminEvent, AuditRow, ClientRow, Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client id must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -")]
    InvalidId,
    #[error("invalid scope list: {0}")]
    InvalidScope(String),
    #[error("invalid audience list: {0}")]
    InvalidAudience(String),
    #[error("client {0} already exists")]
    Exists(String),
    #[error("no client {0}")]
    NotFound(String),
    #[error("nothing to change: give the new scopes, the new audiences or both")]
    NoChange,
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

/// Client rows read recently, so that most issues skip the read of their client. Only a
/// success is answered from here; every refusal is decided on a fresh read, so that an unknown
/// id and a wrong secret still cost the same, a new secret (after `rotate-secret`) works at
/// once, and so does a grant added by `client update`. A stale row can authenticate but not
/// issue: the write that stores the family checks, in the same statement, that the client is
/// still enabled with the verifier it authenticated by and the scopes and audiences it was
/// judged by (`Db::create_family`); an issue it refuses is judged again on a fresh read.
#[derive(Debug, Default)]
pub struct ClientCache {
    rows: RwLock<HashMap<String, Cached>>,
}

#[derive(Debug)]
struct Cached {
    row: Arc<ClientRow>,
    read_at: i64,
}

impl ClientCache {
    /// Seconds a row is used for. Every change an operator can make is checked by the write
    /// (above), so this bounds only how long a row is kept without being read again.
    pub const TTL_SECS: i64 = 10;
    /// Rows held at most; emptied when full. One per client that authenticated lately.
    pub const CAPACITY: usize = 4096;

    pub fn get(&self, client_id: &str, now: i64) -> Option<Arc<ClientRow>> {
        let rows = self.rows.read().ok()?;
        let cached = rows.get(client_id)?;
        (now.saturating_sub(cached.read_at) < Self::TTL_SECS).then(|| Arc::clone(&cached.row))
    }

    pub fn insert(&self, row: Arc<ClientRow>, now: i64) {
        let Ok(mut rows) = self.rows.write() else {
            return;
        };
        if rows.len() >= Self::CAPACITY {
            rows.clear();
        }
        rows.insert(row.client_id.clone(), Cached { row, read_at: now });
    }

    pub fn remove(&self, client_id: &str) {
        if let Ok(mut rows) = self.rows.write() {
            rows.remove(client_id);
        }
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

/// Creates a client and returns its secret (shown once); audited as `client_create` by `by`.
pub async fn create(
    db: &Db,
    key: &Key32,
    client_id: &str,
    scopes: &str,
    audiences: &str,
    by: &Operator,
    now: i64,
) -> Result<ClientSecret, ClientError> {
    if !valid_client_id(client_id) {
        return Err(ClientError::InvalidId);
    }
    let scopes = normalize(scopes, ClientError::InvalidScope)?;
    let audiences = normalize(audiences, ClientError::InvalidAudience)?;
    let secret = ClientSecret::new(random_token().to_string());
    let audit = AuditRow::admin(
        now,
        AdminEvent::ClientCreate,
        by.as_str(),
        Some(client_id),
        serde_json::json!({ "scope": scopes, "audience": audiences }),
    );
    let row = ClientRow {
        client_id: client_id.to_owned(),
        secret_verifier: verifier(key, client_id, secret.expose()).to_vec(),
        scopes,
        audiences,
        enabled: true,
        created_at: now,
        rotated_at: now,
    };
    match db.insert_client(&row, &audit).await {
        Ok(()) => Ok(secret),
        Err(StoreError::Conflict) => Err(ClientError::Exists(client_id.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the scopes, the audiences or both (at least one), with the rules of [`create`];
/// returns the client as it is now. New issues are judged by the new grants at once, on every
/// instance (the cached rows included: see [`ClientCache`]); families issued before keep the
/// scope and audience they were issued with. Audited as `client_update`, with the old and the
/// new values of what it changed.
pub async fn update(
    db: &Db,
    client_id: &str,
    scopes: Option<&str>,
    audiences: Option<&str>,
    by: &Operator,
    now: i64,
) -> Result<ClientRow, ClientError> {
    if scopes.is_none() && audiences.is_none() {
        return Err(ClientError::NoChange);
    }
    let scopes = scopes
        .map(|s| normalize(s, ClientError::InvalidScope))
        .transpose()?;
    let audiences = audiences
        .map(|a| normalize(a, ClientError::InvalidAudience))
        .transpose()?;
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
        AuditRow::admin(
            now,
            AdminEvent::ClientUpdate,
            by.as_str(),
            Some(client_id),
            detail.into(),
        )
    };
    db.update_client_grants(client_id, scopes.as_deref(), audiences.as_deref(), audit)
        .await?
        .ok_or_else(|| ClientError::NotFound(client_id.to_owned()))
}

/// Replaces the secret; the old one stops working at once. Audited as `client_rotate_secret`.
pub async fn rotate_secret(
    db: &Db,
    key: &Key32,
    client_id: &str,
    by: &Operator,
    now: i64,
) -> Result<ClientSecret, ClientError> {
    let secret = ClientSecret::new(random_token().to_string());
    let v = verifier(key, client_id, secret.expose());
    let audit = AuditRow::admin(
        now,
        AdminEvent::ClientRotateSecret,
        by.as_str(),
        Some(client_id),
        serde_json::json!({ "overlap_secs": 0 }),
    );
    if db.set_client_verifier(client_id, &v, now, &audit).await? {
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
    client_id: &str,
    enabled: bool,
    by: &Operator,
) -> Result<(), ClientError> {
    let now = now();
    let audit = |revoked: u64| {
        let (event, detail) = match enabled {
            true => (AdminEvent::ClientEnable, serde_json::json!({})),
            false => (
                AdminEvent::ClientDisable,
                serde_json::json!({ "families_revoked": revoked }),
            ),
        };
        AuditRow::admin(now, event, by.as_str(), Some(client_id), detail)
    };
    if db
        .set_client_enabled(client_id, enabled, now, audit)
        .await?
    {
        Ok(())
    } else {
        Err(ClientError::NotFound(client_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(client_id: &str) -> Arc<ClientRow> {
        Arc::new(ClientRow {
            client_id: client_id.to_owned(),
            secret_verifier: vec![1; 32],
            scopes: "a".into(),
            audiences: "b".into(),
            enabled: true,
            created_at: 0,
            rotated_at: 0,
        })
    }

    #[test]
    fn client_cache_answers_for_its_lifetime_then_reads_again() {
        let cache = ClientCache::default();
        assert!(cache.get("c1", 100).is_none());
        cache.insert(row("c1"), 100);
        assert_eq!(cache.get("c1", 100).unwrap().client_id, "c1");
        assert!(cache.get("c1", 100 + ClientCache::TTL_SECS - 1).is_some());
        assert!(cache.get("c1", 100 + ClientCache::TTL_SECS).is_none());
        assert!(cache.get("c2", 100).is_none());
        cache.remove("c1");
        assert!(cache.get("c1", 100).is_none());
    }

    #[test]
    fn client_cache_is_bounded() {
        let cache = ClientCache::default();
        for i in 0..ClientCache::CAPACITY {
            cache.insert(row(&format!("c{i}")), 0);
        }
        assert!(cache.get("c0", 0).is_some());
        cache.insert(row("one-more"), 0);
        assert!(cache.get("c0", 0).is_none(), "emptied when full");
        assert!(cache.get("one-more", 0).is_some());
        assert_eq!(cache.rows.read().unwrap().len(), 1);
    }
}
