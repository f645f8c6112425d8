//! The scenarios: what each one's request is (sealed through the sidecar or plaintext straight
//! to the identity API), what a client holds between requests, and how each answer is checked.

use anyhow::{Context as _, anyhow, bail};
use identity_client::calls::{self, Answer, TokenPair};
use identity_client::{Client, Routes};
use identity_launcher::SeededClient;
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
    /// The clients the workers send as: one, or one per tenant (`--tenants`), each client's
    /// credentials deciding its tenant.
    pub(super) clients: Vec<SeededClient>,
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
    async fn standard(
        &self,
        client: &SeededClient,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let request = self
            .http
            .post(self.api.url(path).map_err(|e| e.to_string())?)
            .header(
                reqwest::header::AUTHORIZATION,
                basic_header(&client.client_id, &client.client_secret).as_str(),
            )
            .form(form);
        answer_of(request).await
    }

    /// client_credentials at /oauth/token: the access token.
    async fn client_credentials(&self, client: &SeededClient) -> Result<String, String> {
        let answer = self
            .standard(
                client,
                paths::OAUTH_TOKEN,
                &[("grant_type", "client_credentials")],
            )
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

    async fn issue_direct(&self, client: &SeededClient) -> Result<Answer, String> {
        self.direct(
            paths::TOKEN_ISSUE,
            &basic_header(&client.client_id, &client.client_secret),
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

/// What a worker holds between requests, for one of the clients it sends as.
enum Held {
    /// Nothing: session init, the JWKS.
    Nothing,
    /// A token pair of that client's, from `/api/v1` (sealed or direct).
    Pair(TokenPair),
    /// That client's access token from the standard endpoints.
    Access(String),
}

/// One client a worker sends as: an index into [`Target::clients`], and what it holds for it.
struct Slot {
    client: usize,
    held: Held,
}

/// One concurrent client: its sidecar session (the sealed scenarios) and the clients it sends
/// as, in turn, so that with `--tenants` the tokens spread over the tenants and each token is
/// only ever presented with its own client's credentials or as its own bearer.
pub(super) struct Worker {
    session: Option<ClientSession>,
    slots: Vec<Slot>,
    next: usize,
}

/// The clients (indices into `clients` of them) worker `index` of `workers` sends as: every
/// client is some worker's, and each worker has at least one.
pub(super) fn clients_of(index: u64, workers: u64, clients: usize) -> Vec<usize> {
    let (Ok(index), Ok(workers)) = (usize::try_from(index), usize::try_from(workers)) else {
        return vec![0];
    };
    if clients <= workers {
        return vec![index % clients.max(1)];
    }
    (index..clients).step_by(workers.max(1)).collect()
}

impl Worker {
    /// A worker of session inits, holding nothing.
    pub(super) fn stateless() -> Self {
        Self {
            session: None,
            slots: vec![Slot {
                client: 0,
                held: Held::Nothing,
            }],
            next: 0,
        }
    }

    /// Worker `index` of `workers` for `scenario`: its session and, for each of its clients,
    /// the token it will present.
    pub(super) async fn new(
        target: &Target,
        scenario: Scenario,
        index: u64,
        workers: u64,
    ) -> anyhow::Result<Self> {
        if matches!(
            scenario,
            Scenario::Init | Scenario::Jwks | Scenario::JwksDirect
        ) {
            return Ok(Self::stateless());
        }
        let mut worker = Self {
            session: None,
            slots: Vec::new(),
            next: 0,
        };
        let standard = matches!(
            scenario,
            Scenario::OauthTokenDirect | Scenario::OauthIntrospectDirect
        );
        if !standard && scenario.direct() {
            target.internal_token()?;
        }
        if !standard && !scenario.direct() {
            worker.session = Some(
                target
                    .client
                    .init_anonymous()
                    .await
                    .context("setup: session init failed")?,
            );
        }
        for client in clients_of(index, workers, target.clients.len()) {
            let credentials = target
                .clients
                .get(client)
                .ok_or_else(|| anyhow!("internal: no client {client}"))?;
            let held = if standard {
                Held::Access(target.client_credentials(credentials).await.map_err(|e| {
                    anyhow!("setup: client_credentials at /oauth/token failed: {e}")
                })?)
            } else if let Some(session) = &worker.session {
                let answer = calls::issue(
                    &target.client,
                    session,
                    &credentials.client_id,
                    &credentials.client_secret,
                    &target.subject,
                    None,
                    None,
                )
                .await
                .context("setup: token issue failed")?;
                Held::Pair(
                    expect_pair(answer).map_err(|e| anyhow!("setup: token issue failed: {e}"))?,
                )
            } else {
                let answer = target
                    .issue_direct(credentials)
                    .await
                    .map_err(|e| anyhow!(e))?;
                Held::Pair(
                    expect_pair(answer)
                        .map_err(|e| anyhow!("setup: direct token issue failed: {e}"))?,
                )
            };
            worker.slots.push(Slot { client, held });
        }
        Ok(worker)
    }

    /// One request of `scenario`, as the worker's next client; `Ok` only for a checked success.
    pub(super) async fn one(&mut self, target: &Target, scenario: Scenario) -> Result<(), String> {
        let n = self.slots.len().max(1);
        let Self {
            session,
            slots,
            next,
        } = self;
        let slot = slots
            .get_mut(*next % n)
            .ok_or_else(|| "internal: a worker without a client".to_owned())?;
        *next = (*next + 1) % n;
        let client = target
            .clients
            .get(slot.client)
            .ok_or_else(|| "internal: no such client".to_owned())?;
        match (scenario, session.as_ref(), &mut slot.held) {
            (Scenario::Init, ..) => target
                .client
                .init_anonymous()
                .await
                .map(drop)
                .map_err(|e| client_error(&e)),
            (Scenario::Introspect, Some(session), Held::Pair(pair)) => {
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
            (Scenario::IntrospectDirect, None, Held::Pair(pair)) => {
                let answer = target
                    .direct(
                        paths::INTROSPECT,
                        &bearer_header(&pair.access_token),
                        &TokenRequest::new(&pair.access_token, None),
                    )
                    .await?;
                expect_active(&answer)
            }
            (Scenario::Issue, Some(session), _) => {
                let answer = calls::issue(
                    &target.client,
                    session,
                    &client.client_id,
                    &client.client_secret,
                    &target.subject,
                    None,
                    None,
                )
                .await
                .map_err(|e| client_error(&e))?;
                expect_pair(answer).map(drop)
            }
            (Scenario::IssueDirect, None, _) => {
                expect_pair(target.issue_direct(client).await?).map(drop)
            }
            (Scenario::Refresh, Some(session), Held::Pair(pair)) => {
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
            (Scenario::RefreshDirect, None, Held::Pair(pair)) => {
                let body = RefreshRequest::new(&pair.refresh_token);
                let answer = target
                    .direct(paths::TOKEN, &bearer_header(&pair.access_token), &body)
                    .await?;
                *pair = expect_pair(answer)?;
                Ok(())
            }
            (Scenario::OauthTokenDirect, None, Held::Access(_)) => {
                target.client_credentials(client).await.map(drop)
            }
            (Scenario::OauthIntrospectDirect, None, Held::Access(access_token)) => {
                let answer = target
                    .standard(client, paths::OAUTH_INTROSPECT, &[("token", access_token)])
                    .await?;
                expect_active(&answer)
            }
            (Scenario::Jwks, ..) => target.jwks(target.client.routes()).await,
            (Scenario::JwksDirect, ..) => target.jwks(&target.api).await,
            _ => Err("internal: worker does not match the scenario".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_is_some_workers_and_every_worker_has_one() {
        // Today's run: one client, every worker sends as it.
        assert!((0..64).all(|i| clients_of(i, 64, 1) == vec![0]));
        // Fewer clients than workers: each worker one client, the clients in turn.
        assert_eq!(clients_of(5, 16, 4), vec![1]);
        // More: worker i takes i, i + C, i + 2C, ...
        assert_eq!(clients_of(3, 64, 100), vec![3, 67]);
        assert_eq!(clients_of(40, 64, 100), vec![40]);
        for (workers, clients) in [(64, 100), (16, 100), (64, 64), (2, 3), (100, 7)] {
            let mut seen = vec![0; clients];
            for i in 0..workers {
                let mine = clients_of(i, workers, clients);
                assert!(!mine.is_empty());
                for c in mine {
                    seen[c] += 1;
                }
            }
            assert!(
                seen.iter().all(|&n| n > 0),
                "{workers} workers, {clients} clients"
            );
            if clients >= workers as usize {
                assert!(seen.iter().all(|&n| n == 1));
            }
        }
    }
}
