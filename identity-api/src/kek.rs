//! The key-encryption key (KEK): seals the signing keys and the client-secret verifier key at
//! rest, rotates without downtime (a previous KEK opens, never seals; `kek rewrap` re-seals),
//! and the verifier key it guards.

use std::path::Path;

use zeroize::Zeroizing;

use crate::clock::now;
use crate::operator::Operator;
use crate::secret::{Key32, b64u, b64u_decode, sha256};
use crate::storage::{AdminEvent, AuditRow, Db, StoreError, WrappedKeyRow, WrappedTable};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the key-encryption key must be 32 random bytes as base64url without padding (43 characters)"
    )]
    BadKek,
    #[error(
        "the previous key-encryption key must be 32 random bytes as base64url without padding (43 characters)"
    )]
    BadPreviousKek,
    #[error("cannot read the key-encryption key file {path}: {source}")]
    KekFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "no key-encryption key: set IDENTITY_KEY_ENCRYPTION_KEY or IDENTITY_KEY_ENCRYPTION_KEY_FILE \
         (or pass --dev to create a local development key file)"
    )]
    NoKek,
    #[error(
        "{what} cannot be decrypted: it is sealed under key-encryption key id {row_kek}, but the \
         current key-encryption key has id {current}{previous}; configure the key it was sealed \
         under (as IDENTITY_KEY_ENCRYPTION_KEY or IDENTITY_PREVIOUS_KEY_ENCRYPTION_KEY)"
    )]
    UnknownKek {
        what: String,
        row_kek: String,
        current: String,
        previous: String,
    },
    #[error(
        "{what} cannot be decrypted with key-encryption key id {kek_id}: the key or the row is corrupt"
    )]
    Decrypt { what: String, kek_id: String },
    #[error("key generation failed")]
    Generate,
    #[error("signing key {kid} cannot be used: {source}")]
    BadSigningKey {
        kid: String,
        source: crate::signing::SigningError,
    },
    #[error(
        "tenant {tenant} signs with the key read from {reference}: replace the key there, not here"
    )]
    ExternalKey { tenant: String, reference: String },
    #[error("tenant {tenant}: {message}")]
    TenantAlgorithm { tenant: String, message: String },
    #[error("tenant {tenant}: {message}")]
    ExternalKeyLoad { tenant: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key-encryption key (KEK): encrypts the signing keys and the client-secret verifier key.
#[derive(Debug)]
pub struct Kek {
    key: Key32,
    id: String,
}

/// Name (and AAD) of the client-secret verifier key in `wrapped_keys`.
pub const VERIFIER_KEY_NAME: &str = "client-secret-verifier";
/// Name of the HMAC key of the API-key and recovery-code verifiers in `wrapped_keys`.
pub const API_KEY_VERIFIER_KEY_NAME: &str = "api-key-verifier";
/// Name of the AES-256-GCM key that seals the users' TOTP secrets in `wrapped_keys`.
pub const MFA_SECRET_KEY_NAME: &str = "mfa-secret-key";

impl Kek {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(b64u_decode(text.trim()).ok_or(KeyError::BadKek)?);
        Key32::from_bytes(&bytes)
            .map(Self::from_key)
            .ok_or(KeyError::BadKek)
    }

    fn from_key(key: Key32) -> Self {
        // Public: the first 8 bytes of SHA-256 of a 256-bit random key tell nothing about it.
        let id = sha256(key.expose())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { key, id }
    }

    /// Short public identifier stored next to every row sealed under this key:
    /// the first 8 bytes of SHA-256(KEK), as 16 hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::KekFile {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::parse(&text)
    }

    pub fn generate() -> (Self, Zeroizing<String>) {
        let key = Key32::random();
        let text = Zeroizing::new(b64u(key.expose()));
        (Self::from_key(key), text)
    }

    /// AES-256-GCM with a random 96-bit nonce; the AAD binds the ciphertext to its row's name.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.key
            .seal(aad.as_bytes(), plaintext)
            .map_err(|_| KeyError::Generate)
    }

    pub fn open(&self, aad: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.key.open(aad.as_bytes(), sealed)
    }
}

