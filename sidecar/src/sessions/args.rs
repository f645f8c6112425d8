//! The session store's flags (`--session-store` and the rest), flattened into the sidecar's
//! configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use identity_runtime::{Secret, SecretSpec};

use super::sealing::StoreKeys;

/// Where sessions live.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Where sessions live: `memory` (this process alone) or the URL of a Redis server that
    /// replicas share, so that a session opened on one works on every one: redis://host:6379/0,
    /// rediss:// for TLS. With --session-store-cluster: seed nodes of a Redis Cluster,
    /// comma-separated. Redis needs --session-store-key-file; its password comes from
    /// --session-store-password-file.
    #[arg(
        long = "session-store",
        env = "SIDECAR_SESSION_STORE",
        default_value = "memory"
    )]
    pub url: String,

    /// The Redis URLs are seed nodes of a Redis Cluster (a session's keys share one slot).
    #[arg(long = "session-store-cluster", env = "SIDECAR_SESSION_STORE_CLUSTER",
          action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub cluster: bool,

    // --session-store-password / SIDECAR_SESSION_STORE_PASSWORD or
    // --session-store-password-file / SIDECAR_SESSION_STORE_PASSWORD_FILE.
    #[command(flatten)]
    pub password: Secret<StorePasswordSpec>,

    // --session-store-key / SIDECAR_SESSION_STORE_KEY or
    // --session-store-key-file / SIDECAR_SESSION_STORE_KEY_FILE.
    #[command(flatten)]
    pub key: Secret<StoreKeySpec>,

    /// PEM file of the CA that signed the Redis server's certificate (rediss://), instead of the
    /// system's roots.
    #[arg(long = "session-store-ca-file", env = "SIDECAR_SESSION_STORE_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Prefix of every Redis key the sidecar writes (one Redis can serve several deployments).
    #[arg(
        long = "session-store-prefix",
        env = "SIDECAR_SESSION_STORE_PREFIX",
        default_value = "identity-sidecar:session:"
    )]
    pub prefix: String,

    /// How long Redis may take to answer, in milliseconds; then 503 session_store_unavailable.
    #[arg(long = "session-store-timeout-ms", env = "SIDECAR_SESSION_STORE_TIMEOUT_MS",
          default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub timeout_ms: u64,
}

impl StoreArgs {
    /// `--session-store memory`.
    pub fn is_memory(&self) -> bool {
        self.url == "memory"
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// What clap cannot check: a Redis URL with its key, and no Redis settings without one.
    pub fn validate(&self) -> Result<(), String> {
        if self.is_memory() {
            if self.key.get().is_some() || self.password.get().is_some() || self.cluster {
                return Err(
                    "--session-store-key, --session-store-password and --session-store-cluster \
                     need --session-store redis://..."
                        .into(),
                );
            }
            return Ok(());
        }
        for url in self.urls() {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(
                    "--session-store must be `memory` or redis:// or rediss:// URLs".into(),
                );
            }
        }
        if !self.cluster && self.urls().count() > 1 {
            return Err(
                "--session-store takes several URLs only with --session-store-cluster".into(),
            );
        }
        if self.key.get().is_none() {
            return Err(
                "--session-store redis://... needs --session-store-key-file \
                 (SIDECAR_SESSION_STORE_KEY_FILE): the key every replica seals session keys under"
                    .into(),
            );
        }
        Ok(())
    }

    /// The Redis URLs (one, or a cluster's seed nodes).
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }
}

/// The Redis password (or ACL user's password; the user goes in the URL).
#[derive(Debug)]
pub enum StorePasswordSpec {}

impl SecretSpec for StorePasswordSpec {
    const FLAG: &'static str = "session-store-password";
    const FILE_FLAG: &'static str = "session-store-password-file";
    const ENV: &'static str = "SIDECAR_SESSION_STORE_PASSWORD";
    const FILE_ENV: &'static str = "SIDECAR_SESSION_STORE_PASSWORD_FILE";
    const HELP: &'static str = "The Redis password (prefer --session-store-password-file).";
    const FILE_HELP: &'static str = "File holding the Redis password.";
}

/// The keys that seal session keys in Redis.
#[derive(Debug)]
pub enum StoreKeySpec {}

impl SecretSpec for StoreKeySpec {
    const FLAG: &'static str = "session-store-key";
    const FILE_FLAG: &'static str = "session-store-key-file";
    const ENV: &'static str = "SIDECAR_SESSION_STORE_KEY";
    const FILE_ENV: &'static str = "SIDECAR_SESSION_STORE_KEY_FILE";
    const HELP: &'static str =
        "The keys that seal session keys in Redis (prefer --session-store-key-file).";
    const FILE_HELP: &'static str = "File of the keys that seal session keys in Redis, the same \
        on every replica: 64 hex digits each (openssl rand -hex 32), one per line. The first \
        seals; the others only open (rotation).";

    fn check(value: &str) -> Result<(), &'static str> {
        StoreKeys::parse(value).map(drop)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic here is a failed test

    use clap::Parser;

    use super::*;

    const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        store: StoreArgs,
    }

    fn validate(args: &[&str]) -> Result<(), String> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.store.validate()
    }

    #[test]
    fn redis_needs_its_key_and_memory_takes_no_redis_settings() {
        assert_eq!(validate(&[]), Ok(()));
        let redis = ["--session-store", "redis://127.0.0.1:6379"];
        assert!(
            validate(&redis)
                .unwrap_err()
                .contains("--session-store-key-file")
        );
        assert_eq!(
            validate(&[&redis[..], &["--session-store-key", KEY]].concat()),
            Ok(())
        );
        for (args, says) in [
            (
                vec!["--session-store-key", KEY],
                "need --session-store redis://",
            ),
            (
                vec!["--session-store-password", "pw"],
                "need --session-store redis://",
            ),
            (
                vec!["--session-store-cluster"],
                "need --session-store redis://",
            ),
            (
                vec![
                    "--session-store",
                    "http://127.0.0.1:6379",
                    "--session-store-key",
                    KEY,
                ],
                "must be `memory` or redis://",
            ),
            (
                vec![
                    "--session-store",
                    "redis://a:1,redis://b:1",
                    "--session-store-key",
                    KEY,
                ],
                "only with --session-store-cluster",
            ),
            (
                vec![
                    "--session-store",
                    "redis://a:1",
                    "--session-store-key",
                    "abc",
                ],
                "64 hex digits",
            ),
        ] {
            let err = validate(&args).unwrap_err();
            assert!(err.contains(says), "{args:?}: {err}");
            // The store key never appears in an error.
            assert!(!err.contains(&KEY[..16]), "{err}");
        }
        let cluster = [
            "--session-store",
            "redis://a:1, rediss://b:1",
            "--session-store-cluster",
            "--session-store-key",
            KEY,
        ];
        assert_eq!(validate(&cluster), Ok(()));
    }
}
