//! The statements of the group commit, built from the rows' declarations: the spend of the
//! rotated tokens, then the writes (families, refresh tokens, the rotated families' last use,
//! audit rows), every part sized to a bucket and numbered across the parts in order.

use std::sync::LazyLock;

use crate::storage::rows::{
    AuditColumn, AuditRow, FamilyColumn, FamilyRow, RefreshColumn, RefreshRow,
};
use crate::storage::sql::{Dialects, placeholders, values};

/// The spend: a conditional UPDATE (not spent, family not revoked) whose RETURNING names the
/// tokens this transaction spent; of concurrent spends of one token exactly one sees it.
/// `IN (...)`, not a join with a VALUES list: SQLite 3.46 plans that join as a scan of the table.
pub static SPEND: LazyLock<Dialects> = LazyLock::new(|| {
    Dialects::new(|n| {
        format!(
            "UPDATE refresh_tokens SET spent = TRUE, spent_at = $1 \
             WHERE token_hash IN ({}) AND spent = FALSE \
             AND EXISTS (SELECT 1 FROM token_families f \
                         WHERE f.family_id = refresh_tokens.family_id AND f.revoked_at IS NULL) \
             RETURNING token_hash",
            placeholders(n, 2)
        )
    })
});

/// Parameters an issue binds for its family: the row, then its client as it saw it
/// (`ClientSeen`: the verifier it authenticated by, the scopes, the audiences, the grant
/// types and the subject policy).
pub const FAMILY_WIDTH: usize = FamilyRow::WIDTH + 5;

/// The two databases' forms of the writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// `v.columnN` of a `VALUES` list aliased `v`.
fn v(column: String) -> String {
    format!("v.{column}")
}

