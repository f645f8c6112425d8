//! Signing keys kept outside the database: a PEM file, or an AWS Secrets Manager secret; and
//! [`Watched`], which reloads one when it changes.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use zeroize::Zeroizing;

use super::aws::{self, SdkConfig};
use super::{SigningError, SigningKey};

/// Where a tenant's signing key is kept, when not generated and sealed in the database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyReference {
    /// A PEM private key file (`file:/path/key.pem`, or an absolute path).
    File(PathBuf),
    /// A secret of AWS Secrets Manager (`aws-sm:<name or ARN>`): a JSON document
    /// `{"algorithm", "private_key", "public_key"}`, both keys PEM.
    AwsSecretsManager { secret_id: String },
}

/// Why a referenced key cannot be loaded. Every message names the reference, never key material.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "{0:?} is not a signing key reference: expected \"file:/path/to/key.pem\", an absolute \
         path, or \"aws-sm:<secret name or ARN>\""
    )]
    Syntax(String),
    #[error("signing key {reference}: cannot read the file: {source}")]
    Read {
        reference: String,
        source: std::io::Error,
    },
    #[error("signing key {reference}: {source}")]
    Key {
        reference: String,
        source: SigningError,
    },
    #[error("signing key {reference}: {reason}")]
    Secret { reference: String, reason: String },
    #[error("signing key {reference}: no such secret in AWS Secrets Manager")]
    NotFound { reference: String },
    #[error("signing key {reference}: AWS Secrets Manager: {message}")]
    Aws { reference: String, message: String },
}

impl FromStr for KeyReference {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Shown in the error in part only: a key pasted in the wrong place must not be logged.
        let syntax = || ReferenceError::Syntax(text.chars().take(48).collect());
        if let Some(path) = text.strip_prefix("file:") {
            // file:///etc/key.pem (RFC 8089) as well as file:/etc/key.pem.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(syntax());
            }
            return Ok(KeyReference::File(PathBuf::from(path)));
        }
        if let Some(id) = text.strip_prefix("aws-sm:") {
            // Names are 1-512 characters of [A-Za-z0-9/_+=.@-]; ARNs add ':'.
            let valid = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c);
            if id.is_empty() || id.len() > 2048 || !id.chars().all(valid) {
                return Err(syntax());
            }
            return Ok(KeyReference::AwsSecretsManager {
                secret_id: id.to_owned(),
            });
        }
        if text.starts_with('/') {
            return Ok(KeyReference::File(PathBuf::from(text)));
        }
        Err(syntax())
    }
}

impl fmt::Display for KeyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyReference::File(path) => write!(f, "file:{}", path.display()),
            KeyReference::AwsSecretsManager { secret_id } => write!(f, "aws-sm:{secret_id}"),
        }
    }
}

impl KeyReference {
    /// Loads the key; AWS settings (region, endpoint, credentials) from the standard AWS
    /// environment, read once per process.
    pub async fn load(&self) -> Result<SigningKey, ReferenceError> {
        match self {
            KeyReference::File(_) => self.load_file().await,
            KeyReference::AwsSecretsManager { .. } => {
                self.load_with(aws::default_config().await).await
            }
        }
    }

    /// Loads the key, with these AWS settings for a secret.
    pub async fn load_with(&self, aws: &SdkConfig) -> Result<SigningKey, ReferenceError> {
        match self {
            KeyReference::File(_) => self.load_file().await,
            KeyReference::AwsSecretsManager { secret_id } => {
                let (_, text) = aws::get_secret(self, secret_id, aws).await?;
                aws::parse_secret(self, &text)
            }
        }
    }

    async fn load_file(&self) -> Result<SigningKey, ReferenceError> {
        let KeyReference::File(path) = self else {
            return Err(self.secret_error("not a file reference"));
        };
        let bytes =
            Zeroizing::new(
                tokio::fs::read(path)
                    .await
                    .map_err(|source| ReferenceError::Read {
                        reference: self.to_string(),
                        source,
                    })?,
            );
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| self.secret_error("the file is not text (PEM expected)"))?;
        SigningKey::from_pem(text).map_err(|source| self.key_error(source))
    }

    pub(crate) fn key_error(&self, source: SigningError) -> ReferenceError {
        ReferenceError::Key {
            reference: self.to_string(),
            source,
        }
    }

    pub(crate) fn secret_error(&self, reason: &str) -> ReferenceError {
        ReferenceError::Secret {
            reference: self.to_string(),
            reason: reason.to_owned(),
        }
    }
}

/// A reference and what was last loaded from it, to reload only on change: a file when its
/// modification time or length changes (one `stat` per call), a secret when its version
/// changes, asked at most once per interval.
#[derive(Debug)]
pub struct Watched {
    reference: KeyReference,
    interval: Duration,
    aws: Option<SdkConfig>,
    seen: Seen,
}

#[derive(Debug)]
enum Seen {
    Never,
    File {
        modified: SystemTime,
        len: u64,
    },
    Secret {
        version: Option<String>,
        asked: Instant,
    },
}

impl Watched {
    /// How often a secret is asked for by default: Secrets Manager bills every request.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

    pub fn new(reference: KeyReference) -> Self {
        Self {
            reference,
            interval: Self::DEFAULT_INTERVAL,
            aws: None,
            seen: Seen::Never,
        }
    }

