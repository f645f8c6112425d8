//! Rendering: coloured lines on a terminal (never when NO_COLOR is set or output is not a
//! terminal), `--json` for machines, and failure hints a user can act on.

use std::io::IsTerminal as _;

use identity_client::{ClientError, Trust};
use identity_protocol::{Error as ProtocolError, ErrorCode};
use serde_json::{Value, json};

use crate::journey::{Failure, FailureKind, Outcome, Step};

/// ANSI styling, on or off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Colour when the stream is a terminal and NO_COLOR is unset or empty (no-color.org).
    pub fn detect(stream_is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            on: stream_is_terminal && !no_color,
        }
    }

    pub fn stdout() -> Self {
        Self::detect(std::io::stdout().is_terminal())
    }

    pub fn stderr() -> Self {
        Self::detect(std::io::stderr().is_terminal())
    }

    pub fn plain() -> Self {
        Self { on: false }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    pub fn red(self, text: &str) -> String {
        self.paint("1;31", text)
    }
    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }
    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }
    pub fn cyan(self, text: &str) -> String {
        self.paint("36", text)
    }
}

/// The notice about how the sidecar's key came to be trusted.
pub fn trust_line(trust: &Trust, style: Style) -> String {
    match trust {
        Trust::Pinned => format!(
            "{} session init answers are verified against the pinned key (SIDECAR_PUBLIC_KEY)",
            style.green("trust:")
        ),
        Trust::FirstUse { key_ids } => format!(
            "{} SIDECAR_PUBLIC_KEY is not set: trusted the key(s) {} fetched from \
             /.well-known/identity-sidecar on first use.\n       Anyone able to answer in the \
             sidecar's place could have served that document; pin the key (from a trusted \
             copy) with SIDECAR_PUBLIC_KEY.",
            style.yellow("NOTICE:"),
            key_ids.join(", ")
        ),
    }
}

/// `[n/6]` for the journey's six steps, `[check]` for the check that follows them.
fn step_label(number: u8) -> String {
    match number {
        1..=6 => format!("[{number}/6]"),
        _ => "[check]".to_owned(),
    }
}

/// One step as lines of text.
pub fn step_lines(step: &Step, style: Style) -> String {
    let status = format!("{}", step.status);
    let status = if (200..300).contains(&step.status) {
        style.green(&status)
    } else {
        style.red(&status)
    };
    let answer = serde_json::to_string_pretty(&step.answer).unwrap_or_default();
    let answer = answer.replace('\n', "\n        ");
    format!(
        "{} {}\n    {} {} {}  HTTP {}  {}\n    {} {}\n    {} {}\n",
        style.bold(&step_label(step.number)),
        style.bold(step.name),
        style.dim("endpoint"),
        step.method,
        style.cyan(step.endpoint),
        status,
        style.dim(&format!("{:.1} ms", step.elapsed.as_secs_f64() * 1e3)),
        style.dim("auth    "),
        step.auth,
        style.dim("answer  "),
        answer,
    )
}

/// The closing line of a journey that went through.
pub fn success_line(outcome: &Outcome, style: Style) -> String {
    let total: f64 = outcome
        .steps
        .iter()
        .map(|s| s.elapsed.as_secs_f64() * 1e3)
        .sum();
    format!(
        "{} the six steps went through, and the check: the revoked family is inactive ({:.1} ms in calls)",
        style.green("OK:"),
        total
    )
}

/// The failure and what to do about it.
pub fn failure_lines(failure: &Failure, style: Style) -> String {
    format!(
        "{} {}\n{} {}\n",
        style.red("FAILED:"),
        failure,
        style.yellow("what to do:"),
        hint(failure)
    )
}

/// How the trust decision reads in JSON.
pub fn trust_json(trust: &Trust) -> Value {
    match trust {
        Trust::Pinned => json!({ "mode": "pinned" }),
        Trust::FirstUse { key_ids } => json!({ "mode": "first_use", "key_ids": key_ids }),
    }
}

/// The `--json` document.
pub fn json_document(
    sidecar_url: &str,
    client_id: &str,
    subject: &str,
    trust: Option<&Trust>,
    steps: &[Step],
    failure: Option<&Failure>,
) -> Value {
    let mut doc = json!({
        "ok": failure.is_none(),
        "sidecar_url": sidecar_url,
        "client_id": client_id,
        "subject": subject,
        "trust": trust.map(trust_json),
        "steps": steps,
    });
    if let Some(failure) = failure {
        doc["error"] = json!({
            "step": failure.step,
            "name": failure.name,
            "endpoint": failure.endpoint,
            "status": failure.status(),
            "code": failure.code(),
            "message": failure.to_string(),
            "hint": hint(failure),
        });
    }
    doc
}

