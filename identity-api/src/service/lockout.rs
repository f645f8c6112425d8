//! Brute force against passwords: how many failed logins lock what, for how long
//! ([`LoginLimits`], `--login-*`), and the per-source counts kept in memory ([`Sources`]). The
//! per-username count is in the database (`login_failures`), shared by every instance.
//!
//! Three limits, checked before any hash is computed (docs/users.md, "Brute force"):
//! - a username of a tenant: [`LoginLimits::max_failures`] failures, each within
//!   [`LoginLimits::window_secs`] of the one before, lock it for [`LoginLimits::lock_secs`]
//!   (counted whether or not the user exists, so a lock says nothing about existence). Refused
//!   attempts during the lock are not counted: a lock ends `lock_secs` after it began;
//! - a source and one username: one source may fail at most `max_failures - 1` times on a
//!   username within the window, so that a single source never locks a user out: its own limit
//!   trips first, and the user can still log in from elsewhere;
//! - a source: [`LoginLimits::source_max_failures`] failures within
//!   [`LoginLimits::source_window_secs`], on any usernames (password spraying).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::storage::{FailureLimits, TenantId};

/// Failures that lock a username.
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// How long a username stays locked, seconds.
pub const DEFAULT_LOCK_SECS: i64 = 300;
/// A username's failures age out this long after the last one, seconds.
pub const DEFAULT_WINDOW_SECS: i64 = 900;
/// Failures of one source that block it, within [`DEFAULT_SOURCE_WINDOW_SECS`].
pub const DEFAULT_SOURCE_MAX_FAILURES: u32 = 50;
/// The window of a source's failures, seconds; a blocked source waits for its end.
pub const DEFAULT_SOURCE_WINDOW_SECS: i64 = 300;
/// Sources and source-username pairs remembered at most; past it, entries whose window ended
/// are dropped, and new ones are not counted until there is room (the database's per-username
/// count still holds).
const MAX_ENTRIES: usize = 100_000;

/// The limits of failed logins (`--login-max-failures` and the rest, see `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub max_failures: u32,
    pub lock_secs: i64,
    pub window_secs: i64,
    pub source_max_failures: u32,
    pub source_window_secs: i64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_failures: DEFAULT_MAX_FAILURES,
            lock_secs: DEFAULT_LOCK_SECS,
            window_secs: DEFAULT_WINDOW_SECS,
            source_max_failures: DEFAULT_SOURCE_MAX_FAILURES,
            source_window_secs: DEFAULT_SOURCE_WINDOW_SECS,
        }
    }
}

impl LoginLimits {
    pub(super) fn storage(&self) -> FailureLimits {
        FailureLimits {
            max_failures: i64::from(self.max_failures.max(1)),
            window_secs: self.window_secs,
            lock_secs: self.lock_secs,
        }
    }

    /// Failures one source may have on one username: one less than locks it (at least one;
    /// the flag allows no limit below 2, where one source could lock a username alone).
    fn pair_max(&self) -> u32 {
        self.max_failures.saturating_sub(1).max(1)
    }
}

/// Where a login comes from: the end client's address as the sidecar forwards it, else the
/// peer's; failing both (a Unix socket without `X-Forwarded-For`), the client that calls.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoginSource {
    Ip(IpAddr),
    Client(String),
}

impl std::fmt::Display for LoginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Client(id) => write!(f, "client:{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Source(LoginSource),
    Pair(LoginSource, TenantId, String),
}

/// A fixed window of failures: since `start`, `count`.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    count: u32,
}

/// The failures of each source, and of each source on each username, in memory (per instance).
#[derive(Debug, Default)]
pub struct Sources {
    windows: Mutex<HashMap<Key, Window>>,
}

