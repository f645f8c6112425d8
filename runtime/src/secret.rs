//! Secrets from the command line, the environment or a file: "every secret has a `_FILE`
//! variant" (docs/CONVENTIONS.md), implemented once for every secret of both binaries.
//!
//! A secret is declared by a [`SecretSpec`] (its flags, variables and help) and read through
//! [`Secret`], which clap flattens into a command line: `--<flag>` / `<ENV>` or
//! `--<flag>-file` / `<ENV>_FILE`, mutually exclusive. The file is read while parsing, so that
//! its errors are reported like any other argument's. One trailing newline (`\n` or `\r\n`) is
//! removed; an empty value or file is an error; errors name the variable and the path, never
//! the value.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use zeroize::Zeroizing;

mod internal_token;

pub use internal_token::{
    BadInternalToken, InternalToken, InternalTokenSpec, SharedToken, TokenProblem,
};

/// The names and help of one secret's two arguments.
pub trait SecretSpec {
    /// The flag without dashes, e.g. `internal-token`.
    const FLAG: &'static str;
    /// Its file variant, e.g. `internal-token-file`.
    const FILE_FLAG: &'static str;
    /// The environment variable, e.g. `IDENTITY_INTERNAL_TOKEN`.
    const ENV: &'static str;
    /// Its file variant, e.g. `IDENTITY_INTERNAL_TOKEN_FILE`.
    const FILE_ENV: &'static str;
    const HELP: &'static str;
    const FILE_HELP: &'static str;
    /// A value used when neither argument is given (not secret: a default cannot be).
    const DEFAULT: Option<&'static str> = None;
    /// A file that does not exist means "no secret", so that a deployment can mount it from an
    /// optional Kubernetes Secret key permanently.
    const ABSENT_FILE_IS_NONE: bool = false;

    /// Refuses a value that can never be right, while parsing: `Err` says what it must be.
    fn check(value: &str) -> Result<(), &'static str> {
        let _ = value;
        Ok(())
    }
}

/// A secret read from its flag, its variable or its file: wiped on drop, `Debug` redacted.
pub struct Secret<S> {
    value: Option<Zeroizing<String>>,
    spec: PhantomData<S>,
}

impl<S: SecretSpec> Secret<S> {
    /// The secret, when one was given (or defaulted).
    pub fn get(&self) -> Option<&str> {
        self.value.as_deref().map(String::as_str)
    }

    /// The secret, or an error naming both ways to give it.
    pub fn require(&self) -> Result<&str, SecretError> {
        self.get().ok_or(SecretError::Missing {
            flag: S::FLAG,
            var: S::ENV,
            file_var: S::FILE_ENV,
        })
    }

    /// A secret given in code (tests, and callers that build settings without a command line).
    pub fn from_value(value: impl Into<String>) -> Self {
        Self {
            value: Some(Zeroizing::new(value.into())),
            spec: PhantomData,
        }
    }

    pub fn none() -> Self {
        Self {
            value: None,
            spec: PhantomData,
        }
    }
}

impl<S> fmt::Debug for Secret<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.value {
            Some(_) => "Secret(<redacted>)",
            None => "Secret(None)",
        })
    }
}

/// Why a secret cannot be used. Names the variable and the path, never the content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{var}: cannot read {path}: {source}")]
    Read {
        var: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{var}: the file {path} is empty")]
    EmptyFile { var: &'static str, path: String },
    #[error("{var} is set but empty")]
    EmptyValue { var: &'static str },
    #[error("{source_name} {problem}")]
    Invalid {
        /// `--flag (VAR)`, or `VAR_FILE: the content of <path>`.
        source_name: String,
        problem: &'static str,
    },
    #[error("--{flag} ({var}) or {file_var} is required")]
    Missing {
        flag: &'static str,
        var: &'static str,
        file_var: &'static str,
    },
}

/// Reads a secret from a file (`*_FILE` variables): UTF-8, one trailing newline (`\n` or
/// `\r\n`) removed, not empty. The buffer is wiped on drop.
pub fn read_secret_file(var: &'static str, path: &Path) -> Result<Zeroizing<String>, SecretError> {
    let read = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        var,
        path: path.display().to_string(),
        source,
    });
    let mut text = Zeroizing::new(read?);
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(SecretError::EmptyFile {
            var,
            path: path.display().to_string(),
        });
    }
    Ok(text)
}

