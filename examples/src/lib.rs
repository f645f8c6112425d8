#![forbid(unsafe_code)]
//! The example client of identity-sidecar: the six-step journey of docs/PROTOCOL.md through a
//! running sidecar, and the load generator.
//!
//! - [`journey`]: the six steps and the check that the revoked family is inactive, over
//!   [`identity_client`]'s calls (the protocol itself lives only in [`identity_protocol`]);
//! - [`output`]: human (coloured on a terminal) and JSON rendering, failure hints;
//! - [`cli`]: the command line of the `journey` binary (`--local` starts both binaries with
//!   [`identity_launcher`]);
//! - [`loadgen`]: the load generator behind the `loadgen` binary (docs/benchmarks.md).

pub mod cli;
pub mod journey;
pub mod loadgen;
pub mod output;
