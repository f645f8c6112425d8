//! The identity API routes of PROTOCOL.md section 5, each as one encrypted call through the
//! sidecar. The bodies are [`identity_protocol::identity`]'s; sealing and opening is the
//! protocol's too.

use std::fmt;

use identity_protocol::identity::{
    IssueRequest, RefreshRequest, TokenRequest, basic_header, bearer_header,
};
use identity_protocol::{ClientSession, paths};
use serde::Serialize;
use serde_json::Value;

use crate::transport::{Client, ClientError};

/// Keeps the first 10 and the last 4 characters of a long value: enough to tell tokens apart,
/// too little to use one.
pub fn shorten(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 20 {
        return value.to_owned();
    }
    let head: String = chars[..10].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// The fields of an answer that hold tokens or secrets, at any depth.
const TOKEN_FIELDS: [&str; 6] = [
    "access_token",
    "refresh_token",
    "token",
    "client_secret",
    "session_id",
    "id_token",
];

/// A copy of `value` with every token shortened.
pub fn shorten_tokens(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) if TOKEN_FIELDS.contains(&k.as_str()) => {
                            Value::String(shorten(s))
                        }
                        other => shorten_tokens(other),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(shorten_tokens).collect()),
        other => other.clone(),
    }
}

/// A decrypted answer of the identity API: its status (authenticated by the response AAD) and
/// its JSON body.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn is_ok(&self) -> bool {
        self.status == 200
    }

    /// A string field of the body.
    pub fn str(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }

    /// The OAuth `error` code of an error answer.
    pub fn error(&self) -> Option<&str> {
        self.str("error")
    }

    pub fn error_description(&self) -> &str {
        self.str("error_description").unwrap_or("")
    }

    /// `active` of an introspection answer.
    pub fn active(&self) -> Option<bool> {
        self.body.get("active").and_then(Value::as_bool)
    }

    /// The token pair of an issue or refresh answer.
    pub fn tokens(&self) -> Option<TokenPair> {
        Some(TokenPair {
            access_token: self.str("access_token")?.to_owned(),
            refresh_token: self.str("refresh_token")?.to_owned(),
        })
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body", &shorten_tokens(&self.body).to_string())
            .finish()
    }
}

/// An access token and the refresh token issued with it.
#[derive(Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &shorten(&self.access_token))
            .field("refresh_token", &shorten(&self.refresh_token))
            .finish()
    }
}

/// One encrypted `POST` of a JSON body; the answer must be JSON.
pub async fn post(
    client: &Client,
    session: &ClientSession,
    path: &str,
    authorization: Option<&str>,
    body: &impl Serialize,
) -> Result<Answer, ClientError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ClientError::Unexpected(format!("cannot encode the request: {e}")))?;
    let response = client.send(session, path, authorization, &bytes).await?;
    Ok(Answer {
        status: response.status,
        body: response.json()?,
    })
}

/// Step 2: `POST /api/v1/token/issue` with the client's credentials. `scope` and `audience`
/// default, on the identity API's side, to what the client is allowed.
pub async fn issue(
    client: &Client,
    session: &ClientSession,
    client_id: &str,
    client_secret: &str,
    subject: &str,
    scope: Option<&str>,
    audience: Option<&str>,
) -> Result<Answer, ClientError> {
    let body = IssueRequest {
        subject: subject.into(),
        scope: scope.map(Into::into),
        audience: audience.map(Into::into),
    };
    let authorization = basic_header(client_id, client_secret);
    post(
        client,
        session,
        paths::TOKEN_ISSUE,
        Some(&authorization),
        &body,
    )
    .await
}

/// Step 3: `POST /api/v1/introspect`, asking with an active access token (`bearer_token`).
pub async fn introspect(
    client: &Client,
    session: &ClientSession,
    bearer_token: &str,
    token: &str,
    hint: Option<&str>,
) -> Result<Answer, ClientError> {
    let body = TokenRequest::new(token, hint);
    post(
        client,
        session,
        paths::INTROSPECT,
        Some(&bearer_header(bearer_token)),
        &body,
    )
    .await
}

/// Step 5: `POST /api/v1/token` with `grant_type=refresh_token`.
pub async fn refresh(
    client: &Client,
    session: &ClientSession,
    bearer_token: &str,
    refresh_token: &str,
) -> Result<Answer, ClientError> {
    let body = RefreshRequest::new(refresh_token);
    post(
        client,
        session,
        paths::TOKEN,
        Some(&bearer_header(bearer_token)),
        &body,
    )
    .await
}

/// Step 6: `POST /api/v1/revoke`: revoking any token of a family revokes the whole family.
pub async fn revoke(
    client: &Client,
    session: &ClientSession,
    bearer_token: &str,
    token: &str,
    hint: Option<&str>,
) -> Result<Answer, ClientError> {
    let body = TokenRequest::new(token, hint);
    post(
        client,
        session,
        paths::REVOKE,
        Some(&bearer_header(bearer_token)),
        &body,
    )
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn long_values_are_shortened_short_ones_kept() {
        assert_eq!(shorten("short"), "short");
        let token = "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFUzI1NiJ9.payload.signature";
        let short = shorten(token);
        assert_eq!(short, "eyJ0eXAiOi…ture");
        assert!(short.chars().count() < 20);
    }

    #[test]
    fn tokens_are_shortened_at_any_depth_and_other_fields_kept() {
        let long = "x".repeat(64);
        let answer = json!({
            "access_token": long, "expires_in": 900, "scope": long,
            "nested": [{ "refresh_token": long }],
        });
        let shown = shorten_tokens(&answer);
        assert_eq!(shown["access_token"], "xxxxxxxxxx…xxxx");
        assert_eq!(shown["nested"][0]["refresh_token"], "xxxxxxxxxx…xxxx");
        assert_eq!(shown["scope"], long);
        assert_eq!(shown["expires_in"], 900);
    }
}
