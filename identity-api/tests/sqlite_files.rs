//! The SQLite files hold client verifiers, sealed keys, subjects and the audit: the database
//! file and its `-wal` and `-shm` files are created owner-only (0600) by `migrate` and `serve`,
//! whatever the umask lets through; a database file that others may read is left as it is, with
//! a warning at every start.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{cmd, run};

fn url(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `db` with `suffix` appended: SQLite's `-wal` and `-shm` beside it.
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[test]
fn migrate_creates_the_database_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("identity.db");
    let (ok, _, err) = run(&mut cmd(&["migrate", "--database-url", &url(&db)]));
    assert!(ok, "{err}");
    assert_eq!(format!("{:o}", mode(&db)), "600", "{}", db.display());
}

#[test]
fn serve_creates_the_database_and_its_wal_and_shm_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("identity.db");
    let mut child = cmd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &url(&db),
    ])
    .arg("--insecure-no-internal-token")
    .env("IDENTITY_KEY_ENCRYPTION_KEY", common::new_kek_text())
    .env("RUST_LOG", "error")
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    // Listening means migrated and the client-secret verifier key stored: written, in WAL mode.
    let listening = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("identity-api listening on http://"));
    let modes: Vec<_> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let path = beside(&db, suffix);
            let found = path.exists().then(|| format!("{:o}", mode(&path)));
            (path, found)
        })
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(listening, "serve did not start");
    for (path, found) in modes {
        assert_eq!(found.as_deref(), Some("600"), "{}", path.display());
    }
}

#[test]
fn a_database_others_may_read_is_left_as_it_is_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("identity.db");
    let (ok, _, err) = run(&mut cmd(&["migrate", "--database-url", &url(&db)]));
    assert!(ok, "{err}");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = run(&mut cmd(&["migrate", "--database-url", &url(&db)]));
    assert!(ok, "{err}");
    assert!(
        err.contains(&db.display().to_string()) && err.contains("0644") && err.contains("chmod"),
        "no warning: {err}"
    );
    assert_eq!(format!("{:o}", mode(&db)), "644");
    // An owner-only one starts without it.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, _, err) = run(&mut cmd(&["migrate", "--database-url", &url(&db)]));
    assert!(ok, "{err}");
    assert!(!err.contains("chmod"), "{err}");
}
