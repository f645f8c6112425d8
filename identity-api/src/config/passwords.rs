//! The password flags of `serve` and of the commands that set passwords (`user create`, ...):
//! one struct that each flattens, so both hash under the same policy.

use clap::Args;

use crate::users::password::{
    BadPolicy, DEFAULT_ITERATIONS, DEFAULT_MEMORY_KIB, DEFAULT_MIN_LENGTH, DEFAULT_PARALLELISM,
    PasswordPolicy, default_concurrency,
};

/// The password policy: the minimum length of a new password and the Argon2id costs.
#[derive(Debug, Clone, Args)]
pub struct PasswordArgs {
    /// Shortest password that may be set, in characters (at most 1024). A password also may
    /// not contain its username, and may not exceed 1024 bytes.
    #[arg(long, env = "IDENTITY_PASSWORD_MIN_LENGTH", value_name = "CHARS",
          default_value_t = DEFAULT_MIN_LENGTH)]
    pub password_min_length: usize,

    /// Argon2id memory per hash, in KiB (the default, 19456 = 19 MiB, is OWASP's guidance). At
    /// least 8 x --argon2-parallelism, at most 4194304 (4 GiB). Stored hashes made with other
    /// costs still verify, and are re-hashed with these at the user's next login.
    #[arg(long, env = "IDENTITY_ARGON2_MEMORY_KIB", value_name = "KIB",
          default_value_t = DEFAULT_MEMORY_KIB)]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations (passes over the memory), at least 1: each one adds the time of one
    /// pass to every login.
    #[arg(long, env = "IDENTITY_ARGON2_ITERATIONS", value_name = "N",
          default_value_t = DEFAULT_ITERATIONS)]
    pub argon2_iterations: u32,

    /// Argon2id lanes (the `p` of the hash), 1 to 16777215. The lanes are computed one after
    /// another here, so raising it does not make a hash faster.
    #[arg(long, env = "IDENTITY_ARGON2_PARALLELISM", value_name = "N",
          default_value_t = DEFAULT_PARALLELISM)]
    pub argon2_parallelism: u32,

    /// How many password hashes may be computed at once; further logins wait their turn. Each
    /// holds --argon2-memory-kib, so this bounds the memory of a burst of logins. Default: the
    /// number of CPUs this process may use.
    #[arg(long, env = "IDENTITY_PASSWORD_HASH_CONCURRENCY", value_name = "N")]
    pub password_hash_concurrency: Option<usize>,
}

impl PasswordArgs {
    /// The policy these flags give, checked.
    pub fn policy(&self) -> Result<PasswordPolicy, BadPolicy> {
        let policy = PasswordPolicy {
            min_length: self.password_min_length,
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
            concurrency: self
                .password_hash_concurrency
                .unwrap_or_else(default_concurrency),
        };
        policy.validate()?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        passwords: PasswordArgs,
    }

    fn policy(args: &[&str]) -> Result<PasswordPolicy, BadPolicy> {
        let cli = Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied())).unwrap();
        cli.passwords.policy()
    }

    #[test]
    fn defaults_are_the_policys() {
        assert_eq!(policy(&[]).unwrap(), PasswordPolicy::default());
    }

    #[test]
    fn flags_fill_the_policy() {
        let got = policy(&[
            "--password-min-length=16",
            "--argon2-memory-kib=65536",
            "--argon2-iterations=3",
            "--argon2-parallelism=4",
            "--password-hash-concurrency=8",
        ])
        .unwrap();
        assert_eq!(
            got,
            PasswordPolicy {
                min_length: 16,
                memory_kib: 65_536,
                iterations: 3,
                parallelism: 4,
                concurrency: 8,
            }
        );
    }

    #[test]
    fn impossible_values_are_refused() {
        assert_eq!(
            policy(&["--argon2-parallelism=4", "--argon2-memory-kib=31"]),
            Err(BadPolicy::Memory { min: 32 })
        );
        assert_eq!(
            policy(&["--password-hash-concurrency=0"]),
            Err(BadPolicy::Concurrency)
        );
        assert_eq!(
            policy(&["--password-min-length=0"]),
            Err(BadPolicy::MinLength)
        );
    }
}
