//! The operations of PROTOCOL.md section 5, independent of HTTP framing (headers and bodies are
//! parsed in `http`, and handed over as they came, errors included).
//!
//! - [`state`]: [`AppState`], what every operation shares; [`settings`];
//! - [`tenancy`]: which tenant a request belongs to;
//! - [`callers`]: who is calling: a client's credentials, a bearer token, the session's subject;
//! - one module per operation: [`issue`] (step 2), [`introspect`] (step 3), [`refresh`]
//!   (step 5), [`revoke`] (step 6);
//! - [`api_keys`]: the API-key routes of /credentials;
//! - [`oauth`]: the standard endpoints (docs/OAUTH.md) over the same operations;
//! - [`login`]: a user proves itself with its password (the password grant, the /credentials
//!   routes), under the limits of [`lockout`]; `mfa`: its second factor; `password_rotate`;
//! - [`granted`]: what a token may carry of what its client or family was granted;
//! - [`answers`]: what they answer.

pub mod answers;
pub mod api_keys;
pub mod callers;
mod granted;
mod introspect;
mod issue;
pub mod lockout;
pub mod login;
mod mfa;
pub mod oauth;
mod password_rotate;
mod refresh;
mod revoke;
pub mod settings;
pub mod state;
pub mod tenancy;

pub use answers::{Introspection, Revoked, TokenResponse};
pub use callers::{Authenticated, BearerUse, ClientSource, Parsed};
pub use lockout::{LoginLimits, LoginSource};
pub use login::{PasswordGrant, Proof};
pub use mfa::{MfaConfirmed, MfaEnrolled};
pub use oauth::{AuthMethod, ClientCredentials, GrantRequest, Introspector, TokenParams};
pub use password_rotate::PasswordRotated;
pub use settings::Settings;
pub use state::{AppState, StartError};
pub use tenancy::NamedTenant;
