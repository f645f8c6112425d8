//! The statements every request runs, batched (see [`batch`](super::batch)): the three reads
//! (client, family state, refresh token) and the group commit of issue and rotation.
//!
//! A batch's SQL text holds a fixed number of rows, a bucket of [`BUCKETS`], padded with NULLs
//! that match nothing, so that each statement has four texts in all and stays in sqlx's
//! prepared-statement cache. The statements are the same on SQLite and PostgreSQL, written with
//! `$N` and given to SQLite with `?` ([`anonymous`]); on SQLite the group commit goes as
//! multi-statement queries (one or two round-trips to the connection's thread), on PostgreSQL
//! as one statement of data-modifying CTEs (one round-trip for issues, four with rotations).
//!
//! Each batch task keeps its pooled connection between batches ([`Kept`]): sqlx pings a
//! connection every time one goes back to the pool, one more round-trip per batch.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::LazyLock;

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, Postgres, Row, Sqlite, SqliteConnection};

use super::batch::{Batch, Failure, MAX_BATCH};
use super::{
    ClientRow, FAMILY_COLUMNS, FamilyRow, NewRefresh, Opened, Pools, RefreshView, Rotation,
    StoreError, client_from, refresh_view_from,
};

/// Rows a batch's SQL text holds: the smallest bucket that fits the batch.
const BUCKETS: [usize; 4] = [1, 4, 16, MAX_BATCH];

fn bucket(n: usize) -> usize {
    BUCKETS
        .iter()
        .position(|&b| n <= b)
        .unwrap_or(BUCKETS.len() - 1)
}

/// `$first, $first+1, ...`: `n` placeholders.
fn placeholders(n: usize, first: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}${}", first + i);
    }
    out
}

/// `($first, ...), (...)`: `rows` tuples of `width` placeholders.
fn values(rows: usize, width: usize, first: usize) -> String {
    let mut out = String::new();
    for r in 0..rows {
        let sep = if r == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}({})", placeholders(width, first + r * width));
    }
    out
}

/// One text per bucket, as PostgreSQL takes it (`$N`) and as SQLite binds it fastest (`?`).
#[derive(Debug)]
struct Dialects {
    postgres: [String; BUCKETS.len()],
    sqlite: [String; BUCKETS.len()],
}

type Texts = LazyLock<Dialects>;

fn texts(build: fn(usize) -> String) -> Dialects {
    let postgres = BUCKETS.map(build);
    let sqlite = postgres.clone().map(|t| anonymous(&t));
    Dialects { postgres, sqlite }
}

/// SQLite-only texts (in the `?` form).
fn sqlite_texts(build: fn(usize) -> String) -> [String; BUCKETS.len()] {
    BUCKETS.map(|n| anonymous(&build(n)))
}

