//! A build without AWS Secrets Manager (the cargo feature `aws-secrets-manager` off): an
//! `aws-sm:` reference parses, and reading it says how to get a build that can.

use zeroize::Zeroizing;

use super::{KeyReference, ReferenceError, SigningKey};

/// Stands for the AWS SDK's settings, which this build has none of: it cannot be made.
#[derive(Debug, Clone)]
pub struct SdkConfig(());

fn unsupported(reference: &KeyReference) -> ReferenceError {
    ReferenceError::Aws {
        reference: reference.to_string(),
        message: "this identity-api was built without AWS Secrets Manager support: build it \
                  with the cargo feature aws-secrets-manager (the release image has it)"
            .to_owned(),
    }
}

pub(super) async fn default_config() -> &'static SdkConfig {
    static CONFIG: SdkConfig = SdkConfig(());
    &CONFIG
}

pub(super) async fn get_secret(
    reference: &KeyReference,
    _secret_id: &str,
    _aws: &SdkConfig,
) -> Result<(Option<String>, Zeroizing<String>), ReferenceError> {
    Err(unsupported(reference))
}

pub(super) fn parse_secret(
    reference: &KeyReference,
    _text: &str,
) -> Result<SigningKey, ReferenceError> {
    Err(unsupported(reference))
}