    /// The least time between two requests for a secret (files are checked on every call).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// AWS settings other than the standard environment's.
    pub fn with_aws_config(mut self, aws: SdkConfig) -> Self {
        self.aws = Some(aws);
        self
    }

    pub fn reference(&self) -> &KeyReference {
        &self.reference
    }

    /// The key if it is new or changed since the last successful load, None if unchanged (or,
    /// for a secret, asked for less than an interval ago). After an error the next call tries
    /// again (a secret: after the interval).
    pub async fn load_if_changed(&mut self) -> Result<Option<SigningKey>, ReferenceError> {
        match &self.reference {
            KeyReference::File(path) => {
                let meta =
                    tokio::fs::metadata(path)
                        .await
                        .map_err(|source| ReferenceError::Read {
                            reference: self.reference.to_string(),
                            source,
                        })?;
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let len = meta.len();
                if matches!(self.seen, Seen::File { modified: m, len: l } if m == modified && l == len)
                {
                    return Ok(None);
                }
                // Stamped before reading: a change while reading is seen by the next call.
                let key = self.reference.load_file().await?;
                self.seen = Seen::File { modified, len };
                Ok(Some(key))
            }
            KeyReference::AwsSecretsManager { secret_id } => {
                let previous = match &self.seen {
                    Seen::Secret { asked, .. } if asked.elapsed() < self.interval => {
                        return Ok(None);
                    }
                    Seen::Secret { version, .. } => version.clone(),
                    _ => None,
                };
                self.seen = Seen::Secret {
                    version: previous.clone(),
                    asked: Instant::now(),
                };
                let aws = match &self.aws {
                    Some(aws) => aws,
                    None => aws::default_config().await,
                };
                let (version, text) = aws::get_secret(&self.reference, secret_id, aws).await?;
                if version.is_some() && version == previous {
                    return Ok(None);
                }
                let key = aws::parse_secret(&self.reference, &text)?;
                self.seen = Seen::Secret {
                    version,
                    asked: Instant::now(),
                };
                Ok(Some(key))
            }
        }
    }
}

/// The AWS Secrets Manager references are tested against moto, in tests/signing_aws.rs.
#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::signing::Algorithm;
    use crate::signing::tests::to_pem;

    #[tokio::test]
    async fn file_references_load_and_reload_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let reference: KeyReference = format!("file:{}", path.display()).parse().unwrap();
        assert_eq!(reference, KeyReference::File(path.clone()));
        assert_eq!(
            reference.to_string().parse::<KeyReference>().unwrap(),
            reference
        );
        assert_eq!(
            path.display().to_string().parse::<KeyReference>().unwrap(),
            reference
        );

        // Missing: the error names the reference.
        let err = reference.load().await.unwrap_err();
        assert!(matches!(err, ReferenceError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        let mut watched = Watched::new(reference.clone());
        assert!(
            watched
                .load_if_changed()
                .await
                .unwrap_err()
                .to_string()
                .contains("key.pem")
        );

        let (first, der) = SigningKey::generate(Algorithm::Es256).unwrap();
        std::fs::write(&path, to_pem("PRIVATE KEY", &der)).unwrap();
        assert_eq!(reference.load().await.unwrap().kid(), first.kid());
        assert_eq!(
            watched.load_if_changed().await.unwrap().unwrap().kid(),
            first.kid()
        );
        assert!(watched.load_if_changed().await.unwrap().is_none());

        // Replaced by a key of another algorithm: seen (the length changes, and the time is set
        // apart explicitly so that a coarse file system clock cannot hide it).
        let (second, der) = SigningKey::generate(Algorithm::Rs256).unwrap();
        std::fs::write(&path, to_pem("PRIVATE KEY", &der)).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        let reloaded = watched.load_if_changed().await.unwrap().unwrap();
        assert_eq!(
            (reloaded.kid(), reloaded.algorithm()),
            (second.kid(), Algorithm::Rs256)
        );
        assert!(watched.load_if_changed().await.unwrap().is_none());

        // Broken: the error names the reference and not the text; the old key stays in use.
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = watched.load_if_changed().await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("signing key file:{}: ", path.display())),
            "{err}"
        );
        assert!(err.contains("not a P-256"), "{err}");
    }

    #[test]
    fn references_parse_and_display() {
        for text in [
            "file:/etc/keys/a.pem",
            "aws-sm:tenant/acme-signing",
            "aws-sm:arn:aws:secretsmanager:eu-west-1:123456789012:secret:k-AbCdEf",
        ] {
            assert_eq!(text.parse::<KeyReference>().unwrap().to_string(), text);
        }
        assert_eq!(
            "file:///etc/k.pem".parse::<KeyReference>().unwrap(),
            KeyReference::File("/etc/k.pem".into())
        );
        for bad in [
            "",
            "key.pem",
            "file:",
            "aws-sm:",
            "aws-sm:has space",
            "s3://bucket/key",
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC",
        ] {
            let err = bad.parse::<KeyReference>().unwrap_err().to_string();
            assert!(
                err.contains("aws-sm:<secret name or ARN>"),
                "{bad:?}: {err}"
            );
            assert!(
                !err.contains("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC"),
                "{err}"
            );
        }
    }
}
