//! The `identity-api` binary as a process: run a command, or start `serve` and stop it.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{ISSUER, TestEnv};

/// The identity-api binary, with no IDENTITY_* variables inherited from the test environment.
pub fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_identity-api"));
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("IDENTITY_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

/// Runs to completion: (success, stdout, stderr).
pub fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `identity-api serve` on a free loopback port, on the test's database and KEK; killed on drop.
pub struct ServeProcess {
    child: std::process::Child,
    pub base: String,
}

impl ServeProcess {
    pub async fn start(env: &TestEnv) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = cmd(&["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &env.url, "--issuer", ISSUER])
            .env("IDENTITY_KEY_ENCRYPTION_KEY", &env.kek)
            // No internal token: the tests call /api/v1/* directly, as the sidecar would. The
            // start-up warning that says so would only clutter the test output.
            .arg("--insecure-no-internal-token")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Owned at once, so that its drop kills and reaps it on every path.
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client
                .get(format!("{}/health/ready", process.base))
                .send()
                .await
                && r.status().is_success()
            {
                return process;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "identity-api serve did not become ready at {}",
            process.base
        );
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `identity-api serve` started by [`start_dev`] or [`until_listening`].
pub struct Server {
    pub child: std::process::Child,
    pub base: String,
    pub stdout: Vec<String>,
}

/// Starts `serve --dev` on port 0, with `args` after the others, and waits (bounded) for its
/// "listening on" line.
pub fn start_dev(dir: &Path, url: &str, args: &[&str]) -> Server {
    let mut serve = cmd(&[
        "serve",
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        url,
        "--issuer",
        ISSUER,
    ]);
    serve.args(args).current_dir(dir);
    until_listening(serve)
}

/// Spawns a `serve` command and waits (bounded) for its "listening on" line.
pub fn until_listening(mut serve: Command) -> Server {
    let mut child = serve
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not report its address");
        };
        if let Some(base) = line.strip_prefix("identity-api listening on ") {
            let base = base.to_owned();
            lines.push(line);
            return Server {
                child,
                base,
                stdout: lines,
            };
        }
        lines.push(line);
    }
}

/// Sends SIGTERM and waits (at most 30 s) for a successful exit.
pub fn sigterm_and_wait(mut server: Server) {
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..300 {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.child.kill();
    panic!("serve did not stop on SIGTERM");
}
