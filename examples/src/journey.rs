//! The six steps of the journey through a running sidecar, then the check that the revoked
//! family is inactive.
//!
//! 1. session init (anonymous ECDH)
//! 2. token issue (Basic + GCM)
//! 3. introspection (Bearer + GCM)
//! 4. authenticated session refresh (Bearer + X-Subject)
//! 5. token refresh (Bearer + GCM)
//! 6. revocation (Bearer + GCM)
//!
//! Every step is recorded as a [`Step`] (endpoint, auth used, status, the answer with tokens
//! shortened, time taken) and handed to an observer as it completes.

use std::fmt;
use std::time::{Duration, Instant};

use identity_client::calls::{self, Answer, shorten, shorten_tokens};
use identity_client::{Client, ClientError, Trust};
use identity_protocol::{ClientSession, paths};
use serde::Serialize;
use serde_json::{Value, json};

/// Where and as whom the journey runs.
#[derive(Clone)]
pub struct Settings {
    pub sidecar_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub subject: String,
    /// `None`: the client's allowed scopes.
    pub scope: Option<String>,
    /// `None`: the client's single allowed audience.
    pub audience: Option<String>,
    /// b64u of the sidecar's public signing key; `None`: trust on first use.
    pub pinned_key: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("sidecar_url", &self.sidecar_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<hidden>")
            .field("subject", &self.subject)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("pinned_key", &self.pinned_key)
            .finish()
    }
}

/// One completed call.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub number: u8,
    pub name: &'static str,
    pub method: &'static str,
    pub endpoint: &'static str,
    /// The authentication used, tokens shortened, secrets never shown.
    pub auth: String,
    pub status: u16,
    /// The decrypted answer, tokens shortened.
    pub answer: Value,
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e5).round() / 100.0)
}

/// The journey went through.
#[derive(Debug)]
pub struct Outcome {
    pub trust: Trust,
    pub steps: Vec<Step>,
}

/// Why the journey stopped.
#[derive(Debug)]
pub struct Failure {
    pub step: u8,
    pub name: &'static str,
    pub endpoint: &'static str,
    pub kind: FailureKind,
}

#[derive(Debug)]
pub enum FailureKind {
    /// The sidecar could not be reached, refused (a plaintext section 4 error), or its answer
    /// did not verify.
    Client(ClientError),
    /// The identity API answered (encrypted) with an error.
    Api {
        status: u16,
        error: String,
        description: String,
    },
    /// An answer came but says something the journey does not expect.
    Check(String),
}

