//! The audit trail outside the hot path: the one statement that writes a row (a refused refresh,
//! a revocation, an administrative change inside its own transaction), and the trail as
//! operators read it, a page at a time (`crate::audit`).

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::LazyLock;

use sqlx::Row as _;

use super::error::StoreError;
use super::pool::Pools;
use super::rows::AuditRow;
use super::sql::placeholders;

/// Inserts one whole row; run inside the transaction of the change it records.
pub static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO audit_events ({}) VALUES ({})",
        AuditRow::column_list(""),
        placeholders(AuditRow::WIDTH, 1)
    )
});

/// An audit row of its own (a refused refresh: nothing else changes).
pub async fn insert(pools: &Pools, audit: &AuditRow) -> Result<(), StoreError> {
    writer!(pools, p => {
        audit.bind(sqlx::query(&INSERT)).execute(p).await?;
    });
    Ok(())
}

/// An audit event as stored: its id (the database's, in the order rows were written) and its
/// row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub row: AuditRow,
}

/// What a page of the trail holds: ids in `ids`, times in `since..until`, and each column given
/// equal to its value. The id range is what bounds the scan (by primary key); the rest is
/// checked on the rows it holds, since no index serves them.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    pub ids: Range<i64>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub event: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub family_id: Option<&'a str>,
}

/// Which end of the id range a page starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

/// A value a page's statement binds.
enum Arg<'a> {
    Int(i64),
    Text(&'a str),
}

/// At most `n` events of `query`, from the oldest or the newest end of its id range: one
/// statement that walks the primary key and stops at the `n`th match.
pub async fn page(
    pools: &Pools,
    query: &AuditQuery<'_>,
    order: Order,
    n: i64,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut sql = format!(
        "SELECT id, {} FROM audit_events WHERE id >= $1 AND id < $2",
        AuditRow::column_list("")
    );
    let mut args = vec![Arg::Int(query.ids.start), Arg::Int(query.ids.end)];
    let times = [("at >=", query.since), ("at <", query.until)];
    for (condition, value) in times {
        if let Some(value) = value {
            args.push(Arg::Int(value));
            let _ = write!(sql, " AND {condition} ${}", args.len());
        }
    }
    let columns = [
        ("event", query.event),
        ("client_id", query.client_id),
        ("subject", query.subject),
        ("family_id", query.family_id),
    ];
    for (column, value) in columns {
        if let Some(value) = value {
            args.push(Arg::Text(value));
            let _ = write!(sql, " AND {column} = ${}", args.len());
        }
    }
    let direction = match order {
        Order::OldestFirst => "",
        Order::NewestFirst => " DESC",
    };
    let _ = write!(sql, " ORDER BY id{direction} LIMIT ${}", args.len() + 1);
    reader!(pools, p => {
        let mut q = sqlx::query(&sql);
        for arg in &args {
            q = match arg {
                Arg::Int(value) => q.bind(*value),
                Arg::Text(value) => q.bind(*value),
            };
        }
        let rows = q.bind(n).fetch_all(p).await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            events.push(AuditEvent {
                id: row.try_get(0)?,
                row: AuditRow::decode_at(row, 1)?,
            });
        }
        Ok(events)
    })
}

/// The lowest and the highest id, `None` for an empty trail (both read off the primary key).
pub async fn id_span(pools: &Pools) -> Result<Option<(i64, i64)>, StoreError> {
    reader!(pools, p => {
        let row = sqlx::query("SELECT min(id), max(id) FROM audit_events")
            .fetch_one(p)
            .await?;
        let min: Option<i64> = row.try_get(0)?;
        let max: Option<i64> = row.try_get(1)?;
        Ok(min.zip(max))
    })
}

/// The first id whose time is `at` or later, were times in the order of ids; `max + 1` when
/// none is. A binary search on the primary key, one lookup a step (a few dozen at most,
/// whatever the size of the trail), so that a time bound costs no index on `at`, which every
/// issue and refresh would pay for. Times are not quite in id order (several instances'
/// clocks, requests that wait for their batch): the caller widens `at` by a margin and checks
/// the exact time on the rows.
pub async fn first_id_at(pools: &Pools, at: i64, span: (i64, i64)) -> Result<i64, StoreError> {
    let (mut lo, max) = span;
    let mut hi = max.saturating_add(1);
    // Every row below `lo` is older than `at`; the first row from `hi` on (if any) is not.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let first = reader!(pools, p => {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT id, at FROM audit_events WHERE id >= $1 ORDER BY id LIMIT 1",
            )
            .bind(mid)
            .fetch_optional(p)
            .await?
        });
        match first {
            Some((id, time)) if time < at => lo = id.saturating_add(1),
            _ => hi = mid,
        }
    }
    Ok(lo)
}
