//! API keys: create, find by `key_id` with their user, list, revoke, rotate; and their
//! `last_used_at`, written in coalesced batches rather than once per validation.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use super::audit::INSERT as INSERT_AUDIT;
use super::error::StoreError;
use super::pool::Pools;
use super::rows::{ApiKeyRow, AuditRow, UserRow};
use super::scope::TenantId;
use super::sql::{BUCKETS, bucket};

/// Keys one statement of [`LastUsed::flush`] writes at most: the largest bucket.
const MAX_KEYS: usize = BUCKETS[BUCKETS.len() - 1];

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO api_keys ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        ApiKeyRow::column_list(""),
        super::sql::placeholders(ApiKeyRow::WIDTH, 1)
    )
});

/// The key and its user in one read, by primary key.
static WITH_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {} FROM api_keys k JOIN users u ON u.user_id = k.user_id \
         WHERE k.key_id = $1 AND k.tenant_id = $2",
        ApiKeyRow::column_list("k"),
        UserRow::column_list("u")
    )
});

static BY_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM api_keys WHERE tenant_id = $1 AND user_id = $2 \
         ORDER BY created_at, key_id",
        ApiKeyRow::column_list("")
    )
});

static BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM api_keys WHERE key_id = $1 AND tenant_id = $2",
        ApiKeyRow::column_list("")
    )
});

/// [`StoreError::Conflict`] (nothing written) when the `key_id` is taken.
pub async fn insert(pools: &Pools, row: &ApiKeyRow, audit: &AuditRow) -> Result<(), StoreError> {
    transaction!(pools, tx => {
        let n = row.bind(sqlx::query(&INSERT)).execute(&mut *tx).await?.rows_affected();
        if n != 1 {
            return Err(StoreError::Conflict);
        }
        audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    })
}

pub async fn with_user(
    pools: &Pools,
    tenant: &TenantId,
    key_id: &str,
) -> Result<Option<(ApiKeyRow, UserRow)>, StoreError> {
    reader!(pools, p => {
        let row = sqlx::query(&WITH_USER).bind(key_id).bind(tenant).fetch_optional(p).await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((ApiKeyRow::decode_at(&r, 0)?, UserRow::decode_at(&r, ApiKeyRow::WIDTH)?)))
            .transpose()?)
    })
}

pub async fn by_id(
    pools: &Pools,
    tenant: &TenantId,
    key_id: &str,
) -> Result<Option<ApiKeyRow>, StoreError> {
    reader!(pools, p => {
        let row = sqlx::query(&BY_ID).bind(key_id).bind(tenant).fetch_optional(p).await?;
        Ok(row.map(|r| ApiKeyRow::decode_at(&r, 0)).transpose()?)
    })
}

pub async fn of_user(
    pools: &Pools,
    tenant: &TenantId,
    user_id: &str,
) -> Result<Vec<ApiKeyRow>, StoreError> {
    reader!(pools, p => {
        let rows = sqlx::query(&BY_USER).bind(tenant).bind(user_id).fetch_all(p).await?;
        Ok(rows.iter().map(|r| ApiKeyRow::decode_at(r, 0)).collect::<Result<_, _>>()?)
    })
}

/// Revokes a key not revoked yet and writes `audit`, in one transaction. Returns the row as it
/// was, or `None` when there is no such key; nothing is written when it was revoked already.
pub async fn revoke(
    pools: &Pools,
    tenant: &TenantId,
    key_id: &str,
    now: i64,
    audit: &AuditRow,
) -> Result<Option<ApiKeyRow>, StoreError> {
    transaction!(pools, tx => {
        let row = sqlx::query(&BY_ID).bind(key_id).bind(tenant).fetch_optional(&mut *tx).await?;
        let Some(before) = row.map(|r| ApiKeyRow::decode_at(&r, 0)).transpose()? else {
            return Ok(None);
        };
        if before.revoked_at.is_some() {
            return Ok(Some(before));
        }
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(before))
    })
}

