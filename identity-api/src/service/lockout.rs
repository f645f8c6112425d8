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
use std::hash::{BuildHasher as _, RandomState};
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
///
/// An attempt is counted when it begins ([`Sources::begin`]), before its hash, and given back
/// when the password proves right ([`Sources::release`], [`Sources::succeeded`]): so concurrent
/// attempts cannot all pass the check before any of them is counted.
#[derive(Debug, Default)]
pub struct Sources {
    windows: Mutex<HashMap<Key, Window>>,
}

impl Sources {
    /// Counts an attempt of `source` (on `username_key`, if it is one a user may have), unless
    /// it is blocked now: then the seconds until it may try again.
    pub(super) fn begin(
        &self,
        limits: &LoginLimits,
        source: &LoginSource,
        tenant: &TenantId,
        username_key: Option<&str>,
        now: i64,
    ) -> Result<(), i64> {
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        let keys = Counted::new(limits, source, tenant, username_key);
        let wait = keys
            .iter()
            .filter_map(|(key, max, span)| {
                windows
                    .get(key)
                    .filter(|w| w.count >= *max && now < w.start.saturating_add(*span))
                    .map(|w| w.start.saturating_add(*span) - now)
            })
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        if windows.len() >= MAX_ENTRIES {
            let longest = limits.source_window_secs.max(limits.window_secs);
            windows.retain(|_, w| now < w.start.saturating_add(longest));
        }
        for (key, _, span) in keys.iter() {
            if windows.len() >= MAX_ENTRIES && !windows.contains_key(key) {
                continue;
            }
            let w = windows.entry(key.clone()).or_insert(Window {
                start: now,
                count: 0,
            });
            if now >= w.start.saturating_add(*span) {
                *w = Window {
                    start: now,
                    count: 0,
                };
            }
            w.count = w.count.saturating_add(1);
        }
        Ok(())
    }

    /// Gives back the count of an attempt that was not a failure (the password was right).
    pub(super) fn release(
        &self,
        limits: &LoginLimits,
        source: &LoginSource,
        tenant: &TenantId,
        username_key: Option<&str>,
    ) {
        if let Ok(mut windows) = self.windows.lock() {
            for (key, _, _) in Counted::new(limits, source, tenant, username_key).iter() {
                if let Some(w) = windows.get_mut(key) {
                    w.count = w.count.saturating_sub(1);
                }
            }
        }
    }

    /// After a login: the attempt given back, and the source's failures on the username
    /// forgotten.
    pub(super) fn succeeded(
        &self,
        limits: &LoginLimits,
        source: &LoginSource,
        tenant: &TenantId,
        username_key: &str,
    ) {
        self.release(limits, source, tenant, None);
        if let Ok(mut windows) = self.windows.lock() {
            windows.remove(&Key::Pair(
                counted_source(source),
                tenant.clone(),
                username_key.to_owned(),
            ));
        }
    }
}

/// Attempts on one username take turns on this instance, from the lock's check to the count
/// of their failure, so that each sees the failures before it: a burst of concurrent guesses
/// cannot all pass the check before the first is counted. Usernames share a fixed set of turns
/// by hash: no memory grows with them, and two that share one merely wait for each other.
#[derive(Debug)]
pub struct Turns {
    turns: Box<[tokio::sync::Mutex<()>]>,
    hasher: RandomState,
}

