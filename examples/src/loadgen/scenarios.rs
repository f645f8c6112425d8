//! The scenarios: what each one's request is (sealed through the sidecar or plaintext straight
//! to the identity API), what a client holds between requests, and how each answer is checked.

use anyhow::{Context as _, anyhow, bail};
use identity_client::calls::{self, Answer, TokenPair};
use identity_client::{Client, Routes};
use identity_protocol::identity::{
    IssueRequest, RefreshRequest, TokenRequest, basic_header, bearer_header,
};
use identity_protocol::{ClientSession, headers, paths};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scenario {
    Init,
    Introspect,
    IntrospectDirect,
    Issue,
    IssueDirect,
    Refresh,
    RefreshDirect,
    Jwks,
    JwksDirect,
    /// `POST /oauth/token`, client_credentials, straight to the identity API.
    OauthTokenDirect,
    /// `POST /oauth/introspect` of the client's own access token, straight to the identity API.
    OauthIntrospectDirect,
}

impl Scenario {
    pub(super) fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name.trim() {
            "init" => Self::Init,
            "introspect" => Self::Introspect,
            "introspect-direct" => Self::IntrospectDirect,
            "issue" => Self::Issue,
            "issue-direct" => Self::IssueDirect,
            "refresh" => Self::Refresh,
            "refresh-direct" => Self::RefreshDirect,
            "jwks" => Self::Jwks,
            "jwks-direct" => Self::JwksDirect,
            "oauth-token-direct" => Self::OauthTokenDirect,
            "oauth-introspect-direct" => Self::OauthIntrospectDirect,
            other => bail!("unknown scenario {other}"),
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Introspect => "introspect",
            Self::IntrospectDirect => "introspect-direct",
            Self::Issue => "issue",
            Self::IssueDirect => "issue-direct",
            Self::Refresh => "refresh",
            Self::RefreshDirect => "refresh-direct",
            Self::Jwks => "jwks",
            Self::JwksDirect => "jwks-direct",
            Self::OauthTokenDirect => "oauth-token-direct",
            Self::OauthIntrospectDirect => "oauth-introspect-direct",
        }
    }

    pub(super) fn direct(self) -> bool {
        matches!(
            self,
            Self::IntrospectDirect | Self::IssueDirect | Self::RefreshDirect
        )
    }
}

/// What every worker shares.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) client: Client,
    pub(super) http: reqwest::Client,
    /// The identity API's routes, for the direct scenarios.
    pub(super) api: Routes,
    pub(super) internal_token: Option<String>,
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) subject: String,
}

impl Target {
    fn internal_token(&self) -> anyhow::Result<&str> {
        self.internal_token
            .as_deref()
            .ok_or_else(|| anyhow!("the direct scenarios need --internal-token"))
    }

    /// A plaintext `POST` straight to the identity API, as the sidecar sends it.
    async fn direct(
        &self,
        path: &str,
        authorization: &str,
        body: &impl Serialize,
    ) -> Result<Answer, String> {
        let token = self.internal_token().map_err(|e| e.to_string())?;
        let request = self
            .http
            .post(self.api.url(path).map_err(|e| e.to_string())?)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(headers::INTERNAL_TOKEN, token)
            .json(body);
        answer_of(request).await
    }

    /// `GET /.well-known/jwks.json` from `routes`, which the sidecar passes through in
    /// plaintext: the cost of the hop without the protocol.
    async fn jwks(&self, routes: &Routes) -> Result<(), String> {
        let answer = self
            .http
            .get(routes.url(paths::JWKS).map_err(|e| e.to_string())?)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = answer.status().as_u16();
        let bytes = answer.bytes().await.map_err(|e| transport(&e))?;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|_| "HTTP 200: body is not JSON".to_owned())?;
        match body["keys"].as_array() {
            Some(keys) if !keys.is_empty() => Ok(()),
            _ => Err("HTTP 200 without keys".into()),
        }
    }

    /// A form `POST` of a standard endpoint straight to the identity API, the client
    /// authenticating with Basic (no internal token: these routes do not take one).
    async fn standard(&self, path: &str, form: &[(&str, &str)]) -> Result<Answer, String> {
        let request = self
            .http
            .post(self.api.url(path).map_err(|e| e.to_string())?)
            .header(
                reqwest::header::AUTHORIZATION,
                basic_header(&self.client_id, &self.client_secret).as_str(),
            )
            .form(form);
        answer_of(request).await
    }

    /// client_credentials at /oauth/token: the access token.
    async fn client_credentials(&self) -> Result<String, String> {
        let answer = self
            .standard(paths::OAUTH_TOKEN, &[("grant_type", "client_credentials")])
            .await?;
        if !answer.is_ok() {
            return Err(not_ok(&answer));
        }
        answer
            .body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "HTTP 200 without an access token".to_owned())
    }

    async fn issue_direct(&self) -> Result<Answer, String> {
        self.direct(
            paths::TOKEN_ISSUE,
            &basic_header(&self.client_id, &self.client_secret),
            &IssueRequest {
                subject: self.subject.as_str().into(),
                scope: None,
                audience: None,
            },
        )
        .await
    }
}

/// Sends `request`: its status and JSON body.
async fn answer_of(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let answer = request.send().await.map_err(|e| transport(&e))?;
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await.map_err(|e| transport(&e))?;
    let body =
        serde_json::from_slice(&bytes).map_err(|_| format!("HTTP {status}: body is not JSON"))?;
    Ok(Answer { status, body })
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "transport: timed out".into()
    } else if e.is_connect() {
        "transport: connect failed".into()
    } else {
        "transport: other".into()
    }
}