/// What a user can do about a failure.
pub fn hint(failure: &Failure) -> String {
    match &failure.kind {
        FailureKind::Client(e) => client_hint(failure.step, e),
        FailureKind::Api { status, error, .. } => api_hint(*status, error),
        FailureKind::Check(_) => "the services answered, but not as the protocol says they \
            must: this is a bug in the identity API or the sidecar (or they are of different \
            versions); please report it with this output."
            .to_owned(),
    }
}

fn client_hint(step: u8, e: &ClientError) -> String {
    match e {
        ClientError::Unreachable { url, .. } => format!(
            "the sidecar is not running or not at {}. Start it (and the identity API), or set \
             SIDECAR_URL / --sidecar-url to where it listens. To build and start both on this \
             machine instead: cargo run -p identity-sidecar-examples --bin journey -- --local",
            origin(url)
        ),
        ClientError::InvalidUrl { .. } => "SIDECAR_URL / --sidecar-url must be the sidecar's \
            base URL, such as http://127.0.0.1:8141."
            .to_owned(),
        ClientError::Protocol(ProtocolError::BadSignature) => "signature mismatch: the session \
            init answer is not signed by the key you pinned (SIDECAR_PUBLIC_KEY). If the \
            sidecar's key was rotated, update the pin from a trusted copy of its public key; \
            otherwise something between you and the sidecar answers in its place: do not \
            continue."
            .to_owned(),
        ClientError::Protocol(ProtocolError::SigningKey(_) | ProtocolError::Base64(_))
        | ClientError::Protocol(ProtocolError::PublicKeyEncoding)
        | ClientError::Protocol(ProtocolError::PublicKeyNotOnCurve)
            if step == 1 =>
        {
            "SIDECAR_PUBLIC_KEY must be the sidecar's public key exactly as published at \
             /.well-known/identity-sidecar (base64url without padding of the 65-byte \
             uncompressed P-256 point)."
                .to_owned()
        }
        ClientError::Protocol(ProtocolError::DecryptionFailed) => "the sidecar's encrypted \
            answer did not verify: it was altered in transit, or another sidecar without this \
            session answered. Run the journey again; if it persists, check what sits between \
            you and the sidecar."
            .to_owned(),
        ClientError::Protocol(_) | ClientError::Unexpected(_) => "the answer is not what this \
            protocol version expects: check that SIDECAR_URL points to an identity-sidecar of \
            the same version as this client."
            .to_owned(),
        ClientError::Sidecar {
            code, description, ..
        } => match ErrorCode::parse(code) {
            Some(ErrorCode::InvalidSession) => "the session expired or the sidecar does not \
                know it (it restarted, or another replica answered). Run the journey again: \
                step 1 opens a new session. Behind a load balancer, route a session to one \
                replica, or let the replicas share sessions (--session-store redis://...)."
                .to_owned(),
            Some(ErrorCode::SessionStoreUnavailable) => "the sidecar cannot reach its shared \
                session store (Redis). Check that Redis runs and that --session-store, its \
                password and TLS settings are right; the sidecar recovers by itself once it \
                answers."
                .to_owned(),
            Some(ErrorCode::UpstreamUnavailable) => "the sidecar cannot reach the identity \
                API. Start identity-api, or point the sidecar at it with --upstream / \
                SIDECAR_UPSTREAM (default http://127.0.0.1:8140)."
                .to_owned(),
            Some(ErrorCode::UpstreamTimeout) => "the identity API did not answer in time \
                (SIDECAR_UPSTREAM_TIMEOUT_MS). Check its logs and its database."
                .to_owned(),
            Some(ErrorCode::TooManyRequests) => {
                "the sidecar is rate-limiting session inits or its session table is full: \
                 wait a moment (Retry-After) and run again."
                    .to_owned()
            }
            Some(ErrorCode::InvalidToken) => "the sidecar found the access token not active \
                (expired or revoked) when opening the authenticated session. Run the journey \
                again from step 1."
                .to_owned(),
            Some(ErrorCode::SubjectMismatch) => "SUBJECT is not the subject (`sub`) of the \
                access token: they must be equal."
                .to_owned(),
            Some(ErrorCode::DecryptionFailed | ErrorCode::InvalidRequest) => format!(
                "the sidecar could not read the request ({description}): the client and the \
                 sidecar disagree on the protocol; check that both are of the same version."
            ),
            Some(ErrorCode::NotFound | ErrorCode::MethodNotAllowed) => "SIDECAR_URL does not \
                point to an identity-sidecar, or the route is not in its SIDECAR_ROUTES."
                .to_owned(),
            _ => format!("the sidecar refused: {description}"),
        },
    }
}