/// `$N` to `?`. sqlite3_bind_parameter_name scans the list of named parameters, so binding n of
/// them costs n² (a group commit of 64 has 1,217); anonymous ones bind in the order they appear,
/// which every text here numbers in (a test checks).
fn anonymous(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.next_if(char::is_ascii_digit).is_some() {}
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// Which pool a batch task draws its connection from.
#[derive(Debug, Clone, Copy)]
enum Side {
    Read,
    Write,
}

#[derive(Debug)]
enum Conn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

/// A pooled connection a batch task keeps from one batch to the next.
#[derive(Debug)]
pub struct Kept {
    pools: Pools,
    side: Side,
    conn: Option<Conn>,
}

impl Kept {
    fn new(pools: Pools, side: Side) -> Self {
        Self {
            pools,
            side,
            conn: None,
        }
    }

    async fn conn(&mut self) -> Result<&mut Conn, StoreError> {
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
    fn release(&mut self) {
        self.conn = None;
    }

    /// Closed, not reused: after a failure it may be mid-transaction (closing rolls back).
    fn discard(&mut self) {
        match self.conn.take() {
            Some(Conn::Sqlite(mut c)) => c.close_on_drop(),
            Some(Conn::Postgres(mut c)) => c.close_on_drop(),
            None => {}
        }
    }
}

// ---- reads ----

static CLIENTS: Texts = LazyLock::new(|| {
    texts(|n| {
        format!(
            "SELECT client_id, secret_verifier, scopes, audiences, enabled, created_at, rotated_at \
             FROM clients WHERE client_id IN ({})",
            placeholders(n, 1)
        )
    })
});

static FAMILY_STATES: Texts = LazyLock::new(|| {
    texts(|n| {
        format!(
            "SELECT family_id, revoked_at FROM token_families WHERE family_id IN ({})",
            placeholders(n, 1)
        )
    })
});

static REFRESH_VIEWS: Texts = LazyLock::new(|| {
    texts(|n| {
        format!(
            "SELECT r.token_hash, r.jti, r.issued_at, r.expires_at AS r_expires_at, r.spent, \
             {FAMILY_COLUMNS} \
             FROM refresh_tokens r JOIN token_families f ON f.family_id = r.family_id \
             WHERE r.token_hash IN ({})",
            placeholders(n, 1)
        )
    })
});

/// The distinct keys of a batch (as indices into `keys`), and the bucket that holds them.
fn distinct<K: Ord + ?Sized>(keys: &[&K]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(keys[b]));
    order.dedup_by(|a, b| keys[*a] == keys[*b]);
    let b = bucket(order.len());
    (order, b)
}

/// Runs `$texts` (chosen by bucket) with the distinct keys bound, padded with the first (a
/// repeat matches nothing new), and collects `$decode(row) -> (key, value)` into a map.
macro_rules! lookup {
    ($kept:expr, $texts:expr, $keys:expr, |$row:ident| $decode:expr) => {{
        let keys = $keys;
        let (order, b) = distinct(&keys);
        let texts = &*$texts;
        let padded = order
            .iter()
            .map(|&i| keys[i])
            .chain(std::iter::repeat(keys[order[0]]))
            .take(BUCKETS[b]);
        let mut found = HashMap::with_capacity(order.len());
        match $kept.conn().await? {
            Conn::Sqlite(conn) => {
                let mut q = sqlx::query(texts.sqlite[b].as_str());
                for key in padded {
                    q = q.bind(key);
                }
                for $row in q.fetch_all(&mut **conn).await? {
                    let (k, v) = $decode;
                    found.insert(k, v);
                }
            }
            Conn::Postgres(conn) => {
                let mut q = sqlx::query(texts.postgres[b].as_str());
                for key in padded {
                    q = q.bind(key);
                }
                for $row in q.fetch_all(&mut **conn).await? {
                    let (k, v) = $decode;
                    found.insert(k, v);
                }
            }
        }
        found
    }};
}

/// One kind of lookup, run by a [`Reads`] task on the connection it keeps.
pub trait Lookup: Send + 'static {
    type Call: Send + Sync + 'static;
    type Answer: Send + 'static;

    fn run(
        &self,
        kept: &mut Kept,
        calls: &[Self::Call],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, StoreError>> + Send;
}

/// A read batch task: keeps its read connection while it has work.
#[derive(Debug)]
pub struct Reads<L> {
    kept: Kept,
    lookup: L,
}

impl<L: Lookup> Reads<L> {
    pub fn new(pools: Pools, lookup: L) -> Self {
        Self {
            kept: Kept::new(pools, Side::Read),
            lookup,
        }
    }
}

impl<L: Lookup> Batch for Reads<L> {
    type Call = L::Call;
    type Answer = L::Answer;

    async fn run(&mut self, calls: &[L::Call]) -> Result<Vec<L::Answer>, Failure> {
        Ok(self.lookup.run(&mut self.kept, calls).await?)
    }

    /// Back to the pool (which checks it on the next acquire) when quiet.
    fn long_idle(&mut self) {
        self.kept.release();
    }

    fn failed(&mut self) {
        self.kept.discard();
    }
}

/// `Db::client`, batched.
#[derive(Debug)]
pub struct Clients;

impl Lookup for Clients {
    type Call = String;
    type Answer = Option<ClientRow>;

    async fn run(
        &self,
        kept: &mut Kept,
        ids: &[String],
    ) -> Result<Vec<Option<ClientRow>>, StoreError> {
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        let found = lookup!(kept, CLIENTS, keys, |row| {
            let client = client_from(&row)?;
            (client.client_id.clone(), client)
        });
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }
}

/// `Db::family_revoked`, batched: `Some(revoked)`, or `None` for an unknown family.
#[derive(Debug)]
pub struct FamilyStates;

impl Lookup for FamilyStates {
    type Call = String;
    type Answer = Option<bool>;

    async fn run(&self, kept: &mut Kept, ids: &[String]) -> Result<Vec<Option<bool>>, StoreError> {
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        let found = lookup!(kept, FAMILY_STATES, keys, |row| {
            let (family_id, revoked_at): (String, Option<i64>) = get!(row, family_id, revoked_at);
            (family_id, revoked_at.is_some())
        });
        Ok(ids.iter().map(|id| found.get(id).copied()).collect())
    }
}

/// `Db::refresh_token`, batched: a refresh token (by its SHA-256) joined with its family.
#[derive(Debug)]
pub struct RefreshViews;

impl Lookup for RefreshViews {
    type Call = [u8; 32];
    type Answer = Option<RefreshView>;

    async fn run(
        &self,
        kept: &mut Kept,
        hashes: &[[u8; 32]],
    ) -> Result<Vec<Option<RefreshView>>, StoreError> {
        let keys: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
        let found = lookup!(kept, REFRESH_VIEWS, keys, |row| {
            let hash: Vec<u8> = row.try_get("token_hash")?;
            (hash, refresh_view_from(&row)?)
        });
        Ok(hashes
            .iter()
            .map(|h| found.get(h.as_slice()).cloned())
            .collect())
    }
}

// ---- the group commit of issue and rotation ----

/// A write of the hot path.
#[derive(Debug)]
pub enum Write {
    /// Token issue: a new family with its first refresh token, if its client is still enabled
    /// with `verifier`.
    Open {
        family: FamilyRow,
        refresh: NewRefresh,
        verifier: Vec<u8>,
    },
    /// Refresh: spend `old_hash` (unless spent already or the family is revoked) and store `new`.
    Rotate {
        old_hash: [u8; 32],
        new: NewRefresh,
        now: i64,
        client_id: String,
        subject: String,
    },
}

/// What a [`Write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Open(Opened),
    Rotation(Rotation),
}

