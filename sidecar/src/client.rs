//! An HTTP client over the protocol (feature `client`): session init, anonymous or
//! authenticated, and encrypted requests. The cryptography is [`crate::protocol`]'s; this module
//! only moves bytes and explains failures.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::protocol::handshake::{ClientHandshake, ClientSession, InitAnswer};
use crate::protocol::signing::{KeyDocument, TrustedKeys};
use crate::protocol::{self, ErrorCode, Plaintext, headers, paths};

/// Why a call failed, in terms a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the sidecar at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// A plaintext error of PROTOCOL.md section 4. Unauthenticated: a reason to retry or to
    /// start a new session, never data.
    #[error("the sidecar answered {status} {code}: {description}")]
    Sidecar {
        status: u16,
        code: String,
        description: String,
    },
    #[error(transparent)]
    Protocol(#[from] protocol::Error),
    #[error("unexpected answer from the sidecar: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The section 4 code, when the sidecar itself refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Sidecar { code, .. } => ErrorCode::parse(code),
            _ => None,
        }
    }
}

/// How the client came to trust the sidecar's signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// A key configured ahead of time (e.g. SIDECAR_PUBLIC_KEY).
    Pinned,
    /// The key document was fetched from the sidecar itself: trust on first use.
    FirstUse { key_ids: Vec<String> },
}

/// A decrypted answer of the identity API.
pub struct Response {
    /// The identity API's HTTP status, authenticated by the response AAD.
    pub status: u16,
    pub body: Plaintext,
}

impl Response {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(self.body.as_bytes())
            .map_err(|e| ClientError::Unexpected(format!("answer is not the expected JSON: {e}")))
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("body", &self.body)
            .finish()
    }
}

/// A client of one sidecar.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    trusted: TrustedKeys,
    trust: Trust,
}

impl Client {
    /// With `pinned_key` (b64u of the sidecar's public signing key) every answer is verified
    /// against it; without, the key document is fetched now and trusted on first use.
    pub async fn connect(base_url: &str, pinned_key: Option<&str>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Unexpected(format!("cannot build an HTTP client: {e}")))?;
        Self::with_http(http, base_url, pinned_key).await
    }

    pub async fn with_http(
        http: reqwest::Client,
        base_url: &str,
        pinned_key: Option<&str>,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let (trusted, trust) = match pinned_key {
            Some(key) => (TrustedKeys::pinned(key)?, Trust::Pinned),
            None => {
                let url = format!("{base}{}", paths::KEY_DOCUMENT);
                let answer = http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| unreachable(&url, &e))?;
                if !answer.status().is_success() {
                    return Err(sidecar_error(answer).await);
                }
                let document: KeyDocument = answer.json().await.map_err(|e| {
                    ClientError::Unexpected(format!("key document is not valid: {e}"))
                })?;
                let key_ids = document.keys.iter().map(|k| k.key_id.clone()).collect();
                (
                    TrustedKeys::from_document(&document)?,
                    Trust::FirstUse { key_ids },
                )
            }
        };
        Ok(Self {
            http,
            base,
            trusted,
            trust,
        })
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Journey step 1: an anonymous session.
    pub async fn init_anonymous(&self) -> Result<ClientSession, ClientError> {
        self.init(None).await
    }

    /// Journey step 4: a session bound to `subject`, proven by an active access token of that
    /// subject. `previous` names a session the sidecar may end once the new one exists.
    pub async fn init_authenticated(
        &self,
        access_token: &str,
        subject: &str,
        previous: Option<&str>,
    ) -> Result<ClientSession, ClientError> {
        self.init(Some((access_token, subject, previous))).await
    }

    async fn init(
        &self,
        authenticated: Option<(&str, &str, Option<&str>)>,
    ) -> Result<ClientSession, ClientError> {
        let handshake = ClientHandshake::new();
        let url = format!("{}{}", self.base, paths::SESSION_INIT);
        let mut request = self.http.post(&url).json(&handshake.request());
        if let Some((token, subject, previous)) = authenticated {
            request = request
                .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"))
                .header(headers::SUBJECT, subject);
            if let Some(previous) = previous {
                request = request.header(headers::SESSION_ID, previous);
            }
        }
        let answer = request.send().await.map_err(|e| unreachable(&url, &e))?;
        if answer.status() != reqwest::StatusCode::OK {
            return Err(sidecar_error(answer).await);
        }
        let answer: InitAnswer = answer.json().await.map_err(|e| {
            ClientError::Unexpected(format!("session init answer is not valid: {e}"))
        })?;
        let subject = authenticated.map(|(_, subject, _)| subject);
        Ok(handshake.finish(&answer, &self.trusted, subject)?)
    }

    /// Journey steps 2, 3, 5 and 6: one encrypted `POST`.
    pub async fn send(
        &self,
        session: &ClientSession,
        path: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<Response, ClientError> {
        let sealed = session.seal_request("POST", path, authorization, body)?;
        self.send_sealed(session, path, authorization, sealed.seq, sealed.body)
            .await
    }

    /// Sends an envelope sealed by the caller (tests replay and splice with it).
    pub async fn send_sealed(
        &self,
        session: &ClientSession,
        path: &str,
        authorization: Option<&str>,
        seq: u64,
        envelope: Vec<u8>,
    ) -> Result<Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .post(&url)
            .header(headers::SESSION_ID, session.id())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(envelope);
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let answer = request.send().await.map_err(|e| unreachable(&url, &e))?;
        // Every answer of the identity API comes encrypted with X-Session-Id; the sidecar's own
        // errors come in plaintext without it (section 4).
        if !answer.headers().contains_key(headers::SESSION_ID) {
            return Err(sidecar_error(answer).await);
        }
        let status = answer.status().as_u16();
        let body = answer.bytes().await.map_err(|e| unreachable(&url, &e))?;
        let body = session.open_response("POST", path, seq, status, &body)?;
        Ok(Response { status, body })
    }
}

fn unreachable(url: &str, error: &reqwest::Error) -> ClientError {
    // reqwest's Display includes the URL but never headers or bodies.
    let reason = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection refused or failed (is it running?)".to_owned()
    } else {
        error.to_string()
    };
    ClientError::Unreachable {
        url: url.to_owned(),
        reason,
    }
}

async fn sidecar_error(answer: reqwest::Response) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
        #[serde(default)]
        error_description: String,
    }
    let status = answer.status().as_u16();
    match answer.json::<Body>().await {
        Ok(body) => ClientError::Sidecar {
            status,
            code: body.error,
            description: body.error_description,
        },
        Err(_) => ClientError::Unexpected(format!(
            "HTTP {status} without a protocol error body (is this a sidecar?)"
        )),
    }
}
