//! The SQLite database file and SQLite's `-wal` and `-shm` files beside it hold client-secret
//! verifiers, sealed keys, subjects and the audit: they are for the owner alone.
//!
//! SQLite creates a missing database file 0644 (less the umask) and gives its `-wal` and `-shm`
//! files the permissions of the database file, so creating the database file 0600 before SQLite
//! opens it keeps all three private (`tests/sqlite_files.rs` checks all three).
//!
//! A database file that exists keeps its mode, with a warning at every start: an operator may
//! have opened it to a group on purpose (a backup agent's), which a silent chmod would break,
//! and a process that does not own the file could not change it anyway.

use std::path::{Path, PathBuf};

use super::error::StoreError;

/// Before SQLite opens `path` (the file of the URL `url`): creates it owner-only if missing,
/// and warns about each of the three files that others may read or write. Nothing is done for
/// a database SQLite does not create on disk (in memory, or opened read-only).
pub fn prepare(url: &str, path: &Path) -> Result<(), StoreError> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let mode_is = |mode: &str| query.split('&').any(|p| p == format!("mode={mode}"));
    if url.contains(":memory:") || mode_is("memory") || mode_is("ro") || path.as_os_str().is_empty()
    {
        return Ok(());
    }
    create_private(path).map_err(|source| StoreError::CreateFile {
        path: path.display().to_string(),
        source,
    })?;
    for file in [path.to_owned(), beside(path, "-wal"), beside(path, "-shm")] {
        warn_if_open_to_others(&file);
    }
    Ok(())
}

/// `path` with `suffix` appended to its name, as SQLite names the `-wal` and `-shm` files.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates an empty file with mode 0600, which SQLite takes as a new database; an existing
/// file is left alone.
#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
fn create_private(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn warn_if_open_to_others(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::metadata(file) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %file.display(),
            mode = %format_args!("{mode:04o}"),
            "a SQLite file of the identity API is open to others than its owner, and it holds \
             client-secret verifiers, sealed keys, subjects and the audit: `chmod 600` the \
             database file and its -wal and -shm files"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_open_to_others(_: &Path) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn nothing_is_created_for_a_database_sqlite_does_not_create_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        for query in ["?mode=memory", "?cache=shared&mode=ro"] {
            let url = format!("sqlite://{}{query}", path.display());
            prepare(&url, &path).unwrap();
            assert!(!path.exists(), "{url}");
        }
        prepare("sqlite::memory:", Path::new("file:sqlx-in-memory-0")).unwrap();
        assert!(!Path::new("file:sqlx-in-memory-0").exists());
        prepare(&format!("sqlite://{}", path.display()), &path).unwrap();
        assert!(path.exists());
    }

    #[test]
    fn a_file_that_cannot_be_created_is_an_error_that_names_it() {
        let path = Path::new("/nonexistent-directory/identity.db");
        let err = prepare("sqlite:///nonexistent-directory/identity.db", path).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent-directory/identity.db"),
            "{text}"
        );
    }
}