/// Replaces the key `old` of `tenant` by `new` and writes `audit`, in one transaction: the old
/// key works until `old_until` (exclusive), or is revoked at `now` when that is `None`. Only a
/// key neither revoked nor replaced before is replaced: false (nothing written) otherwise, so
/// that of concurrent rotations of one key exactly one succeeds.
pub async fn rotate(
    pools: &Pools,
    tenant: &TenantId,
    old: &str,
    new: &ApiKeyRow,
    now: i64,
    old_until: Option<i64>,
    audit: &AuditRow,
) -> Result<bool, StoreError> {
    transaction!(pools, tx => {
        let n = sqlx::query(
            "UPDATE api_keys SET expires_at = $1, revoked_at = $2 WHERE key_id = $3 \
             AND tenant_id = $4 AND revoked_at IS NULL AND expires_at IS NULL",
        )
        .bind(old_until)
        .bind(old_until.is_none().then_some(now))
        .bind(old)
        .bind(tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        let n = new.bind(sqlx::query(&INSERT)).execute(&mut *tx).await?.rows_affected();
        if n != 1 {
            return Err(StoreError::Conflict);
        }
        audit.bind(sqlx::query(&INSERT_AUDIT)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}

// ---- last_used_at, coalesced ----

/// The uses of API keys not yet written: `key_id` to the latest time. Validations only record
/// here; a task writes them every [`LastUsed::FLUSH_EVERY`], a statement per up to 64 keys, and
/// `Db::close` writes what is left. So `last_used_at` lags by at most that much (or is lost
/// with a crash), and a validation never waits for a write.
#[derive(Debug, Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<String, i64>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl LastUsed {
    pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
    /// Keys held at most between two writes; uses beyond are not recorded (a flood of distinct
    /// keys cannot grow memory).
    pub const CAPACITY: usize = 100_000;

    /// Records a use of `key_id` at `at`; starts the writing task on the first use.
    pub fn record(self: &Arc<Self>, pools: &Pools, key_id: &str, at: i64) {
        if let Ok(mut pending) = self.pending.lock() {
            let room = pending.len() < Self::CAPACITY;
            match pending.get_mut(key_id) {
                Some(t) => *t = (*t).max(at),
                None if room => {
                    pending.insert(key_id.to_owned(), at);
                }
                None => {}
            }
        }
        let Ok(mut task) = self.task.lock() else {
            return;
        };
        if task.is_none()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let this = Arc::clone(self);
            let pools = pools.clone();
            *task = Some(runtime.spawn(async move {
                let mut tick = tokio::time::interval(Self::FLUSH_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(error) = this.flush(&pools).await {
                        tracing::warn!(%error, "writing the API keys' last use failed; retried");
                    }
                }
            }));
        }
    }

    /// Writes every recorded use. Uses not written (an error, or the flush dropped midway,
    /// as when its task is stopped) go back for the next time.
    pub async fn flush(&self, pools: &Pools) -> Result<usize, StoreError> {
        let uses: Vec<(String, i64)> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return Ok(0),
        };
        let mut taken = Taken {
            uses,
            written: 0,
            back: &self.pending,
        };
        let total = taken.uses.len();
        while taken.written < total {
            let end = total.min(taken.written + MAX_KEYS);
            write_uses(pools, &taken.uses[taken.written..end]).await?;
            taken.written = end;
        }
        Ok(total)
    }

    /// Stops the writing task and waits until it has let go of what it was writing (the caller
    /// flushes after).
    pub async fn stop(&self) {
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Uses taken out to be written: those past `written` go back on drop.
struct Taken<'a> {
    uses: Vec<(String, i64)>,
    written: usize,
    back: &'a Mutex<HashMap<String, i64>>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let Some(left) = self.uses.get(self.written..).filter(|l| !l.is_empty()) else {
            return;
        };
        if let Ok(mut pending) = self.back.lock() {
            for (key_id, at) in left {
                let t = pending.entry(key_id.clone()).or_insert(*at);
                *t = (*t).max(*at);
            }
        }
    }
}

