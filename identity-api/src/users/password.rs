//! Passwords: what a new one must be, and hashing and verifying them with Argon2id.
//!
//! - [`Password`]: a password as received, wiped on drop, at most [`MAX_PASSWORD_BYTES`]
//!   ([`Password::new`] refuses longer input before any hashing: Argon2 reads all of it).
//! - [`PasswordPolicy`]: the Argon2id parameters, the minimum length and how many hashes may run
//!   at once (`--argon2-*`, `--password-*`, see [`crate::config::PasswordArgs`]), and
//!   [`PasswordPolicy::check_new`] for a password being set.
//! - [`Hasher`]: built once from the policy (it lives in the app state); [`Hasher::hash`] gives
//!   the PHC string to store, [`Hasher::verify`] compares a password with a stored one.
//!
//! ```ignore
//! let hasher = Hasher::new(&policy)?;
//! policy.check_new("alice", &password)?;
//! let phc = hasher.hash(&password).await?;
//! // Login: pass `None` when there is no such user (or no password), at the same cost.
//! match hasher.verify(user.map(|u| u.password_hash.as_str()), &password).await {
//!     Verdict::Match { rehash: true } => { /* store hasher.hash(&password) */ }
//!     Verdict::Match { rehash: false } => {}
//!     Verdict::NoMatch => { /* invalid_grant */ }
//! }
//! ```
//!
//! Every verification costs one Argon2id computation: a missing user or an unreadable stored
//! hash is verified against a dummy hash made at construction with the policy's parameters, so
//! the time of an answer does not tell whether the user exists. The computations run on
//! tokio's blocking threads, at most [`PasswordPolicy::concurrency`] at a time: each holds
//! `memory_kib` of memory, which a burst of logins must not multiply without bound.

use std::fmt;
use std::sync::Arc;

use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _,
    PasswordVerifier as _, Version,
};
use rand_core::{OsRng, RngCore as _};
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Longest password accepted, in bytes: longer input is refused before hashing, since Argon2
/// reads (and the request holds) all of it.
pub const MAX_PASSWORD_BYTES: usize = 1024;

// Argon2id parameters from the OWASP Password Storage Cheat Sheet ("Argon2id with a minimum
// configuration of 19 MiB of memory, an iteration count of 2, and 1 degree of parallelism"):
// https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html
/// Argon2id memory, KiB (19 MiB).
pub const DEFAULT_MEMORY_KIB: u32 = 19_456;
/// Argon2id iterations (passes over the memory).
pub const DEFAULT_ITERATIONS: u32 = 2;
/// Argon2id lanes. This build computes them one after another on one thread.
pub const DEFAULT_PARALLELISM: u32 = 1;
/// Shortest new password, in characters (NIST SP 800-63B asks at least 8; 12 is our floor).
pub const DEFAULT_MIN_LENGTH: usize = 12;
/// Largest `memory_kib` accepted (4 GiB): Argon2 allows 4 TiB, which would only fail at the
/// allocation.
pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;

/// A password as received: wiped from memory on drop, never cloned, `Debug` shows no text.
pub struct Password(Zeroizing<String>);

impl Password {
    /// Takes `text` (wiped on drop even when refused); refuses more than
    /// [`MAX_PASSWORD_BYTES`].
    pub fn new(text: impl Into<Zeroizing<String>>) -> Result<Self, PasswordRejected> {
        let text = text.into();
        if text.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordRejected::TooLong {
                max_bytes: MAX_PASSWORD_BYTES,
            });
        }
        Ok(Self(text))
    }

    /// The text, for the hasher and the policy's checks only.
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Why a password is refused. The texts never include the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    #[error("the password is shorter than {min_chars} characters")]
    TooShort { min_chars: usize },
    #[error("the password is longer than {max_bytes} bytes")]
    TooLong { max_bytes: usize },
    #[error("the password contains the username")]
    ContainsUsername,
    #[error("the new password is the current one")]
    Unchanged,
}

/// The password rules and Argon2id costs of this deployment. Fields are public for
/// configuration; [`PasswordPolicy::validate`] (and [`Hasher::new`]) refuse impossible ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Shortest new password, in characters (Unicode scalar values).
    pub min_length: usize,
    /// Argon2id memory, KiB.
    pub memory_kib: u32,
    /// Argon2id iterations.
    pub iterations: u32,
    /// Argon2id lanes.
    pub parallelism: u32,
    /// How many hashes may be computed at once (each holds `memory_kib`); others wait.
    pub concurrency: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: DEFAULT_MIN_LENGTH,
            memory_kib: DEFAULT_MEMORY_KIB,
            iterations: DEFAULT_ITERATIONS,
            parallelism: DEFAULT_PARALLELISM,
            concurrency: default_concurrency(),
        }
    }
}

