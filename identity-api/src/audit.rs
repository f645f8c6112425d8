//! The audit trail as operators read it: `audit list` (the newest events that match, as a
//! table) and `audit export` (every event that matches, as JSON lines, a page at a time).
//!
//! No index serves the filters: audit rows are written by every issue and refresh, and each
//! index (on the time, a client, a subject or a family) would cost every one of them another
//! B-tree insert. Rows are appended in about time order, so a time bound becomes a range of ids
//! found by binary search on the primary key (`Db::audit_first_id_at`), the range is scanned by
//! id, and the other filters are checked on its rows. Times are the writers' clocks (several
//! instances; a request's time is taken before it waits for its batch), so the range is widened
//! by [`CLOCK_SLACK_SECS`] on each side and the exact bound is checked on the rows: an event is
//! missed only if it was written that much out of time order.

use std::io::Write;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::storage::{AuditEvent, AuditQuery, Db, Order, StoreError};

/// How far out of time order audit rows may be written and still be found by a time filter.
pub const CLOCK_SLACK_SECS: i64 = 300;

/// Events read per statement: bounds the memory of an export and of a long list.
pub const PAGE: usize = 1000;

/// `audit list` shows this many events unless told otherwise, and at most [`MAX_LIST`] (the
/// table is laid out once all of them are read; `audit export` has no limit).
pub const DEFAULT_LIST: u32 = 100;
pub const MAX_LIST: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("--since ({since}) must be before --until ({until})")]
    EmptyRange { since: String, until: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the events: {0}")]
    Output(std::io::Error),
}

/// Which events to read: each field given narrows them (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    pub event: Option<String>,
    pub client_id: Option<String>,
    pub subject: Option<String>,
    pub family_id: Option<String>,
}

impl Filter {
    fn check(&self) -> Result<(), AuditError> {
        match (self.since, self.until) {
            (Some(since), Some(until)) if since >= until => Err(AuditError::EmptyRange {
                since: format_time(since),
                until: format_time(until),
            }),
            _ => Ok(()),
        }
    }

    /// The oldest time the events can have, for the id range: `--since`, or later when the
    /// family's id says when it was created (its first 12 hex digits are its Unix milliseconds,
    /// `Fresh::time_ordered_id`), since no event of a family is older than the family.
    fn oldest(&self) -> Option<i64> {
        let family = self.family_id.as_deref().and_then(family_created_at);
        self.since.max(family)
    }

    /// The query of the id range `ids`.
    fn query(&self, ids: std::ops::Range<i64>) -> AuditQuery<'_> {
        AuditQuery {
            ids,
            since: self.since,
            until: self.until,
            event: self.event.as_deref(),
            client_id: self.client_id.as_deref(),
            subject: self.subject.as_deref(),
            family_id: self.family_id.as_deref(),
        }
    }

    /// The ids the events can have (empty when the trail is), widened for the writers' clocks.
    async fn ids(&self, db: &Db) -> Result<std::ops::Range<i64>, StoreError> {
        let Some(span) = db.audit_id_span().await? else {
            return Ok(0..0);
        };
        let start = match self.oldest() {
            Some(t) => {
                let at = t.saturating_sub(CLOCK_SLACK_SECS);
                db.audit_first_id_at(at, span).await?
            }
            None => span.0,
        };
        let end = match self.until {
            Some(t) => {
                let at = t.saturating_add(CLOCK_SLACK_SECS);
                db.audit_first_id_at(at, span).await?
            }
            None => span.1.saturating_add(1),
        };
        Ok(start..end.max(start))
    }
}

/// The creation time of a family, from its id (32 hex digits, the first 12 its Unix
/// milliseconds); `None` for an id of another form.
fn family_created_at(family_id: &str) -> Option<i64> {
    if family_id.len() != 32 || !family_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let millis = i64::from_str_radix(family_id.get(..12)?, 16).ok()?;
    Some(millis / 1000)
}

/// The newest `limit` events of `filter`, oldest first, and whether older ones match too.
pub async fn newest(
    db: &Db,
    filter: &Filter,
    limit: usize,
) -> Result<(Vec<AuditEvent>, bool), AuditError> {
    filter.check()?;
    let ids = filter.ids(db).await?;
    let mut events: Vec<AuditEvent> = Vec::new();
    let mut end = ids.end;
    // One more than asked for: whether more match.
    while events.len() <= limit {
        let want = (limit + 1 - events.len()).min(PAGE);
        let page = db
            .audit_page(
                &filter.query(ids.start..end),
                Order::NewestFirst,
                want as i64,
            )
            .await?;
        let exhausted = page.len() < want;
        if let Some(last) = page.last() {
            end = last.id;
        }
        events.extend(page);
        if exhausted {
            break;
        }
    }
    let more = events.len() > limit;
    events.truncate(limit);
    events.reverse();
    Ok((events, more))
}

