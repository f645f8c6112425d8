//! identity-sidecar: an encrypted session channel in front of the identity API.
//!
//! - [`protocol`]: the wire protocol of `docs/PROTOCOL.md`, sans-IO. Always built; this is the one
//!   implementation that the sidecar, the example client and the tests share.
//! - [`client`] (feature `client`): an HTTP client over the protocol.
//! - [`server`] (feature `server`, default): the sidecar itself.
//!
//! A client depends on this crate with `default-features = false, features = ["client"]` and does
//! not compile the server.
#![forbid(unsafe_code)]

pub mod protocol;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "server")]
pub mod server;
