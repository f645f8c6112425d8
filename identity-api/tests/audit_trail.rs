//! `identity-api audit list` and `audit export` over the real binary: each filter (`--since`,
//! `--until` as RFC 3339 or Unix seconds, `--event`, `--client`, `--subject`, `--family`) and
//! their combinations select exactly the events they name, also among thousands of rows and
//! rows written out of time order (within the reader's clock slack: without it, `--since` and
//! `--until` would each miss one of them here); `list` shows the newest
//! `--limit` (100 by default) and says when older ones match; `export` writes every matching
//! event, all columns, as JSON lines in id order across pages, resumes with `--after-id`, and
//! stops quietly when its reader does; bad arguments get clear errors. Both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use common::{Backend, TestEnv, cmd, run};
use identity_api::storage::AuditRow;
use serde_json::Value;

both!(
    filters_select_exactly_their_events,
    list_shows_the_newest_and_says_when_more_match,
    export_writes_every_event_in_pages_and_resumes,
    bad_arguments_are_refused_clearly
);

/// Filler rows before and after the tagged ones, so that the binary search and the pages have
/// thousands of rows to go through.
const FILLER: i64 = 2000;

/// The rows the filters are checked against: tagged by their outcome (`t1`...), written in
/// this order. `t6` is written last but 250 s earlier than `t2`: out of time order, within the
/// slack.
fn tagged(t: i64, family_a: &str, family_b: &str) -> Vec<AuditRow> {
    let row = |at, event: &str, client: &str, subject: &str, family: &str, tag: &str| AuditRow {
        at,
        event: event.into(),
        client_id: Some(client.into()),
        subject: Some(subject.into()),
        family_id: Some(family.into()),
        outcome: tag.into(),
        actor: None,
        detail: None,
        tenant_id: common::primary().clone(),
    };
    vec![
        row(t, "issue", "k1", "alice", family_a, "t1"),
        row(t + 100, "refresh", "k1", "alice", family_a, "t2"),
        row(t + 200, "issue", "k2", "bob", family_b, "t3"),
        row(t + 300, "revoke", "k1", "alice", family_a, "t4"),
        row(t + 150, "revoke", "k2", "bob", family_b, "t5"),
        row(t + 50, "refresh", "k1", "alice", family_a, "t6"),
    ]
}

/// A family id as the API makes them: its first 12 hex digits are its Unix milliseconds.
fn family_id(at: i64, n: u8) -> String {
    format!("{:012x}{:020x}", at * 1000, n)
}

/// The environment's database with `FILLER` rows at `t - FILLER ..`, the tagged rows, then
/// `FILLER` more an hour later. Returns `t`.
async fn filled(env: &TestEnv) -> (i64, String, String) {
    let t = identity_api::now() - 100_000;
    let fill = |from: i64, client: &str| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {FILLER}) \
             INSERT INTO audit_events (at, event, client_id, outcome) \
             SELECT {from} + i, 'issue', '{client}', 'issued' FROM n"
        )
    };
    let db = env.state.db();
    common::exec(db, &fill(t - FILLER - 1, "before")).await;
    let (a, b) = (family_id(t, 1), family_id(t + 200, 2));
    for row in tagged(t, &a, &b) {
        db.audit(&row).await.unwrap();
    }
    common::exec(db, &fill(t + 3600, "after")).await;
    (t, a, b)
}

fn audit(env: &TestEnv, args: &[&str]) -> (bool, String, String) {
    run(cmd(&[&["audit"], args].concat()).env("IDENTITY_DATABASE_URL", &env.url))
}

/// The tags of the events `audit list` printed (the outcome column), in order.
fn listed_tags(env: &TestEnv, args: &[&str]) -> Vec<String> {
    let (ok, out, err) = audit(env, &[&["list"], args].concat());
    assert!(ok, "{args:?}: {err}");
    let mut lines = out.lines();
    if let Some(header) = lines.next() {
        assert!(header.starts_with("ID  "), "{out}");
    }
    lines
        .map(|l| l.split_whitespace().nth(3).unwrap().to_owned())
        .collect()
}

