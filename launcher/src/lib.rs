//! Build, start and stop `identity-api` and `identity-sidecar` on this machine: the `--local`
//! mode of the journey, the load generator's `--local`, and the harness of the end-to-end tests.
//!
//! Everything lives in a temporary directory (SQLite database, logs, the sidecar's key); both
//! listen on free loopback ports; the key-encryption key and the internal token are fresh random
//! values. Processes are stopped with SIGTERM (then killed after a bounded wait) when the
//! [`Stack`] is shut down or dropped.
//!
//! - [`binaries`]: where the two binaries are, or building them;
//! - [`process`]: one child process, its log, its readiness;
//! - [`stack`]: both started together, with a seeded client (and sidecar replicas);
//! - [`redis`]: private redis-server processes and clusters, for tests and benchmarks;
//! - `test_ca` (feature `test-ca`): a test certificate authority for the TLS tests.
#![forbid(unsafe_code)]

pub mod binaries;
pub mod process;
pub mod redis;
pub mod stack;
#[cfg(feature = "test-ca")]
pub mod test_ca;

pub use binaries::{Binaries, cargo};
pub use process::{Process, READY_TIMEOUT, STOP_TIMEOUT, free_port, log_tail};
pub use redis::RedisServer;
pub use stack::{SIDECAR_DEV_KEY_FILE, SeededClient, Signing, Stack, StackConfig, random_b64u_32};