/// The spend: a conditional UPDATE (not spent, family not revoked) whose RETURNING names the
/// tokens this transaction spent; of concurrent spends of one token exactly one sees it.
/// `IN (...)`, not a join with a VALUES list: SQLite 3.46 plans that join as a scan of the table.
static SPEND: Texts = LazyLock::new(|| {
    texts(|n| {
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

const FAMILY_WIDTH: usize = 8;
const REFRESH_WIDTH: usize = 5;
const AUDIT_WIDTH: usize = 6;

/// The two databases' forms of the group commit's writes.
#[derive(Debug, Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// A family is stored only while its client is enabled with the verifier it authenticated by
/// (`column8`): the join drops the row of an issue whose client was disabled or rotated since,
/// and RETURNING names the families stored. On PostgreSQL the client rows are locked (shared)
/// until the commit, so that a `client disable` running at the same time either commits first
/// (and the join sees it) or waits and then revokes the new families; on SQLite the write
/// transaction excludes it. `CROSS JOIN`: SQLite then keeps the VALUES as the outer loop and
/// finds each client by key (with a plain join it scans the clients for a batch of 4 or more).
fn insert_families(n: usize, first: usize, dialect: Dialect) -> String {
    let lock = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR SHARE OF c",
    };
    format!(
        "INSERT INTO token_families \
         (family_id, client_id, subject, scope, audience, created_at, expires_at, last_used_at) \
         SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, \
         v.column6 \
         FROM (VALUES {}) AS v CROSS JOIN clients c \
         WHERE v.column1 IS NOT NULL AND c.client_id = v.column2 \
         AND c.enabled = TRUE AND c.secret_verifier = v.column8{lock} \
         RETURNING family_id",
        values(n, FAMILY_WIDTH, first)
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
        "INSERT INTO refresh_tokens (token_hash, jti, family_id, issued_at, expires_at, spent) \
         SELECT column1, column2, column3, column4, column5, FALSE \
         FROM (VALUES {}) AS v WHERE column1 IS NOT NULL{}",
        values(n, REFRESH_WIDTH, first),
        family_stored("column3", issues)
    )
}

/// `$first` is the time, then `n` family ids.
fn update_last_used(n: usize, first: usize) -> String {
    format!(
        "UPDATE token_families SET last_used_at = ${first} WHERE family_id IN ({})",
        placeholders(n, first + 1)
    )
}

fn insert_audits(n: usize, first: usize, issues: Option<Dialect>) -> String {
    format!(
        "INSERT INTO audit_events (at, event, client_id, subject, family_id, outcome) \
         SELECT column1, column2, column3, column4, column5, column6 \
         FROM (VALUES {}) AS v WHERE column2 IS NOT NULL{}",
        values(n, AUDIT_WIDTH, first),
        family_stored("column5", issues)
    )
}

/// The writes after the spend, every part sized to `n` rows, their parameters numbered across
/// the parts in order.
struct Writes {
    /// Only when the batch has issues.
    families: Option<String>,
    refreshes: String,
    /// The rotated families' `last_used_at`.
    last_used: String,
    audits: String,
}

fn writes(n: usize, dialect: Dialect, issues: bool) -> Writes {
    let mut first = 1;
    let mut next = |params: usize| {
        let at = first;
        first += params;
        at
    };
    let guard = issues.then_some(dialect);
    Writes {
        families: issues.then(|| insert_families(n, next(n * FAMILY_WIDTH), dialect)),
        refreshes: insert_refreshes(n, next(n * REFRESH_WIDTH), guard),
        last_used: update_last_used(n, next(1 + n)),
        audits: insert_audits(n, next(n * AUDIT_WIDTH), guard),
    }
}

/// SQLite: one query of the statements, the first returning the families stored. For a batch of
/// rotations only, without the insert of families, whose RETURNING costs a temporary table even
/// when it inserts nothing (3 % of a refresh's instructions in batches of one or two).
fn sqlite_writes(n: usize, issues: bool) -> String {
    let w = writes(n, Dialect::Sqlite, issues);
    let rest = [w.refreshes, w.last_used, w.audits];
    w.families
        .into_iter()
        .chain(rest)
        .collect::<Vec<_>>()
        .join("; ")
}

/// PostgreSQL, which takes no multi-statement query with parameters: one statement of
/// data-modifying CTEs, returning the families stored. A statement is atomic on its own, so a
/// batch of issues is this one round-trip (it was five: BEGIN, three INSERTs, COMMIT), and a
/// batch with rotations four (BEGIN, the spend, this, COMMIT). The parts see one snapshot:
/// those that need the families stored beside them read them from `families`, and the foreign
/// keys are checked at the end of the statement. The main query reads `families`, so its insert
/// (which locks the client rows) runs first, and PostgreSQL's executor runs the parts nobody
/// reads, the update of `last_used_at` among them, after the main query (its documentation calls
/// the order unpredictable; this is what it does). So a batch locks clients, then families, in
/// the order `client disable` does; were it otherwise, a deadlock would fail the batch, whose
/// calls then run one by one. A batch of rotations only stores no family and returns nothing.
fn postgres_writes(n: usize, issues: bool) -> String {
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

static POSTGRES_WRITES: LazyLock<[String; BUCKETS.len()]> =
    LazyLock::new(|| BUCKETS.map(|n| postgres_writes(n, true)));
static POSTGRES_ROTATION_WRITES: LazyLock<[String; BUCKETS.len()]> =
    LazyLock::new(|| BUCKETS.map(|n| postgres_writes(n, false)));

// SQLite: the transaction's statements go with the first and the last query, so that a batch of
// issues is one round-trip to the connection's thread, and a batch with rotations two (the spend
// must answer before the rest is bound). BEGIN IMMEDIATE: another process holding the file makes
// us wait (busy_timeout), never fail half-way. After a failure the connection is closed, which
// rolls back whatever is open.
static SQLITE_BEGIN_SPEND: LazyLock<[String; BUCKETS.len()]> =
    LazyLock::new(|| sqlite_texts(|n| format!("BEGIN IMMEDIATE; {}", SPEND.postgres[bucket(n)])));
static SQLITE_WRITES_COMMIT: LazyLock<[String; BUCKETS.len()]> =
    LazyLock::new(|| sqlite_texts(|n| format!("{}; COMMIT", sqlite_writes(n, true))));
static SQLITE_ROTATION_WRITES_COMMIT: LazyLock<[String; BUCKETS.len()]> =
    LazyLock::new(|| sqlite_texts(|n| format!("{}; COMMIT", sqlite_writes(n, false))));
static SQLITE_BEGIN_WRITES_COMMIT: LazyLock<[String; BUCKETS.len()]> = LazyLock::new(|| {
    sqlite_texts(|n| format!("BEGIN IMMEDIATE; {}; COMMIT", sqlite_writes(n, true)))
});

/// An audit row of the hot path (never a token or a secret).
struct AuditRow<'a> {
    at: i64,
    event: &'static str,
    client_id: &'a str,
    subject: &'a str,
    family_id: &'a str,
    outcome: &'static str,
}

/// What a batch writes once the spend has decided which rotations won.
#[derive(Default)]
struct Rows<'a> {
    /// Each with the client's verifier its issue authenticated by.
    families: Vec<(&'a FamilyRow, &'a [u8])>,
    refreshes: Vec<&'a NewRefresh>,
    /// Families of the winning rotations, and the latest time of the batch's rotations.
    last_used: Vec<&'a str>,
    now: i64,
    audits: Vec<AuditRow<'a>>,
}

impl<'a> Rows<'a> {
    /// A rotation wins when the spend returned its token, and only the first of the batch's
    /// calls presenting that token wins (the others are reuse, as if they had come after).
    fn decide(calls: &'a [Write], mut spent: HashSet<Vec<u8>>) -> (Self, Vec<Written>) {
        let mut rows = Rows::default();
        let mut written = Vec::with_capacity(calls.len());
        for call in calls {
            match call {
                Write::Open {
                    family,
                    refresh,
                    verifier,
                } => {
                    rows.families.push((family, verifier.as_slice()));
                    rows.refreshes.push(refresh);
                    rows.audits.push(AuditRow {
                        at: family.created_at,
                        event: "issue",
                        client_id: &family.client_id,
                        subject: &family.subject,
                        family_id: &family.family_id,
                        outcome: "issued",
                    });
                    written.push(Written::Open(Opened::Stored));
                }
                Write::Rotate {
                    old_hash,
                    new,
                    now,
                    client_id,
                    subject,
                } => {
                    if !spent.remove(old_hash.as_slice()) {
                        written.push(Written::Rotation(Rotation::Lost));
                        continue;
                    }
                    rows.refreshes.push(new);
                    rows.last_used.push(&new.family_id);
                    rows.now = rows.now.max(*now);
                    rows.audits.push(AuditRow {
                        at: *now,
                        event: "refresh",
                        client_id,
                        subject,
                        family_id: &new.family_id,
                        outcome: "rotated",
                    });
                    written.push(Written::Rotation(Rotation::Rotated));
                }
            }
        }
        (rows, written)
    }
}

/// Binds `$rows` with `|$r| [values]`, then NULLs of `[types]` up to `$n` rows.
macro_rules! bind_rows {
    ($q:ident, $rows:expr, $n:expr, |$r:ident| [$($v:expr),+ $(,)?], [$($t:ty),+ $(,)?]) => {
        for $r in $rows.iter() {
            $($q = $q.bind($v);)+
        }
        for _ in $rows.len()..$n {
            $($q = $q.bind(None::<$t>);)+
        }
    };
}

macro_rules! bind_families {
    ($q:ident, $rows:expr, $n:expr) => {
        bind_rows!(
            $q,
            $rows,
            $n,
            |f| [
                &f.0.family_id,
                &f.0.client_id,
                &f.0.subject,
                &f.0.scope,
                &f.0.audience,
                f.0.created_at,
                f.0.expires_at,
                f.1,
            ],
            [&str, &str, &str, &str, &str, i64, i64, &[u8]]
        );
    };
}

macro_rules! bind_refreshes {
    ($q:ident, $rows:expr, $n:expr) => {
        bind_rows!(
            $q,
            $rows,
            $n,
            |r| [
                r.token_hash.as_slice(),
                &r.jti,
                &r.family_id,
                r.issued_at,
                r.expires_at,
            ],
            [&[u8], &str, &str, i64, i64]
        );
    };
}

macro_rules! bind_last_used {
    ($q:ident, $rows:expr, $n:expr) => {
        $q = $q.bind($rows.now);
        bind_rows!($q, $rows.last_used, $n, |id| [*id], [&str]);
    };
}

macro_rules! bind_audits {
    ($q:ident, $rows:expr, $n:expr) => {
        bind_rows!(
            $q,
            $rows,
            $n,
            |a| [
                a.at,
                a.event,
                a.client_id,
                a.subject,
                a.family_id,
                a.outcome,
            ],
            [i64, &str, &str, &str, &str, &str]
        );
    };
}

/// Runs the spend (`$texts`, by bucket) on `$conn` and returns the hashes it spent.
macro_rules! spend {
    ($conn:expr, $texts:expr, $calls:expr) => {{
        let mut now = i64::MIN;
        let mut hashes = Vec::new();
        for call in $calls {
            if let Write::Rotate {
                old_hash, now: at, ..
            } = call
            {
                hashes.push(old_hash.as_slice());
                now = now.max(*at);
            }
        }
        let mut spent = HashSet::new();
        if !hashes.is_empty() {
            let b = bucket(hashes.len());
            let mut q = sqlx::query($texts[b].as_str()).bind(now);
            bind_rows!(q, hashes, BUCKETS[b], |h| [*h], [&[u8]]);
            for row in q.fetch_all($conn).await? {
                spent.insert(row.try_get::<Vec<u8>, _>("token_hash")?);
            }
        }
        spent
    }};
}

/// Consecutive batches a write task runs on one connection before it lets other writers
/// (revocations, client changes) have the single SQLite write connection.
const HOLD_BATCHES: u32 = 16;

/// Issues and rotations of concurrent requests in one transaction, each answered after its
/// commit (the same durability per answer as a transaction each).
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
            Conn::Sqlite(conn) => sqlite_commit(conn, calls).await?,
            Conn::Postgres(conn) => postgres_commit(conn, calls).await?,
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

/// Binds a batch's writes to a text of [`writes`] for `$n` rows (`rotations_only`: a text
/// without the families).
macro_rules! bind_writes {
    ($q:ident, $rows:expr, $n:expr) => {
        bind_families!($q, $rows.families, $n);
        bind_writes!($q, $rows, $n, rotations_only);
    };
    ($q:ident, $rows:expr, $n:expr, rotations_only) => {
        bind_refreshes!($q, $rows.refreshes, $n);
        bind_last_used!($q, $rows, $n);
        bind_audits!($q, $rows.audits, $n);
    };
}

/// The failure of the statement that commits: a refusal by the database left nothing
/// committed; a connection lost meanwhile leaves the outcome unknown.
fn commit_failure(error: sqlx::Error) -> Failure {
    Failure {
        unconfirmed: !matches!(error, sqlx::Error::Database(_)),
        error: error.into(),
    }
}

/// The answers once the writes committed: an issue whose family the writes did not return was
/// refused by its client's row. Each issue inserts one family at most, so when as many came back
/// as there are issues (nearly always) every one was stored and the ids need not be read.
/// Reading them cannot fail for a committed batch without leaving its answers unknown, hence
/// `unconfirmed`.
fn answers<R: Row>(
    calls: &[Write],
    mut written: Vec<Written>,
    returned: &[R],
) -> Result<Vec<Written>, Failure>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let issues = calls
        .iter()
        .filter(|c| matches!(c, Write::Open { .. }))
        .count();
    if returned.len() == issues {
        return Ok(written);
    }
    let mut stored = HashSet::with_capacity(returned.len());
    for row in returned {
        let family_id: String = row.try_get("family_id").map_err(|e| Failure {
            error: e.into(),
            unconfirmed: true,
        })?;
        stored.insert(family_id);
    }
    for (call, answer) in calls.iter().zip(&mut written) {
        if let Write::Open { family, .. } = call
            && !stored.contains(&family.family_id)
        {
            *answer = Written::Open(Opened::ClientChanged);
        }
    }
    Ok(written)
}

async fn sqlite_commit(
    conn: &mut SqliteConnection,
    calls: &[Write],
) -> Result<Vec<Written>, Failure> {
    let rotates = calls.iter().any(|c| matches!(c, Write::Rotate { .. }));
    let spent = if rotates {
        spend!(&mut *conn, SQLITE_BEGIN_SPEND, calls)
    } else {
        HashSet::new()
    };
    let (rows, written) = Rows::decide(calls, spent);
    let b = bucket(calls.len());
    // Each query ends with COMMIT.
    if rows.families.is_empty() {
        let mut q = sqlx::query(SQLITE_ROTATION_WRITES_COMMIT[b].as_str());
        bind_writes!(q, rows, BUCKETS[b], rotations_only);
        q.execute(&mut *conn).await.map_err(commit_failure)?;
        return Ok(written);
    }
    let text = if rotates {
        &SQLITE_WRITES_COMMIT[b]
    } else {
        &SQLITE_BEGIN_WRITES_COMMIT[b]
    };
    let mut q = sqlx::query(text.as_str());
    bind_writes!(q, rows, BUCKETS[b]);
    let returned = q.fetch_all(&mut *conn).await.map_err(commit_failure)?;
    answers(calls, written, &returned)
}

async fn postgres_commit(
    conn: &mut sqlx::PgConnection,
    calls: &[Write],
) -> Result<Vec<Written>, Failure> {
    let b = bucket(calls.len());
    let rotates = calls.iter().any(|c| matches!(c, Write::Rotate { .. }));
    if !rotates {
        // Issues only: the writes commit on their own, as one statement.
        let (rows, written) = Rows::decide(calls, HashSet::new());
        let mut q = sqlx::query(POSTGRES_WRITES[b].as_str());
        bind_writes!(q, rows, BUCKETS[b]);
        let returned = q.fetch_all(&mut *conn).await.map_err(commit_failure)?;
        return answers(calls, written, &returned);
    }
    let mut tx = conn.begin().await?;
    let spent = spend!(&mut *tx, SPEND.postgres, calls);
    let (rows, written) = Rows::decide(calls, spent);
    if rows.families.is_empty() {
        let mut q = sqlx::query(POSTGRES_ROTATION_WRITES[b].as_str());
        bind_writes!(q, rows, BUCKETS[b], rotations_only);
        q.execute(&mut *tx).await?;
        tx.commit().await.map_err(commit_failure)?;
        return Ok(written);
    }
    let mut q = sqlx::query(POSTGRES_WRITES[b].as_str());
    bind_writes!(q, rows, BUCKETS[b]);
    let returned = q.fetch_all(&mut *tx).await?;
    tx.commit().await.map_err(commit_failure)?;
    answers(calls, written, &returned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fit_every_batch_size() {
        for n in 1..=MAX_BATCH {
            let b = bucket(n);
            assert!(BUCKETS[b] >= n, "{n}");
            assert!(b == 0 || BUCKETS[b - 1] < n, "{n}");
        }
    }

    /// Every statement of the hot path, in both forms.
    static ALL: [&Texts; 4] = [&CLIENTS, &FAMILY_STATES, &REFRESH_VIEWS, &SPEND];

    /// The `$N` of a text, in the order they appear.
    fn numbers(text: &str) -> Vec<usize> {
        text.split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }

    /// SQLite gets `?` in place of `$N`, bound in the order they appear: so every text must
    /// number its parameters 1, 2, 3... in that order, across the statements of a query too.
    #[test]
    fn parameters_are_numbered_in_the_order_they_appear() {
        let mut checked: Vec<String> = ALL.iter().flat_map(|t| t.postgres.clone()).collect();
        for issues in [true, false] {
            checked.extend(BUCKETS.map(|n| sqlite_writes(n, issues)));
            checked.extend(BUCKETS.map(|n| postgres_writes(n, issues)));
        }
        for text in &checked {
            let n = numbers(text);
            assert_eq!(n, (1..=n.len()).collect::<Vec<_>>(), "{text}");
            assert_eq!(anonymous(text).matches('?').count(), n.len(), "{text}");
        }
        let text = sqlite_writes(4, true);
        let total = 4 * (FAMILY_WIDTH + REFRESH_WIDTH + 1 + AUDIT_WIDTH) + 1;
        assert_eq!(numbers(&text).len(), total);
        assert_eq!(text.matches("; ").count(), 3);
        let rotations = sqlite_writes(4, false);
        assert_eq!(numbers(&rotations).len(), total - 4 * FAMILY_WIDTH);
        assert_eq!(rotations.matches("; ").count(), 2);
        assert!(rotations.starts_with("INSERT INTO refresh_tokens"));
        assert_eq!(anonymous("a $1, $23 b$ c$x"), "a ?, ? b$ c$x");
    }

    /// The planner must find rows by key: a statement that scans a table costs time in
    /// proportion to the table (SQLite 3.46 planned the first spend, a join with a VALUES list,
    /// as a scan of refresh_tokens, and refresh fell to 1/40th after 30,000 issues).
    #[tokio::test]
    async fn sqlite_finds_every_row_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("plans.db").display());
        let db = super::super::Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        let Pools::Sqlite { write, .. } = db.pools() else {
            unreachable!("a sqlite URL")
        };
        // Each statement of the writes on its own (EXPLAIN shows the first of a query only).
        let writes: Vec<String> = BUCKETS
            .iter()
            .flat_map(|&n| {
                let w = writes(n, Dialect::Sqlite, true);
                w.families
                    .into_iter()
                    .chain([w.refreshes, w.last_used, w.audits])
            })
            .chain(BUCKETS.map(|n| writes(n, Dialect::Sqlite, false).refreshes))
            .map(|w| anonymous(&w))
            .collect();
        let all = ALL
            .iter()
            .map(|t| t.sqlite.as_slice())
            .chain([writes.as_slice()]);
        for texts in all {
            for sql in texts {
                let explain = format!("EXPLAIN QUERY PLAN {sql}");
                let mut q = sqlx::query(&explain);
                for _ in 0..sql.matches('?').count() {
                    q = q.bind(None::<i64>);
                }
                let plan: Vec<String> = q
                    .fetch_all(write)
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get::<String, _>("detail"))
                    .collect();
                let scans = |t: &str| {
                    plan.iter().any(|step| {
                        step == &format!("SCAN {t}") || step.starts_with(&format!("SCAN {t} "))
                    })
                };
                // An insert of several families plans the foreign key's scan of refresh_tokens
                // for child rows, but its bytecode runs it only while the statement has a
                // violation outstanding (OP_FkIfZero): only in a batch that fails anyway. No
                // index serves it since migration 0003, because nothing else would read it.
                let fk_scan = |t: &str| {
                    t == "refresh_tokens" && sql.starts_with("INSERT INTO token_families")
                };
                for table in ["clients", "token_families", "refresh_tokens", "r", "f", "c"] {
                    assert!(!scans(table) || fk_scan(table), "{sql}\n{plan:#?}");
                }
            }
        }
        db.close().await;
    }

    /// Fails unless every read of `clients`, `token_families` or `refresh_tokens` in a
    /// PostgreSQL plan (`EXPLAIN (COSTS OFF)`, one line each) is by key, and there is one at
    /// least (so that a plan this does not parse cannot pass).
    fn assert_reads_by_key(sql: &str, lines: &[String]) {
        let mut reads = 0;
        for (i, line) in lines.iter().enumerate() {
            let Some((node, rest)) = line.split_once(" on ") else {
                continue;
            };
            let table = rest.split_whitespace().next().unwrap_or_default();
            if !node.contains("Scan")
                || !["clients", "token_families", "refresh_tokens"].contains(&table)
            {
                continue;
            }
            // A node's own details follow it, up to its first child or subplan.
            let mut details = lines[i + 1..].iter().map(|l| l.trim()).take_while(|l| {
                !l.starts_with("->") && !l.starts_with("SubPlan") && !l.starts_with("CTE ")
            });
            let by_key = match node.trim().trim_start_matches("->  ") {
                n if n.starts_with("Index Scan") || n.starts_with("Index Only Scan") => {
                    details.any(|l| l.starts_with("Index Cond:"))
                }
                // Its child, a Bitmap Index Scan, has the condition.
                n => n.starts_with("Bitmap Heap Scan"),
            };
            assert!(
                by_key,
                "{table} is not read by key:\n{sql}\n{}",
                lines.join("\n")
            );
            reads += 1;
        }
        assert!(reads > 0, "no read found:\n{sql}\n{}", lines.join("\n"));
    }

    /// PostgreSQL's plans, like SQLite's above, for every text of the hot path. PostgreSQL scans
    /// a table of a few pages whatever the statement, so the tables are filled and analysed
    /// first; each text is planned as the pool plans it (a custom plan for each execution, see
    /// `Db::connect`), with a batch bound as the hot path binds it. Section 5g of
    /// docs/benchmarks.md: a first form of the write's guard, `IN (SELECT ...) OR IN (SELECT
    /// ...)`, hashed the whole of token_families for every batch, and refresh fell to a fifth.
    #[tokio::test]
    async fn postgres_finds_every_row_by_key() {
        let Some(base) = std::env::var("IDENTITY_TEST_POSTGRES_URL")
            .ok()
            .filter(|s| !s.is_empty())
        else {
            eprintln!("IDENTITY_TEST_POSTGRES_URL is not set: skipping the PostgreSQL plan test");
            return;
        };
        let schema = format!(
            "idapi_t_{}_{}",
            crate::now(),
            crate::secret::random_id()
                .to_ascii_lowercase()
                .replace(['-', '_'], "x")
        );
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("IDENTITY_TEST_POSTGRES_URL is set but unreachable: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options[search_path]={schema}");
        let db = super::super::Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        let Pools::Postgres(pool) = db.pools() else {
            unreachable!("a postgres URL")
        };
        for fill in [
            "INSERT INTO clients \
             SELECT 'client-' || i, sha256(i::text::bytea), 's', 'a', TRUE, 0, 0 \
             FROM generate_series(1, 50000) i",
            "INSERT INTO token_families (family_id, client_id, subject, scope, audience, \
             created_at, expires_at, last_used_at) \
             SELECT 'family-' || i, 'client-' || i, 's', 's', 'a', 0, 0, 0 \
             FROM generate_series(1, 50000) i",
            "INSERT INTO refresh_tokens (token_hash, jti, family_id, issued_at, expires_at) \
             SELECT sha256(i::text::bytea), 'j', 'family-' || i, 0, 0 \
             FROM generate_series(1, 50000) i",
            "ANALYZE clients, token_families, refresh_tokens",
        ] {
            sqlx::query(fill).execute(pool).await.unwrap();
        }

        // A batch of `n` ids, half of them of rows that exist.
        let ids = |prefix: &str, n: usize| -> Vec<String> {
            (0..n)
                .map(|i| match i % 2 {
                    0 => format!("{prefix}-{}", i + 1),
                    _ => format!("{prefix}-new-{i}"),
                })
                .collect()
        };
        let hash = |i: usize| -> [u8; 32] {
            let mut h = [0; 32];
            h[..8].copy_from_slice(&(i as u64).to_be_bytes());
            h
        };
        let refresh = |family_id: &str, i: usize| NewRefresh {
            token_hash: hash(i),
            jti: format!("jti-{i}"),
            family_id: family_id.to_owned(),
            issued_at: 1,
            expires_at: 2,
        };
        let issue = |i: usize| Write::Open {
            family: FamilyRow {
                family_id: format!("family-new-{i}"),
                client_id: format!("client-{}", i + 1),
                subject: "s".into(),
                scope: "s".into(),
                audience: "a".into(),
                created_at: 1,
                expires_at: 2,
                revoked_at: None,
            },
            refresh: refresh(&format!("family-new-{i}"), i),
            verifier: vec![0; 32],
        };
        let rotation = |i: usize| Write::Rotate {
            old_hash: hash(i + 1_000_000),
            new: refresh(&format!("family-{}", i + 1), i),
            now: 1,
            client_id: "client-1".into(),
            subject: "s".into(),
        };

        let mut checked = 0;
        let mut plan_of =
            async |sql: &str, q: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>| {
                let lines: Vec<String> = q
                    .fetch_all(pool)
                    .await
                    .unwrap_or_else(|e| panic!("{e}\n{sql}"))
                    .iter()
                    .map(|row| row.get::<String, _>(0))
                    .collect();
                assert_reads_by_key(sql, &lines);
                checked += 1;
            };
        for (b, &n) in BUCKETS.iter().enumerate() {
            let (clients, families) = (ids("client", n), ids("family", n));
            let tokens: Vec<[u8; 32]> = (0..n).map(hash).collect();
            for (texts, keys) in [(&CLIENTS, &clients), (&FAMILY_STATES, &families)] {
                let sql = format!("EXPLAIN (COSTS OFF) {}", texts.postgres[b]);
                let mut q = sqlx::query(&sql);
                for key in keys {
                    q = q.bind(key);
                }
                plan_of(&sql, q).await;
            }
            for (texts, now) in [(&REFRESH_VIEWS, None), (&SPEND, Some(1_i64))] {
                let sql = format!("EXPLAIN (COSTS OFF) {}", texts.postgres[b]);
                let mut q = sqlx::query(&sql);
                if let Some(now) = now {
                    q = q.bind(now);
                }
                for hash in &tokens {
                    q = q.bind(hash.as_slice());
                }
                plan_of(&sql, q).await;
            }
            // Issues only (a full bucket, and half of one, padded with NULLs), issues beside
            // rotations, rotations only: every rotation wins.
            let batches: [Vec<Write>; 4] = [
                (0..n).map(issue).collect(),
                (0..n.div_ceil(2)).map(issue).collect(),
                (0..n)
                    .map(|i| if i % 2 == 0 { issue(i) } else { rotation(i) })
                    .collect(),
                (0..n).map(rotation).collect(),
            ];
            for calls in &batches {
                let spent = calls
                    .iter()
                    .filter_map(|c| match c {
                        Write::Rotate { old_hash, .. } => Some(old_hash.to_vec()),
                        Write::Open { .. } => None,
                    })
                    .collect();
                let (rows, _) = Rows::decide(calls, spent);
                if rows.families.is_empty() {
                    let sql = format!("EXPLAIN (COSTS OFF) {}", POSTGRES_ROTATION_WRITES[b]);
                    let mut q = sqlx::query(&sql);
                    bind_writes!(q, rows, n, rotations_only);
                    plan_of(&sql, q).await;
                } else {
                    let sql = format!("EXPLAIN (COSTS OFF) {}", POSTGRES_WRITES[b]);
                    let mut q = sqlx::query(&sql);
                    bind_writes!(q, rows, n);
                    plan_of(&sql, q).await;
                }
            }
        }
        assert_eq!(checked, BUCKETS.len() * 8);
        db.close().await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
