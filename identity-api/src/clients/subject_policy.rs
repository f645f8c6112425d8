//! Whom a client may name as the subject of `POST /api/v1/token/issue`
//! (`client create/update --subject-policy`): anyone, only itself, or subjects matching a
//! pattern. A client's secret is then worth no more than its policy: a leaked secret of a
//! client that never asserts users' subjects cannot mint tokens for them.

use std::fmt;
use std::str::FromStr;

use identity_protocol::identity::check_subject;

/// What a client created without `--subject-policy` gets: the narrowest policy, so that a new
/// client asserts users' subjects only when an operator says it may. (The migration's default,
/// `any`, keeps what clients created before the policy existed could do.)
pub const DEFAULT_SUBJECT_POLICY: &str = "none";

/// A client's subject policy, parsed from and shown as it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectPolicy {
    /// `any`: the client may name any subject (a trusted login front end).
    Any,
    /// `none`: the client names no one but itself: the subject must be its client id.
    OwnId,
    /// `match:<pattern>`: subjects the pattern matches, where `*` matches any run of
    /// characters (the empty one too) and every other character only itself.
    Match(String),
}

impl SubjectPolicy {
    /// Whether a client `client_id` of this policy may issue tokens for `subject`.
    pub fn permits(&self, client_id: &str, subject: &str) -> bool {
        match self {
            SubjectPolicy::Any => true,
            SubjectPolicy::OwnId => subject == client_id,
            SubjectPolicy::Match(pattern) => matches(pattern.as_bytes(), subject.as_bytes()),
        }
    }
}

impl FromStr for SubjectPolicy {
    type Err = String;

    /// `any`, `none` or `match:<pattern>`; the pattern follows the rule of subjects (1 to 255
    /// characters, no control characters, not `-`). `Err`: why not.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "any" => Ok(SubjectPolicy::Any),
            "none" => Ok(SubjectPolicy::OwnId),
            _ => match text.strip_prefix("match:") {
                Some(pattern) => check_subject(pattern)
                    .map(|()| SubjectPolicy::Match(pattern.to_owned()))
                    .map_err(|e| format!("the pattern of match:PATTERN: {e}")),
                None => Err(format!("{text:?} is not one of any, none, match:PATTERN")),
            },
        }
    }
}

impl fmt::Display for SubjectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectPolicy::Any => f.write_str("any"),
            SubjectPolicy::OwnId => f.write_str("none"),
            SubjectPolicy::Match(pattern) => write!(f, "match:{pattern}"),
        }
    }
}

/// Whether `pattern` (where `*` matches any run of bytes) matches all of `text`. Byte-wise is
/// exact for UTF-8: a literal's bytes only match where the same characters are. Greedy with
/// one point to backtrack to (the last `*`), so at most `pattern.len() * text.len()` steps.
fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and the next text position it may
    // have swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((resume, swallowed)) => {
                    star = Some((resume, swallowed + 1));
                    p = resume;
                    t = swallowed + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> SubjectPolicy {
        text.parse().unwrap()
    }

    #[test]
    fn policies_parse_and_show_as_stored() {
        assert_eq!(policy("any"), SubjectPolicy::Any);
        assert_eq!(policy("none"), SubjectPolicy::OwnId);
        assert_eq!(policy("match:u-*"), SubjectPolicy::Match("u-*".into()));
        for text in [
            "any",
            "none",
            "match:u-*",
            "match:*",
            "match:a b",
            "match:é*",
        ] {
            assert_eq!(policy(text).to_string(), text);
        }
        assert_eq!(DEFAULT_SUBJECT_POLICY.parse(), Ok(SubjectPolicy::OwnId));
        let long = format!("match:{}", "a".repeat(256));
        for (bad, says) in [
            ("", "not one of any, none, match:PATTERN"),
            ("Any", "not one of"),
            ("match", "not one of"),
            ("own", "not one of"),
            ("match:", "pattern"),
            (long.as_str(), "pattern"),
            ("match:-", "pattern"),
            ("match:a\nb", "pattern"),
        ] {
            let err = bad.parse::<SubjectPolicy>().unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn any_permits_every_subject_and_none_only_the_client_itself() {
        assert!(SubjectPolicy::Any.permits("c1", "test-user"));
        assert!(SubjectPolicy::Any.permits("c1", "c1"));
        assert!(SubjectPolicy::OwnId.permits("c1", "c1"));
        assert!(!SubjectPolicy::OwnId.permits("c1", "test-user"));
        assert!(!SubjectPolicy::OwnId.permits("c1", "C1"));
        assert!(!SubjectPolicy::OwnId.permits("c1", "c1 "));
    }

    #[test]
    fn a_star_matches_any_run_of_characters_and_nothing_else_is_special() {
        let permits = |pattern: &str, subject: &str| {
            SubjectPolicy::Match(pattern.into()).permits("c1", subject)
        };
        for (pattern, yes, no) in [
            (
                "u-*",
                &["u-", "u-1", "u-a*b"][..],
                &["u", "x-u-1", "U-1"][..],
            ),
            (
                "*@example.com",
                &["a@example.com", "@example.com"],
                &["a@example.org", "a@example.comx"],
            ),
            (
                "a*b*c",
                &["abc", "aXbYc", "abbbc", "acbc"],
                &["ab", "acb", "abcd"],
            ),
            ("*", &["x", "anything at all"], &[]),
            ("**", &["x"], &[]),
            ("exact", &["exact"], &["exac", "exactly", "Exact"]),
            ("a?c", &["a?c"], &["abc"]),
            ("[ab]", &["[ab]"], &["a"]),
            ("é*ü", &["éü", "é-ü"], &["e-ü"]),
        ] {
            for subject in yes {
                assert!(
                    permits(pattern, subject),
                    "{pattern} should match {subject}"
                );
            }
            for subject in no {
                assert!(
                    !permits(pattern, subject),
                    "{pattern} should not match {subject}"
                );
            }
        }
        // The bound of the backtracking: many stars against a long near miss ends quickly.
        let pattern = format!("{}b", "a*".repeat(100));
        assert!(!permits(&pattern, &"a".repeat(255)));
    }
}
