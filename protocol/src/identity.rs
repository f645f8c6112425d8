//! Section 5: the identity API's routes behind the sidecar. What both ends of those routes must
//! agree on lives here, once: the subject rule, the two Authorization schemes, and the request
//! bodies of steps 2, 3, 5 and 6 (the client serialises them, the identity API parses them).

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Why a subject is refused (section 5, step 2: "`subject` is required (1 to 255 characters,
/// not `-`)"). The texts name the rule, never the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject must be 1 to 255 characters")]
    Length,
    /// `-` stands for "anonymous" in the signed text of session init (section 1).
    #[error("subject must not be \"-\"")]
    Anonymous,
    /// The subject is a line of the newline-separated signed text of session init (section 1).
    #[error("subject must not contain control characters")]
    ControlCharacter,
}

/// A subject is 1 to 255 characters, not `-` (which the signing input uses for "anonymous"),
/// and without control characters (it is one line of that signing input).
pub fn check_subject(subject: &str) -> Result<(), SubjectError> {
    if !(1..=255).contains(&subject.chars().count()) {
        return Err(SubjectError::Length);
    }
    if subject == "-" {
        return Err(SubjectError::Anonymous);
    }
    if subject.chars().any(char::is_control) {
        return Err(SubjectError::ControlCharacter);
    }
    Ok(())
}

pub fn is_valid_subject(subject: &str) -> bool {
    check_subject(subject).is_ok()
}

/// `Authorization: Bearer <token>`: the scheme compared case-insensitively, then one or more
/// spaces, then a `b64token` of RFC 6750 section 2.1 (`ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/"`, then `=` padding only). Anything else is not a bearer token.
pub fn bearer_token(authorization: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(authorization).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    let body = token.trim_end_matches('=');
    let b64token =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    (!body.is_empty() && body.bytes().all(b64token)).then_some(token)
}

/// The value of `Authorization: Bearer <token>`.
pub fn bearer_header(token: &str) -> String {
    format!("Bearer {token}")
}

/// Client credentials from `Authorization: Basic b64(client_id:client_secret)` (RFC 7617: the
/// scheme case-insensitive, standard base64 with padding). The secret is wiped on drop.
pub fn basic_credentials(authorization: &[u8]) -> Option<(String, Zeroizing<String>)> {
    let value = std::str::from_utf8(authorization).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(STANDARD.decode(rest.trim()).ok()?);
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), Zeroizing::new(secret.to_owned())))
}

/// The value of `Authorization: Basic b64(client_id:client_secret)`, wiped on drop.
pub fn basic_header(client_id: &str, client_secret: &str) -> Zeroizing<String> {
    let credentials = Zeroizing::new(format!("{client_id}:{client_secret}"));
    Zeroizing::new(format!("Basic {}", STANDARD.encode(credentials.as_bytes())))
}

/// Step 2, `POST /api/v1/token/issue`: `{"subject", "scope", "audience"}`; `scope` defaults to
/// the client's allowed scopes, `audience` to its single allowed audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRequest<'a> {
    #[serde(borrow)]
    pub subject: Cow<'a, str>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Cow<'a, str>>,
}

/// The `grant_type` of step 5.
pub const REFRESH_TOKEN_GRANT: &str = "refresh_token";

/// `token_use` of an introspected token, and the values of `token_type_hint` (step 3).
pub const ACCESS_TOKEN_USE: &str = "access_token";
pub const REFRESH_TOKEN_USE: &str = "refresh_token";

/// What a reader of step 3's answer needs of it: whether the token is active, whose it is, and
/// of which kind. The identity API writes the whole answer (RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Introspected {
    pub active: bool,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub token_use: Option<String>,
}

impl Introspected {
    /// Active, and not a refresh token (an answer without `token_use` is taken as an access
    /// token's).
    pub fn is_active_access_token(&self) -> bool {
        self.active
            && self
                .token_use
                .as_deref()
                .is_none_or(|u| u == ACCESS_TOKEN_USE)
    }
}

/// Step 5, `POST /api/v1/token`: `{"grant_type": "refresh_token", "refresh_token"}`. Both are
/// optional on the wire so that the identity API can say which one is missing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest<'a> {
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Cow<'a, str>>,
}

