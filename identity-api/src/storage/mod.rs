//! Storage over SQLite (embedded default) and PostgreSQL, the same SQL text on both.
//!
//! From the bottom up:
//! - `error`: what the storage fails with ([`StoreError`]);
//! - [`rows`]: every table's row, declared once (struct, columns, mapper, binding);
//! - `pool`: the pools of either database, migrations, and the macros that pick a pool;
//!   `sqlite_file`: SQLite's files, owner-only;
//! - `sql`: SQL text sized to a batch's bucket, in both databases' forms;
//! - [`batch`]: natural batching of concurrent calls, and its counters;
//! - `kept`, `reads`, `commit`: the hot path, batched: the three reads every request makes, and
//!   the group commit of issues and rotations (one module per database);
//! - `audit`, `clients`, `keys`, `families`, `users`, `user_admin`, `logins` (failed logins),
//!   `mfa` (TOTP and recovery codes), `api_keys`: the cold queries; `purge`: what has ended,
//!   deleted.
//!
//! [`Db`] is the facade the rest of the crate uses; it owns the pools and the batch tasks.

#[macro_use]
mod pool;

mod api_keys;
mod audit;
pub mod batch;
mod clients;
mod commit;
mod error;
mod families;
mod kept;
mod keys;
mod logins;
mod mfa;
mod purge;
mod reads;
pub mod rows;
mod scope;
mod sql;
mod sqlite_file;
mod tenants;
mod user_admin;
mod users;

use std::sync::Arc;

pub use self::audit::{AuditEvent, AuditQuery, Order};
pub use self::batch::{BatchMetrics, Counts};
pub use self::clients::ClientChange;
pub use self::commit::{ClientSeen, Opened, Rotation};
pub use self::error::StoreError;
pub use self::keys::{SealedRow, WrappedTable};
pub use self::logins::{FailureCount, FailureLimits, MAX_LOGIN_WINDOW_SECS};
pub use self::pool::Pools;
pub use self::purge::{AUDIT_BATCH as PURGE_BATCH, PurgeLock, WINDOW as PURGE_WINDOW, Window};
pub use self::rows::{
    AdminEvent, ApiKeyRow, AuditRow, ClientRow, FamilyRow, LoginFailureRow, RefreshRow,
    RefreshView, RequestEvent, RoleRow, SigningKeyRow, TenantRow, UserRow, WrappedKeyRow,
};
pub use self::scope::{DEFAULT_TENANT, InvalidTenant, Scope, TenantId};
pub use self::user_admin::{CredentialCounts, MfaReset, Unlocked};
pub use self::users::UserChange;

use self::batch::Batcher;
use self::commit::{GroupCommit, Write, Written};
use self::reads::{Reads, RefreshViews};

/// The database: its pools and the batches of the hot path, which run on tasks of the tokio
/// runtime that connected (as sqlx's own connections do).
#[derive(Clone, Debug)]
pub struct Db {
    pools: Pools,
    hot: Arc<HotPath>,
}

#[derive(Debug)]
struct HotPath {
    clients: Batcher<Reads<reads::Clients>>,
    family_states: Batcher<Reads<reads::FamilyStates>>,
    refresh_views: Batcher<Reads<RefreshViews>>,
    writes: Batcher<GroupCommit>,
    /// The API keys' uses, written in batches (`api_keys::LastUsed`).
    last_used: Arc<api_keys::LastUsed>,
    metrics: BatchMetrics,
}

