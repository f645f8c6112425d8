//! The group commit on PostgreSQL, which takes no multi-statement query with parameters: the
//! writes are one statement of data-modifying CTEs, returning the families stored. A statement
//! is atomic on its own, so a batch of issues is one round-trip, and a batch with rotations four
//! (BEGIN, the spend, the writes, COMMIT). The parts see one snapshot: those that need the
//! families stored beside them read them from `families`, and the foreign keys are checked at
//! the end of the statement.

use std::collections::HashSet;
use std::sync::LazyLock;

use sqlx::{Connection as _, PgConnection, Row as _};

use super::texts::{Dialect, SPEND, Writes, writes};
use super::writes::{
    Rows, Write, Written, answers, bind_spend, bind_writes, commit_failure, spends,
};
use crate::storage::batch::Failure;
use crate::storage::sql::{BUCKETS, bucket};

/// The writes as one statement. With issues, the main query reads `families` and the others
/// wait for it by what they read (see `texts`); a batch of rotations only stores no family and
/// returns nothing.
pub fn writes_text(n: usize, issues: bool) -> String {
    let Writes {
        families,
        refreshes,
        last_used,
        audits,
    } = writes(n, Dialect::Postgres, issues);
    match families {
        Some(families) => format!(
            "WITH families AS ({families}), refreshes AS ({refreshes}), \
             last_used AS ({last_used}), audits AS ({audits}) SELECT family_id FROM families"
        ),
        None => format!("WITH refreshes AS ({refreshes}), last_used AS ({last_used}) {audits}"),
    }
}

pub static WRITES: LazyLock<[String; BUCKETS.len()]> =
    LazyLock::new(|| BUCKETS.map(|n| writes_text(n, true)));
pub static ROTATION_WRITES: LazyLock<[String; BUCKETS.len()]> =
    LazyLock::new(|| BUCKETS.map(|n| writes_text(n, false)));

pub async fn commit(conn: &mut PgConnection, calls: &[Write]) -> Result<Vec<Written>, Failure> {
    let b = bucket(calls.len());
    let (hashes, now) = spends(calls);
    if hashes.is_empty() {
        // Issues only: the writes commit on their own, as one statement.
        let (rows, written) = Rows::decide(calls, HashSet::new());
        let mut q = sqlx::query(WRITES[b].as_str());
        bind_writes!(q, rows, BUCKETS[b]);
        let returned = q.fetch_all(&mut *conn).await.map_err(commit_failure)?;
        return answers(calls, written, &returned);
    }
    let mut tx = conn.begin().await?;
    let mut spent = HashSet::new();
    let sb = bucket(hashes.len());
    let mut q = sqlx::query(SPEND.postgres[sb].as_str());
    bind_spend!(q, hashes, now, BUCKETS[sb]);
    for row in q.fetch_all(&mut *tx).await? {
        spent.insert(row.try_get::<Vec<u8>, _>(0)?);
    }
    let (rows, written) = Rows::decide(calls, spent);
    if rows.families.is_empty() {
        let mut q = sqlx::query(ROTATION_WRITES[b].as_str());
        bind_writes!(q, rows, BUCKETS[b], rotations_only);
        q.execute(&mut *tx).await?;
        tx.commit().await.map_err(commit_failure)?;
        return Ok(written);
    }
    let mut q = sqlx::query(WRITES[b].as_str());
    bind_writes!(q, rows, BUCKETS[b]);
    let returned = q.fetch_all(&mut *tx).await?;
    tx.commit().await.map_err(commit_failure)?;
    answers(calls, written, &returned)
}