impl Default for Turns {
    fn default() -> Self {
        Self {
            turns: (0..TURNS).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Turns {
    /// Waits for the turn of `username_key` in `tenant`; it passes on when the guard drops.
    pub(super) async fn take(
        &self,
        tenant: &TenantId,
        username_key: &str,
    ) -> tokio::sync::MutexGuard<'_, ()> {
        let hash = self.hasher.hash_one((tenant, username_key));
        let turn = usize::try_from(hash % TURNS as u64).unwrap_or(0);
        self.turns[turn].lock().await
    }
}

/// How many turns usernames share.
const TURNS: usize = 256;

/// The counts an attempt touches: its source's, and its source's on the username; each with
/// its limit and window.
struct Counted {
    source: (Key, u32, i64),
    pair: Option<(Key, u32, i64)>,
}

impl Counted {
    fn new(
        limits: &LoginLimits,
        source: &LoginSource,
        tenant: &TenantId,
        username_key: Option<&str>,
    ) -> Self {
        let source = counted_source(source);
        Self {
            pair: username_key.map(|key| {
                (
                    Key::Pair(source.clone(), tenant.clone(), key.to_owned()),
                    limits.pair_max(),
                    limits.window_secs.max(1),
                )
            }),
            source: (
                Key::Source(source),
                limits.source_max_failures.max(1),
                limits.source_window_secs.max(1),
            ),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(Key, u32, i64)> {
        std::iter::once(&self.source).chain(self.pair.as_ref())
    }
}

/// The source as it is counted: an IPv6 address by its /64, which one subscriber usually holds
/// whole (so that walking through it buys no fresh counts); an IPv4-mapped address as IPv4.
fn counted_source(source: &LoginSource) -> LoginSource {
    match source {
        LoginSource::Ip(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => LoginSource::Ip(IpAddr::V4(v4)),
            None => {
                let prefix = u128::from(*v6) & !((1u128 << 64) - 1);
                LoginSource::Ip(IpAddr::V6(prefix.into()))
            }
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn a_source_is_blocked_on_a_username_before_it_could_lock_it() {
        let limits = LoginLimits::default();
        let sources = Sources::default();
        let ip = LoginSource::Ip(IpAddr::from([10, 0, 0, 1]));
        let t = TenantId::primary();
        for _ in 0..limits.max_failures - 1 {
            assert_eq!(sources.begin(&limits, &ip, &t, Some("alice"), 100), Ok(()));
        }
        let wait = sources.begin(&limits, &ip, &t, Some("alice"), 110);
        assert_eq!(wait, Err(limits.window_secs - 10));
        // Other usernames, and other sources on this one, are not blocked.
        assert_eq!(sources.begin(&limits, &ip, &t, Some("bob"), 110), Ok(()));
        let other = LoginSource::Ip(IpAddr::from([10, 0, 0, 2]));
        assert_eq!(
            sources.begin(&limits, &other, &t, Some("alice"), 110),
            Ok(())
        );
        // The window ends.
        let later = 100 + limits.window_secs;
        assert_eq!(
            sources.begin(&limits, &ip, &t, Some("alice"), later),
            Ok(())
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
            assert_eq!(sources.begin(&limits, &ip, &t, Some(name), 0), Ok(()));
        }
        assert_eq!(
            sources.begin(&limits, &ip, &t, Some("d"), 1),
            Err(limits.source_window_secs - 1)
        );
        assert_eq!(
            sources.begin(&limits, &ip, &t, None, limits.source_window_secs),
            Ok(())
        );
    }

    #[test]
    fn a_right_password_gives_its_attempt_back() {
        let limits = LoginLimits {
            source_max_failures: 2,
            ..LoginLimits::default()
        };
        let sources = Sources::default();
        let ip = LoginSource::Client("c1".into());
        let t = TenantId::primary();
        for _ in 0..10 {
            assert_eq!(sources.begin(&limits, &ip, &t, Some("alice"), 0), Ok(()));
            sources.succeeded(&limits, &ip, &t, "alice");
        }
        assert_eq!(sources.begin(&limits, &ip, &t, Some("bob"), 0), Ok(()));
        sources.release(&limits, &ip, &t, Some("bob"));
        assert_eq!(sources.begin(&limits, &ip, &t, Some("bob"), 0), Ok(()));
        assert_eq!(sources.begin(&limits, &ip, &t, Some("carol"), 0), Ok(()));
        assert!(sources.begin(&limits, &ip, &t, Some("dave"), 0).is_err());
    }

    #[test]
    fn an_ipv6_source_is_counted_by_its_64() {
        let limits = LoginLimits {
            source_max_failures: 2,
            ..LoginLimits::default()
        };
        let sources = Sources::default();
        let t = TenantId::primary();
        let host =
            |n: u16| LoginSource::Ip(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, n)));
        assert_eq!(sources.begin(&limits, &host(1), &t, None, 0), Ok(()));
        assert_eq!(sources.begin(&limits, &host(2), &t, None, 0), Ok(()));
        assert!(sources.begin(&limits, &host(3), &t, None, 0).is_err());
        let next = LoginSource::Ip(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1)));
        assert_eq!(sources.begin(&limits, &next, &t, None, 0), Ok(()));
        let mapped = LoginSource::Ip(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 9).to_ipv6_mapped()));
        let v4 = LoginSource::Ip(IpAddr::from([10, 0, 0, 9]));
        assert_eq!(sources.begin(&limits, &mapped, &t, None, 0), Ok(()));
        assert_eq!(sources.begin(&limits, &v4, &t, None, 0), Ok(()));
        assert!(sources.begin(&limits, &v4, &t, None, 0).is_err());
    }
}
