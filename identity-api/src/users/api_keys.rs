//! API keys: their form, their verifier, and the strength a key supplied by its owner must have.
//!
//! A key is `isk_<key_id>_<secret>`: `isk_` (identity-sidecar key) so that secret scanners can
//! spot one (`isk_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{32,256}`); `key_id`, 12 random characters of
//! `A-Z a-z 0-9` (about 71 bits), public, the primary key it is looked up by; the secret part,
//! 32 random bytes as base64url (43 characters, 256 bits) when the server makes it. An owner
//! rotating its key may supply the secret part instead (never the prefix or the `key_id`, which
//! the server always assigns): 32 to 256 characters of `A-Z a-z 0-9 _ -` worth at least 128
//! bits by an estimate that discounts runs and repeated blocks ([`check_secret`]), and not the
//! secret of the key it replaces.
//!
//! Only a verifier is stored: HMAC-SHA256 under the wrapped key `api-key-verifier` of a domain
//! label and the whole key (so bound to its `key_id`). The key is random, so a keyed fast hash
//! is enough (as for client secrets, `clients`), and validation stays cheap.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::operator::Operator;
use crate::secret::Key32;
use crate::storage::{AdminEvent, ApiKeyRow, AuditRow, Db, StoreError, TenantId, UserRow};

/// What every key starts with.
pub const PREFIX: &str = "isk_";
/// Characters of a `key_id`.
pub const KEY_ID_LEN: usize = 12;
/// Characters of a supplied secret part, at least and at most.
pub const MIN_SECRET_LEN: usize = 32;
pub const MAX_SECRET_LEN: usize = 256;
/// Bits a supplied secret part must carry by [`entropy_bits`].
pub const MIN_SECRET_BITS: f64 = 128.0;

/// Separates the verifiers of API keys from the recovery codes' under the same key.
const DOMAIN: &[u8] = b"identity-api api-key v1\0";

const KEY_ID_ALPHABET: &[u8; 62] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Why a key is refused; never quotes the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error(
        "not an API key of this server: expected isk_, a 12-character key id of A-Z a-z 0-9, _, \
         then 32 to 256 characters of A-Z a-z 0-9 _ -"
    )]
    Malformed,
    #[error("the new key must be 32 to 256 characters of A-Z a-z 0-9 _ - (its secret part only)")]
    BadSupplied,
    #[error(
        "the new key is too weak: it needs 128 bits by an estimate that discounts runs and \
         repeated blocks (a random 32-byte value as base64url has them, as do 32 random hex \
         digits)"
    )]
    Weak,
    #[error("the new key must not hold the secret of the key it replaces")]
    Reused,
}

/// An API key, whole. No `Clone`; wiped on drop; its `Debug` shows only the public `key_id`.
pub struct ApiKey {
    text: Zeroizing<String>,
}

