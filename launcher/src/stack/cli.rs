//! The identity API's command line against a running stack's database: clients created for a
//! test, and any other command.

use std::process::Stdio;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::AsyncWriteExt as _;

use super::Stack;
use crate::process::READY_TIMEOUT;

/// A client created with the identity API's CLI.
#[derive(Clone)]
pub struct SeededClient {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for SeededClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<hidden>")
            .finish()
    }
}

impl Stack {
    /// `identity-api client create <id> --scope .. --audience .. --json` with the seeded client's
    /// [`StackConfig::client_args`], on the stack's database.
    pub async fn create_client(
        &self,
        client_id: &str,
        scope: &str,
        audience: &str,
    ) -> anyhow::Result<SeededClient> {
        let args: Vec<&str> = self.config.client_args.iter().map(String::as_str).collect();
        self.create_client_with(client_id, scope, audience, &args)
            .await
    }

    /// As [`Stack::create_client`], with `args` instead of the seeded client's arguments (e.g.
    /// `["--tenant", "acme", "--grant-types", "client_credentials refresh_token"]`). The client
    /// may issue for any subject (`--subject-policy any`, the journey's and loadgen's need)
    /// unless `args` give a `--subject-policy`.
    pub async fn create_client_with(
        &self,
        client_id: &str,
        scope: &str,
        audience: &str,
        args: &[&str],
    ) -> anyhow::Result<SeededClient> {
        let mut all = vec!["client", "create", client_id, "--scope", scope];
        all.extend(["--audience", audience, "--json"]);
        if !args
            .iter()
            .any(|a| a.split('=').next() == Some("--subject-policy"))
        {
            all.extend(["--subject-policy", "any"]);
        }
        all.extend_from_slice(args);
        let stdout = self.run_cli(&all).await?;
        #[derive(serde::Deserialize)]
        struct Created {
            client_id: String,
            client_secret: String,
        }
        let created: Created = stdout
            .lines()
            .find_map(|line| serde_json::from_str(line).ok())
            .ok_or_else(|| {
                anyhow!("`identity-api client create --json` printed no {{\"client_id\", \"client_secret\"}} object")
            })?;
        Ok(SeededClient {
            client_id: created.client_id,
            client_secret: created.client_secret,
        })
    }

    /// `identity-api <args> --database-url <the stack's>` (e.g. `tenant create acme`), with the
    /// stack's key-encryption key: its standard output, or an error with its standard error.
    /// A running identity API sees what it changed at its next reload, within a second.
    pub async fn run_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run_cli_with_input(args, None).await
    }

    /// As [`Stack::run_cli`], with `input` on its standard input (a password for
    /// `--password-stdin`, which never comes from the command line).
    pub async fn run_cli_with_input(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::from(self.api_command(&[]));
        command
            .args(args)
            .arg("--database-url")
            .arg(&self.database_url)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let shown = args.join(" ");
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run `identity-api {shown}`"))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input).await?;
        }
        let output = tokio::time::timeout(READY_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("`identity-api {shown}` did not finish in time"))?
            .with_context(|| format!("cannot run `identity-api {shown}`"))?;
        if !output.status.success() {
            bail!(
                "`identity-api {shown}` failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
