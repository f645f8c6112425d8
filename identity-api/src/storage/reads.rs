//! The reads every request makes, batched (see [`batch`](super::batch)): a client by id, a
//! family's state by id, a refresh token (joined with its family) by its lookup key. Each batch
//! is one `IN (...)` query of the batch's distinct keys, padded to its bucket by repeating the
//! first key (a repeat matches nothing new).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::LazyLock;

use sqlx::Row as _;

use super::batch::{Batch, Failure};
use super::error::StoreError;
use super::kept::{Conn, Kept, Side};
use super::pool::Pools;
use super::rows::{ClientRow, FamilyRow, RefreshRow, RefreshView};
use super::scope::TenantId;
use super::sql::{BUCKETS, Dialects, bucket, placeholders};

/// Runs `$body` on the kept connection `$c` of either driver, with `$text` that driver's text of
/// `$dialects` for bucket `$b`.
macro_rules! on_kept {
    ($kept:expr, $dialects:expr, $b:expr, |$c:ident, $text:ident| $body:expr) => {
        match $kept.conn().await? {
            Conn::Sqlite($c) => {
                let $text = $dialects.sqlite[$b].as_str();
                $body
            }
            Conn::Postgres($c) => {
                let $text = $dialects.postgres[$b].as_str();
                $body
            }
        }
    };
}

/// Rows of a disabled tenant are not found: its clients cannot authenticate and its tokens
/// are inactive from the moment it is disabled, on every replica. The tenant is found by key.
const ENABLED_TENANT: &str =
    "EXISTS (SELECT 1 FROM tenants t WHERE t.tenant_id = c.tenant_id AND t.enabled = TRUE)";

static CLIENTS: LazyLock<Dialects> = LazyLock::new(|| {
    Dialects::new(|n| {
        format!(
            "SELECT {} FROM clients c WHERE c.client_id IN ({}) AND {ENABLED_TENANT}",
            ClientRow::column_list("c"),
            placeholders(n, 1)
        )
    })
});

static FAMILY_STATES: LazyLock<Dialects> = LazyLock::new(|| {
    Dialects::new(|n| {
        format!(
            "SELECT f.family_id, f.revoked_at, f.tenant_id FROM token_families f \
             WHERE f.family_id IN ({}) AND {}",
            placeholders(n, 1),
            ENABLED_TENANT.replace("c.", "f.")
        )
    })
});

static REFRESH_VIEWS: LazyLock<Dialects> = LazyLock::new(|| {
    Dialects::new(|n| {
        format!(
            "SELECT {}, {} FROM refresh_tokens r JOIN token_families f \
             ON f.family_id = r.family_id WHERE r.token_hash IN ({}) AND {}",
            RefreshRow::column_list("r"),
            FamilyRow::column_list("f"),
            placeholders(n, 1),
            ENABLED_TENANT.replace("c.", "f.")
        )
    })
});

/// Every read text, for the tests of plans and parameter numbering.
#[cfg(test)]
pub fn all_texts() -> [&'static Dialects; 3] {
    [&CLIENTS, &FAMILY_STATES, &REFRESH_VIEWS]
}

/// The distinct keys of a batch (as indices into `keys`), and the bucket that holds them.
fn distinct<K: Ord + ?Sized>(keys: &[&K]) -> (Vec<usize>, usize) {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(keys[b]));
    order.dedup_by(|a, b| keys[*a] == keys[*b]);
    let b = bucket(order.len());
    (order, b)
}

/// Runs `$dialects`' text for the batch's distinct `$keys` (a `Vec` of references), padded with
/// the first, and collects `$decode(row) -> Result<(key, value), sqlx::Error>` into a map.
macro_rules! lookup {
    ($kept:expr, $dialects:expr, $keys:expr, |$row:ident| $decode:expr) => {{
        let keys = $keys;
        let (order, b) = distinct(&keys);
        let padded = order
            .iter()
            .map(|&i| keys[i])
            .chain(std::iter::repeat(keys[order[0]]))
            .take(BUCKETS[b]);
        on_kept!($kept, $dialects, b, |conn, text| {
            let mut q = sqlx::query(text);
            for key in padded {
                q = q.bind(key);
            }
            let mut found = HashMap::with_capacity(order.len());
            for $row in q.fetch_all(&mut **conn).await? {
                let (k, v) = $decode?;
                found.insert(k, v);
            }
            found
        })
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

/// Each call's answer from the map of what was found.
fn answers<C, K, Q, V>(calls: &[C], found: &HashMap<K, V>, key: impl Fn(&C) -> &Q) -> Vec<Option<V>>
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ?Sized,
    V: Clone,
{
    calls.iter().map(|c| found.get(key(c)).cloned()).collect()
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
        let found: HashMap<String, ClientRow> = lookup!(kept, CLIENTS, keys, |row| {
            ClientRow::decode_at(&row, 0).map(|c| (c.client_id.clone(), c))
        });
        Ok(answers(ids, &found, |id| id))
    }
}

/// `Db::family_revoked`, batched: `Some((tenant, revoked))`, or `None` for an unknown family
/// (or one of a disabled tenant).
#[derive(Debug)]
pub struct FamilyStates;

impl Lookup for FamilyStates {
    type Call = String;
    type Answer = Option<(TenantId, bool)>;

    async fn run(
        &self,
        kept: &mut Kept,
        ids: &[String],
    ) -> Result<Vec<Option<(TenantId, bool)>>, StoreError> {
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        let found: HashMap<String, (TenantId, bool)> = lookup!(kept, FAMILY_STATES, keys, |row| {
            let family_id = row.try_get::<String, _>(0);
            let revoked_at = row.try_get::<Option<i64>, _>(1);
            let tenant = row.try_get::<TenantId, _>(2);
            family_id.and_then(|id| Ok((id, (tenant?, revoked_at?.is_some()))))
        });
        Ok(answers(ids, &found, |id| id))
    }
}

/// `Db::refresh_token`, batched: a refresh token (by its lookup key) joined with its family.
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
        let found: HashMap<Vec<u8>, RefreshView> = lookup!(kept, REFRESH_VIEWS, keys, |row| {
            RefreshView::decode(&row).map(|v| (v.token.token_hash.clone(), v))
        });
        Ok(answers(hashes, &found, |h| h.as_slice()))
    }
}
