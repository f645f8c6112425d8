//! The group commit on SQLite: the transaction's statements go as multi-statement queries with
//! its first and its last statement, so that a batch of issues is one round-trip to the
//! connection's thread, and a batch with rotations two (the spend must answer before the rest
//! is bound). BEGIN IMMEDIATE: another process holding the file makes us wait (busy_timeout),
//! never fail half-way. After a failure the connection is closed, which rolls back whatever is
//! open.

use std::collections::HashSet;
use std::sync::LazyLock;

use sqlx::{Row as _, SqliteConnection};

use super::texts::{Dialect, SPEND, writes};
use super::writes::{
    Rows, Write, Written, answers, bind_spend, bind_writes, commit_failure, spends,
};
use crate::storage::batch::Failure;
use crate::storage::sql::{BUCKETS, Dialects, bucket};

/// One query of the writes, the first returning the families stored. A batch of rotations only
/// goes without the insert of families, whose RETURNING costs a temporary table even when it
/// inserts nothing (3 % of a refresh's instructions in batches of one or two).
pub fn writes_text(n: usize, issues: bool) -> String {
    let w = writes(n, Dialect::Sqlite, issues);
    let rest = [w.refreshes, w.last_used, w.audits];
    w.families
        .into_iter()
        .chain(rest)
        .collect::<Vec<_>>()
        .join("; ")
}

type Texts = LazyLock<[String; BUCKETS.len()]>;

/// `build(rows)` for every bucket, in SQLite's `?` form.
fn texts(build: fn(usize) -> String) -> [String; BUCKETS.len()] {
    Dialects::new(build).sqlite
}

static BEGIN_SPEND: Texts =
    LazyLock::new(|| texts(|n| format!("BEGIN IMMEDIATE; {}", SPEND.postgres[bucket(n)])));
static WRITES_COMMIT: Texts =
    LazyLock::new(|| texts(|n| format!("{}; COMMIT", writes_text(n, true))));
static ROTATION_WRITES_COMMIT: Texts =
    LazyLock::new(|| texts(|n| format!("{}; COMMIT", writes_text(n, false))));
static BEGIN_WRITES_COMMIT: Texts =
    LazyLock::new(|| texts(|n| format!("BEGIN IMMEDIATE; {}; COMMIT", writes_text(n, true))));

pub async fn commit(conn: &mut SqliteConnection, calls: &[Write]) -> Result<Vec<Written>, Failure> {
    let (hashes, now) = spends(calls);
    let rotates = !hashes.is_empty();
    let mut spent = HashSet::new();
    if rotates {
        let b = bucket(hashes.len());
        let mut q = sqlx::query(BEGIN_SPEND[b].as_str());
        bind_spend!(q, hashes, now, BUCKETS[b]);
        for row in q.fetch_all(&mut *conn).await? {
            spent.insert(row.try_get::<Vec<u8>, _>(0)?);
        }
    }
    let (rows, written) = Rows::decide(calls, spent);
    let b = bucket(calls.len());
    // Each query ends with COMMIT.
    if rows.families.is_empty() {
        let mut q = sqlx::query(ROTATION_WRITES_COMMIT[b].as_str());
        bind_writes!(q, rows, BUCKETS[b], rotations_only);
        q.execute(&mut *conn).await.map_err(commit_failure)?;
        return Ok(written);
    }
    let text = if rotates {
        &WRITES_COMMIT[b]
    } else {
        &BEGIN_WRITES_COMMIT[b]
    };
    let mut q = sqlx::query(text.as_str());
    bind_writes!(q, rows, BUCKETS[b]);
    let returned = q.fetch_all(&mut *conn).await.map_err(commit_failure)?;
    answers(calls, written, &returned)
}