impl ApiKey {
    /// A new key with a random `key_id` and a random 256-bit secret part.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        let secret = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
        Self::assemble(&secret)
    }

    /// A new key with a random `key_id` around a secret part its owner chose, once it passes
    /// [`check_secret`]. Private: a chosen secret only ever replaces a key
    /// ([`ApiKey::successor_with`]), which also refuses the old secret.
    fn with_secret(secret: &str) -> Result<Self, ApiKeyError> {
        check_secret(secret)?;
        Ok(Self::assemble(secret))
    }

    /// The key to replace `current` (a key as presented), around a secret part its owner
    /// chose: as [`ApiKey::with_secret`], and not sharing the secret of `current`, which
    /// whoever holds that key knows (the new `key_id` is public).
    pub fn successor_with(current: &str, secret: &str) -> Result<Self, ApiKeyError> {
        let current = Self::parse(current)?;
        let held = current.secret();
        if secret.contains(held) || held.contains(secret) {
            return Err(ApiKeyError::Reused);
        }
        Self::with_secret(secret)
    }

    fn assemble(secret: &str) -> Self {
        let mut text = Zeroizing::new(String::with_capacity(
            PREFIX.len() + KEY_ID_LEN + 1 + secret.len(),
        ));
        text.push_str(PREFIX);
        text.push_str(&new_key_id());
        text.push('_');
        text.push_str(secret);
        Self { text }
    }

    /// A key as presented: its form is checked, nothing else.
    pub fn parse(text: &str) -> Result<Self, ApiKeyError> {
        let rest = text.strip_prefix(PREFIX).ok_or(ApiKeyError::Malformed)?;
        let (key_id, rest) = rest
            .split_at_checked(KEY_ID_LEN)
            .ok_or(ApiKeyError::Malformed)?;
        let secret = rest.strip_prefix('_').ok_or(ApiKeyError::Malformed)?;
        if !valid_key_id(key_id) || !secret_charset(secret) {
            return Err(ApiKeyError::Malformed);
        }
        Ok(Self {
            text: Zeroizing::new(text.to_owned()),
        })
    }

    /// The public part that names the key.
    pub fn key_id(&self) -> &str {
        self.text
            .get(PREFIX.len()..PREFIX.len() + KEY_ID_LEN)
            .unwrap_or_default()
    }

    /// The secret part, after the `key_id`.
    fn secret(&self) -> &str {
        self.text
            .get(PREFIX.len() + KEY_ID_LEN + 1..)
            .unwrap_or_default()
    }

    /// The whole key, to show its owner once.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// What is stored of it: HMAC-SHA256(key, label || whole key).
    pub fn verifier(&self, key: &Key32) -> [u8; 32] {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose()) else {
            return [0u8; 32]; // unreachable: HMAC takes any key length
        };
        mac.update(DOMAIN);
        mac.update(self.text.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The row that stores it for `user`, created `now`.
    pub fn row(&self, key: &Key32, user: &UserRow, now: i64) -> ApiKeyRow {
        ApiKeyRow {
            key_id: self.key_id().to_owned(),
            tenant_id: user.tenant_id.clone(),
            user_id: user.user_id.clone(),
            verifier: self.verifier(key).to_vec(),
            created_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({PREFIX}{}_<redacted>)", self.key_id())
    }
}

/// Whether `computed` equals `stored`, in constant time.
pub fn verifier_matches(computed: &[u8; 32], stored: &[u8]) -> bool {
    computed.as_slice().ct_eq(stored).into()
}

/// Whether `key_id` has the form of one (12 characters of `A-Z a-z 0-9`).
pub fn valid_key_id(key_id: &str) -> bool {
    key_id.len() == KEY_ID_LEN && key_id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn secret_charset(secret: &str) -> bool {
    (MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The rule of a supplied secret part (see the module's text). An estimate that refuses what
/// is plainly guessable (`aaaa...`, `abcd...`, a block repeated, digits only); it cannot prove
/// randomness, and a random value of 128 bits passes it (32 hex digits, 22 base64url
/// characters are below the length).
pub fn check_secret(secret: &str) -> Result<(), ApiKeyError> {
    if !secret_charset(secret) {
        return Err(ApiKeyError::BadSupplied);
    }
    if entropy_bits(secret) < MIN_SECRET_BITS {
        return Err(ApiKeyError::Weak);
    }
    Ok(())
}

/// The characters of `text` that cannot be told from those before them, times the bits of one
/// character of the alphabet it draws on (the classes it uses: 26 lower case, 26 upper case,
/// 10 digits, 2 of `_ -`). Told from those before: a character that continues a run past its
/// first two (the same one again, or the next or previous one: `aaa`, `abc`, `321`), or that
/// begins four characters already seen together earlier (a block repeated).
pub fn entropy_bits(text: &str) -> f64 {
    let bytes = text.as_bytes();
    let alphabet: u32 = [
        (bytes.iter().any(u8::is_ascii_lowercase), 26),
        (bytes.iter().any(u8::is_ascii_uppercase), 26),
        (bytes.iter().any(u8::is_ascii_digit), 10),
        (bytes.iter().any(|b| !b.is_ascii_alphanumeric()), 2),
    ]
    .iter()
    .filter(|(used, _)| *used)
    .map(|(_, size)| size)
    .sum();
    let step = |i: usize| i16::from(bytes[i]) - i16::from(bytes[i - 1]);
    let unpredictable = (0..bytes.len())
        .filter(|&i| {
            let runs = i >= 2 && step(i) == step(i - 1) && step(i).abs() <= 1;
            let repeats =
                i + 4 <= bytes.len() && bytes[..i + 3].windows(4).any(|w| w == &bytes[i..i + 4]);
            !runs && !repeats
        })
        .count();
    unpredictable as f64 * f64::from(alphabet.max(1)).log2()
}

/// 12 characters of `A-Z a-z 0-9`, uniformly (bytes of 248 and above are drawn again).
fn new_key_id() -> String {
    let mut id = String::with_capacity(KEY_ID_LEN);
    let mut bytes = [0u8; 32];
    while id.len() < KEY_ID_LEN {
        OsRng.fill_bytes(&mut bytes);
        for b in bytes.iter().filter(|b| **b < 248) {
            if id.len() == KEY_ID_LEN {
                break;
            }
            id.push(char::from(KEY_ID_ALPHABET[usize::from(*b % 62)]));
        }
    }
    id
}

/// Why an operator's change of a key failed; names the key by its id only.
#[derive(Debug, thiserror::Error)]
pub enum KeyChangeError {
    #[error("tenant {tenant} has no API key {key_id}")]
    NotFound { tenant: String, key_id: String },
    #[error("API key {0} is revoked")]
    Revoked(String),
    #[error("API key {0} was replaced by a rotation already: rotate the key that replaced it")]
    Replaced(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a key for `user`, audited as `api_key_create` by `by` (its id, never the key).
pub async fn create(
    db: &Db,
    credential_key: &Key32,
    user: &UserRow,
    by: &Operator,
    now: i64,
) -> Result<ApiKey, StoreError> {
    let key = ApiKey::generate();
    let row = key.row(credential_key, user, now);
    let audit = AuditRow::user_admin(
        now,
        AdminEvent::ApiKeyCreate,
        by.as_str(),
        &user.tenant_id,
        &user.user_id,
        serde_json::json!({ "key_id": row.key_id }),
    );
    db.insert_api_key(&row, &audit).await?;
    Ok(key)
}

/// Revokes a key at once, audited as `api_key_revoke`; refused when it is revoked already.
pub async fn revoke(
    db: &Db,
    tenant: &TenantId,
    key_id: &str,
    by: &Operator,
    now: i64,
) -> Result<ApiKeyRow, KeyChangeError> {
    let not_found = || KeyChangeError::NotFound {
        tenant: tenant.to_string(),
        key_id: key_id.to_owned(),
    };
    // The audit row needs the owner: read first (the revoke reads again in its transaction).
    let row = db.api_key(tenant, key_id).await?.ok_or_else(not_found)?;
    let audit = AuditRow::user_admin(
        now,
        AdminEvent::ApiKeyRevoke,
        by.as_str(),
        tenant,
        &row.user_id,
        serde_json::json!({ "key_id": key_id }),
    );
    match db.revoke_api_key(tenant, key_id, now, &audit).await? {
        None => Err(not_found()),
        Some(before) if before.revoked_at.is_some() => Err(KeyChangeError::Revoked(key_id.into())),
        Some(before) => Ok(before),
    }
}

/// An operator's rotation: a new key for the owner of `key_id`; the old one works `overlap`
/// seconds more (`None`: revoked now). Audited as `api_key_rotate`.
pub async fn rotate(
    db: &Db,
    credential_key: &Key32,
    tenant: &TenantId,
    key_id: &str,
    overlap: Option<i64>,
    by: &Operator,
    now: i64,
) -> Result<ApiKey, KeyChangeError> {
    let not_found = || KeyChangeError::NotFound {
        tenant: tenant.to_string(),
        key_id: key_id.to_owned(),
    };
    let (old, user) = db
        .api_key_with_user(tenant, key_id)
        .await?
        .ok_or_else(not_found)?;
    if old.revoked_at.is_some() {
        return Err(KeyChangeError::Revoked(key_id.into()));
    }
    let key = ApiKey::generate();
    let row = key.row(credential_key, &user, now);
    let audit = AuditRow::user_admin(
        now,
        AdminEvent::ApiKeyRotate,
        by.as_str(),
        tenant,
        &user.user_id,
        serde_json::json!({ "key_id": key_id, "new_key_id": row.key_id, "overlap_secs": overlap.unwrap_or(0) }),
    );
    let until = overlap.map(|secs| now.saturating_add(secs));
    if !db
        .rotate_api_key(tenant, key_id, &row, now, until, &audit)
        .await?
    {
        return Err(KeyChangeError::Replaced(key_id.into()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_with_its_key_id() {
        let key = ApiKey::generate();
        assert!(key.expose().starts_with(PREFIX));
        assert_eq!(key.expose().len(), 4 + 12 + 1 + 43);
        let parsed = ApiKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.key_id(), key.key_id());
        assert!(valid_key_id(key.key_id()));
        let k = Key32::random();
        assert_eq!(parsed.verifier(&k), key.verifier(&k));
        assert!(verifier_matches(&key.verifier(&k), &parsed.verifier(&k)));
        assert_ne!(ApiKey::generate().key_id(), key.key_id());
    }

    #[test]
    fn the_debug_form_hides_the_secret() {
        let key = ApiKey::generate();
        let debug = format!("{key:?}");
        assert!(debug.contains(key.key_id()));
        assert!(!debug.contains(&key.expose()[17..]));
    }

    #[test]
    fn malformed_keys_are_refused_without_quoting_them() {
        let good = ApiKey::generate();
        let secret = &good.expose()[17..];
        for bad in [
            String::new(),
            "isk_".into(),
            secret.to_owned(),
            format!("isk_short_{secret}"),
            format!("isk_ABCDEFGHIJK!_{secret}"),
            format!("isk_ABCDEFGHIJKL-{secret}"),
            format!("isk_ABCDEFGHIJKL_{}", "a".repeat(31)),
            format!("isk_ABCDEFGHIJKL_{}", "a".repeat(257)),
            format!("isk_ABCDEFGHIJKL_{secret} "),
            format!("xsk_ABCDEFGHIJKL_{secret}"),
            "isk_ÄBCDEFGHIJK_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
        ] {
            let err = ApiKey::parse(&bad).unwrap_err();
            assert_eq!(err, ApiKeyError::Malformed, "{bad}");
            assert!(bad.len() < 8 || !err.to_string().contains(&bad), "{bad}");
        }
    }

    #[test]
    fn supplied_secrets_need_length_and_entropy() {
        let random = &ApiKey::generate().expose()[17..].to_owned();
        let key = ApiKey::with_secret(random).unwrap();
        assert!(key.expose().ends_with(random.as_str()));
        assert_eq!(key.key_id().len(), KEY_ID_LEN);
        assert_eq!(
            ApiKey::with_secret("short").unwrap_err(),
            ApiKeyError::BadSupplied
        );
        assert_eq!(
            ApiKey::with_secret(&"a b".repeat(20)).unwrap_err(),
            ApiKeyError::BadSupplied
        );
        for weak in [
            "a".repeat(64),
            "0123456789".repeat(4),
            "abcdefghijklmnopqrstuvwxyzabcdef".to_owned(),
            "abcdefghijklmnopqrstuvwxyzABCDEF".to_owned(),
            "0123456789abcdef".repeat(2),
            "abcdefghABCDEFGH".repeat(2),
            "aB".repeat(40),
            "Ab1_".repeat(10),
            "q7x9k2m4p8".repeat(4),
            "31415926535897932384626433832795".to_owned(), // digits only: 106 bits
        ] {
            assert_eq!(
                ApiKey::with_secret(&weak).unwrap_err(),
                ApiKeyError::Weak,
                "{weak}"
            );
        }
        // Random values of 128 bits pass: 32 hex digits, and base64url.
        for _ in 0..1000 {
            let mut raw = [0u8; 16];
            OsRng.fill_bytes(&mut raw);
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(check_secret(&hex), Ok(()), "{hex}");
            let b64 = &ApiKey::generate().expose()[17..].to_owned();
            assert_eq!(check_secret(b64), Ok(()), "{b64}");
        }
        // A successor does not hold the secret of the key it replaces, whole or in part.
        let current = ApiKey::generate();
        let held = &current.expose()[17..];
        for reused in [
            held.to_owned(),
            current.expose().to_owned(),
            format!("{held}x"),
            held[..40].to_owned(),
        ] {
            assert_eq!(
                ApiKey::successor_with(current.expose(), &reused).unwrap_err(),
                ApiKeyError::Reused,
                "{reused}"
            );
        }
        let next = ApiKey::successor_with(current.expose(), random).unwrap();
        assert!(next.expose().ends_with(random.as_str()));
        assert!(entropy_bits(random) >= MIN_SECRET_BITS);
        assert_eq!(entropy_bits("aaaa"), 2.0 * 26f64.log2());
        assert_eq!(entropy_bits("abcd"), 2.0 * 26f64.log2());
        assert_eq!(entropy_bits("a1b2"), 4.0 * 36f64.log2());
    }
}