/// The current key-encryption key (seals everything) and optionally the previous one (only
/// opens rows not yet rewrapped: see `identity-api kek rewrap`).
#[derive(Debug)]
pub struct Keks {
    pub current: Kek,
    pub previous: Option<Kek>,
}

impl From<Kek> for Keks {
    fn from(current: Kek) -> Self {
        Self {
            current,
            previous: None,
        }
    }
}

impl Keks {
    pub fn new(current: Kek, previous: Option<Kek>) -> Self {
        Self { current, previous }
    }

    /// Opens a row sealed under the key it names. Errors say which key the row needs, never
    /// anything secret.
    pub fn open(
        &self,
        what: &str,
        aad: &str,
        kek_id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let Some(kek) = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.id() == kek_id)
        else {
            return Err(KeyError::UnknownKek {
                what: what.to_owned(),
                row_kek: kek_id.to_owned(),
                current: self.current.id().to_owned(),
                previous: match &self.previous {
                    Some(p) => format!(" and the previous {}", p.id()),
                    None => " and no previous key is configured".to_owned(),
                },
            });
        };
        kek.open(aad, sealed).ok_or_else(|| KeyError::Decrypt {
            what: what.to_owned(),
            kek_id: kek_id.to_owned(),
        })
    }
}

/// The client-secret verifier key (see [`wrapped_key`]).
pub async fn verifier_key(db: &Db, keks: &Keks) -> Result<Key32, KeyError> {
    wrapped_key(db, keks, VERIFIER_KEY_NAME).await
}

/// A 256-bit secret key of the server, created on first use: random, stored in `wrapped_keys`
/// sealed under the current KEK (AAD = its name), so that `kek rewrap` re-seals it with the
/// rest. Run by every command that needs it, before use.
pub async fn wrapped_key(db: &Db, keks: &Keks, name: &str) -> Result<Key32, KeyError> {
    if let Some(row) = db.wrapped_key(name).await? {
        return open_wrapped_key(keks, &row);
    }
    let key = Key32::random();
    let row = WrappedKeyRow {
        name: name.to_owned(),
        kek_id: keks.current.id().to_owned(),
        key_enc: keks.current.seal(name, key.expose())?,
        created_at: now(),
    };
    // Two processes may race here: the first row wins and both use it.
    db.insert_wrapped_key(&row).await?;
    match db.wrapped_key(name).await? {
        Some(row) => open_wrapped_key(keks, &row),
        None => Err(KeyError::Generate),
    }
}

fn open_wrapped_key(keks: &Keks, row: &WrappedKeyRow) -> Result<Key32, KeyError> {
    let what = format!("the wrapped key {}", row.name);
    let plain = keks.open(&what, &row.name, &row.kek_id, &row.key_enc)?;
    Key32::from_bytes(&plain).ok_or_else(|| KeyError::Decrypt {
        what,
        kek_id: row.kek_id.clone(),
    })
}

/// Re-seals every row not sealed under the current key-encryption key, in one transaction.
/// Idempotent; returns how many rows it changed. Refuses (changing nothing) when a row opens
/// with neither key. Audited as `kek_rewrap` by `by`, with the count and the key's public id.
pub async fn rewrap(db: &Db, keks: &Keks, by: &Operator) -> Result<usize, KeyError> {
    let current = keks.current.id().to_owned();
    let now = now();
    let audit = |rows: usize| {
        AuditRow::server(
            now,
            AdminEvent::KekRewrap,
            by.as_str(),
            serde_json::json!({ "rows": rows, "kek_id": keks.current.id() }),
        )
    };
    db.rewrap(
        |row| {
            if row.kek_id == current {
                return Ok(None);
            }
            let what = match row.table {
                WrappedTable::SigningKeys => format!("signing key {}", row.name),
                WrappedTable::WrappedKeys => format!("wrapped key {}", row.name),
            };
            let plain = keks.open(&what, &row.name, &row.kek_id, &row.sealed)?;
            let sealed = keks.current.seal(&row.name, &plain)?;
            Ok(Some((current.clone(), sealed)))
        },
        audit,
    )
    .await?
}
