//! The `identity-api` binary's commands on one test database, for the CLI tests of users and
//! roles.
#![allow(dead_code)]

use std::process::{Command, Stdio};

use serde_json::Value;

use super::{Backend, cmd, database, new_kek_text, run};

/// The binary on the test's database: (`ok`: stdout of a success, `refused`: stderr of a
/// failure).
pub struct Cli {
    pub url: String,
    pub kek: String,
}

impl Cli {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = cmd(args);
        c.env("IDENTITY_DATABASE_URL", &self.url)
            .env("IDENTITY_KEY_ENCRYPTION_KEY", &self.kek)
            .env("USER", "test-operator");
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = run(&mut self.command(args));
        assert!(ok, "{args:?}: {err}");
        out
    }

    pub fn refused(&self, args: &[&str]) -> String {
        let (ok, out, err) = run(&mut self.command(args));
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(out.is_empty(), "{args:?} printed {out}");
        err
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(self.ok(args).trim()).unwrap()
    }

    pub fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        self.ok(args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The audit rows of `event`, as `audit export` writes them.
    pub fn audit(&self, event: &str) -> Vec<Value> {
        self.json_lines(&["audit", "export", "--event", event])
    }

    /// Runs with `input` on stdin and cheap Argon2id costs: (success, stdout, stderr).
    pub fn with_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        use std::io::Write as _;
        let mut child = self
            .command(args)
            .envs(CHEAP_ARGON2)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command refused before it reads stdin closes it: not an error here.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Cheap Argon2id costs: the tests check the commands, not the hash's strength.
pub const CHEAP_ARGON2: [(&str, &str); 2] = [
    ("IDENTITY_ARGON2_MEMORY_KIB", "256"),
    ("IDENTITY_ARGON2_ITERATIONS", "1"),
];

/// The first column, as text, of every row `sql` selects, read with SQL of the test's own.
pub async fn column(db: &identity_api::Db, sql: &str) -> Vec<Option<String>> {
    match db.pools() {
        identity_api::storage::Pools::Sqlite { write, .. } => {
            sqlx::query_scalar(sql).fetch_all(write).await.unwrap()
        }
        identity_api::storage::Pools::Postgres(pool) => {
            sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
        }
    }
}

/// A fresh database of `b` and a key-encryption key; `None` when PostgreSQL is not configured.
pub async fn cli(b: Backend) -> Option<(Cli, Option<tempfile::TempDir>)> {
    let (url, dir) = database(b).await?;
    Some((
        Cli {
            url,
            kek: new_kek_text(),
        },
        dir,
    ))
}
