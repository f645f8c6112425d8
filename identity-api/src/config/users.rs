//! The arguments of `user` and `role`, and the rotation window that `serve` and the user
//! commands share.

use clap::{Args, Subcommand};

use crate::storage::TenantId;

use super::{DbArgs, PasswordArgs};

/// `IDENTITY_PASSWORD_ROTATION_DAYS`: `serve` enforces it, `user list|show` print when each
/// password expires under it. One definition, so that both read the same variable the same way.
#[derive(Debug, Clone, Copy, Args)]
pub struct RotationArgs {
    /// Days a user's password works for after it was set: past them, the password grant and
    /// the user's API keys are refused (`password_expired`) until the password is rotated.
    /// Unset: passwords do not expire.
    #[arg(long, env = "IDENTITY_PASSWORD_ROTATION_DAYS", value_name = "DAYS",
          value_parser = clap::value_parser!(i64).range(1..=36_500))]
    pub password_rotation_days: Option<i64>,
}

/// `--tenant` of a command on one user or role: usernames and roles are unique per tenant.
#[derive(Debug, Clone, Args)]
pub struct UserTenantArg {
    /// The tenant of the user (or role); default: the default tenant.
    #[arg(long, value_name = "SLUG")]
    pub tenant: Option<TenantId>,
}

/// `--json` of a command that changes one user, role or API key.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonArg {
    /// Print one JSON object of what was done, instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its id (the `sub` of its tokens). A password is never taken
    /// from the command line: with --password-stdin, one line of stdin is the password
    /// (checked against the password policy, stored only as its Argon2id hash); without it,
    /// the user has no password (the password grant refuses it; it may still hold API keys).
    Create {
        /// 1 to 128 characters of A-Z a-z 0-9 . _ @ + -, starting with a letter or a digit;
        /// unique in its tenant without regard to case.
        username: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        /// Role names, separated by spaces or commas (`identity-api role set` defines what
        /// each grants).
        #[arg(long, default_value = "")]
        roles: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from stdin: one line, its trailing newline removed, not empty.
        #[arg(long)]
        password_stdin: bool,
        /// Print one JSON object {"user_id", "username", "tenant", "roles", "created_at"}.
        #[arg(long)]
        json: bool,
        /// The policy the password is checked against and hashed with: give the values
        /// `serve` has.
        #[command(flatten)]
        passwords: PasswordArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users (never a password hash or a credential).
    List {
        /// Only this tenant's users; default: every tenant's.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<TenantId>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        rotation: RotationArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show a user: its roles and the scopes they grant, whether it is enabled, its password's
    /// age and expiry, its last login, its MFA and its API keys.
    Show {
        username: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        rotation: RotationArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Disable a user: it can no longer log in nor use its API keys, and its token families
    /// are revoked at once.
    Disable {
        username: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        #[command(flatten)]
        out: JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Enable a disabled user (the token families revoked when it was disabled stay revoked).
    Enable {
        username: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        #[command(flatten)]
        out: JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace a user's roles: its next logins get them; tokens issued before keep the roles
    /// they were issued with.
    SetRoles {
        username: String,
        /// The role names, separated by spaces or commas; "" removes every role.
        roles: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        #[command(flatten)]
        out: JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set a user's password (an operator's reset) from one line of stdin, checked against the
    /// password policy; its age starts again. The user's token families are kept unless
    /// --revoke-sessions.
    RotatePassword {
        username: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        /// Read the new password from stdin (required: a password never comes from the
        /// command line): one line, its trailing newline removed, not empty.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Also revoke the user's token families: every session logs in again.
        #[arg(long)]
        revoke_sessions: bool,
        /// The policy the password is checked against and hashed with: give the values
        /// `serve` has.
        #[command(flatten)]
        passwords: PasswordArgs,
        #[command(flatten)]
        out: JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a user with its API keys and recovery codes, and revoke its token families. Asks
    /// nothing.
    Delete {
        username: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        #[command(flatten)]
        out: JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a user's MFA: its TOTP secret, an enrolment not confirmed yet and its recovery
    /// codes. Its next password grant needs no code; it may enrol again.
    ResetMfa {
        username: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        #[command(flatten)]
        out: JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Clear the failed logins counted against a username, which ends its lock at once.
    Unlock {
        username: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        #[command(flatten)]
        out: JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create or replace a role of a tenant: the scopes it grants to the users that hold it.
    /// Their next tokens carry the new scopes.
    Set {
        /// 1 to 64 characters of A-Z a-z 0-9 . _ : -.
        role: String,
        /// The scopes, separated by spaces or commas; "" grants nothing.
        scopes: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        #[command(flatten)]
        out: JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List roles and their scopes.
    List {
        /// Only this tenant's roles; default: every tenant's.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<TenantId>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a role: the users that hold it keep its name, which then grants nothing.
    Delete {
        role: String,
        #[command(flatten)]
        tenant: UserTenantArg,
        #[command(flatten)]
        out: JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
}
