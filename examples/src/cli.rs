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

    /// With --local: do not walk the journey; print the sidecar's URL and public key and the
    /// seeded client's credentials as .env lines on stdout (for another client, such as
    /// examples/python-internal), and keep both binaries running until Ctrl-C or SIGTERM.
    #[arg(long, requires = "local", conflicts_with = "json")]
    pub keep_running: bool,

    /// With --local: take identity-api and identity-sidecar from this directory (such as
    /// target/debug) instead of building them.
    #[arg(long, requires = "local", value_name = "DIR")]
    pub bin_dir: Option<std::path::PathBuf>,
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
    let binaries = match &cli.bin_dir {
        Some(dir) => Binaries::in_dir(dir),
        None => {
            say(
                "building identity-api and identity-sidecar (cargo build -p identity-api -p \
                 identity-sidecar --bins; cargo's progress follows): on a new machine the first \
                 build takes minutes, later ones seconds",
            );
            match Binaries::build() {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{} {e:#}", style.red("local: FAILED:"));
                    return ExitCode::FAILURE;
                }
            }
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
    if cli.keep_running {
        return keep_running(stack, &cli.subject, style).await;
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
    stop(stack, style);
    code
}

/// Stops both and says how each ended.
fn stop(stack: Stack, style: Style) {
    eprintln!(
        "{} stopping identity-sidecar and identity-api (SIGTERM)",
        style.bold("local:")
    );
    for (name, status) in stack.shutdown() {
        let how = match status {
            Some(status) if status.success() => "stopped cleanly".to_owned(),
            Some(status) => format!("exited with {status}"),
            None => "did not stop in time and was killed".to_owned(),
        };
        eprintln!("{} {name} {how}", style.bold("local:"));
    }
}

/// `--keep-running`: the settings another client needs, as .env lines on stdout (progress stays
/// on stderr, so `> .env` captures exactly them), then both binaries stay up until Ctrl-C or
/// SIGTERM, or until one of them exits on its own (a failure).
async fn keep_running(mut stack: Stack, subject: &str, style: Style) -> ExitCode {
    // Before the lines go out: whoever reads them may send SIGTERM at once.
    let signal = identity_runtime::shutdown_signal();
    tokio::pin!(signal);
    let early = tokio::select! {
        biased;
        () = &mut signal => true,
        () = std::future::ready(()) => false,
    };
    let died = if early {
        None
    } else {
        println!("{}", env_lines(&stack, subject));
        let _ = std::io::stdout().flush();
        eprintln!(
            "{} both are running; the lines above are the settings of a client's .env (the \
             secret is this throwaway stack's). Ctrl-C or SIGTERM stops both.",
            style.bold("local:")
        );
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                () = &mut signal => break None,
                _ = poll.tick() => {
                    if let Some(ended) = stack.exited() {
                        break Some(ended);
                    }
                }
            }
        }
    };
    let code = match died {
        None => ExitCode::SUCCESS,
        Some((name, status)) => {
            eprintln!(
                "{} {name} exited on its own ({status}); its log is in {}",
                style.red("local: FAILED:"),
                stack.dir().display()
            );
            ExitCode::FAILURE
        }
    };
    stop(stack, style);
    code
}

/// The stack's settings in the form a `.env` file (and python-dotenv) reads.
fn env_lines(stack: &Stack, subject: &str) -> String {
    let mut lines = vec![
        "# identity-api and identity-sidecar started by `journey --local --keep-running`;"
            .to_owned(),
        "# valid while it runs.".to_owned(),
        format!("SIDECAR_URL={}", stack.sidecar_url()),
    ];
    match &stack.pinned_key {
        Some(key) => lines.push(format!("SIDECAR_PUBLIC_KEY={key}")),
        None => lines.push(
            "# SIDECAR_PUBLIC_KEY unknown: the client will trust the key on first use".to_owned(),
        ),
    }
    lines.push(format!("CLIENT_ID={}", stack.client.client_id));
    lines.push(format!("CLIENT_SECRET={}", stack.client.client_secret));
    lines.push(format!("SUBJECT={subject}"));
    lines.join("\n")
}
