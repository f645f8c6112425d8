//! The `journey` command line: flags > environment (and a `.env` file) > defaults.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use identity_launcher::{Binaries, SIDECAR_DEV_KEY_FILE, Signing, Stack, StackConfig};
use identity_runtime::{Secret, SecretSpec};

use crate::journey::{self, Event, Settings};
use crate::output::{self, Style};

/// `CLIENT_SECRET` or `CLIENT_SECRET_FILE`.
#[derive(Debug)]
pub enum ClientSecretSpec {}

impl SecretSpec for ClientSecretSpec {
    const FLAG: &'static str = "client-secret";
    const FILE_FLAG: &'static str = "client-secret-file";
    const ENV: &'static str = "CLIENT_SECRET";
    const FILE_ENV: &'static str = "CLIENT_SECRET_FILE";
    const HELP: &'static str = "That client's secret. Prefer --client-secret-file";
    const FILE_HELP: &'static str = "A file holding the client's secret (one trailing newline is \
        ignored): a mounted Secret, say";
}

#[derive(Debug, Parser)]
#[command(
    name = "journey",
    version,
    about = "Walks the six-step journey through an identity-sidecar: session init, token issue, \
             introspection, authenticated session, token refresh, revocation",
    after_help = "Environment variables may also come from a .env file in the working directory \
                  (or a parent). With --local, nothing needs to be running: both binaries are \
                  built and started on free ports, and stopped at the end."
)]
pub struct Cli {
    /// Base URL of the sidecar.
    #[arg(long, env = "SIDECAR_URL", default_value = "http://127.0.0.1:8141")]
    pub sidecar_url: String,

    /// Client id registered with the identity API (`identity-api client create`).
    #[arg(long, env = "CLIENT_ID")]
    pub client_id: Option<String>,

    #[command(flatten)]
    pub client_secret: Secret<ClientSecretSpec>,

    /// Subject to issue tokens for and to bind the authenticated session to.
    #[arg(long, env = "SUBJECT", default_value = "test-user")]
    pub subject: String,

    /// Scopes to ask for, space-separated (default: every scope the client is allowed).
    #[arg(long, env = "SCOPE")]
    pub scope: Option<String>,

    /// Audience to ask for (default: the client's single allowed audience).
    #[arg(long, env = "AUDIENCE")]
    pub audience: Option<String>,

    /// The sidecar's public signing key (base64url, as at /.well-known/identity-sidecar) to pin.
    /// Without it the key is fetched from the sidecar and trusted on first use.
    #[arg(long, env = "SIDECAR_PUBLIC_KEY")]
    pub sidecar_public_key: Option<String>,

    /// Print one JSON document instead of coloured text.
    #[arg(long)]
    pub json: bool,

    /// Build identity-api and identity-sidecar, start both on free ports with a temporary
    /// SQLite database and a freshly seeded client, walk the journey, stop both.
    #[arg(long)]
    pub local: bool,
}

