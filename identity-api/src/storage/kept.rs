//! A pooled connection that a batch task keeps from one batch to the next: sqlx pings a
//! connection every time one goes back to the pool, one more round-trip per batch.

use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Sqlite};

use super::error::StoreError;
use super::pool::Pools;

/// Which pool a batch task draws its connection from.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    Read,
    Write,
}

#[derive(Debug)]
pub enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

#[derive(Debug)]
pub struct Kept {
    pools: Pools,
    side: Side,
    conn: Option<Conn>,
}

impl Kept {
    pub fn new(pools: Pools, side: Side) -> Self {
        Self {
            pools,
            side,
            conn: None,
        }
    }

    /// The kept connection, or a new one from the pool.
    pub async fn conn(&mut self) -> Result<&mut Conn, StoreError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => match (&self.pools, self.side) {
                (Pools::Sqlite { read, .. }, Side::Read) => Conn::Sqlite(read.acquire().await?),
                (Pools::Sqlite { write, .. }, Side::Write) => Conn::Sqlite(write.acquire().await?),
                (Pools::Postgres(pool), _) => Conn::Postgres(pool.acquire().await?),
            },
        };
        Ok(self.conn.insert(conn))
    }

    /// Back to the pool, for other users.
    pub fn release(&mut self) {
        self.conn = None;
    }

    /// Closed, not reused: after a failure it may be mid-transaction (closing rolls back).
    pub fn discard(&mut self) {
        match self.conn.take() {
            Some(Conn::Sqlite(mut c)) => c.close_on_drop(),
            Some(Conn::Postgres(mut c)) => c.close_on_drop(),
            None => {}
        }
    }
}
