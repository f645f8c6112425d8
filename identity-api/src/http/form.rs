//! `application/x-www-form-urlencoded` bodies of the standard endpoints (RFC 6749 appendix B),
//! read strictly: a malformed percent-escape, a name or value that is not UTF-8 once decoded,
//! and a parameter given twice are each refused by name ("Request and response parameters MUST
//! NOT be included more than once", section 3.2). A parameter without a value counts as absent
//! ("Parameters sent without a value MUST be treated as if they were omitted", section 3.1).
//! Errors name a parameter, never a value: values are secrets and tokens.

use zeroize::Zeroizing;

/// Why a form body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form body has a malformed percent-escape (in {0})")]
    BadEscape(Name),
    #[error("the form body is not UTF-8 (in {0}): it must be UTF-8 once percent-decoded")]
    NotUtf8(Name),
    #[error("parameter {0} is given more than once (RFC 6749 section 3.2)")]
    Repeated(String),
}

/// Which parameter an error is in: its name when that could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Known(String),
    Unreadable,
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Known(name) => write!(f, "parameter {name}"),
            Self::Unreadable => f.write_str("a parameter name"),
        }
    }
}

/// A parsed form: each name with its non-empty values, in order. Values are wiped on drop;
/// `Debug` shows only the names.
#[derive(Default)]
pub struct Form {
    params: Vec<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.params.iter().map(|(name, _)| name))
            .finish()
    }
}

impl Form {
    /// Parses `body`; `repeatable` names the parameters that may be given more than once
    /// (RFC 8707's `resource`).
    pub fn parse(body: &[u8], repeatable: &[&str]) -> Result<Self, FormError> {
        let mut params: Vec<(String, Zeroizing<String>)> = Vec::new();
        for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name = decode(name).map_err(|e| e.at(Name::Unreadable))?;
            let value = decode(value).map_err(|e| e.at(Name::Known(name.to_string())))?;
            if value.is_empty() {
                continue;
            }
            let name = name.to_string();
            if !repeatable.contains(&name.as_str()) && params.iter().any(|(n, _)| *n == name) {
                return Err(FormError::Repeated(name));
            }
            params.push((name, value));
        }
        Ok(Self { params })
    }

    /// The value of a parameter that is given at most once.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Why a component cannot be decoded, before it is known which.
pub(super) enum Fault {
    BadEscape,
    NotUtf8,
}

impl Fault {
    fn at(self, name: Name) -> FormError {
        match self {
            Self::BadEscape => FormError::BadEscape(name),
            Self::NotUtf8 => FormError::NotUtf8(name),
        }
    }
}

/// One name or value: `+` is a space, `%XX` a byte; the bytes must be UTF-8. Also how the
/// client id and secret of `client_secret_basic` are decoded (RFC 6749 section 2.3.1 encodes
/// them so before Basic).
pub(super) fn decode(raw: &[u8]) -> Result<Zeroizing<String>, Fault> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(raw.len()));
    let mut rest = raw.iter();
    while let Some(&b) = rest.next() {
        bytes.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
                match (hex(rest.next()), hex(rest.next())) {
                    (Some(high), Some(low)) => {
                        u8::try_from(high * 16 + low).map_err(|_| Fault::BadEscape)?
                    }
                    _ => return Err(Fault::BadEscape),
                }
            }
            b => b,
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| Fault::NotUtf8)?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn forms_decode_strictly_and_refuse_repeats() {
        let form = Form::parse(
            b"grant_type=client_credentials&scope=a+b%20c&empty=&bare&&resource=r1&resource=r%C3%A9",
            &["resource"],
        )
        .unwrap();
        assert_eq!(form.get("grant_type"), Some("client_credentials"));
        assert_eq!(form.get("scope"), Some("a b c"));
        assert_eq!(form.get("empty"), None, "an empty value is absent");
        assert_eq!(form.get("bare"), None);
        assert_eq!(form.all("resource"), ["r1", "ré"]);
        assert_eq!(
            format!("{form:?}"),
            r#"["grant_type", "scope", "resource", "resource"]"#
        );
        // An empty value does not count as a first occurrence either.
        assert!(Form::parse(b"scope=&scope=a", &[]).is_ok());

        for (body, error) in [
            (&b"a=1&a=2"[..], FormError::Repeated("a".into())),
            (b"a=%zz", FormError::BadEscape(Name::Known("a".into()))),
            (b"a=%4", FormError::BadEscape(Name::Known("a".into()))),
            (b"%=x", FormError::BadEscape(Name::Unreadable)),
            (b"a=%ff", FormError::NotUtf8(Name::Known("a".into()))),
            (b"a=\xff", FormError::NotUtf8(Name::Known("a".into()))),
            (b"\xc3=1", FormError::NotUtf8(Name::Unreadable)),
        ] {
            assert_eq!(Form::parse(body, &[]).unwrap_err(), error, "{body:?}");
        }
        // The texts name the parameter, never its value.
        let text = Form::parse(b"client_secret=s3cr%zz", &[])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("client_secret") && !text.contains("s3cr"),
            "{text}"
        );
    }
}