/// The number of CPUs this process may use: more concurrent hashes than that only queue inside
/// the blocking pool while holding their memory.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why a policy cannot be used; names the flag and its variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPolicy {
    #[error(
        "--password-min-length (IDENTITY_PASSWORD_MIN_LENGTH) must be between 1 and \
         {MAX_PASSWORD_BYTES}"
    )]
    MinLength,
    #[error(
        "--argon2-parallelism (IDENTITY_ARGON2_PARALLELISM) must be between 1 and 16777215 \
         (2^24 - 1)"
    )]
    Parallelism,
    #[error(
        "--argon2-memory-kib (IDENTITY_ARGON2_MEMORY_KIB) must be at least 8 KiB per lane \
         (8 x --argon2-parallelism = {min}) and at most {MAX_MEMORY_KIB} (4 GiB)"
    )]
    Memory { min: u64 },
    #[error("--argon2-iterations (IDENTITY_ARGON2_ITERATIONS) must be at least 1")]
    Iterations,
    #[error("--password-hash-concurrency (IDENTITY_PASSWORD_HASH_CONCURRENCY) must be at least 1")]
    Concurrency,
    /// Argon2 refused the parameters for a reason the checks above do not know.
    #[error("the Argon2id parameters were refused: {0}")]
    Argon2(argon2::Error),
    /// The dummy hash could not be made (the OS random source failed).
    #[error("the dummy password hash could not be made: {0}")]
    Dummy(HashError),
}

impl PasswordPolicy {
    /// Checks the bounds of every field (Argon2's own and ours), naming the flag at fault.
    pub fn validate(&self) -> Result<(), BadPolicy> {
        self.params().map(drop)
    }

    fn params(&self) -> Result<Params, BadPolicy> {
        if self.min_length == 0 || self.min_length > MAX_PASSWORD_BYTES {
            return Err(BadPolicy::MinLength);
        }
        if !(Params::MIN_P_COST..=Params::MAX_P_COST).contains(&self.parallelism) {
            return Err(BadPolicy::Parallelism);
        }
        let min = u64::from(self.parallelism) * 8;
        if u64::from(self.memory_kib) < min || self.memory_kib > MAX_MEMORY_KIB {
            return Err(BadPolicy::Memory { min });
        }
        if self.iterations < Params::MIN_T_COST {
            return Err(BadPolicy::Iterations);
        }
        if self.concurrency == 0 {
            return Err(BadPolicy::Concurrency);
        }
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(BadPolicy::Argon2)
    }

    /// Whether `password` may be set for `username`: long enough (in characters), not too long
    /// (in bytes), and not containing the username, ignoring case.
    pub fn check_new(&self, username: &str, password: &Password) -> Result<(), PasswordRejected> {
        let text = password.expose();
        if text.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordRejected::TooLong {
                max_bytes: MAX_PASSWORD_BYTES,
            });
        }
        if text.chars().count() < self.min_length {
            return Err(PasswordRejected::TooShort {
                min_chars: self.min_length,
            });
        }
        let username = username.trim().to_lowercase();
        if !username.is_empty() && Zeroizing::new(text.to_lowercase()).contains(&username) {
            return Err(PasswordRejected::ContainsUsername);
        }
        Ok(())
    }
}

/// Whether `new` may replace `current`: a rotation to the same password would restart the
/// rotation window without changing anything. Compared in constant time.
pub fn check_changed(current: &Password, new: &Password) -> Result<(), PasswordRejected> {
    let same: bool = current
        .expose()
        .as_bytes()
        .ct_eq(new.expose().as_bytes())
        .into();
    if same {
        return Err(PasswordRejected::Unchanged);
    }
    Ok(())
}

/// Why a password could not be hashed (never because of the password itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("the OS random source failed")]
    Random,
    #[error("Argon2id failed: {0}")]
    Argon2(argon2::password_hash::Error),
    /// The blocking task panicked or the runtime is shutting down.
    #[error("the hashing task did not complete")]
    Task,
}

/// The outcome of [`Hasher::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right. `rehash`: the stored hash was made with other parameters (or
    /// another Argon2 variant) than the policy's; store [`Hasher::hash`] of this password.
    Match { rehash: bool },
    /// Wrong password, no such user, no password set, or an unreadable stored hash.
    NoMatch,
}

