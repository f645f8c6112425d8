//! Who runs an operator command, as the audit trail records it: the OS user (`$USER`, else
//! `$LOGNAME`, else the password database's name for the process's user) at the host name.
//!
//! It is the operator's own claim, not an authenticated identity: whoever can run the CLI
//! against the database can set `$USER` to anything. What the trail proves is what changed and
//! when; who is as good as the machine the command ran on.

/// The author of an administrative change: `user@host`, printable, bounded in length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator(String);

/// At most this many characters of the user name (Linux allows 32; the rest is noise).
const MAX_USER_CHARS: usize = 64;
/// At most this many characters of the host name (a DNS name's limit).
const MAX_HOST_CHARS: usize = 253;

impl Operator {
    /// The user running this process, at this host.
    pub fn current() -> Self {
        let from_env = ["USER", "LOGNAME"].iter().find_map(|name| {
            std::env::var_os(name)
                .map(|v| v.to_string_lossy().into_owned())
                .filter(|v| !v.trim().is_empty())
        });
        let user = from_env
            .or_else(|| whoami::fallible::username().ok())
            .unwrap_or_else(|| "unknown".to_owned());
        let host = whoami::fallible::hostname().ok();
        Self::new(&user, host.as_deref())
    }

    /// `user@host` (or `user` without a host), with control characters replaced, so that a
    /// strange `$USER` cannot forge lines in a terminal or a log that shows it.
    pub fn new(user: &str, host: Option<&str>) -> Self {
        let user = printable(user, MAX_USER_CHARS);
        let user = if user.is_empty() {
            "unknown".to_owned()
        } else {
            user
        };
        match host.map(|h| printable(h, MAX_HOST_CHARS)) {
            Some(host) if !host.is_empty() => Self(format!("{user}@{host}")),
            _ => Self(user),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn printable(text: &str, max_chars: usize) -> String {
    text.trim()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_at_host_printable_and_bounded() {
        assert_eq!(
            Operator::new("alice", Some("ops-1")).as_str(),
            "alice@ops-1"
        );
        assert_eq!(Operator::new(" alice ", None).as_str(), "alice");
        assert_eq!(Operator::new("", Some("")).as_str(), "unknown");
        assert_eq!(
            Operator::new("eve\nforged line\x1b[2J", Some("h\r")).as_str(),
            "eve?forged line?[2J@h"
        );
        let long = "u".repeat(500);
        assert_eq!(Operator::new(&long, None).as_str().len(), MAX_USER_CHARS);
    }

    #[test]
    fn the_current_operator_has_a_name() {
        assert!(!Operator::current().as_str().is_empty());
    }
}
