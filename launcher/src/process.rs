//! One child process with its output in a log file, stopped with SIGTERM (then killed) when
//! dropped; a free loopback port for it; and the wait until it answers `/health/ready`.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};

/// How long a binary may take to answer `/health/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a binary may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A free loopback port: bound, read, released. Another process may take it before we use it;
/// [`Stack`] retries on a fresh port when a binary exits before it is ready.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// A child process whose output goes to a log file, stopped on drop.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            name,
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The operating-system process id, while it runs (the load generator reads its RSS and CPU).
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => None,
        }
    }

    /// SIGTERM (graceful shutdown), a bounded wait, then SIGKILL. Returns the exit status, or
    /// `None` when it had to be killed or was stopped already.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if cfg!(unix) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a file (reads at most its last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(65_536)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[derive(Debug)]
pub enum Ready {
    /// The process exited before it was ready (e.g. its port was taken): worth a retry.
    Exited(anyhow::Error),
    TimedOut(anyhow::Error),
}

/// Polls `<base>/health/ready` until it answers 200, the process exits, or [`READY_TIMEOUT`].
pub async fn wait_ready(
    http: &reqwest::Client,
    process: &mut Process,
    base: &str,
) -> Result<(), Ready> {
    let url = format!("{base}/health/ready");
    let deadline = Instant::now() + READY_TIMEOUT;
    let pause = Duration::from_millis(100);
    let max_polls = READY_TIMEOUT.as_millis() / pause.as_millis() + 1;
    let mut last = String::from("no answer yet");
    for _ in 0..max_polls {
        if let Some(status) = process.exited() {
            return Err(Ready::Exited(anyhow!(
                "{} exited before it was ready ({status}); its log ({}) ends with:\n{}",
                process.name(),
                process.log_path().display(),
                process.log_tail(20)
            )));
        }
        match http.get(&url).send().await {
            Ok(answer) if answer.status().is_success() => {
                // If our process could not bind its port, another process may have answered:
                // make sure ours is still alive a moment later.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if process.exited().is_none() {
                    return Ok(());
                }
                continue;
            }
            Ok(answer) => last = format!("HTTP {}", answer.status()),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    Err(Ready::TimedOut(anyhow!(
        "{} was not ready at {url} within {} s (last: {last}); its log ({}) ends with:\n{}",
        process.name(),
        READY_TIMEOUT.as_secs(),
        process.log_path().display(),
        process.log_tail(20)
    )))
}
