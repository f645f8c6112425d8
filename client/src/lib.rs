//! An HTTP client of the identity sidecar (reqwest): session init, anonymous or authenticated,
//! and sealed requests ([`transport`]), and the identity API's routes as calls ([`calls`]). The
//! cryptography is [`identity_protocol`]'s; this crate only moves bytes and explains failures.
#![forbid(unsafe_code)]

pub mod calls;
pub mod transport;

pub use transport::{Client, ClientError, Response, Routes, Trust, no_retries};