impl Db {
    /// `sqlite://path` (created if missing) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self::new(Pools::connect(url).await?))
    }

    fn new(pools: Pools) -> Self {
        let metrics = BatchMetrics::default();
        let hot = HotPath {
            clients: Batcher::spawn(
                Reads::new(pools.clone(), reads::Clients),
                metrics.counts("clients"),
            ),
            family_states: Batcher::spawn(
                Reads::new(pools.clone(), reads::FamilyStates),
                metrics.counts("family_states"),
            ),
            refresh_views: Batcher::spawn(
                Reads::new(pools.clone(), RefreshViews),
                metrics.counts("refresh_views"),
            ),
            writes: Batcher::spawn(GroupCommit::new(pools.clone()), metrics.counts("writes")),
            last_used: Arc::default(),
            metrics,
        };
        Self {
            pools,
            hot: Arc::new(hot),
        }
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// What the hot path's batches did (registered on /metrics by `metrics::Metrics`).
    pub fn batch_metrics(&self) -> &BatchMetrics {
        &self.hot.metrics
    }

    pub fn kind(&self) -> &'static str {
        self.pools.kind()
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.pools.migrate().await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pools.ping().await
    }

    pub async fn close(&self) {
        // The batch tasks keep connections: they must let go, or closing a pool waits forever.
        let hot = &self.hot;
        hot.last_used.stop().await;
        if let Err(error) = hot.last_used.flush(&self.pools).await {
            tracing::warn!(%error, "the API keys' last uses were not written");
        }
        hot.clients.stop();
        hot.family_states.stop();
        hot.refresh_views.stop();
        hot.writes.stop();
        self.pools.close().await;
    }

    // ---- tenants ----

    /// See [`tenants::ensure_default`].
    pub async fn ensure_default_tenant(&self, default: &TenantRow) -> Result<bool, StoreError> {
        tenants::ensure_default(&self.pools, default).await
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        tenants::all(&self.pools).await
    }

    /// See [`tenants::insert`].
    pub async fn insert_tenant(&self, row: &TenantRow, audit: &AuditRow) -> Result<(), StoreError> {
        tenants::insert(&self.pools, row, audit).await
    }

    /// See [`tenants::set_enabled`].
    pub async fn set_tenant_enabled(
        &self,
        tenant: &TenantId,
        enabled: bool,
        now: i64,
        audit: &AuditRow,
    ) -> Result<bool, StoreError> {
        tenants::set_enabled(&self.pools, tenant, enabled, now, audit).await
    }

    // ---- clients ----

    /// Creates a client and writes `audit`, in one transaction; [`StoreError::Conflict`] (and
    /// nothing written) when a client of that id exists.
    pub async fn insert_client(&self, row: &ClientRow, audit: &AuditRow) -> Result<(), StoreError> {
        clients::insert(&self.pools, row, audit).await
    }

    /// One client by id, in `scope`, of an enabled tenant (batched with concurrent lookups).
    pub async fn client(
        &self,
        scope: Scope<'_>,
        client_id: &str,
    ) -> Result<Option<ClientRow>, StoreError> {
        let row = self.hot.clients.call(client_id.to_owned()).await?;
        Ok(row.filter(|r| scope.admits(&r.tenant_id)))
    }

    /// See [`clients::tenant_of`].
    pub async fn client_tenant(
        &self,
        scope: Scope<'_>,
        client_id: &str,
    ) -> Result<Option<TenantId>, StoreError> {
        clients::tenant_of(&self.pools, scope, client_id).await
    }

    /// The clients in `scope`, disabled ones too, by tenant then id.
    pub async fn clients(&self, scope: Scope<'_>) -> Result<Vec<ClientRow>, StoreError> {
        clients::all(&self.pools, scope).await
    }

    /// Replaces the secret's verifier (the one replaced stays accepted until `previous_until`,
    /// if given) and writes `audit`, in one transaction; returns false (nothing written) when
    /// the client does not exist.
    pub async fn set_client_verifier(
        &self,
        scope: Scope<'_>,
        client_id: &str,
        verifier: &[u8],
        now: i64,
        previous_until: Option<i64>,
        audit: &AuditRow,
    ) -> Result<bool, StoreError> {
        clients::set_verifier(
            &self.pools,
            scope,
            client_id,
            verifier,
            now,
            previous_until,
            audit,
        )
        .await
    }

    /// Changes what the client may do (`change`: `None` keeps a value) and writes
    /// `audit(row before)`, in one transaction; the row after, or `None` (nothing written) when
    /// the client does not exist.
    pub async fn update_client(
        &self,
        scope: Scope<'_>,
        client_id: &str,
        change: ClientChange<'_>,
        audit: impl FnOnce(&ClientRow) -> AuditRow,
    ) -> Result<Option<ClientRow>, StoreError> {
        clients::update(&self.pools, scope, client_id, change, audit).await
    }

    /// Disabling revokes the client's live families in the same transaction, which writes
    /// `audit(families revoked)` too; returns false (nothing written) when the client does not
    /// exist.
    pub async fn set_client_enabled(
        &self,
        scope: Scope<'_>,
        client_id: &str,
        enabled: bool,
        now: i64,
        audit: impl FnOnce(u64) -> AuditRow,
    ) -> Result<bool, StoreError> {
        clients::set_enabled(&self.pools, scope, client_id, enabled, now, audit).await
    }

    // ---- keys ----

    /// The signing keys in `scope` that are active or were retired after `retired_after`, by
    /// tenant then age.
    pub async fn signing_keys(
        &self,
        scope: Scope<'_>,
        retired_after: i64,
    ) -> Result<Vec<SigningKeyRow>, StoreError> {
        keys::signing_keys(&self.pools, scope, retired_after).await
    }

    /// See [`keys::insert_signing_key`].
    pub async fn insert_signing_key(
        &self,
        key: &SigningKeyRow,
        retire_others: bool,
        audit: Option<&AuditRow>,
    ) -> Result<(), StoreError> {
        keys::insert_signing_key(&self.pools, key, retire_others, audit).await
    }

    pub async fn wrapped_key(&self, name: &str) -> Result<Option<WrappedKeyRow>, StoreError> {
        keys::wrapped_key(&self.pools, name).await
    }

    /// Inserts unless a row of that name exists (then the existing row stays).
    pub async fn insert_wrapped_key(&self, key: &WrappedKeyRow) -> Result<(), StoreError> {
        keys::insert_wrapped_key(&self.pools, key).await
    }

    /// See [`keys::rewrap`].
    pub async fn rewrap<E>(
        &self,
        f: impl FnMut(&SealedRow) -> Result<Option<(String, Vec<u8>)>, E>,
        audit: impl FnOnce(usize) -> AuditRow,
    ) -> Result<Result<usize, E>, StoreError> {
        keys::rewrap(&self.pools, f, audit).await
    }

    // ---- families and refresh tokens ----

    /// Opens a family with its first refresh token, if any (a client_credentials grant may
    /// have none), and its audit row, in one transaction: the group commit of concurrent issues
    /// and rotations. Stored only if the family's client is still as the issue saw it
    /// (`client`: enabled, with the verifier it authenticated by, the scopes, audiences and
    /// grant types it was judged by): a `client disable`, `rotate-secret` or `update` that
    /// commits first refuses the issue; a disable that commits after it revokes the new family
    /// with the others.
    pub async fn create_family(
        &self,
        family: FamilyRow,
        refresh: Option<RefreshRow>,
        client: ClientSeen,
    ) -> Result<Opened, StoreError> {
        let write = Write::Open {
            family,
            refresh,
            client,
        };
        match self.hot.writes.call(write).await? {
            Written::Open(outcome) => Ok(outcome),
            Written::Rotation(_) => Err(StoreError::Batch),
        }
    }

    /// Whether `tenant`'s family exists and is not revoked: `None` when unknown, of another
    /// tenant or of a disabled one (batched).
    pub async fn family_revoked(
        &self,
        tenant: &TenantId,
        family_id: &str,
    ) -> Result<Option<bool>, StoreError> {
        let state = self.hot.family_states.call(family_id.to_owned()).await?;
        Ok(state.and_then(|(of, revoked)| (&of == tenant).then_some(revoked)))
    }

    pub async fn family(
        &self,
        tenant: &TenantId,
        family_id: &str,
    ) -> Result<Option<FamilyRow>, StoreError> {
        families::family(&self.pools, tenant, family_id).await
    }

    /// A refresh token in `scope` of an enabled tenant, by its lookup key, joined with its
    /// family (batched).
    pub async fn refresh_token(
        &self,
        scope: Scope<'_>,
        key: &[u8; 32],
    ) -> Result<Option<RefreshView>, StoreError> {
        let view = self.hot.refresh_views.call(*key).await?;
        Ok(view.filter(|v| scope.admits(&v.family.tenant_id)))
    }

    /// Spends `old_key` and stores `new` (with an audit row naming `family`'s client and
    /// subject) in one transaction, the group commit. The spend is a conditional UPDATE (not
    /// spent, family not revoked): of concurrent callers exactly one wins.
    pub async fn rotate_refresh(
        &self,
        old_key: [u8; 32],
        new: RefreshRow,
        now: i64,
        family: &FamilyRow,
    ) -> Result<Rotation, StoreError> {
        let write = Write::Rotate {
            old_hash: old_key,
            new,
            now,
            client_id: family.client_id.clone(),
            subject: family.subject.clone(),
        };
        match self.hot.writes.call(write).await? {
            Written::Rotation(outcome) => Ok(outcome),
            Written::Open(_) => Err(StoreError::Batch),
        }
    }

    /// Revokes a family and writes `audit`; returns true when this call revoked it (false:
    /// already revoked or unknown).
    pub async fn revoke_family(
        &self,
        tenant: &TenantId,
        family_id: &str,
        now: i64,
        reason: &str,
        audit: &AuditRow,
    ) -> Result<bool, StoreError> {
        families::revoke(&self.pools, tenant, family_id, now, reason, audit).await
    }

    pub async fn audit(&self, audit: &AuditRow) -> Result<(), StoreError> {
        audit::insert(&self.pools, audit).await
    }

    // ---- retention ----

    /// Purges the ended families (expired or revoked before `cutoff`) of the window of keys
    /// after `after`, with their refresh tokens: see [`purge`]. The key to continue after is
    /// `None` at the end of the table.
    pub async fn purge_families_after(
        &self,
        after: &str,
        cutoff: i64,
    ) -> Result<(Window, Option<String>), StoreError> {
        purge::families_after(&self.pools, after, cutoff).await
    }

    /// Deletes a batch of the oldest audit events written before `cutoff`; returns how many,
    /// and whether there may be more.
    pub async fn purge_audit_before(&self, cutoff: i64) -> Result<(u64, bool), StoreError> {
        purge::audit_before(&self.pools, cutoff).await
    }

    /// See [`purge::login_failures_before`].
    pub async fn purge_login_failures_before(
        &self,
        cutoff: i64,
    ) -> Result<(u64, bool), StoreError> {
        purge::login_failures_before(&self.pools, cutoff).await
    }

    /// The lock one purge holds while it runs; `None` when another replica holds it.
    pub async fn purge_lock(&self) -> Result<Option<PurgeLock>, StoreError> {
        purge::lock(&self.pools).await
    }

    // ---- the audit trail ----

    /// At most `n` events of `query`, from either end of its id range (see [`audit::page`]).
    pub async fn audit_page(
        &self,
        query: &AuditQuery<'_>,
        order: Order,
        n: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        audit::page(&self.pools, query, order, n).await
    }

    /// The lowest and highest audit event id; `None` when there is none.
    pub async fn audit_id_span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        audit::id_span(&self.pools).await
    }

    /// See [`audit::first_id_at`].
    pub async fn audit_first_id_at(&self, at: i64, span: (i64, i64)) -> Result<i64, StoreError> {
        audit::first_id_at(&self.pools, at, span).await
    }

    /// The newest `limit` audit events, oldest first: event, client, family, outcome (for
    /// tests).
    pub async fn audit_events(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, Option<String>, Option<String>, String)>, StoreError> {
        let all = AuditQuery {
            ids: i64::MIN..i64::MAX,
            ..AuditQuery::default()
        };
        let events = audit::page(&self.pools, &all, Order::NewestFirst, limit).await?;
        Ok(events
            .into_iter()
            .rev()
            .map(|e| (e.row.event, e.row.client_id, e.row.family_id, e.row.outcome))
            .collect())
    }
}