impl Sources {
    /// Seconds until `source` may try `username_key` again, if it is blocked now.
    pub(super) fn blocked(
        &self,
        limits: &LoginLimits,
        source: &LoginSource,
        tenant: &TenantId,
        username_key: Option<&str>,
        now: i64,
    ) -> Option<i64> {
        let windows = self.windows.lock().ok()?;
        let window = limits.source_window_secs.max(1);
        let check = |key: &Key, max: u32, span: i64| {
            windows
                .get(key)
                .filter(|w| w.count >= max && now < w.start.saturating_add(span))
                .map(|w| w.start.saturating_add(span) - now)
        };
        let by_source = check(
            &Key::Source(source.clone()),
            limits.source_max_failures.max(1),
            window,
        );
        let by_pair = username_key.and_then(|key| {
            check(
                &Key::Pair(source.clone(), tenant.clone(), key.to_owned()),
                limits.pair_max(),
                limits.window_secs.max(1),
            )
        });
        by_source.max(by_pair)
    }

    /// Counts a failure of `source` (on `username_key`, if it is one a user may have).
    pub(super) fn failed(
        &self,
        limits: &LoginLimits,
        source: &LoginSource,
        tenant: &TenantId,
        username_key: Option<&str>,
        now: i64,
    ) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        if windows.len() >= MAX_ENTRIES {
            let longest = limits.source_window_secs.max(limits.window_secs);
            windows.retain(|_, w| now < w.start.saturating_add(longest));
        }
        let mut count = |key: Key, span: i64| {
            if windows.len() >= MAX_ENTRIES && !windows.contains_key(&key) {
                return;
            }
            let w = windows.entry(key).or_insert(Window {
                start: now,
                count: 0,
            });
            if now >= w.start.saturating_add(span) {
                *w = Window {
                    start: now,
                    count: 0,
                };
            }
            w.count = w.count.saturating_add(1);
        };
        count(
            Key::Source(source.clone()),
            limits.source_window_secs.max(1),
        );
        if let Some(key) = username_key {
            count(
                Key::Pair(source.clone(), tenant.clone(), key.to_owned()),
                limits.window_secs.max(1),
            );
        }
    }

    /// Forgets the source's failures on `username_key` after a success.
    pub(super) fn succeeded(&self, source: &LoginSource, tenant: &TenantId, username_key: &str) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.remove(&Key::Pair(
                source.clone(),
                tenant.clone(),
                username_key.to_owned(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_blocked_on_a_username_before_it_could_lock_it() {
        let limits = LoginLimits::default();
        let sources = Sources::default();
        let ip = LoginSource::Ip(IpAddr::from([10, 0, 0, 1]));
        let t = TenantId::primary();
        for _ in 0..limits.max_failures - 1 {
            assert_eq!(sources.blocked(&limits, &ip, &t, Some("alice"), 100), None);
            sources.failed(&limits, &ip, &t, Some("alice"), 100);
        }
        let wait = sources.blocked(&limits, &ip, &t, Some("alice"), 110);
        assert_eq!(wait, Some(limits.window_secs - 10));
        // Other usernames, and other sources on this one, are not blocked.
        assert_eq!(sources.blocked(&limits, &ip, &t, Some("bob"), 110), None);
        let other = LoginSource::Ip(IpAddr::from([10, 0, 0, 2]));
        assert_eq!(
            sources.blocked(&limits, &other, &t, Some("alice"), 110),
            None
        );
        // The window ends.
        let later = 100 + limits.window_secs;
        assert_eq!(
            sources.blocked(&limits, &ip, &t, Some("alice"), later),
            None
        );
    }

    #[test]
    fn a_source_is_blocked_past_its_own_limit_on_any_usernames() {
        let limits = LoginLimits {
            source_max_failures: 3,
            ..LoginLimits::default()
        };
        let sources = Sources::default();
        let ip = LoginSource::Client("c1".into());
        let t = TenantId::primary();
        for name in ["a", "b", "c"] {
            sources.failed(&limits, &ip, &t, Some(name), 0);
        }
        assert_eq!(
            sources.blocked(&limits, &ip, &t, Some("d"), 1),
            Some(limits.source_window_secs - 1)
        );
        assert_eq!(
            sources.blocked(&limits, &ip, &t, None, limits.source_window_secs),
            None
        );
    }
}
