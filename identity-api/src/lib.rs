#![forbid(unsafe_code)]
//! identity-api: clients, token issuance, introspection, refresh-token families, revocation,
//! JWKS, over SQLite or PostgreSQL. Implements PROTOCOL.md section 5 behind the sidecar.
//!
//! From the bottom up (each module uses only those above it in this list):
//! - [`clock`], [`secret`], [`operator`]: the time; secrets, random values, refresh-token
//!   lookup keys; who runs an operator command;
//! - [`storage`]: the database ([`Db`]); [`audit`]: the audit trail as operators read it;
//!   [`purge`]: retention, what has ended deleted;
//! - [`kek`], [`keys`]: the key-encryption key and the verifier key; the signing keys;
//! - [`signing`]: signing keys of each algorithm, and keys referenced from a file or AWS;
//! - [`clients`], [`tokens`]: clients and their secrets; access tokens (JWT);
//! - [`users`]: users, roles, passwords, TOTP, recovery codes and API keys;
//! - [`metrics`], [`error`]: Prometheus metrics; the one error type of the HTTP API;
//! - [`service`]: the operations ([`AppState`]);
//! - [`http`]: the routes; [`server`]: the servers that serve them;
//! - [`config`], [`commands`]: the command line, and what each command does.

pub mod audit;
pub mod clients;
pub mod clock;
pub mod commands;
pub mod config;
pub mod error;
pub mod http;
pub mod kek;
pub mod keys;
pub mod metrics;
pub mod operator;
pub mod purge;
pub mod secret;
pub mod server;
pub mod service;
pub mod signing;
pub mod storage;
pub mod tokens;
pub mod users;

pub use clock::now;
pub use error::ApiError;
pub use http::{app, ops_app};
pub use server::serve;
pub use service::{AppState, Settings, StartError};
pub use storage::Db;
