//! The group commit's statements and the hot path's reads: their parameters are numbered as
//! SQLite binds them, and both databases plan every one of them to find rows by key.

use sqlx::{Connection as _, Postgres, Row as _};

use super::texts::{Dialect, FAMILY_WIDTH, SPEND, writes};
use super::writes::{ClientSeen, Rows, Write, bind_writes};
use super::{postgres, sqlite};
use crate::storage::pool::Pools;
use crate::storage::reads::all_texts;
use crate::storage::rows::{AuditRow, FamilyRow, RefreshRow};
use crate::storage::scope::TenantId;
use crate::storage::sql::{BUCKETS, Dialects, anonymous, numbers};

/// Every statement of the hot path that is the same on both databases.
fn shared_texts() -> Vec<&'static Dialects> {
    let mut all = all_texts().to_vec();
    all.push(&SPEND);
    all
}

/// SQLite gets `?` in place of `$N`, bound in the order they appear: so every text must
/// number its parameters 1, 2, 3... in that order, across the statements of a query too.
#[test]
fn parameters_are_numbered_in_the_order_they_appear() {
    let mut checked: Vec<String> = shared_texts()
        .iter()
        .flat_map(|t| t.postgres.clone())
        .collect();
    for issues in [true, false] {
        checked.extend(BUCKETS.map(|n| sqlite::writes_text(n, issues)));
        checked.extend(BUCKETS.map(|n| postgres::writes_text(n, issues)));
    }
    for text in &checked {
        let n = numbers(text);
        assert_eq!(n, (1..=n.len()).collect::<Vec<_>>(), "{text}");
        assert_eq!(anonymous(text).matches('?').count(), n.len(), "{text}");
    }
    let text = sqlite::writes_text(4, true);
    let total = 4 * (FAMILY_WIDTH + RefreshRow::WIDTH + 1 + AuditRow::WIDTH) + 1;
    assert_eq!(numbers(&text).len(), total);
    assert_eq!(text.matches("; ").count(), 3);
    let rotations = sqlite::writes_text(4, false);
    assert_eq!(numbers(&rotations).len(), total - 4 * FAMILY_WIDTH);
    assert_eq!(rotations.matches("; ").count(), 2);
    assert!(rotations.starts_with("INSERT INTO refresh_tokens"));
}

/// The planner must find rows by key: a statement that scans a table costs time in
/// proportion to the table (SQLite 3.46 plans a spend written as a join with a VALUES list as
/// a scan of refresh_tokens).
#[tokio::test]
async fn sqlite_finds_every_row_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("plans.db").display());
    let pools = Pools::connect(&url).await.unwrap();
    pools.migrate().await.unwrap();
    let Pools::Sqlite { write, .. } = &pools else {
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
    let shared = shared_texts();
    let all = shared
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
            // index serves it, because nothing else would read it (see the migration).
            let fk_scan =
                |t: &str| t == "refresh_tokens" && sql.starts_with("INSERT INTO token_families");
            for table in ["clients", "token_families", "refresh_tokens", "r", "f", "c"] {
                assert!(!scans(table) || fk_scan(table), "{sql}\n{plan:#?}");
            }
        }
    }
    pools.close().await;
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
/// `Pools::connect`), with a batch bound as the hot path binds it. It fails, for one, on the
/// write's guard written as `IN (SELECT ...) OR IN (SELECT ...)`, which PostgreSQL plans as a
/// hash of the whole of token_families for every batch.
#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set IDENTITY_TEST_POSTGRES_URL"
)]
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
        crate::clock::now(),
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
    let pools = Pools::connect(&url).await.unwrap();
    pools.migrate().await.unwrap();
    let Pools::Postgres(pool) = &pools else {
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
    let family = |family_id: String, client_id: String| FamilyRow {
        family_id,
        client_id,
        subject: "s".into(),
        scope: "s".into(),
        audience: "a".into(),
        created_at: 1,
        expires_at: 2,
        last_used_at: 1,
        revoked_at: None,
        revoke_reason: None,
        tenant_id: TenantId::primary(),
        roles: None,
    };
    let refresh = |family_id: &str, i: usize| {
        let family = family(family_id.to_owned(), String::new());
        RefreshRow::new(hash(i), format!("jti-{i}"), &family, 1, 2)
    };
    let issue = |i: usize| Write::Open {
        family: family(format!("family-new-{i}"), format!("client-{}", i + 1)),
        refresh: Some(refresh(&format!("family-new-{i}"), i)),
        client: ClientSeen {
            verifier: vec![0; 32],
            scopes: "s".into(),
            audiences: "a".into(),
            grant_types: "client_credentials".into(),
            subject_policy: "any".into(),
        },
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
    let [clients_texts, family_states_texts, refresh_views_texts] = all_texts();
    for (b, &n) in BUCKETS.iter().enumerate() {
        let (clients, families) = (ids("client", n), ids("family", n));
        let tokens: Vec<[u8; 32]> = (0..n).map(hash).collect();
        for (texts, keys) in [(clients_texts, &clients), (family_states_texts, &families)] {
            let sql = format!("EXPLAIN (COSTS OFF) {}", texts.postgres[b]);
            let mut q = sqlx::query(&sql);
            for key in keys {
                q = q.bind(key);
            }
            plan_of(&sql, q).await;
        }
        for (texts, now) in [(refresh_views_texts, None), (&*SPEND, Some(1_i64))] {
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
                let sql = format!("EXPLAIN (COSTS OFF) {}", postgres::ROTATION_WRITES[b]);
                let mut q = sqlx::query(&sql);
                bind_writes!(q, rows, n, rotations_only);
                plan_of(&sql, q).await;
            } else {
                let sql = format!("EXPLAIN (COSTS OFF) {}", postgres::WRITES[b]);
                let mut q = sqlx::query(&sql);
                bind_writes!(q, rows, n);
                plan_of(&sql, q).await;
            }
        }
    }
    assert_eq!(checked, BUCKETS.len() * 8);
    pools.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
}
