//! A signing key in AWS Secrets Manager: the SecretString is a JSON document
//! `{"algorithm": "ES256" | "RS256" | "EdDSA", "private_key": "<PEM>", "public_key": "<PEM>"}`,
//! the format of the service this one replaces.

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{Algorithm, KeyReference, PublicJwk, ReferenceError, SigningError, SigningKey, pem};

/// The standard AWS environment (AWS_REGION, AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, profiles,
/// web identity, instance metadata), read once: its HTTP client and credentials are shared.
pub(super) async fn default_config() -> &'static SdkConfig {
    static CONFIG: tokio::sync::OnceCell<SdkConfig> = tokio::sync::OnceCell::const_new();
    CONFIG
        .get_or_init(|| aws_config::load_defaults(BehaviorVersion::latest()))
        .await
}

/// The secret's version id and its SecretString.
pub(super) async fn get_secret(
    reference: &KeyReference,
    secret_id: &str,
    aws: &SdkConfig,
) -> Result<(Option<String>, Zeroizing<String>), ReferenceError> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let mut output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|err| match err.as_service_error() {
            Some(GetSecretValueError::ResourceNotFoundException(_)) => ReferenceError::NotFound {
                reference: reference.to_string(),
            },
            // The SDK's messages name the operation and the cause, never the secret's value.
            _ => ReferenceError::Aws {
                reference: reference.to_string(),
                message: DisplayErrorContext(&err).to_string(),
            },
        })?;
    let version = output.version_id().map(str::to_owned);
    match output.secret_string.take() {
        Some(text) => Ok((version, Zeroizing::new(text))),
        None => Err(reference.secret_error(
            "the secret has no SecretString (a binary secret?): a JSON document \
             {\"algorithm\", \"private_key\", \"public_key\"} is expected",
        )),
    }
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct Document {
    algorithm: String,
    private_key: String,
    public_key: String,
}

/// The key of a SecretString: its algorithm must be the key's, and its public key the public
/// half of its private key.
pub(super) fn parse_secret(
    reference: &KeyReference,
    text: &str,
) -> Result<SigningKey, ReferenceError> {
    let mut json = serde_json::Deserializer::from_str(text);
    let document: Document = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| reference.secret_error(&document_error(&e.path().to_string(), e.inner())))?;
    json.end()
        .map_err(|_| reference.secret_error("the SecretString has text after its JSON document"))?;
    let alg: Algorithm = document
        .algorithm
        .parse()
        .map_err(|e| reference.key_error(SigningError::Algorithm(e)))?;
    let key = SigningKey::from_pem(&document.private_key).map_err(|e| reference.key_error(e))?;
    if key.algorithm() != alg {
        return Err(reference.key_error(SigningError::AlgorithmMismatch {
            expected: alg,
            found: key.algorithm(),
        }));
    }
    if !public_key_matches(&key, &document.public_key).map_err(|reason| {
        reference.secret_error(&format!("its public_key is not a PEM public key: {reason}"))
    })? {
        return Err(reference.secret_error(
            "its public_key does not match its private_key (a key pair was split or replaced \
             in part)",
        ));
    }
    Ok(key)
}

/// Whether the PEM public key (SubjectPublicKeyInfo, or PKCS#1 for RSA) is `key`'s.
fn public_key_matches(key: &SigningKey, text: &str) -> Result<bool, &'static str> {
    let block = pem::decode(text)?;
    match block.label.as_str() {
        // DER is canonical: the same key encodes to the same bytes.
        "PUBLIC KEY" => Ok(key.public_spki_der().as_deref() == Some(&block.der[..])),
        "RSA PUBLIC KEY" => Ok(super::key::rsa_public_integers(&block.der)
            .is_some_and(|(n, e)| &PublicJwk::from_rsa(n, e) == key.public_jwk())),
        _ => Err("a \"PUBLIC KEY\" block is expected"),
    }
}

/// serde's messages may quote the offending value, which here may be a private key: name the
/// field and the kind of fault only.
fn document_error(path: &str, error: &serde_json::Error) -> String {
    const SHAPE: &str = "{\"algorithm\", \"private_key\", \"public_key\"}";
    if !error.is_data() {
        return format!(
            "the SecretString is not valid JSON (line {}, column {}): a JSON document {SHAPE} \
             is expected",
            error.line(),
            error.column()
        );
    }
    let message = error.to_string();
    if let Some(field) = message.strip_prefix("missing field ") {
        let field = field.split(" at line").next().unwrap_or(field);
        format!("the secret's JSON document has no field {field}: {SHAPE} is expected")
    } else if path == "." {
        format!("the SecretString is not a JSON object {SHAPE}")
    } else {
        format!("the secret's field `{path}` is not a string")
    }
}