/// The error kind of an answer that is not a success (bounded label set: status and code).
fn not_ok(answer: &Answer) -> String {
    format!(
        "HTTP {} {}",
        answer.status,
        answer.error().unwrap_or("(no error code)")
    )
}

fn client_error(e: &identity_client::ClientError) -> String {
    use identity_client::ClientError as E;
    match e {
        E::Unreachable { reason, .. } => format!("transport: {reason}"),
        E::InvalidUrl { url, .. } => format!("invalid URL {url}"),
        E::Sidecar { status, code, .. } => format!("sidecar HTTP {status} {code}"),
        E::Protocol(p) => format!("protocol (decrypt/verify): {p}"),
        E::Unexpected(what) => format!("unexpected: {}", what.chars().take(60).collect::<String>()),
    }
}

fn expect_pair(answer: Answer) -> Result<TokenPair, String> {
    if !answer.is_ok() {
        return Err(not_ok(&answer));
    }
    answer
        .tokens()
        .ok_or_else(|| "HTTP 200 without a token pair".to_owned())
}

fn expect_active(answer: &Answer) -> Result<(), String> {
    if !answer.is_ok() {
        return Err(not_ok(answer));
    }
    match answer.active() {
        Some(true) => Ok(()),
        Some(false) => Err("HTTP 200 but active=false".into()),
        None => Err("HTTP 200 without active".into()),
    }
}

/// One concurrent client: what it holds between requests.
pub(super) enum Worker {
    /// Holds nothing: session init, the JWKS.
    Stateless,
    Sealed {
        session: ClientSession,
        pair: TokenPair,
    },
    Direct {
        pair: TokenPair,
    },
    /// A client of the standard endpoints: its access token.
    Standard {
        access_token: String,
    },
}

impl Worker {
    pub(super) async fn new(target: &Target, scenario: Scenario) -> anyhow::Result<Self> {
        if matches!(
            scenario,
            Scenario::Init | Scenario::Jwks | Scenario::JwksDirect
        ) {
            return Ok(Self::Stateless);
        }
        if matches!(
            scenario,
            Scenario::OauthTokenDirect | Scenario::OauthIntrospectDirect
        ) {
            let access_token = target
                .client_credentials()
                .await
                .map_err(|e| anyhow!("setup: client_credentials at /oauth/token failed: {e}"))?;
            return Ok(Self::Standard { access_token });
        }
        if scenario.direct() {
            target.internal_token()?;
            let pair = expect_pair(target.issue_direct().await.map_err(|e| anyhow!(e))?)
                .map_err(|e| anyhow!("setup: direct token issue failed: {e}"))?;
            return Ok(Self::Direct { pair });
        }
        let session = target
            .client
            .init_anonymous()
            .await
            .context("setup: session init failed")?;
        let answer = calls::issue(
            &target.client,
            &session,
            &target.client_id,
            &target.client_secret,
            &target.subject,
            None,
            None,
        )
        .await
        .context("setup: token issue failed")?;
        let pair = expect_pair(answer).map_err(|e| anyhow!("setup: token issue failed: {e}"))?;
        Ok(Self::Sealed { session, pair })
    }

    /// One request of `scenario`; `Ok` only for a checked success.
    pub(super) async fn one(&mut self, target: &Target, scenario: Scenario) -> Result<(), String> {
        match (scenario, self) {
            (Scenario::Init, _) => target
                .client
                .init_anonymous()
                .await
                .map(drop)
                .map_err(|e| client_error(&e)),
            (Scenario::Introspect, Self::Sealed { session, pair }) => {
                let answer = calls::introspect(
                    &target.client,
                    session,
                    &pair.access_token,
                    &pair.access_token,
                    None,
                )
                .await
                .map_err(|e| client_error(&e))?;
                expect_active(&answer)
            }
            (Scenario::IntrospectDirect, Self::Direct { pair }) => {
                let answer = target
                    .direct(
                        paths::INTROSPECT,
                        &bearer_header(&pair.access_token),
                        &TokenRequest::new(&pair.access_token, None),
                    )
                    .await?;
                expect_active(&answer)
            }
            (Scenario::Issue, Self::Sealed { session, .. }) => {
                let answer = calls::issue(
                    &target.client,
                    session,
                    &target.client_id,
                    &target.client_secret,
                    &target.subject,
                    None,
                    None,
                )
                .await
                .map_err(|e| client_error(&e))?;
                expect_pair(answer).map(drop)
            }
            (Scenario::IssueDirect, Self::Direct { .. }) => {
                expect_pair(target.issue_direct().await?).map(drop)
            }
            (Scenario::Refresh, Self::Sealed { session, pair }) => {
                let answer = calls::refresh(
                    &target.client,
                    session,
                    &pair.access_token,
                    &pair.refresh_token,
                )
                .await
                .map_err(|e| client_error(&e))?;
                *pair = expect_pair(answer)?;
                Ok(())
            }
            (Scenario::RefreshDirect, Self::Direct { pair }) => {
                let body = RefreshRequest::new(&pair.refresh_token);
                let answer = target
                    .direct(paths::TOKEN, &bearer_header(&pair.access_token), &body)
                    .await?;
                *pair = expect_pair(answer)?;
                Ok(())
            }
            (Scenario::OauthTokenDirect, Self::Standard { .. }) => {
                target.client_credentials().await.map(drop)
            }
            (Scenario::OauthIntrospectDirect, Self::Standard { access_token }) => {
                let answer = target
                    .standard(paths::OAUTH_INTROSPECT, &[("token", access_token)])
                    .await?;
                expect_active(&answer)
            }
            (Scenario::Jwks, _) => target.jwks(target.client.routes()).await,
            (Scenario::JwksDirect, _) => target.jwks(&target.api).await,
            _ => Err("internal: worker does not match the scenario".into()),
        }
    }
}
