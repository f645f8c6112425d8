//! The subcommands' arguments: `tenant`, `client`, `api-key`, `keys`, `kek` and `audit`.

use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};

use crate::signing::Algorithm;
use crate::storage::{Scope, TenantId};

use crate::audit::{self, DEFAULT_LIST, MAX_LIST};
use crate::clients::{DEFAULT_GRANT_TYPES, DEFAULT_SUBJECT_POLICY, Overlap};

use super::{DbArgs, KekArgs};

/// `--tenant` of a command on one client: its tenant, checked; any tenant's when absent
/// (client ids are unique across tenants).
#[derive(Debug, Args)]
pub struct ClientTenantArg {
    /// The client's tenant: refused if the client belongs to another.
    #[arg(long, value_name = "SLUG")]
    pub tenant: Option<TenantId>,
}

impl ClientTenantArg {
    pub fn scope(&self) -> Scope<'_> {
        Scope::from(self.tenant.as_ref())
    }
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant: its own issuer, signing keys, clients and tokens, kept apart from every
    /// other tenant's. Its first signing key is made by the next running server (within a
    /// second) unless --signing-key-ref names one.
    Create {
        /// 1 to 63 characters of a-z 0-9 -, not starting or ending with - (a DNS label): it
        /// appears in URLs (/t/<slug>/...) and in the tenant headers.
        slug: TenantId,
        /// A name for people; default: the slug.
        #[arg(long)]
        display_name: Option<String>,
        /// Its tokens' `iss` and the base of its discovery URLs; default
        /// <IDENTITY_ISSUER>/t/<slug>. An absolute http(s) URL.
        #[arg(long, value_name = "URL")]
        issuer: Option<String>,
        /// The algorithm its tokens are signed with: ES256 (the default), RS256 (2048-bit RSA,
        /// for verifiers that only know RSA) or EdDSA (Ed25519). HS256 is refused: a shared
        /// secret cannot be published in a JWKS and would let every verifier mint tokens.
        #[arg(long, default_value = "ES256")]
        algorithm: Algorithm,
        /// Read its signing key from here instead of generating one: file:/path/key.pem
        /// (PKCS#8 PEM, re-read when it changes) or aws-sm:<secret name or ARN> (a JSON secret
        /// with algorithm, private_key and public_key). Checked now: a reference that cannot
        /// be read or does not match --algorithm is refused.
        #[arg(long, value_name = "REF")]
        signing_key_ref: Option<String>,
        /// Access-token lifetime in seconds; default: the server's.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        access_token_ttl_secs: Option<i64>,
        /// Refresh-token lifetime in seconds; default: the server's.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        refresh_token_ttl_secs: Option<i64>,
        /// Token family lifetime in seconds; default: the server's.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        family_ttl_secs: Option<i64>,
        /// Print the tenant as one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tenants.
    List {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Disable a tenant: at once, its tokens introspect as inactive and cannot be refreshed and
    /// its clients cannot obtain tokens; within a second, requests naming it get 403. Nothing
    /// is deleted.
    Disable {
        slug: TenantId,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Enable a disabled tenant: its clients and its tokens that have not ended work again.
    Enable {
        slug: TenantId,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client and print its secret (shown once).
    Create {
        /// Client id: 1 to 128 characters of A-Z a-z 0-9 . _ ~ -, unique across tenants.
        client_id: String,
        /// The tenant it belongs to, for good; default: the default tenant.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<TenantId>,
        /// Allowed scopes, space-separated.
        #[arg(long)]
        scope: String,
        /// Allowed audiences, space-separated (or repeat the flag).
        #[arg(long, required = true)]
        audience: Vec<String>,
        /// The grants the client may use at /oauth/token, separated by spaces or commas:
        /// client_credentials, refresh_token (with refresh_token, client_credentials also
        /// answers with a refresh token), password (a user's login). /api/v1 ignores them.
        #[arg(long, value_name = "GRANTS", default_value = DEFAULT_GRANT_TYPES)]
        grant_types: String,
        /// The client may introspect the tokens of every client at /oauth/introspect (a
        /// gateway, a resource server), not only its own.
        #[arg(long)]
        may_introspect: bool,
        /// Whom the client may name as the subject of /api/v1/token/issue: any (a trusted
        /// login front end), none (only itself: the subject must be its client id) or
        /// match:PATTERN (subjects the pattern matches; * matches any run of characters).
        #[arg(long, value_name = "POLICY", default_value = DEFAULT_SUBJECT_POLICY)]
        subject_policy: String,
        /// Print one JSON object {"client_id", "client_secret"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
    /// List clients (never secrets).
    List {
        /// Only this tenant's clients.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<TenantId>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace a client's secret and print the new one. The old one stops working at once, or
    /// with --overlap when the overlap ends.
    RotateSecret {
        client_id: String,
        #[command(flatten)]
        tenant: ClientTenantArg,
        /// Keep the old secret working this long, so that instances can move to the new one
        /// without an outage: seconds (600) or with a unit (10m, 1h, 2d), at most 7 days. Any
        /// earlier overlap ends either way.
        #[arg(long, value_name = "DURATION")]
        overlap: Option<Overlap>,
        /// Print one JSON object {"client_id", "client_secret"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
    /// Disable a client: it can no longer obtain tokens, and its token families are revoked.
    Disable {
        client_id: String,
        #[command(flatten)]
        tenant: ClientTenantArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Enable a disabled client: it can obtain tokens again (the families revoked when it was
    /// disabled stay revoked).
    Enable {
        client_id: String,
        #[command(flatten)]
        tenant: ClientTenantArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace a client's allowed scopes, audiences, grant types, introspection right or subject
    /// policy (at least one), at once on every running server; tokens issued before keep what
    /// they were issued with.
    #[command(group(clap::ArgGroup::new("grants").required(true).multiple(true).args(["scope", "audience", "grant_types", "may_introspect", "subject_policy"])))]
    Update {
        client_id: String,
        #[command(flatten)]
        tenant: ClientTenantArg,
        /// The new allowed scopes, space-separated.
        #[arg(long)]
        scope: Option<String>,
        /// The new allowed audiences, space-separated (or repeat the flag).
        #[arg(long)]
        audience: Vec<String>,
        /// The new grants of /oauth/token (see `client create --grant-types`).
        #[arg(long, value_name = "GRANTS")]
        grant_types: Option<String>,
        /// Whether the client may introspect the tokens of every client at /oauth/introspect.
        #[arg(long, value_name = "true|false")]
        may_introspect: Option<bool>,
        /// The new subject policy: any, none or match:PATTERN (see `client create
        /// --subject-policy`).
        #[arg(long, value_name = "POLICY")]
        subject_policy: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key for a user and print it (shown once): isk_<key id>_<secret>.
    Create {
        /// The user's username (in any case).
        #[arg(long)]
        user: String,
        /// The user's tenant; default: the default tenant.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<TenantId>,
        /// Print one JSON object {"api_key", "key_id", "user_id", "tenant"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
    /// List a user's API keys (never a secret): when each was created, until when a replaced
    /// one works, when it was revoked and last used.
    List {
        #[arg(long)]
        user: String,
        #[arg(long, value_name = "SLUG")]
        tenant: Option<TenantId>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace an API key by a new one for the same user and print it (shown once). The old
    /// one stops working at once, or with --overlap when the overlap ends.
    Rotate {
        key_id: String,
        /// The key's tenant; default: the default tenant.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<TenantId>,
        /// Keep the old key working this long: seconds (600) or with a unit (10m, 1h, 2d), at
        /// most 7 days.
        #[arg(long, value_name = "DURATION")]
        overlap: Option<Overlap>,
        /// Print one JSON object {"api_key", "key_id", "previous_key_expires_at"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
    /// Revoke an API key at once (running servers stop accepting it within 5 seconds).
    Revoke {
        key_id: String,
        #[arg(long, value_name = "SLUG")]
        tenant: Option<TenantId>,
        #[command(flatten)]
        out: super::users::JsonArg,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new signing key of a tenant (of its algorithm): its new tokens use it at
    /// once (running servers pick it up within a second); its JWKS keeps the old public keys
    /// while their tokens may be valid.
    Rotate {
        /// The tenant; default: the default tenant.
        #[arg(long, value_name = "SLUG")]
        tenant: Option<TenantId>,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KekCommand {
    /// Print a new random key-encryption key (32 bytes, base64url without padding) on stdout.
    Generate,
    /// Re-encrypt every stored key under the current key-encryption key, in one transaction
    /// (idempotent). Rows under the previous key need --previous-key-encryption-key.
    Rewrap {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest events that match, as a table (oldest first).
    List {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// How many of the newest events that match to show (at most 10000; `audit export`
        /// has no limit).
        #[arg(long, default_value_t = DEFAULT_LIST,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIST)))]
        limit: u32,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Every event that matches, oldest first, as JSON lines on stdout (all columns), read a
    /// page at a time.
    Export {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Only events with a larger id: resumes an export from the last id it wrote.
        #[arg(long, value_name = "ID")]
        after_id: Option<i64>,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// The filters of `audit list` and `audit export`; each one given narrows the events.
#[derive(Debug, Args)]
pub struct AuditFilterArgs {
    /// Events at or after this time: RFC 3339 (2025-01-31T12:00:00Z) or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = audit::parse_time)]
    pub since: Option<i64>,
    /// Events before this time: RFC 3339 or Unix seconds.
    #[arg(long, value_name = "TIME", value_parser = audit::parse_time)]
    pub until: Option<i64>,
    /// Events of this type: a request's (issue, refresh, login...) or an operator's change
    /// (client_create, user_disable, role_set...).
    #[arg(long, value_parser = PossibleValuesParser::new(crate::storage::rows::events::names()))]
    pub event: Option<String>,
    /// Events of this client.
    #[arg(long, value_name = "CLIENT_ID")]
    pub client: Option<String>,
    /// Events of this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Events of this token family.
    #[arg(long, value_name = "FAMILY_ID")]
    pub family: Option<String>,
}

impl AuditFilterArgs {
    pub fn filter(self) -> audit::Filter {
        audit::Filter {
            since: self.since,
            until: self.until,
            event: self.event,
            client_id: self.client,
            subject: self.subject,
            family_id: self.family,
        }
    }
}
