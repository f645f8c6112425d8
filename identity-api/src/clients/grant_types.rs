//! The grants of /oauth/token a client may be given (`client create/update --grant-types`):
//! which there are, how a client's list is read, and whether it holds one.

/// `grant_type=client_credentials` (RFC 6749 section 4.4) at /oauth/token.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// `grant_type=refresh_token` (RFC 6749 section 6) at /oauth/token; in a client's grant types it
/// also makes client_credentials answer with a refresh token.
pub use identity_protocol::identity::REFRESH_TOKEN_GRANT as REFRESH_TOKEN;
/// `grant_type=password` (RFC 6749 section 4.3) at /oauth/token: a user of the client's tenant
/// logs in with a username and password.
pub const PASSWORD: &str = "password";
/// The grants a client may be given for /oauth/token, as discovery lists them.
pub const GRANT_TYPES: [&str; 3] = [CLIENT_CREDENTIALS, REFRESH_TOKEN, PASSWORD];
/// What a client created without `--grant-types` may use (the migration's default too).
pub const DEFAULT_GRANT_TYPES: &str = CLIENT_CREDENTIALS;

/// The grant types of a client as given (`--grant-types`): `client_credentials`,
/// `refresh_token` and `password`, separated by spaces or commas, at least one; duplicates dropped. As stored:
/// separated by single spaces. `Err`: why not.
pub fn normalize(list: &str) -> Result<String, String> {
    let mut out: Vec<&str> = Vec::new();
    for item in list.split([' ', ',']).filter(|s| !s.is_empty()) {
        match item {
            _ if GRANT_TYPES.contains(&item) => {
                if !out.contains(&item) {
                    out.push(item);
                }
            }
            other => {
                return Err(format!(
                    "{other:?} is not one of {}",
                    GRANT_TYPES.join(", ")
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("empty".into());
    }
    Ok(out.join(" "))
}

/// Whether a client's grant types (as stored) include `grant`.
pub fn has_grant(grant_types: &str, grant: &str) -> bool {
    grant_types.split(' ').any(|g| g == grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types_are_the_three_grants_of_the_token_endpoint() {
        let ok = |text: &str| normalize(text).unwrap();
        assert_eq!(ok("client_credentials"), "client_credentials");
        assert_eq!(ok("password"), "password");
        assert_eq!(
            ok("refresh_token, client_credentials refresh_token"),
            "refresh_token client_credentials"
        );
        assert_eq!(
            ok("password refresh_token,password"),
            "password refresh_token"
        );
        for (bad, says) in [
            ("", "empty"),
            (" , ", "empty"),
            (
                "authorization_code",
                "not one of client_credentials, refresh_token, password",
            ),
            ("Password", "not one of"),
            ("Client_Credentials", "not one of"),
        ] {
            let err = normalize(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert!(has_grant("client_credentials refresh_token", REFRESH_TOKEN));
        assert!(!has_grant("client_credentials", REFRESH_TOKEN));
        assert!(!has_grant("refresh_tokens", REFRESH_TOKEN));
        assert!(has_grant("password refresh_token", PASSWORD));
    }
}