impl Failure {
    /// The HTTP status of the refusal, when there was one.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            FailureKind::Client(ClientError::Sidecar { status, .. })
            | FailureKind::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error code of the refusal (section 4 or an OAuth code), when there was one.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            FailureKind::Client(ClientError::Sidecar { code, .. }) => Some(code),
            FailureKind::Api { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} ({}, {}): ", self.step, self.name, self.endpoint)?;
        match &self.kind {
            FailureKind::Client(e) => write!(f, "{e}"),
            FailureKind::Api {
                status,
                error,
                description,
            } => write!(
                f,
                "the identity API answered {status} {error}: {description}"
            ),
            FailureKind::Check(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Failure {}

/// Walks the journey; `observe` sees each step as it completes (and the trust decision first).
pub async fn run(
    settings: &Settings,
    observe: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome, Failure> {
    let mut walk = Walk {
        steps: Vec::new(),
        observe,
    };

    // Before step 1: whom do we trust to sign session inits?
    let started = Instant::now();
    let client = Client::connect(&settings.sidecar_url, settings.pinned_key.as_deref())
        .await
        .map_err(|e| walk.fail(1, STEP_NAMES[0], paths::SESSION_INIT, e))?;
    let trust = client.trust().clone();
    (walk.observe)(Event::Trust(&trust));

    // 1. Session init (anonymous ECDH).
    let anonymous = client
        .init_anonymous()
        .await
        .map_err(|e| walk.fail(1, STEP_NAMES[0], paths::SESSION_INIT, e))?;
    walk.record(
        1,
        paths::SESSION_INIT,
        "none (ephemeral P-256 key; answer signature verified)".into(),
        200,
        session_answer(&anonymous),
        started.elapsed(),
    );

    // 2. Token issue (Basic + GCM).
    let started = Instant::now();
    let issued = calls::issue(
        &client,
        &anonymous,
        &settings.client_id,
        &settings.client_secret,
        &settings.subject,
        settings.scope.as_deref(),
        settings.audience.as_deref(),
    )
    .await;
    let issued = walk.expect_ok(2, paths::TOKEN_ISSUE, issued)?;
    let first = issued
        .tokens()
        .ok_or_else(|| walk.check(2, paths::TOKEN_ISSUE, "the answer carries no token pair"))?;
    walk.record(
        2,
        paths::TOKEN_ISSUE,
        format!("Basic {}:<secret hidden>", settings.client_id),
        issued.status,
        shorten_tokens(&issued.body),
        started.elapsed(),
    );

    // 3. Introspection (Bearer + GCM).
    let started = Instant::now();
    let introspected = calls::introspect(
        &client,
        &anonymous,
        &first.access_token,
        &first.access_token,
        Some("access_token"),
    )
    .await;
    let introspected = walk.expect_ok(3, paths::INTROSPECT, introspected)?;
    if introspected.active() != Some(true) {
        return Err(walk.check(
            3,
            paths::INTROSPECT,
            "introspection says the access token just issued is not active",
        ));
    }
    walk.record(
        3,
        paths::INTROSPECT,
        format!("Bearer {}", shorten(&first.access_token)),
        introspected.status,
        shorten_tokens(&introspected.body),
        started.elapsed(),
    );

    // 4. Authenticated session refresh (Bearer + X-Subject); the anonymous session ends.
    let started = Instant::now();
    let authenticated = client
        .init_authenticated(&first.access_token, &settings.subject, Some(anonymous.id()))
        .await
        .map_err(|e| walk.fail(4, STEP_NAMES[3], paths::SESSION_INIT, e))?;
    walk.record(
        4,
        paths::SESSION_INIT,
        format!(
            "Bearer {}, X-Subject: {}, X-Session-Id: {}",
            shorten(&first.access_token),
            settings.subject,
            shorten(anonymous.id())
        ),
        200,
        session_answer(&authenticated),
        started.elapsed(),
    );
    drop(anonymous);

    // 5. Token refresh (Bearer + GCM): a new pair in the same family; the old refresh token is spent.
    let started = Instant::now();
    let refreshed = calls::refresh(
        &client,
        &authenticated,
        &first.access_token,
        &first.refresh_token,
    )
    .await;
    let refreshed = walk.expect_ok(5, paths::TOKEN, refreshed)?;
    let second = refreshed
        .tokens()
        .ok_or_else(|| walk.check(5, paths::TOKEN, "the answer carries no token pair"))?;
    walk.record(
        5,
        paths::TOKEN,
        format!("Bearer {}", shorten(&first.access_token)),
        refreshed.status,
        shorten_tokens(&refreshed.body),
        started.elapsed(),
    );

    // 6. Revocation (Bearer + GCM): revoking the refresh token revokes the whole family.
    let started = Instant::now();
    let revoked = calls::revoke(
        &client,
        &authenticated,
        &second.access_token,
        &second.refresh_token,
        Some("refresh_token"),
    )
    .await;
    let revoked = walk.expect_ok(6, paths::REVOKE, revoked)?;
    if revoked.body.get("revoked").and_then(Value::as_bool) != Some(true) {
        return Err(walk.check(6, paths::REVOKE, "the identity API says it revoked nothing"));
    }
    walk.record(
        6,
        paths::REVOKE,
        format!("Bearer {}", shorten(&second.access_token)),
        revoked.status,
        shorten_tokens(&revoked.body),
        started.elapsed(),
    );

    // 7. The check: introspection needs an active bearer, and every token of the revoked
    //    family is inactive now, so ask with a token of a new family.
    let started = Instant::now();
    let checker = calls::issue(
        &client,
        &authenticated,
        &settings.client_id,
        &settings.client_secret,
        &settings.subject,
        settings.scope.as_deref(),
        settings.audience.as_deref(),
    )
    .await;
    let checker = walk.expect_ok(7, paths::TOKEN_ISSUE, checker)?;
    let checker = checker
        .tokens()
        .ok_or_else(|| walk.check(7, paths::TOKEN_ISSUE, "the answer carries no token pair"))?;
    let mut answers = serde_json::Map::new();
    let mut last_status = 200;
    for (label, token, hint) in [
        (
            "refresh_token of the revoked family",
            &second.refresh_token,
            "refresh_token",
        ),
        (
            "access_token of the revoked family",
            &second.access_token,
            "access_token",
        ),
    ] {
        let answer = calls::introspect(
            &client,
            &authenticated,
            &checker.access_token,
            token,
            Some(hint),
        )
        .await;
        let answer = walk.expect_ok(7, paths::INTROSPECT, answer)?;
        if answer.active() != Some(false) {
            return Err(walk.check(
                7,
                paths::INTROSPECT,
                &format!("introspection says the {label} is still active"),
            ));
        }
        last_status = answer.status;
        answers.insert(label.to_owned(), shorten_tokens(&answer.body));
    }
    // The checker's family has served its purpose.
    let cleanup = calls::revoke(
        &client,
        &authenticated,
        &checker.access_token,
        &checker.refresh_token,
        Some("refresh_token"),
    )
    .await;
    walk.expect_ok(7, paths::REVOKE, cleanup)?;
    walk.record(
        7,
        paths::INTROSPECT,
        format!(
            "Bearer {} (a new family, issued and revoked for this check)",
            shorten(&checker.access_token)
        ),
        last_status,
        Value::Object(answers),
        started.elapsed(),
    );

    Ok(Outcome {
        trust,
        steps: walk.steps,
    })
}

/// The names of the steps, by number.
pub const STEP_NAMES: [&str; 7] = [
    "session init (anonymous ECDH)",
    "token issue (Basic + GCM)",
    "introspection (Bearer + GCM)",
    "authenticated session refresh (Bearer + X-Subject)",
    "token refresh (Bearer + GCM)",
    "revocation (Bearer + GCM)",
    "the revoked family is inactive (introspection)",
];

/// What the observer of [`run`] sees.
#[derive(Debug)]
pub enum Event<'a> {
    /// How the sidecar's signing key came to be trusted (before step 1).
    Trust(&'a Trust),
    Step(&'a Step),
}

struct Walk<'o> {
    steps: Vec<Step>,
    observe: &'o mut dyn FnMut(Event<'_>),
}

impl Walk<'_> {
    fn record(
        &mut self,
        number: u8,
        endpoint: &'static str,
        auth: String,
        status: u16,
        answer: Value,
        elapsed: Duration,
    ) {
        let step = Step {
            number,
            name: STEP_NAMES[usize::from(number) - 1],
            method: "POST",
            endpoint,
            auth,
            status,
            answer,
            elapsed,
        };
        (self.observe)(Event::Step(&step));
        self.steps.push(step);
    }

    fn fail(
        &self,
        step: u8,
        name: &'static str,
        endpoint: &'static str,
        e: ClientError,
    ) -> Failure {
        Failure {
            step,
            name,
            endpoint,
            kind: FailureKind::Client(e),
        }
    }

    fn check(&self, step: u8, endpoint: &'static str, message: &str) -> Failure {
        Failure {
            step,
            name: STEP_NAMES[usize::from(step) - 1],
            endpoint,
            kind: FailureKind::Check(message.to_owned()),
        }
    }

    /// A `200` from the identity API, or the failure that explains what came instead.
    fn expect_ok(
        &self,
        step: u8,
        endpoint: &'static str,
        answer: Result<Answer, ClientError>,
    ) -> Result<Answer, Failure> {
        let name = STEP_NAMES[usize::from(step) - 1];
        match answer {
            Ok(answer) if answer.is_ok() => Ok(answer),
            Ok(answer) => Err(Failure {
                step,
                name,
                endpoint,
                kind: FailureKind::Api {
                    status: answer.status,
                    error: answer.error().unwrap_or("(no error code)").to_owned(),
                    description: answer.error_description().to_owned(),
                },
            }),
            Err(e) => Err(self.fail(step, name, endpoint, e)),
        }
    }
}

/// What a session init answer says, for display.
fn session_answer(session: &ClientSession) -> Value {
    let mut answer = json!({
        "session_id": shorten(session.id()),
        "expires_at": session.expires_at(),
        "authenticated": session.subject().is_some(),
    });
    if let Some(subject) = session.subject() {
        answer["subject"] = json!(subject);
    }
    answer
}