/// Loads `.env` (without overriding the environment), parses the command line, runs.
pub async fn main() -> ExitCode {
    let env_file = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Err(e) = &env_file
        && !e.not_found()
    {
        eprintln!("journey: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    if cli.local {
        run_local(&cli).await
    } else {
        let Some(settings) = settings(&cli) else {
            eprintln!(
                "{} CLIENT_ID and CLIENT_SECRET are required (flags --client-id/--client-secret, \
                 the environment, or .env). {}. Or run everything locally with `--local`.",
                Style::stderr().red("journey:"),
                output::CREATE_CLIENT
            );
            return ExitCode::from(2);
        };
        walk(&cli, &settings).await
    }
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value.as_ref().filter(|v| !v.trim().is_empty()).cloned()
}

fn settings(cli: &Cli) -> Option<Settings> {
    Some(Settings {
        sidecar_url: cli.sidecar_url.clone(),
        client_id: non_empty(&cli.client_id)?,
        client_secret: cli
            .client_secret
            .get()
            .filter(|s| !s.trim().is_empty())?
            .to_owned(),
        subject: cli.subject.clone(),
        scope: non_empty(&cli.scope),
        audience: non_empty(&cli.audience),
        pinned_key: non_empty(&cli.sidecar_public_key),
    })
}

/// Walks the journey and prints it; the exit code says whether it went through.
pub async fn walk(cli: &Cli, settings: &Settings) -> ExitCode {
    let style = Style::stdout();
    if !cli.json {
        println!(
            "{} {} as client {} for subject {}\n",
            style.bold("identity-sidecar journey via"),
            style.cyan(&settings.sidecar_url),
            settings.client_id,
            settings.subject
        );
    }
    let mut trust = None;
    let mut steps = Vec::new();
    let json = cli.json;
    let result = journey::run(settings, &mut |event| match event {
        Event::Trust(t) => {
            if !json {
                println!("{}\n", output::trust_line(t, style));
            }
            trust = Some(t.clone());
        }
        Event::Step(step) => {
            if !json {
                println!("{}", output::step_lines(step, style));
                let _ = std::io::stdout().flush();
            }
            steps.push(step.clone());
        }
    })
    .await;
    let failure = result.as_ref().err();
    if json {
        let doc = output::json_document(
            &settings.sidecar_url,
            &settings.client_id,
            &settings.subject,
            trust.as_ref(),
            &steps,
            failure,
        );
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    match result {
        Ok(outcome) => {
            if !json {
                println!("{}", output::success_line(&outcome, style));
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            if !json {
                eprintln!("{}", output::failure_lines(&failure, Style::stderr()));
            }
            ExitCode::FAILURE
        }
    }
}

/// `--local`: build, start, walk, stop. Progress goes to stderr so that `--json` stays clean.
async fn run_local(cli: &Cli) -> ExitCode {
    let style = Style::stderr();
    let say = |text: &str| eprintln!("{} {text}", style.bold("local:"));
    say(
        "building identity-api and identity-sidecar (cargo build -p identity-api -p identity-sidecar \
         --bins; cargo's progress follows): on a new machine the first build takes minutes, later \
         ones seconds",
    );
    let binaries = match Binaries::build() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{} {e:#}", style.red("local: FAILED:"));
            return ExitCode::FAILURE;
        }
    };
    let config = StackConfig {
        client_id: non_empty(&cli.client_id).unwrap_or_else(|| "journey-local".into()),
        signing: Signing::Dev,
        ..StackConfig::default()
    };
    say(
        "starting identity-api (SQLite in a temporary directory) and identity-sidecar --dev on free loopback ports",
    );
    let stack = match Stack::start(binaries, config).await {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("{} {e:#}", style.red("local: FAILED:"));
            return ExitCode::FAILURE;
        }
    };
    say(&format!(
        "identity-api at {}, identity-sidecar at {} (logs and data in {})",
        stack.api_url(),
        stack.sidecar_url(),
        stack.dir().display()
    ));
    if stack.pinned_key.is_some() {
        say(&format!(
            "pinning the key the sidecar generated in {}",
            stack.dir().join(SIDECAR_DEV_KEY_FILE).display()
        ));
    }
    let settings = Settings {
        sidecar_url: stack.sidecar_url(),
        client_id: stack.client.client_id.clone(),
        client_secret: stack.client.client_secret.clone(),
        subject: cli.subject.clone(),
        scope: non_empty(&cli.scope),
        audience: non_empty(&cli.audience),
        pinned_key: stack.pinned_key.clone(),
    };
    if !cli.json {
        println!();
    }
    let code = walk(cli, &settings).await;
    say("stopping identity-sidecar and identity-api (SIGTERM)");
    for (name, status) in stack.shutdown() {
        match status {
            Some(status) if status.success() => say(&format!("{name} stopped cleanly")),
            Some(status) => say(&format!("{name} exited with {status}")),
            None => say(&format!("{name} did not stop in time and was killed")),
        }
    }
    code
}