/// `scheme://host:port` of a URL, for messages about where the sidecar should be.
fn origin(url: &str) -> String {
    url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/")
}

/// How to make a client, for the hints that need one. `--dev` goes with an identity API started
/// with `serve --dev` in the same directory; a deployment's own database needs its own settings.
pub const CREATE_CLIENT: &str = "Create a client with `identity-api client create <id> --scope \
    \"orders.read orders.write\" --audience orders-api --subject-policy any --json --dev` in the \
    directory of an \
    `identity-api serve --dev` (against a deployment: without --dev, with its \
    IDENTITY_DATABASE_URL and IDENTITY_KEY_ENCRYPTION_KEY_FILE); the secret is shown once";

fn api_hint(status: u16, error: &str) -> String {
    match error {
        "invalid_client" => format!(
            "the identity API refused the client credentials: check CLIENT_ID and \
             CLIENT_SECRET. {CREATE_CLIENT}. Or issue a new secret with `identity-api client \
             rotate-secret <id>`."
        ),
        "invalid_scope" => "SCOPE asks for a scope this client is not allowed: leave SCOPE \
            unset to get every allowed scope, or see `identity-api client list`."
            .to_owned(),
        "invalid_target" => "AUDIENCE is not an audience this client is allowed: leave \
            AUDIENCE unset to get the client's audience, or see `identity-api client list`."
            .to_owned(),
        // At the issue (step 2): the client's subject policy; at the revocation (step 6): the
        // token is another client's or subject's.
        "unauthorized_client" => "the client may not issue for SUBJECT (its subject policy: see \
            `identity-api client list`): set SUBJECT to the client's id, or let it issue for \
            SUBJECT with `identity-api client update <id> --subject-policy any` (or \
            match:PATTERN). At the revocation: the token belongs to another client or subject."
            .to_owned(),
        "subject_mismatch" => "the token and the session's subject differ: SUBJECT must be \
            the subject the token was issued for."
            .to_owned(),
        "invalid_token" => "the identity API found the bearer token not active (expired or \
            revoked). Run the journey again from step 1."
            .to_owned(),
        "invalid_grant" => "the refresh token is unknown, expired, spent or revoked. Run the \
            journey again from step 1."
            .to_owned(),
        _ if status == 403 => "the identity API refused the request: if it says the request \
            did not come through the sidecar, give both the same IDENTITY_INTERNAL_TOKEN."
            .to_owned(),
        _ => "see the identity API's error above and its logs.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_style_writes_no_escape_codes() {
        let style = Style::plain();
        assert_eq!(style.red("x"), "x");
        assert_eq!(Style::detect(false).green("x"), "x");
    }

    fn failure(step: u8, kind: FailureKind) -> Failure {
        Failure {
            step,
            name: "test",
            endpoint: "/api/v1/token/issue",
            kind,
        }
    }

    #[test]
    fn hints_name_what_to_change() {
        let wrong_secret = failure(
            2,
            FailureKind::Api {
                status: 401,
                error: "invalid_client".into(),
                description: String::new(),
            },
        );
        assert!(hint(&wrong_secret).contains("CLIENT_SECRET"));
        // The command as a newcomer copies it works beside `serve --dev`.
        assert!(
            hint(&wrong_secret)
                .contains("--audience orders-api --subject-policy any --json --dev`")
        );
        let refused_subject = failure(
            2,
            FailureKind::Api {
                status: 403,
                error: "unauthorized_client".into(),
                description: String::new(),
            },
        );
        assert!(hint(&refused_subject).contains("--subject-policy any"));

        let expired = failure(
            3,
            FailureKind::Client(ClientError::Sidecar {
                status: 401,
                code: "invalid_session".into(),
                description: String::new(),
            }),
        );
        assert!(hint(&expired).contains("expired"));

        let mismatch = failure(1, FailureKind::Client(ProtocolError::BadSignature.into()));
        assert!(hint(&mismatch).contains("signature mismatch"));

        let down = failure(
            1,
            FailureKind::Client(ClientError::Unreachable {
                url: "http://127.0.0.1:8141/.well-known/identity-sidecar".into(),
                reason: "refused".into(),
            }),
        );
        assert!(hint(&down).contains("not running or not at http://127.0.0.1:8141."));
    }
}