/// `UPDATE ... SET last_used_at = CASE key_id WHEN $1 THEN $2 ... END`, for a bucket of `n`
/// keys (padded with NULLs, which match nothing). Never moves a time back: another replica may
/// have written a later one.
fn uses_text(n: usize) -> String {
    let mut case = String::from("CASE key_id");
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let (k, t) = (2 * i + 1, 2 * i + 2);
        case.push_str(&format!(" WHEN ${k} THEN CAST(${t} AS BIGINT)"));
        ids.push(format!("${k}"));
    }
    case.push_str(" END");
    format!(
        "UPDATE api_keys SET last_used_at = {case} WHERE key_id IN ({}) \
         AND (last_used_at IS NULL OR last_used_at < {case})",
        ids.join(", ")
    )
}

static USES: LazyLock<[String; BUCKETS.len()]> = LazyLock::new(|| BUCKETS.map(uses_text));

async fn write_uses(pools: &Pools, uses: &[(String, i64)]) -> Result<(), StoreError> {
    let b = bucket(uses.len());
    let pad = BUCKETS[b].saturating_sub(uses.len());
    writer!(pools, p => {
        let mut q = sqlx::query(&USES[b]);
        for (key_id, at) in uses {
            q = q.bind(key_id.as_str()).bind(*at);
        }
        for _ in 0..pad {
            q = q.bind(None::<&str>).bind(None::<i64>);
        }
        q.execute(p).await?;
        Ok(())
    })
}

/// The facade's API-key methods (see the functions above).
impl super::Db {
    pub async fn insert_api_key(
        &self,
        row: &ApiKeyRow,
        audit: &AuditRow,
    ) -> Result<(), StoreError> {
        insert(&self.pools, row, audit).await
    }

    /// The key `key_id` of `tenant` with its user: one read by primary key.
    pub async fn api_key_with_user(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<(ApiKeyRow, UserRow)>, StoreError> {
        with_user(&self.pools, tenant, key_id).await
    }

    pub async fn api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
    ) -> Result<Option<ApiKeyRow>, StoreError> {
        by_id(&self.pools, tenant, key_id).await
    }

    /// The user's keys, oldest first (only their verifiers are stored).
    pub async fn api_keys_of(
        &self,
        tenant: &TenantId,
        user_id: &str,
    ) -> Result<Vec<ApiKeyRow>, StoreError> {
        of_user(&self.pools, tenant, user_id).await
    }

    pub async fn revoke_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        now: i64,
        audit: &AuditRow,
    ) -> Result<Option<ApiKeyRow>, StoreError> {
        revoke(&self.pools, tenant, key_id, now, audit).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn rotate_api_key(
        &self,
        tenant: &TenantId,
        old: &str,
        new: &ApiKeyRow,
        now: i64,
        old_until: Option<i64>,
        audit: &AuditRow,
    ) -> Result<bool, StoreError> {
        rotate(&self.pools, tenant, old, new, now, old_until, audit).await
    }

    /// Records a use of a key, written later ([`LastUsed`]).
    pub fn record_api_key_use(&self, key_id: &str, at: i64) {
        self.hot.last_used.record(&self.pools, key_id, at);
    }

    /// Writes the uses recorded so far now; returns how many keys.
    pub async fn flush_api_key_uses(&self) -> Result<usize, StoreError> {
        self.hot.last_used.flush(&self.pools).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flush dropped midway (its task stopped at shutdown) gives back what it did not write,
    /// for `Db::close`'s own flush to write.
    #[test]
    fn uses_not_written_go_back() {
        let pending = Mutex::new(HashMap::from([("k2".to_owned(), 50)]));
        let taken = Taken {
            uses: vec![("k1".into(), 10), ("k2".into(), 20), ("k3".into(), 30)],
            written: 1,
            back: &pending,
        };
        drop(taken);
        let pending = pending.into_inner().unwrap_or_default();
        assert_eq!(
            pending,
            HashMap::from([("k2".to_owned(), 50), ("k3".to_owned(), 30)])
        );
    }
}
