#![forbid(unsafe_code)]
//! The example client of identity-sidecar: the six-step journey of docs/PROTOCOL.md through a
//! running sidecar, and a launcher that builds and starts both binaries on a fresh machine.
//!
//! - [`calls`]: the four identity API routes as encrypted calls over
//!   [`identity_sidecar::client::Client`] (the protocol itself lives only in that crate);
//! - [`journey`]: the six steps and the check that the revoked family is inactive;
//! - [`output`]: human (coloured on a terminal) and JSON rendering, failure hints;
//! - [`local`]: build, start and stop `identity-api` and `identity-sidecar` as child processes
//!   (`journey --local`; the end-to-end tests use it too);
//! - [`cli`]: the command line of the `journey` binary;
//! - [`loadgen`]: the load generator behind the `loadgen` binary (docs/benchmarks.md).

pub mod calls;
pub mod cli;
pub mod journey;
pub mod loadgen;
pub mod local;
pub mod output;
