//! The identity API routes of PROTOCOL.md section 5, each as one encrypted call through the
//! sidecar. Bodies are plain JSON here; sealing and opening is the protocol crate's.

use std::fmt;

use base64::Engine as _;
use identity_sidecar::client::{Client, ClientError};
use identity_sidecar::protocol::{ClientSession, paths};
use serde::Serialize;
use serde_json::Value;

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
            .field(
                "body",
                &crate::output::shorten_tokens(&self.body).to_string(),
            )
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
            .field("access_token", &crate::output::shorten(&self.access_token))
            .field(
                "refresh_token",
                &crate::output::shorten(&self.refresh_token),
            )
            .finish()
    }
}

/// `Authorization: Basic b64(client_id:client_secret)` (RFC 7617, standard alphabet, padded).
pub fn basic(client_id: &str, client_secret: &str) -> String {
    let credentials = format!("{client_id}:{client_secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The request bodies of section 5, serialised from borrowed fields (no `Value` to build).
#[derive(Debug, Serialize)]
pub struct IssueBody<'a> {
    pub subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<&'a str>,
}

/// Of introspection and revocation.
#[derive(Serialize)]
pub struct TokenBody<'a> {
    pub token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<&'a str>,
}

#[derive(Serialize)]
pub struct RefreshBody<'a> {
    grant_type: &'static str,
    pub refresh_token: &'a str,
}

// Shortened, as `TokenPair`'s: both hold a token.
impl fmt::Debug for TokenBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBody")
            .field("token", &crate::output::shorten(self.token))
            .field("token_type_hint", &self.token_type_hint)
            .finish()
    }
}

impl fmt::Debug for RefreshBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshBody")
            .field("refresh_token", &crate::output::shorten(self.refresh_token))
            .finish()
    }
}

impl<'a> RefreshBody<'a> {
    pub fn new(refresh_token: &'a str) -> Self {
        Self {
            grant_type: "refresh_token",
            refresh_token,
        }
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
    let body = IssueBody {
        subject,
        scope,
        audience,
    };
    let authorization = basic(client_id, client_secret);
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
    let body = TokenBody {
        token,
        token_type_hint: hint,
    };
    post(
        client,
        session,
        paths::INTROSPECT,
        Some(&bearer(bearer_token)),
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
    let body = RefreshBody::new(refresh_token);
    post(
        client,
        session,
        paths::TOKEN,
        Some(&bearer(bearer_token)),
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
    let body = TokenBody {
        token,
        token_type_hint: hint,
    };
    post(
        client,
        session,
        paths::REVOKE,
        Some(&bearer(bearer_token)),
        &body,
    )
    .await
}
