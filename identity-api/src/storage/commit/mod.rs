//! The group commit of issues and rotations: the writes of concurrent requests in one
//! transaction, each answered after its commit (the same durability per answer as a
//! transaction each).
//!
//! - [`writes`]: what a batch writes ([`Write`]), how its calls become rows, their answers;
//! - [`texts`]: the statements, built from the rows' declarations;
//! - [`sqlite`], [`postgres`]: the commit on each database.

mod postgres;
mod sqlite;
mod texts;
mod writes;

pub use writes::{ClientSeen, Opened, Rotation, Write, Written};

use crate::storage::batch::{Batch, Failure};
use crate::storage::kept::{Conn, Kept, Side};
use crate::storage::pool::Pools;

/// Consecutive batches a write task runs on one connection before it lets other writers
/// (revocations, client changes) have the single SQLite write connection.
const HOLD_BATCHES: u32 = 16;

/// The batch task of the writes: keeps the write connection while it has work.
#[derive(Debug)]
pub struct GroupCommit {
    kept: Kept,
    batches: u32,
}

impl GroupCommit {
    pub fn new(pools: Pools) -> Self {
        Self {
            kept: Kept::new(pools, Side::Write),
            batches: 0,
        }
    }
}

impl Batch for GroupCommit {
    type Call = Write;
    type Answer = Written;

    async fn run(&mut self, calls: &[Write]) -> Result<Vec<Written>, Failure> {
        let written = match self.kept.conn().await? {
            Conn::Sqlite(conn) => sqlite::commit(conn, calls).await?,
            Conn::Postgres(conn) => postgres::commit(conn, calls).await?,
        };
        self.batches += 1;
        if self.batches >= HOLD_BATCHES {
            self.idle();
        }
        Ok(written)
    }

    fn idle(&mut self) {
        self.batches = 0;
        self.kept.release();
    }

    fn failed(&mut self) {
        self.batches = 0;
        self.kept.discard();
    }
}

#[cfg(test)]
mod tests;