impl<S: SecretSpec> Args for Secret<S> {
    fn augment_args(cmd: Command) -> Command {
        let mut value = Arg::new(S::ENV)
            .long(S::FLAG)
            .env(S::ENV)
            .hide_env_values(true)
            // Base64url secrets start with '-' one time in 64.
            .allow_hyphen_values(true)
            .value_name(S::ENV)
            // A String, checked after parsing: clap's own error for a value that fails its
            // parser quotes the value, and this one is a secret.
            .value_parser(clap::value_parser!(String))
            .action(ArgAction::Set)
            .help(S::HELP);
        if let Some(default) = S::DEFAULT {
            value = value.default_value(default);
        }
        let file = Arg::new(S::FILE_ENV)
            .long(S::FILE_FLAG)
            .env(S::FILE_ENV)
            .value_name(S::FILE_ENV)
            .value_parser(clap::value_parser!(PathBuf))
            .action(ArgAction::Set)
            .conflicts_with(S::ENV)
            .help(S::FILE_HELP);
        cmd.arg(value).arg(file)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<S: SecretSpec> FromArgMatches for Secret<S> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut matches.clone())
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
        let invalid =
            |e: SecretError| clap::Error::raw(ErrorKind::ValueValidation, format!("{e}\n"));
        let file = matches
            .try_remove_one::<PathBuf>(S::FILE_ENV)
            .map_err(|e| clap::Error::raw(ErrorKind::ValueValidation, e.to_string()))?;
        let text = matches
            .try_remove_one::<String>(S::ENV)
            .map_err(|e| clap::Error::raw(ErrorKind::ValueValidation, e.to_string()))?
            .map(Zeroizing::new);
        let value = match (file, text) {
            (Some(path), _) if S::ABSENT_FILE_IS_NONE && !path.exists() => None,
            (Some(path), _) => {
                let text = read_secret_file(S::FILE_ENV, &path).map_err(invalid)?;
                S::check(&text).map_err(|problem| {
                    invalid(SecretError::Invalid {
                        source_name: format!("{}: the content of {}", S::FILE_ENV, path.display()),
                        problem,
                    })
                })?;
                Some(text)
            }
            (None, Some(text)) if text.is_empty() => {
                return Err(invalid(SecretError::EmptyValue { var: S::ENV }));
            }
            (None, Some(text)) => {
                S::check(&text).map_err(|problem| {
                    invalid(SecretError::Invalid {
                        source_name: format!("--{} ({})", S::FLAG, S::ENV),
                        problem,
                    })
                })?;
                Some(text)
            }
            (None, None) => None,
        };
        Ok(Self {
            value,
            spec: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.update_from_arg_matches_mut(&mut matches.clone())
    }

    fn update_from_arg_matches_mut(&mut self, matches: &mut ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches_mut(matches)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    /// Strong enough for the internal token's rule: 32 hex digits.
    const TOKEN: &str = "3f9a0c5be17d4286a9c0f1e2d3b4a596";

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        token: Secret<InternalTokenSpec>,
    }

    #[derive(Debug)]
    enum Optional {}

    impl SecretSpec for Optional {
        const FLAG: &'static str = "optional";
        const FILE_FLAG: &'static str = "optional-file";
        const ENV: &'static str = "RUNTIME_TEST_OPTIONAL";
        const FILE_ENV: &'static str = "RUNTIME_TEST_OPTIONAL_FILE";
        const HELP: &'static str = "h";
        const FILE_HELP: &'static str = "h";
        const DEFAULT: Option<&'static str> = Some("the-default");
        const ABSENT_FILE_IS_NONE: bool = true;
    }

    #[derive(Debug, Parser)]
    struct Defaulted {
        #[command(flatten)]
        optional: Secret<Optional>,
    }

    #[test]
    fn a_secret_comes_from_its_flag_or_its_file_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        for content in [
            TOKEN.to_owned(),
            format!("{TOKEN}\n"),
            format!("{TOKEN}\r\n"),
        ] {
            std::fs::write(&file, &content).unwrap();
            let cli = Cli::try_parse_from(["x", "--internal-token-file", file.to_str().unwrap()]);
            assert_eq!(cli.unwrap().token.get(), Some(TOKEN), "{content:?}");
        }
        // One newline only: the second is part of the value, which the token's rule refuses.
        std::fs::write(&file, format!("{TOKEN}\n\n")).unwrap();
        let err = Cli::try_parse_from(["x", "--internal-token-file", file.to_str().unwrap()]);
        assert!(err.unwrap_err().to_string().contains("visible ASCII"));
        let hyphen = "-starts-with-a-hyphen-0123456789";
        let cli = Cli::try_parse_from(["x", "--internal-token", hyphen]).unwrap();
        assert_eq!(cli.token.get(), Some(hyphen));
        let both = [
            "x",
            "--internal-token",
            "a",
            "--internal-token-file",
            file.to_str().unwrap(),
        ];
        let err = Cli::try_parse_from(both).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        assert!(Cli::try_parse_from(["x"]).unwrap().token.get().is_none());
    }

    #[test]
    fn errors_name_the_variable_and_the_path_never_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let missing = dir.path().join("missing");
        for (args, says) in [
            (
                vec!["x", "--internal-token-file", missing.to_str().unwrap()],
                "cannot read",
            ),
            (
                vec!["x", "--internal-token-file", empty.to_str().unwrap()],
                "is empty",
            ),
            (vec!["x", "--internal-token", ""], "is set but empty"),
            (vec!["x", "--internal-token", "a b"], "visible ASCII"),
            (vec!["x", "--internal-token", "sh0rt-t0ken"], "128 bits"),
        ] {
            let err = Cli::try_parse_from(&args).unwrap_err().to_string();
            assert!(
                err.contains("IDENTITY_INTERNAL_TOKEN") && err.contains(says),
                "{err}"
            );
            assert!(!err.contains("sh0rt"), "{err}");
        }
        let shown = format!("{:?}", Secret::<InternalTokenSpec>::from_value("s3cr3t"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let missing = Secret::<InternalTokenSpec>::none()
            .require()
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("IDENTITY_INTERNAL_TOKEN_FILE"),
            "{missing}"
        );
    }

    #[test]
    fn a_default_and_an_optional_file() {
        let cli = Defaulted::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.optional.get(), Some("the-default"));
        let cli = Defaulted::try_parse_from(["x", "--optional-file", "/nonexistent/x"]).unwrap();
        assert_eq!(cli.optional.get(), None);
    }
}