impl<'a> RefreshRequest<'a> {
    pub fn new(refresh_token: &'a str) -> Self {
        Self {
            grant_type: Some(Cow::Borrowed(REFRESH_TOKEN_GRANT)),
            refresh_token: Some(Cow::Borrowed(refresh_token)),
        }
    }
}

/// Steps 3 and 6, `POST /api/v1/introspect` and `/api/v1/revoke`: `{"token",
/// "token_type_hint"}` (the hint optional: `access_token` or `refresh_token`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest<'a> {
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub token: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<Cow<'a, str>>,
}

impl<'a> TokenRequest<'a> {
    pub fn new(token: &'a str, token_type_hint: Option<&'a str>) -> Self {
        Self {
            token: Some(Cow::Borrowed(token)),
            token_type_hint: token_type_hint.map(Cow::Borrowed),
        }
    }
}

// The bodies that carry a token never print it.
impl fmt::Debug for RefreshRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("grant_type", &self.grant_type)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TokenRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("token_type_hint", &self.token_type_hint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(check_subject("test-user"), Ok(()));
        assert_eq!(check_subject(&"é".repeat(255)), Ok(()));
        assert_eq!(check_subject(""), Err(SubjectError::Length));
        assert_eq!(check_subject(&"a".repeat(256)), Err(SubjectError::Length));
        assert_eq!(check_subject("-"), Err(SubjectError::Anonymous));
        for bad in ["a\nb", "a\u{0}", "\u{7f}", "tab\there"] {
            assert_eq!(
                check_subject(bad),
                Err(SubjectError::ControlCharacter),
                "{bad:?}"
            );
        }
        assert!(is_valid_subject("--") && !is_valid_subject("-"));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(
            bearer_token(b"bEARER   a.b-c_d~e+f/g=="),
            Some("a.b-c_d~e+f/g==")
        );
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Bearer ==",
            b"Bearer a=b",
            b"Bearer a\tb",
            b"Basic abc",
            b"abc",
            &[0xff, 0xfe],
        ] {
            assert_eq!(
                bearer_token(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(bearer_header("abc"), "Bearer abc");
    }

    #[test]
    fn basic_credentials_both_ways() {
        let header = basic_header("c1", "s:ecret");
        let (id, secret) = basic_credentials(header.as_bytes()).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("c1", "s:ecret"));
        let other_case = format!("bASIC {}", STANDARD.encode("c1:x"));
        assert!(basic_credentials(other_case.as_bytes()).is_some());
        for bad in ["", "Basic", "Basic !!", "Bearer YzE6eA==", "Basic YzE="] {
            assert!(basic_credentials(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn bodies_round_trip_and_hide_their_tokens() {
        let issue = IssueRequest {
            subject: "alice".into(),
            scope: None,
            audience: Some("orders-api".into()),
        };
        let json = serde_json::to_string(&issue).unwrap();
        assert_eq!(json, r#"{"subject":"alice","audience":"orders-api"}"#);
        assert_eq!(
            serde_json::from_str::<IssueRequest<'_>>(&json).unwrap(),
            issue
        );

        let refresh = RefreshRequest::new("secret-refresh-token");
        let json = serde_json::to_string(&refresh).unwrap();
        assert_eq!(
            json,
            r#"{"grant_type":"refresh_token","refresh_token":"secret-refresh-token"}"#
        );
        assert!(!format!("{refresh:?}").contains("secret"));

        let token = TokenRequest::new("secret-token", None);
        assert_eq!(
            serde_json::to_string(&token).unwrap(),
            r#"{"token":"secret-token"}"#
        );
        assert!(!format!("{token:?}").contains("secret"));
        let answer: Introspected =
            serde_json::from_str(r#"{"active":true,"sub":"a","token_use":"access_token","x":1}"#)
                .unwrap();
        assert!(answer.is_active_access_token());
        let refresh: Introspected =
            serde_json::from_str(r#"{"active":true,"token_use":"refresh_token"}"#).unwrap();
        assert!(!refresh.is_active_access_token());
        assert!(
            !serde_json::from_str::<Introspected>(r#"{"active":false}"#)
                .unwrap()
                .is_active_access_token()
        );
        // Unknown fields are ignored; escapes are read into an owned string.
        let parsed: TokenRequest<'_> =
            serde_json::from_str(r#"{"token":"a\u0062c","extra":1}"#).unwrap();
        assert_eq!(parsed.token.as_deref(), Some("abc"));
    }
}
