//! `journey --local --keep-running`: it starts both binaries from `--bin-dir`, prints .env lines
//! that another client can use as they are (the `journey` binary itself walks the six steps with
//! them, the printed key pinned), keeps both up, and stops both cleanly on SIGTERM (even one sent
//! the moment the lines are out); and it fails loudly when one of them dies under it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use e2e_tests::profile_dir;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

fn journey_path() -> anyhow::Result<std::path::PathBuf> {
    let journey = profile_dir()?.join(format!("journey{}", std::env::consts::EXE_SUFFIX));
    if !journey.is_file() {
        bail!(
            "{} not found: run `cargo test --workspace` (or `cargo build --workspace`) first",
            journey.display()
        );
    }
    Ok(journey)
}

/// `journey` with none of the developer's client settings.
fn journey() -> anyhow::Result<Command> {
    let mut command = Command::new(journey_path()?);
    for (key, _) in std::env::vars() {
        if key.starts_with("SIDECAR_") || key.starts_with("CLIENT_") || key == "SUBJECT" {
            command.env_remove(key);
        }
    }
    command.current_dir(std::env::temp_dir()).kill_on_drop(true);
    Ok(command)
}

/// Starts the launcher and reads its .env lines (up to `SUBJECT=`, the last one).
async fn launch() -> anyhow::Result<(Child, HashMap<String, String>, Vec<String>)> {
    let mut child = journey()?
        .args(["--local", "--keep-running", "--subject", "kept-user"])
        .arg("--bin-dir")
        .arg(profile_dir()?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut vars = HashMap::new();
    let mut all = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await? {
            all.push(line.clone());
            if let Some((key, value)) = line.split_once('=')
                && !line.starts_with('#')
            {
                vars.insert(key.to_owned(), value.to_owned());
                if key == "SUBJECT" {
                    return Ok(());
                }
            }
        }
        bail!("stdout ended before SUBJECT=: {all:?}")
    };
    tokio::time::timeout(Duration::from_secs(90), read)
        .await
        .context("no .env lines within 90 s")??;
    Ok((child, vars, all))
}

/// SIGTERM, as Kubernetes or a terminal's `kill` sends it.
fn terminate(child: &Child) {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().unwrap().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

async fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), stderr.read_to_string(&mut text)).await;
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_running_prints_env_lines_a_client_can_use_and_stops_on_sigterm() -> anyhow::Result<()>
{
    let (mut child, vars, lines) = launch().await?;
    for key in [
        "SIDECAR_URL",
        "SIDECAR_PUBLIC_KEY",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "SUBJECT",
    ] {
        assert!(
            vars.get(key).is_some_and(|v| !v.is_empty()),
            "{key} missing: {lines:?}"
        );
    }
    assert_eq!(vars["SUBJECT"], "kept-user");
    // Every line is a comment or KEY=VALUE: the output is a .env file as it is.
    assert!(
        lines.iter().all(|l| l.starts_with('#') || l.contains('=')),
        "{lines:?}"
    );

    // The printed key is the one the sidecar publishes.
    let doc: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/identity-sidecar",
        vars["SIDECAR_URL"]
    ))
    .await?
    .json()
    .await?;
    assert_eq!(doc["keys"][0]["public_key"], vars["SIDECAR_PUBLIC_KEY"]);

    // A client configured with exactly these lines walks the journey, pinning the key.
    let walked = journey()?
        .envs(vars.iter())
        .output()
        .await
        .context("running the journey against the kept stack")?;
    let text = String::from_utf8_lossy(&walked.stdout);
    assert!(
        walked.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&walked.stderr)
    );
    assert!(text.contains("pinned key"), "{text}");

    // Still up after a client came and went; SIGTERM stops both cleanly.
    assert!(child.try_wait()?.is_none(), "the launcher exited early");
    terminate(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    let stderr = stderr_of(&mut child).await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("identity-sidecar stopped cleanly"),
        "{stderr}"
    );
    assert!(stderr.contains("identity-api stopped cleanly"), "{stderr}");
    assert!(
        reqwest::get(format!("{}/health", vars["SIDECAR_URL"]))
            .await
            .is_err(),
        "the sidecar still answers after the launcher stopped"
    );
    // The secret went to stdout only, never into the progress on stderr.
    assert!(!stderr.contains(&vars["CLIENT_SECRET"]), "{stderr}");
    Ok(())
}

/// The sidecar's pid: the launcher's child (of any of its threads) running identity-sidecar.
fn sidecar_pid(launcher: u32) -> anyhow::Result<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{launcher}/task"))
        .context("reading the launcher's threads from /proc")?;
    let mut children = Vec::new();
    for task in tasks {
        let path = task?.path().join("children");
        children.extend(
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned),
        );
    }
    for pid in &children {
        // The kernel keeps 15 bytes of a command's name.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if "identity-sidecar".starts_with(comm.trim()) && !comm.trim().is_empty() {
            return Ok(pid.parse()?);
        }
    }
    bail!("no identity-sidecar among the launcher's children {children:?}")
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_running_fails_when_a_binary_dies_under_it() -> anyhow::Result<()> {
    let (mut child, _vars, _lines) = launch().await?;
    let sidecar = sidecar_pid(child.id().unwrap())?;
    let killed = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(sidecar.to_string())
        .status()?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    let stderr = stderr_of(&mut child).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("identity-sidecar exited on its own"),
        "{stderr}"
    );
    Ok(())
}

/// SIGTERM the moment the lines are out is already a graceful stop: the handler is in place
/// before they are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_the_lines_stops_both_cleanly() -> anyhow::Result<()> {
    let (mut child, _vars, _lines) = launch().await?;
    terminate(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    let stderr = stderr_of(&mut child).await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("identity-api stopped cleanly"), "{stderr}");
    Ok(())
}
