//! What a token may carry of what was granted: its scope (RFC 6749 section 3.3), the one rule
//! for an issue, a client_credentials grant and a refresh that narrows its family's scope; its
//! audience (RFC 8707), the one rule for an issue and a client_credentials grant.

use crate::clients::{split_list, valid_scope_token};
use crate::error::ApiError;

/// Who holds the grant a requested scope is judged against: a client (an issue, a
/// client_credentials grant) or a refresh token's family (a refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grantee {
    Client,
    RefreshToken,
    /// A password grant: what the user's roles grant that the client may give.
    User,
}

/// The scope a request asks for, within `granted` (a space-separated list). Not asked for, it
/// is all of `granted`. Asked for, it is a list of scope tokens separated by spaces (duplicates
/// dropped), at least one, each of them in `granted`: "The requested scope MUST NOT include any
/// scope not originally granted" (RFC 6749 section 6). Else `invalid_scope`, naming the first
/// scope that is not granted.
///
/// An empty `scope` form parameter never reaches here: the form counts it as absent (section
/// 3.1). An empty string in a JSON body (/api/v1), or spaces only, asks for no scope at all,
/// which is refused.
pub(super) fn scope(
    granted: &str,
    requested: Option<&str>,
    grantee: Grantee,
) -> Result<String, ApiError> {
    let granted = split_list(granted);
    let Some(requested) = requested else {
        return Ok(granted.join(" "));
    };
    let items = split_list(requested);
    if items.is_empty() {
        return Err(ApiError::InvalidScope("scope is empty".into()));
    }
    for item in &items {
        if !valid_scope_token(item) {
            return Err(ApiError::InvalidScope("scope is malformed".into()));
        }
        if !granted.contains(item) {
            return Err(ApiError::InvalidScope(match grantee {
                Grantee::Client => format!("scope {item} is not allowed for this client"),
                Grantee::RefreshToken => {
                    format!("scope {item} was not granted with this refresh token")
                }
                Grantee::User => format!(
                    "scope {item} is not granted to this user by its roles (or not allowed for \
                     this client)"
                ),
            }));
        }
    }
    Ok(items.join(" "))
}

/// The audience a client asks for: "`audience` [defaults] to its single allowed audience"; a
/// client with several must name one (`invalid_request`), and may name only one of its own
/// (`invalid_target`). `named` is how the request names it, for the refusal's words:
/// `audience` on /api/v1, `resource (or audience)` on /oauth.
pub(super) fn audience(
    allowed: &str,
    requested: Option<&str>,
    named: &str,
) -> Result<String, ApiError> {
    let allowed = split_list(allowed);
    match requested {
        Some(a) if allowed.contains(&a) => Ok(a.to_owned()),
        Some(_) => Err(ApiError::InvalidTarget(format!(
            "{named} is not allowed for this client"
        ))),
        None => match allowed.as_slice() {
            [only] => Ok((*only).to_owned()),
            _ => Err(ApiError::invalid_request(format!(
                "{named} is required: the client has several audiences"
            ))),
        },
    }
}
