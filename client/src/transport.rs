//! The sidecar over HTTP (reqwest): session init, anonymous or authenticated, and sealed
//! requests, with failures a user can act on.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

use identity_protocol::handshake::{ClientHandshake, ClientSession, InitAnswer};
use identity_protocol::identity::bearer_header;
use identity_protocol::signing::{KeyDocument, TrustedKeys};
use identity_protocol::{self as protocol, ErrorCode, Plaintext, headers, paths};

/// Why a call failed, in terms a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the sidecar at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("not a valid URL: {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
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
    routes: Routes,
    trusted: TrustedKeys,
    trust: Trust,
}

/// The URLs of the protocol's routes under one base URL, parsed once: reqwest parses a URL
/// given as a string on every request (with IDNA processing of the host), 3-5 % of a busy
/// client's CPU. Paths outside [`paths`] are parsed when asked for.
#[derive(Debug, Clone)]
pub struct Routes {
    base: String,
    parsed: Vec<(&'static str, reqwest::Url)>,
}

impl Routes {
    /// `base_url`: where the sidecar serves, e.g. `http://127.0.0.1:8141` (a trailing `/` is
    /// dropped; a path prefix is kept).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        // The base alone first, so that an error names what the user gave.
        parse_url(&base, "")?;
        let parsed = [
            paths::SESSION_INIT,
            paths::TOKEN_ISSUE,
            paths::INTROSPECT,
            paths::TOKEN,
            paths::REVOKE,
            paths::KEY_DOCUMENT,
            paths::JWKS,
        ]
        .into_iter()
        .chain(paths::STANDARD)
        .map(|path| Ok((path, parse_url(&base, path)?)))
        .collect::<Result<_, ClientError>>()?;
        Ok(Self { base, parsed })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`) under the base.
    pub fn url(&self, path: &str) -> Result<reqwest::Url, ClientError> {
        match self.parsed.iter().find(|(known, _)| *known == path) {
            Some((_, url)) => Ok(url.clone()),
            None => parse_url(&self.base, path),
        }
    }
}

/// A sealed request is single-use: sent again it would be a replay, which the sidecar refuses.
/// `never()` alone still clones every request in case it retries; with no retries allowed,
/// reqwest stops cloning.
pub fn no_retries() -> reqwest::retry::Builder {
    reqwest::retry::never().max_retries_per_request(0)
}

fn parse_url(base: &str, path: &str) -> Result<reqwest::Url, ClientError> {
    let url = format!("{base}{path}");
    match reqwest::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(parsed),
        // `localhost:8141` parses, with the scheme `localhost`.
        Ok(_) => Err(ClientError::InvalidUrl {
            url,
            reason: "the scheme must be http or https".into(),
        }),
        Err(e) => Err(ClientError::InvalidUrl {
            url,
            reason: e.to_string(),
        }),
    }
}

impl Client {
    /// With `pinned_key` (b64u of the sidecar's public signing key) every answer is verified
    /// against it; without, the key document is fetched now and trusted on first use.
    pub async fn connect(base_url: &str, pinned_key: Option<&str>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .retry(no_retries())
            .build()
            .map_err(|e| ClientError::Unexpected(format!("cannot build an HTTP client: {e}")))?;
        Self::with_http(http, base_url, pinned_key).await
    }

    /// As [`Client::connect`], with a reqwest client of the caller's; build it with
    /// `.retry(no_retries())` (see [`no_retries`]).
    pub async fn with_http(
        http: reqwest::Client,
        base_url: &str,
        pinned_key: Option<&str>,
    ) -> Result<Self, ClientError> {
        let routes = Routes::new(base_url)?;
        let (trusted, trust) = match pinned_key {
            Some(key) => (TrustedKeys::pinned(key)?, Trust::Pinned),
            None => {
                let answer = http
                    .get(routes.url(paths::KEY_DOCUMENT)?)
                    .send()
                    .await
                    .map_err(|e| unreachable(&routes, paths::KEY_DOCUMENT, &e))?;
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
            routes,
            trusted,
            trust,
        })
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
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
        let mut request = self
            .http
            .post(self.routes.url(paths::SESSION_INIT)?)
            .json(&handshake.request());
        if let Some((token, subject, previous)) = authenticated {
            request = request
                .header(reqwest::header::AUTHORIZATION, bearer_header(token))
                .header(headers::SUBJECT, subject);
            if let Some(previous) = previous {
                request = request.header(headers::SESSION_ID, previous);
            }
        }
        let answer = request
            .send()
            .await
            .map_err(|e| unreachable(&self.routes, paths::SESSION_INIT, &e))?;
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
        let mut request = self
            .http
            .post(self.routes.url(path)?)
            .header(headers::SESSION_ID, session.id())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(envelope);
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| unreachable(&self.routes, path, &e))?;
        // Every answer of the identity API comes encrypted with X-Session-Id; the sidecar's own
        // errors come in plaintext without it (section 4).
        if !answer.headers().contains_key(headers::SESSION_ID) {
            return Err(sidecar_error(answer).await);
        }
        let status = answer.status().as_u16();
        let body = answer
            .bytes()
            .await
            .map_err(|e| unreachable(&self.routes, path, &e))?;
        let body = session.open_response("POST", path, seq, status, &body)?;
        Ok(Response { status, body })
    }
}

fn unreachable(routes: &Routes, path: &str, error: &reqwest::Error) -> ClientError {
    // reqwest's Display includes the URL but never headers or bodies.
    let reason = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection refused or failed (is it running?)".to_owned()
    } else {
        error.to_string()
    };
    ClientError::Unreachable {
        url: format!("{}{path}", routes.base()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_join_the_base_and_the_path_as_written() {
        let routes = Routes::new("http://127.0.0.1:8141/").unwrap();
        assert_eq!(routes.base(), "http://127.0.0.1:8141");
        assert_eq!(
            routes.url(paths::INTROSPECT).unwrap().as_str(),
            "http://127.0.0.1:8141/api/v1/introspect"
        );
        // Not one of the protocol's paths: parsed on demand, the same way.
        assert_eq!(
            routes.url("/api/v1/other").unwrap().as_str(),
            "http://127.0.0.1:8141/api/v1/other"
        );
        // A base with a path of its own keeps it (a sidecar behind a prefix).
        let prefixed = Routes::new("http://gateway.internal/sidecar").unwrap();
        assert_eq!(
            prefixed.url(paths::TOKEN).unwrap().as_str(),
            "http://gateway.internal/sidecar/api/v1/token"
        );
    }

    #[test]
    fn a_base_that_is_no_url_is_refused_up_front() {
        for bad in ["127.0.0.1:8141", "localhost:8141", "", "http://[::1"] {
            let Err(ClientError::InvalidUrl { url, reason }) = Routes::new(bad) else {
                panic!("{bad:?} was accepted");
            };
            assert_eq!(url, bad);
            assert!(!reason.is_empty());
        }
    }
}
