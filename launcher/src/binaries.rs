//! Where the two binaries are: next to a test executable, or built now with the `cargo` that
//! runs us.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Paths of the two binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub identity_api: PathBuf,
    pub sidecar: PathBuf,
}

impl Binaries {
    /// The binaries in a Cargo profile directory such as `target/debug`. A relative `dir` is
    /// taken from the current directory now: the processes start in a directory of their own.
    pub fn in_dir(dir: &Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let exe = std::env::consts::EXE_SUFFIX;
        Self {
            identity_api: dir.join(format!("identity-api{exe}")),
            sidecar: dir.join(format!("identity-sidecar{exe}")),
        }
    }

    /// The paths that do not exist.
    pub fn missing(&self) -> Vec<&Path> {
        [&self.identity_api, &self.sidecar]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(PathBuf::as_path)
            .collect()
    }

    /// `cargo build -p identity-api -p identity-sidecar --bins` of the workspace this example
    /// belongs to, with the `cargo` that runs us (`CARGO` under `cargo run`) and our profile.
    /// Cargo's progress goes to stderr; the paths come from its JSON messages.
    pub fn build() -> anyhow::Result<Self> {
        let cargo = cargo();
        let mut command = Command::new(&cargo);
        command
            .args([
                "build",
                "-p",
                "identity-api",
                "-p",
                "identity-sidecar",
                "--bins",
            ])
            .arg("--message-format=json-render-diagnostics")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !cfg!(debug_assertions) {
            command.arg("--release");
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        if manifest.is_file() {
            command.arg("--manifest-path").arg(manifest);
        }
        let mut child = command.spawn().with_context(|| {
            format!(
                "cannot run {} (is the Rust toolchain installed?)",
                cargo.to_string_lossy()
            )
        })?;
        let mut found = (None, None);
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let line = line.context("reading cargo's output")?;
                let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if message["reason"] != "compiler-artifact" {
                    continue;
                }
                let Some(executable) = message["executable"].as_str() else {
                    continue;
                };
                match message["target"]["name"].as_str() {
                    Some("identity-api") => found.0 = Some(PathBuf::from(executable)),
                    Some("identity-sidecar") => found.1 = Some(PathBuf::from(executable)),
                    _ => {}
                }
            }
        }
        let status = child.wait().context("waiting for cargo")?;
        if !status.success() {
            bail!("`cargo build -p identity-api -p identity-sidecar` failed ({status})");
        }
        match found {
            (Some(identity_api), Some(sidecar)) => Ok(Self {
                identity_api,
                sidecar,
            }),
            _ => bail!(
                "cargo built, but did not name the identity-api and identity-sidecar binaries"
            ),
        }
    }
}

/// `CARGO` when set (under `cargo run`), else `cargo`.
pub fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsStr::new("cargo").to_owned())
}
