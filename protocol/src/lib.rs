//! The identity-sidecar wire protocol, version 1 (`docs/PROTOCOL.md`), without any I/O.
//!
//! The one implementation of the protocol: the sidecar, the identity API, the Rust client and
//! the tests all use it, and nothing else declares what it owns. It has no features: a client
//! depends on it as it is, in whatever runtime it has.
//!
//! The modules follow the document:
//! - [`names`]: the protocol's name, paths and headers, and the form of a session id;
//! - [`b64`]: the strict base64url of "Terms";
//! - [`keys`]: ephemeral P-256 keys, strict peer-key checks and the key schedule (section 1);
//! - [`signing`]: server authentication of session init answers (section 1);
//! - [`handshake`]: session init, anonymous and authenticated (sections 1 and 2);
//! - [`envelope`]: request and response AAD, seal and open (section 3);
//! - [`replay`]: the 1024-wide replay window (section 3);
//! - [`error`]: the error codes of section 4;
//! - [`identity`]: the identity API's routes behind the sidecar: the subject rule, the
//!   Authorization schemes and the request bodies (section 5).
#![forbid(unsafe_code)]

pub mod b64;
pub mod envelope;
pub mod error;
pub mod handshake;
pub mod identity;
pub mod keys;
pub mod names;
pub mod replay;
pub mod signing;

pub use envelope::{Envelope, Plaintext};
pub use error::{Error, ErrorCode};
pub use handshake::{ClientHandshake, ClientSession, InitAnswer, InitRequest};
pub use identity::is_valid_subject;
pub use keys::{EphemeralSecret, PublicKey, Role, SessionKeys};
pub use names::{PROTOCOL, headers, is_valid_session_id, is_valid_tenant_slug, paths};
pub use replay::ReplayWindow;
pub use signing::{KeyDocument, SigningKey, TrustedKeys};
