//! The failed-login limits of `serve` (`service::lockout`, docs/users.md "Brute force").

use clap::Args;

use crate::service::lockout::{
    DEFAULT_LOCK_SECS, DEFAULT_MAX_FAILURES, DEFAULT_SOURCE_MAX_FAILURES,
    DEFAULT_SOURCE_WINDOW_SECS, DEFAULT_WINDOW_SECS, LoginLimits,
};
use crate::storage::MAX_LOGIN_WINDOW_SECS;

/// How many failed password logins lock a username or a source, and for how long.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Failed logins of a username (whether or not such a user exists) that lock it, 2 to
    /// 1000. One source alone may fail one time less on a username: it cannot lock it by
    /// itself.
    #[arg(long, env = "IDENTITY_LOGIN_MAX_FAILURES", value_name = "N",
          default_value_t = DEFAULT_MAX_FAILURES,
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub login_max_failures: u32,

    /// How long a locked username stays locked, in seconds (attempts meanwhile are refused
    /// without being counted, so a lock always ends).
    #[arg(long, env = "IDENTITY_LOGIN_LOCK_SECS", value_name = "SECS",
          default_value_t = DEFAULT_LOCK_SECS,
          value_parser = clap::value_parser!(i64).range(1..=MAX_LOGIN_WINDOW_SECS))]
    pub login_lock_secs: i64,

    /// A username's failures are forgotten this long after the last one, in seconds.
    #[arg(long, env = "IDENTITY_LOGIN_FAILURE_WINDOW_SECS", value_name = "SECS",
          default_value_t = DEFAULT_WINDOW_SECS,
          value_parser = clap::value_parser!(i64).range(1..=MAX_LOGIN_WINDOW_SECS))]
    pub login_failure_window_secs: i64,

    /// Failed logins of one source (the client's address), on any usernames, that block it
    /// until the end of its window (--login-source-window-secs). Counted per instance.
    #[arg(long, env = "IDENTITY_LOGIN_SOURCE_MAX_FAILURES", value_name = "N",
          default_value_t = DEFAULT_SOURCE_MAX_FAILURES,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub login_source_max_failures: u32,

    /// The window of a source's failed logins, in seconds.
    #[arg(long, env = "IDENTITY_LOGIN_SOURCE_WINDOW_SECS", value_name = "SECS",
          default_value_t = DEFAULT_SOURCE_WINDOW_SECS,
          value_parser = clap::value_parser!(i64).range(1..=MAX_LOGIN_WINDOW_SECS))]
    pub login_source_window_secs: i64,
}

impl LoginArgs {
    pub fn limits(&self) -> LoginLimits {
        LoginLimits {
            max_failures: self.login_max_failures,
            lock_secs: self.login_lock_secs,
            window_secs: self.login_failure_window_secs,
            source_max_failures: self.login_source_max_failures,
            source_window_secs: self.login_source_window_secs,
        }
    }
}