/// Hashes and verifies passwords under one policy; cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    params: Params,
    /// Verified against when there is no stored hash to verify against.
    dummy: PasswordHash,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.inner.params;
        f.debug_struct("Hasher")
            .field("memory_kib", &p.m_cost())
            .field("iterations", &p.t_cost())
            .field("parallelism", &p.p_cost())
            .finish_non_exhaustive()
    }
}

impl Hasher {
    /// Validates `policy` and makes the dummy hash: one Argon2id computation, on this thread.
    pub fn new(policy: &PasswordPolicy) -> Result<Self, BadPolicy> {
        let params = policy.params()?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut dummy_password = Zeroizing::new([0u8; 32]);
        random_fill(dummy_password.as_mut()).map_err(BadPolicy::Dummy)?;
        let dummy = hash_with(&argon2, dummy_password.as_ref()).map_err(BadPolicy::Dummy)?;
        Ok(Self {
            inner: Arc::new(Inner {
                argon2,
                params,
                dummy,
                permits: Arc::new(Semaphore::new(policy.concurrency)),
            }),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) of `password` with a fresh
    /// 16-byte salt, to store.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let secret = Zeroizing::new(password.expose().as_bytes().to_vec());
        let inner = Arc::clone(&self.inner);
        self.blocking(move || hash_with(&inner.argon2, &secret).map(|h| h.to_string()))
            .await?
    }

    /// Whether `password` matches `stored` (a PHC string from [`Hasher::hash`]); `None` when
    /// there is no such user or no password, at the cost of a real verification.
    pub async fn verify(&self, stored: Option<&str>, password: &Password) -> Verdict {
        let parsed = stored.map(parse_stored);
        let (target, usable) = match parsed {
            Some(Ok(hash)) => (hash, true),
            Some(Err(())) => {
                tracing::warn!(
                    "a stored password hash is not an Argon2 PHC string with valid parameters; \
                     the login is refused"
                );
                (self.inner.dummy.clone(), false)
            }
            None => (self.inner.dummy.clone(), false),
        };
        let rehash = usable && self.differs(&target);
        let secret = Zeroizing::new(password.expose().as_bytes().to_vec());
        let inner = Arc::clone(&self.inner);
        let matched = self
            .blocking(move || {
                inner
                    .argon2
                    .verify_password(secret.as_slice(), &target)
                    .is_ok()
            })
            .await;
        match matched {
            Ok(true) if usable => Verdict::Match { rehash },
            Ok(_) => Verdict::NoMatch,
            Err(error) => {
                tracing::error!(%error, "password verification did not run; refused");
                Verdict::NoMatch
            }
        }
    }

    /// Whether `stored` was made otherwise than this policy would make it now.
    fn differs(&self, stored: &PasswordHash) -> bool {
        let ours = &self.inner.params;
        let same = stored.algorithm == ARGON2ID_IDENT
            && stored.version == Some(Version::V0x13.into())
            && Params::try_from(stored).is_ok_and(|p| {
                p.m_cost() == ours.m_cost()
                    && p.t_cost() == ours.t_cost()
                    && p.p_cost() == ours.p_cost()
            })
            && stored
                .hash
                .is_some_and(|h| h.len() == Params::DEFAULT_OUTPUT_LEN);
        !same
    }

    /// Runs `work` on a blocking thread once a permit is free. The permit moves into the task,
    /// so a caller that gives up (a dropped request) frees it only when the hash is done.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| HashError::Task)?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|_| HashError::Task)
    }
}

/// A stored hash that Argon2 can verify: PHC syntax, an Argon2 variant and version, valid
/// parameters within [`MAX_MEMORY_KIB`], a salt and an output. Anything else would fail before computing (and so answer
/// faster), hence the dummy path.
fn parse_stored(text: &str) -> Result<PasswordHash, ()> {
    let hash = PasswordHash::new(text).map_err(drop)?;
    Algorithm::try_from(hash.algorithm.as_str()).map_err(drop)?;
    if let Some(version) = hash.version {
        Version::try_from(version).map_err(drop)?;
    }
    let params = Params::try_from(&hash).map_err(drop)?;
    // A cost no policy may set would allocate without bound (or abort) rather than verify.
    if params.m_cost() > MAX_MEMORY_KIB || hash.salt.is_none() || hash.hash.is_none() {
        return Err(());
    }
    Ok(hash)
}

fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> Result<PasswordHash, HashError> {
    let mut salt = [0u8; 16];
    random_fill(&mut salt)?;
    argon2
        .hash_password_with_salt(password, &salt)
        .map_err(HashError::Argon2)
}

fn random_fill(bytes: &mut [u8]) -> Result<(), HashError> {
    OsRng.try_fill_bytes(bytes).map_err(|_| HashError::Random)
}

#[cfg(test)]
mod tests;
