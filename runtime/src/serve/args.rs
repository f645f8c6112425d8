//! The server flags both binaries take, declared once: `--header-read-timeout-secs`,
//! `--body-read-timeout-secs`, `--idle-timeout-secs`, `--max-connections` and
//! `--shutdown-grace-secs`, each with its binary's environment variable.

use std::marker::PhantomData;
use std::time::Duration;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

use super::{
    BODY_READ_TIMEOUT_TEXT, HEADER_READ_TIMEOUT_TEXT, IDLE_TIMEOUT_TEXT, Limits,
    MAX_CONNECTIONS_TEXT, SHUTDOWN_GRACE_TEXT,
};

/// The environment variables of one binary's server flags (see [`server_env!`]).
pub trait ServerEnv {
    const HEADER_READ_TIMEOUT: &'static str;
    const BODY_READ_TIMEOUT: &'static str;
    const IDLE_TIMEOUT: &'static str;
    const MAX_CONNECTIONS: &'static str;
    const SHUTDOWN_GRACE: &'static str;
}

/// Declares a [`ServerEnv`] whose variables carry `prefix`, e.g.
/// `server_env!(SidecarServer, "SIDECAR_")` for `SIDECAR_IDLE_TIMEOUT_SECS` and the rest.
#[macro_export]
macro_rules! server_env {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug)]
        pub struct $name;
        impl $crate::serve::ServerEnv for $name {
            const HEADER_READ_TIMEOUT: &'static str = concat!($prefix, "HEADER_READ_TIMEOUT_SECS");
            const BODY_READ_TIMEOUT: &'static str = concat!($prefix, "BODY_READ_TIMEOUT_SECS");
            const IDLE_TIMEOUT: &'static str = concat!($prefix, "IDLE_TIMEOUT_SECS");
            const MAX_CONNECTIONS: &'static str = concat!($prefix, "MAX_CONNECTIONS");
            const SHUTDOWN_GRACE: &'static str = concat!($prefix, "SHUTDOWN_GRACE_SECS");
        }
    };
}

/// The longest timeout a flag accepts: an hour is already far beyond any request.
const MAX_TIMEOUT_SECS: u64 = 3600;

/// The server flags, flattened into a binary's command line (`#[command(flatten)]`).
#[derive(Debug, Clone, Copy)]
pub struct ServerArgs<E> {
    pub limits: Limits,
    env: PhantomData<E>,
}

impl<E> ServerArgs<E> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            env: PhantomData,
        }
    }
}

const HEADER: &str = "header_read_timeout_secs";
const BODY: &str = "body_read_timeout_secs";
const IDLE: &str = "idle_timeout_secs";
const CONNECTIONS: &str = "max_connections";
const GRACE: &str = "shutdown_grace_secs";

fn seconds(id: &'static str, long: &'static str, env: &'static str, default: &'static str) -> Arg {
    Arg::new(id)
        .long(long)
        .env(env)
        .value_name("SECS")
        .value_parser(clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))
        .default_value(default)
}

impl<E: ServerEnv> Args for ServerArgs<E> {
    fn augment_args(cmd: Command) -> Command {
        cmd.arg(
            seconds(
                HEADER,
                "header-read-timeout-secs",
                E::HEADER_READ_TIMEOUT,
                HEADER_READ_TIMEOUT_TEXT,
            )
            .help(
                "Seconds a client has to send a request's header, from the connection's start \
                     or the first byte of a request on a kept-alive connection; then it is closed",
            ),
        )
        .arg(
            seconds(
                BODY,
                "body-read-timeout-secs",
                E::BODY_READ_TIMEOUT,
                BODY_READ_TIMEOUT_TEXT,
            )
            .help("Seconds a client has to send a request's whole body after its header; then 408"),
        )
        .arg(
            seconds(
                IDLE,
                "idle-timeout-secs",
                E::IDLE_TIMEOUT,
                IDLE_TIMEOUT_TEXT,
            )
            .help(
                "Seconds a kept-alive connection may wait for its next request; then it is \
                 closed. Keep it above your clients' pool idle timeout (90 s for many)",
            ),
        )
        .arg(
            Arg::new(CONNECTIONS)
                .long("max-connections")
                .env(E::MAX_CONNECTIONS)
                .value_name("N")
                .value_parser(clap::value_parser!(u32).range(1..))
                .default_value(MAX_CONNECTIONS_TEXT)
                .help(
                    "Open connections served at once on each listener; more wait in the listen \
                     backlog. Keep it well below the open-files limit",
                ),
        )
        .arg(
            Arg::new(GRACE)
                .long("shutdown-grace-secs")
                .env(E::SHUTDOWN_GRACE)
                .value_name("SECS")
                .value_parser(clap::value_parser!(u64).range(0..=MAX_TIMEOUT_SECS))
                .default_value(SHUTDOWN_GRACE_TEXT)
                .help(
                    "After SIGTERM, seconds to let in-flight requests finish before the \
                     connections still open are dropped. Keep it below the pod's \
                     terminationGracePeriodSeconds",
                ),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<E> FromArgMatches for ServerArgs<E> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let secs = |id| Duration::from_secs(matches.get_one::<u64>(id).copied().unwrap_or(0));
        let d = Limits::default();
        Ok(Self::new(Limits {
            header_read_timeout: secs(HEADER),
            body_read_timeout: secs(BODY),
            idle_timeout: secs(IDLE),
            max_connections: matches
                .get_one::<u32>(CONNECTIONS)
                .map_or(d.max_connections, |&n| n as usize),
            shutdown_grace: secs(GRACE),
        }))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    crate::server_env!(TestServer, "TEST_");

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs<TestServer>,
    }

    #[test]
    fn defaults_are_the_limits_defaults() {
        let cli = Cli::try_parse_from(["t"]).unwrap();
        assert_eq!(cli.server.limits, Limits::default());
    }

    #[test]
    fn flags_set_every_limit() {
        let cli = Cli::try_parse_from([
            "t",
            "--header-read-timeout-secs",
            "2",
            "--body-read-timeout-secs",
            "3",
            "--idle-timeout-secs",
            "4",
            "--max-connections",
            "5",
            "--shutdown-grace-secs",
            "0",
        ])
        .unwrap();
        assert_eq!(
            cli.server.limits,
            Limits {
                header_read_timeout: Duration::from_secs(2),
                body_read_timeout: Duration::from_secs(3),
                idle_timeout: Duration::from_secs(4),
                max_connections: 5,
                shutdown_grace: Duration::ZERO,
            }
        );
    }

    #[test]
    fn zero_timeouts_and_connections_are_refused() {
        for flag in [
            "--header-read-timeout-secs",
            "--body-read-timeout-secs",
            "--idle-timeout-secs",
            "--max-connections",
        ] {
            let err = Cli::try_parse_from(["t", flag, "0"]).unwrap_err();
            assert!(err.to_string().contains(flag), "{flag}: {err}");
        }
        let err = Cli::try_parse_from(["t", "--idle-timeout-secs", "3601"]).unwrap_err();
        assert!(err.to_string().contains("3601"), "{err}");
    }
}