/// The events `audit export` wrote.
fn exported(env: &TestEnv, args: &[&str]) -> Vec<Value> {
    let (ok, out, err) = audit(env, &[&["export"], args].concat());
    assert!(ok, "{args:?}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn filters_select_exactly_their_events(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let (t, fam_a, fam_b) = filled(&env).await;
    let at = |offset: i64| (t + offset).to_string();
    let rfc = |offset: i64| identity_api::audit::format_time(t + offset);
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (
            vec!["--since".into(), at(150), "--until".into(), at(1000)],
            &["t3", "t4", "t5"],
        ),
        (
            vec!["--since".into(), rfc(150), "--until".into(), rfc(1000)],
            &["t3", "t4", "t5"],
        ),
        (
            vec!["--since".into(), at(0), "--until".into(), at(100)],
            &["t1", "t6"],
        ),
        (
            vec!["--since".into(), at(40), "--until".into(), at(60)],
            &["t6"],
        ),
        (
            vec!["--since".into(), at(250), "--until".into(), at(1000)],
            &["t4"],
        ),
        (
            vec!["--until".into(), at(0), "--client".into(), "k1".into()],
            &[],
        ),
        (vec!["--event".into(), "revoke".into()], &["t4", "t5"]),
        (vec!["--client".into(), "k2".into()], &["t3", "t5"]),
        (
            vec!["--subject".into(), "alice".into()],
            &["t1", "t2", "t4", "t6"],
        ),
        (
            vec!["--family".into(), fam_a.clone()],
            &["t1", "t2", "t4", "t6"],
        ),
        (vec!["--family".into(), fam_b.clone()], &["t3", "t5"]),
        (
            vec![
                "--family".into(),
                fam_a.clone(),
                "--event".into(),
                "refresh".into(),
            ],
            &["t2", "t6"],
        ),
        (
            vec![
                "--since".into(),
                at(100),
                "--until".into(),
                at(300),
                "--client".into(),
                "k1".into(),
            ],
            &["t2"],
        ),
        (vec!["--client".into(), "nobody".into()], &[]),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(listed_tags(&env, &args), *expected, "list {args:?}");
        let tags: Vec<String> = exported(&env, &args)
            .iter()
            .map(|e| e["outcome"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(tags, *expected, "export {args:?}");
    }
    // Nothing matches: said on stderr, not an error.
    let (ok, out, err) = audit(&env, &["list", "--client", "nobody"]);
    assert!(ok && out.is_empty(), "{out}");
    assert!(err.contains("no audit events match"), "{err}");
    // Time bounds among the filler: exactly the rows of the window.
    let window = exported(&env, &["--since", &at(-500), "--until", &at(-400)]);
    assert_eq!(window.len(), 100);
    assert!(
        window
            .iter()
            .all(|e| (t - 500..t - 400).contains(&e["at"].as_i64().unwrap()))
    );
    // The search behind them finds the first row of a time by key, not by a scan from the
    // start: the id of the window's first row, and the ends of the trail past either end.
    let db = env.state.db();
    let span = db.audit_id_span().await.unwrap().unwrap();
    let first = db.audit_first_id_at(t - 500, span).await.unwrap();
    assert_eq!(first, window[0]["id"].as_i64().unwrap());
    assert_eq!(db.audit_first_id_at(0, span).await.unwrap(), span.0);
    let future = identity_api::now() + 86_400;
    assert_eq!(
        db.audit_first_id_at(future, span).await.unwrap(),
        span.1 + 1
    );
}

async fn list_shows_the_newest_and_says_when_more_match(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    let (t, _, _) = filled(&env).await;
    // The default: the newest 100, oldest first, and a note that older ones match.
    let (ok, out, err) = audit(&env, &["list", "--client", "after"]);
    assert!(ok, "{err}");
    let times: Vec<String> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(times.len(), 100);
    let newest = t + 3600 + FILLER;
    assert_eq!(times[0], identity_api::audit::format_time(newest - 99));
    assert_eq!(times[99], identity_api::audit::format_time(newest));
    assert!(err.contains("showing the newest 100"), "{err}");
    // Exactly as many as there are: no note.
    let (ok, out, err) = audit(&env, &["list", "--client", "k2", "--limit", "2"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(!err.contains("showing"), "{err}");
    // More than one page of the newest.
    let (ok, out, _) = audit(&env, &["list", "--client", "before", "--limit", "1500"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 1501);
    // Operators' changes show who and what.
    let (ok, out, _) = audit(&env, &["list", "--event", "client_create"]);
    assert!(ok);
    let line = out.lines().nth(1).unwrap();
    assert!(line.contains("test-operator@test-host"), "{out}");
    assert!(line.contains(r#"{"audience":"orders-api""#), "{out}");
}

async fn export_writes_every_event_in_pages_and_resumes(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    filled(&env).await;
    let all = exported(&env, &[]);
    let total = common::audit_rows(env.state.db()).await.len();
    assert_eq!(all.len(), total);
    assert!(total > 4000, "{total}");
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");
    // Every column, the time in both forms, the detail as the object it holds.
    let create = all.iter().find(|e| e["event"] == "client_create").unwrap();
    let mut keys: Vec<&str> = create
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "actor",
            "at",
            "client_id",
            "detail",
            "event",
            "family_id",
            "id",
            "outcome",
            "subject",
            "tenant",
            "time"
        ]
    );
    assert_eq!(create["tenant"], "primary");
    assert_eq!(create["detail"]["audience"], "orders-api");
    assert_eq!(create["actor"], "test-operator@test-host");
    assert_eq!(
        create["time"],
        identity_api::audit::format_time(create["at"].as_i64().unwrap())
    );
    // Resumed after an id: exactly the rest.
    let middle = ids[ids.len() / 2];
    let rest = exported(&env, &["--after-id", &middle.to_string()]);
    assert_eq!(rest.len(), ids.iter().filter(|&&id| id > middle).count());
    assert_eq!(rest[0]["id"].as_i64().unwrap(), ids[ids.len() / 2 + 1]);
    // A reader that stops early (`| head -1`) ends the export quietly.
    let mut child = cmd(&["audit", "export"])
        .env("IDENTITY_DATABASE_URL", &env.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('{'), "{first}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

async fn bad_arguments_are_refused_clearly(b: Backend) {
    let Some(env) = TestEnv::new(b).await else {
        return;
    };
    for (args, expected) in [
        (&["list", "--since", "yesterday"][..], "RFC 3339"),
        (&["export", "--until", "2025-13-01T00:00:00Z"], "RFC 3339"),
        (&["list", "--limit", "0"], "--limit"),
        (&["list", "--limit", "10001"], "--limit"),
        (
            &["list", "--since", "200", "--until", "100"],
            "must be before",
        ),
        (
            &["export", "--since", "100", "--until", "100"],
            "must be before",
        ),
        // A misspelt event would match nothing; it is refused with the names there are.
        (&["list", "--event", "user_created"], "user_create"),
        (&["export", "--event", "Login"], "login_lockout"),
    ] {
        let (ok, out, err) = audit(&env, args);
        assert!(!ok, "{args:?}: {out}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    // Times at the ends of the range are bounds like any other.
    let (ok, out, err) = audit(
        &env,
        &["list", "--since", "0", "--until", &i64::MAX.to_string()],
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}"); // the header and the three clients created
    // An export that cannot be written says so (a reader that stops is not this: see above).
    #[cfg(target_os = "linux")]
    {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = cmd(&["audit", "export"])
            .env("IDENTITY_DATABASE_URL", &env.url)
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("cannot write the events"), "{err}");
    }
}