/// Writes every event of `filter` with an id above `after_id`, oldest first, one JSON object a
/// line ([`json`]), a page of [`PAGE`] at a time; returns how many. It ends at the newest event
/// when it started: an export can be resumed with `after_id` = the last id written.
pub async fn export(
    db: &Db,
    filter: &Filter,
    after_id: Option<i64>,
    out: &mut impl Write,
) -> Result<u64, AuditError> {
    filter.check()?;
    let ids = filter.ids(db).await?;
    let mut start = match after_id {
        Some(id) => ids.start.max(id.saturating_add(1)),
        None => ids.start,
    };
    let mut written = 0;
    while start < ids.end {
        let page = db
            .audit_page(
                &filter.query(start..ids.end),
                Order::OldestFirst,
                PAGE as i64,
            )
            .await?;
        for event in &page {
            serde_json::to_writer(&mut *out, &json(event))
                .map_err(|e| AuditError::Output(e.into()))?;
            out.write_all(b"\n").map_err(AuditError::Output)?;
            written += 1;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => start = last.id.saturating_add(1),
            _ => break,
        }
    }
    out.flush().map_err(AuditError::Output)?;
    Ok(written)
}

/// An event as `audit export` writes it: every column, `time` (RFC 3339) beside `at` (Unix
/// seconds), and `detail` as the JSON object it holds.
pub fn json(event: &AuditEvent) -> Value {
    let row = &event.row;
    let detail = row
        .detail
        .as_deref()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned())));
    json!({
        "id": event.id,
        "at": row.at,
        "time": format_time(row.at),
        "event": row.event,
        "outcome": row.outcome,
        // Empty for the deployment's own events (kek rewrap), which no tenant owns.
        "tenant": Some(row.tenant_id.as_str()).filter(|t| !t.is_empty()),
        "client_id": row.client_id,
        "subject": row.subject,
        "family_id": row.family_id,
        "actor": row.actor,
        "detail": detail,
    })
}

/// The events as a table with a header, columns aligned, `-` for what an event does not have.
pub fn table(events: &[AuditEvent]) -> String {
    const HEADER: [&str; 10] = [
        "ID", "TIME", "EVENT", "OUTCOME", "TENANT", "CLIENT", "SUBJECT", "FAMILY", "ACTOR",
        "DETAIL",
    ];
    let cell = |value: &Option<String>| value.as_deref().map_or("-".to_owned(), printable);
    let rows: Vec<[String; 10]> = events
        .iter()
        .map(|e| {
            let r = &e.row;
            [
                e.id.to_string(),
                format_time(r.at),
                printable(&r.event),
                printable(&r.outcome),
                cell(&Some(r.tenant_id.to_string()).filter(|t| !t.is_empty())),
                cell(&r.client_id),
                cell(&r.subject),
                cell(&r.family_id),
                cell(&r.actor),
                cell(&r.detail),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (value, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(value);
            } else {
                line.push_str(&format!("{value:<width$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A value as a terminal shows it safely: control characters escaped.
fn printable(value: &str) -> String {
    value
        .chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// `--since` and `--until`: an RFC 3339 time (`2025-01-31T12:00:00Z`, any offset) or Unix
/// seconds. A fraction of a second rounds up, as audit times are whole seconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("{text} is too large for Unix seconds"));
    }
    let time = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        "expected an RFC 3339 time (2025-01-31T12:00:00Z, or with an offset such as +02:00) \
         or Unix seconds"
            .to_owned()
    })?;
    let seconds = time.unix_timestamp();
    Ok(match time.nanosecond() {
        0 => seconds,
        _ => seconds + 1,
    })
}

/// Unix seconds as RFC 3339 in UTC (`2025-01-31T12:00:00Z`); the number itself if out of range.
pub fn format_time(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::AuditRow;

    #[test]
    fn times_parse_from_rfc_3339_or_unix_seconds() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:19.5Z"), Ok(1_700_000_000));
        for bad in [
            "",
            "yesterday",
            "2023-11-14",
            "2023-11-14 22:13:20",
            "-5",
            "1e9",
        ] {
            let err = parse_time(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
        assert!(parse_time("99999999999999999999").is_err());
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn a_family_id_tells_when_its_family_was_created() {
        assert_eq!(
            family_created_at("018bcfe5680000000000000000000000"),
            Some(1_700_000_000)
        );
        assert_eq!(family_created_at("not-a-family"), None);
        assert_eq!(family_created_at(&"g".repeat(32)), None);
    }

    #[test]
    fn an_empty_time_range_is_refused() {
        let filter = Filter {
            since: Some(10),
            until: Some(10),
            ..Filter::default()
        };
        let err = filter.check().unwrap_err().to_string();
        assert!(err.contains("--since") && err.contains("--until"), "{err}");
    }

    #[test]
    fn the_table_aligns_its_columns_and_escapes_control_characters() {
        let event = |id, subject: &str| AuditEvent {
            id,
            row: AuditRow {
                at: 1_700_000_000,
                event: "issue".into(),
                client_id: Some("c1".into()),
                subject: Some(subject.into()),
                family_id: None,
                outcome: "issued".into(),
                actor: None,
                detail: None,
                tenant_id: crate::storage::TenantId::primary(),
            },
        };
        let text = table(&[event(9, "alice"), event(10, "bob\x1b[2J")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID  TIME"), "{text}");
        assert!(
            lines[1].starts_with("9   2023-11-14T22:13:20Z  issue"),
            "{text}"
        );
        assert!(lines[2].contains("bob\\u{1b}[2J"), "{text}");
        assert!(!text.contains('\x1b'));
        let column = |line: &str| line.find("issue");
        assert_eq!(column(lines[1]), column(lines[2]));
    }
}