/// `v.column1, ..., v.columnN`.
fn all_values(width: usize) -> String {
    (1..=width)
        .map(|i| format!("v.column{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A family is stored only while its client is enabled, of the family's tenant, that tenant
/// enabled, still accepts the verifier it
/// authenticated by (as its current one, or as the previous one until its overlap ends at the
/// issue's time: the rule of `clients::accepts`) and still has the scopes, audiences, grant
/// types and subject policy it was judged by (the columns after the row's): the join drops the row of an issue whose client was
/// disabled, rotated or updated since, and RETURNING names the families stored. On PostgreSQL the client rows are
/// locked (shared) until the commit, so that a `client disable` running at the same time either
/// commits first (and the join sees it) or waits and then revokes the new families; on SQLite
/// the write transaction excludes it. `CROSS JOIN`: SQLite then keeps the VALUES as the outer
/// loop and finds each client by key (with a plain join it scans the clients for a batch of 4 or
/// more).
fn insert_families(n: usize, first: usize, dialect: Dialect) -> String {
    let lock = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR SHARE OF c",
    };
    format!(
        "INSERT INTO token_families ({columns}) SELECT {row} \
         FROM (VALUES {values}) AS v CROSS JOIN clients c \
         WHERE {id} IS NOT NULL AND c.client_id = {client} \
         AND c.enabled = TRUE AND (c.secret_verifier = v.column{verifier} \
         OR (c.previous_secret_verifier = v.column{verifier} \
         AND c.previous_verifier_expires_at > {created_at})) \
         AND c.scopes = v.column{scopes} AND c.audiences = v.column{audiences} \
         AND c.grant_types = v.column{grant_types} \
         AND c.subject_policy = v.column{subject_policy} AND c.tenant_id = {tenant} \
         AND EXISTS (SELECT 1 FROM tenants t WHERE t.tenant_id = c.tenant_id AND t.enabled = TRUE){lock} \
         RETURNING family_id",
        columns = FamilyRow::column_list(""),
        row = all_values(FamilyRow::WIDTH),
        values = values(n, FAMILY_WIDTH, first),
        id = v(FamilyColumn::family_id.value_column()),
        client = v(FamilyColumn::client_id.value_column()),
        created_at = v(FamilyColumn::created_at.value_column()),
        tenant = v(FamilyColumn::tenant_id.value_column()),
        verifier = FamilyRow::WIDTH + 1,
        scopes = FamilyRow::WIDTH + 2,
        audiences = FamilyRow::WIDTH + 3,
        grant_types = FamilyRow::WIDTH + 4,
        subject_policy = FamilyRow::WIDTH + 5,
    )
}

/// The condition that `column`'s family exists: stored before this batch (a rotation's) or by
/// it (an issue's, unless its client refused it). PostgreSQL's parts of one statement share a
/// snapshot, so there the families just stored are read from the CTE. (There, `IN (SELECT ...)`
/// joined by `OR` is planned as a hash of the whole table, read for every batch: `EXISTS` finds
/// the row by key.) Without issues in the batch (`None`) every family named exists: no condition.
fn family_stored(column: &str, issues: Option<Dialect>) -> String {
    match issues {
        None => String::new(),
        Some(Dialect::Sqlite) => format!(" AND {column} IN (SELECT family_id FROM token_families)"),
        Some(Dialect::Postgres) => format!(
            " AND (EXISTS (SELECT 1 FROM families n WHERE n.family_id = {column}) \
             OR EXISTS (SELECT 1 FROM token_families t WHERE t.family_id = {column}))"
        ),
    }
}

fn insert_refreshes(n: usize, first: usize, issues: Option<Dialect>) -> String {
    format!(
        "INSERT INTO refresh_tokens ({columns}) SELECT {row} \
         FROM (VALUES {values}) AS v WHERE v.column1 IS NOT NULL{guard}",
        columns = RefreshRow::column_list(""),
        row = all_values(RefreshRow::WIDTH),
        values = values(n, RefreshRow::WIDTH, first),
        guard = family_stored(&v(RefreshColumn::family_id.value_column()), issues),
    )
}

/// `$first` is the time, then `n` family ids. On PostgreSQL with issues in the batch, the update
/// waits for the families' insert: it reads the whole of its output in a one-time condition
/// before its scan, so the client rows that insert locks are locked before any family row here,
/// in the order `client disable` locks them (a data dependency, which PostgreSQL must honour
/// whatever order it runs a statement's parts in).
fn update_last_used(n: usize, first: usize, issues: Option<Dialect>) -> String {
    let after_families = match issues {
        Some(Dialect::Postgres) => " AND (SELECT count(*) FROM families) >= 0",
        _ => "",
    };
    format!(
        "UPDATE token_families SET last_used_at = ${first} WHERE family_id IN ({}){after_families}",
        placeholders(n, first + 1)
    )
}

fn insert_audits(n: usize, first: usize, issues: Option<Dialect>) -> String {
    format!(
        "INSERT INTO audit_events ({columns}) SELECT {row} \
         FROM (VALUES {values}) AS v WHERE {event} IS NOT NULL{guard}",
        columns = AuditRow::column_list(""),
        row = all_values(AuditRow::WIDTH),
        values = values(n, AuditRow::WIDTH, first),
        event = v(AuditColumn::event.value_column()),
        guard = family_stored(&v(AuditColumn::family_id.value_column()), issues),
    )
}

/// The writes after the spend, every part sized to `n` rows.
#[derive(Debug)]
pub struct Writes {
    /// Only when the batch has issues.
    pub families: Option<String>,
    pub refreshes: String,
    /// The rotated families' `last_used_at`.
    pub last_used: String,
    pub audits: String,
}

pub fn writes(n: usize, dialect: Dialect, issues: bool) -> Writes {
    let mut first = 1;
    let mut next = |params: usize| {
        let at = first;
        first += params;
        at
    };
    let guard = issues.then_some(dialect);
    Writes {
        families: issues.then(|| insert_families(n, next(n * FAMILY_WIDTH), dialect)),
        refreshes: insert_refreshes(n, next(n * RefreshRow::WIDTH), guard),
        last_used: update_last_used(n, next(1 + n), guard),
        audits: insert_audits(n, next(n * AuditRow::WIDTH), guard),
    }
}
