//! The marker of past runs: a small file beside the state database
//! (`ferry.marker` beside `ferry.db`) holding the database's identity.
//!
//! Without it, a state database deleted or replaced while ferry was stopped
//! looks like a first run: a file source reads its file again from the start
//! and a Teleport source starts at "now", skipping everything since the lost
//! cursor, without a word. With it, `ferry start` refuses, on one line naming
//! the database, until an operator accepts a fresh start with
//! `ferry state reset --config FILE`. A first run (no marker, no database)
//! starts; a database from a ferry that wrote no marker yet is adopted.

use super::{State, StateError, StorageLock};
use std::path::{Path, PathBuf};

/// The marker file of the database at `database`.
pub fn marker_path(database: &Path) -> PathBuf {
    database.with_extension("marker")
}

impl State {
    /// Opens the database at `path` holding its storage lock (see
    /// [`super::lock`]), but only if it is the one ferry ran with before, as
    /// the marker beside it says; writes the marker on the first run.
    /// `config` is named in the error so that the command it gives can be
    /// pasted as it is.
    pub async fn open_guarded(path: &Path, config: &Path) -> Result<State, StateError> {
        // Before the marker is read: a second ferry must not even look.
        let lock = StorageLock::exclusive(path).await?;
        let marker = marker_path(path);
        let recorded = read_marker(path, &marker)?;
        let fix = format!("if starting afresh is intended, run `ferry state reset --config {}`", config.display());
        if recorded.is_some() && !path.exists() {
            return Err(StateError::new(
                path,
                format!(
                    "missing, but {} shows that ferry has run with it before; starting without it would lose the cursor (a Teleport source would start at \"now\"); {fix}",
                    marker.display()
                ),
            ));
        }
        let state = State::open_locked(path, lock).await?;
        match (recorded, state.stored_identity().await?) {
            (Some(recorded), Some(current)) if recorded == current => Ok(state),
            (Some(recorded), current) => {
                state.close().await;
                let current = current.map_or_else(|| "it has no identity".to_owned(), |id| format!("it is {id}"));
                Err(StateError::new(
                    path,
                    format!(
                        "not the database ferry ran with before ({} names {recorded}, {current}); it was replaced, and its cursor is not the one ferry left; {fix}",
                        marker.display()
                    ),
                ))
            }
            (None, _) => {
                let id = state.identity().await?;
                write_marker(path, &marker, &id)?;
                Ok(state)
            }
        }
    }
}

/// Accepts the state database at `path` as it is now, or a new empty one
/// when it is missing: the marker is rewritten to name it. The id of the
/// database accepted.
pub async fn reset(path: &Path) -> Result<String, StateError> {
    let state = State::open_exclusive(path).await?;
    let id = state.identity().await;
    state.close().await;
    let id = id?;
    write_marker(path, &marker_path(path), &id)?;
    Ok(id)
}

fn read_marker(database: &Path, marker: &Path) -> Result<Option<String>, StateError> {
    match std::fs::read_to_string(marker) {
        Ok(text) => match text.lines().map(str::trim).find(|line| !line.is_empty() && !line.starts_with('#')) {
            Some(id) => Ok(Some(id.to_owned())),
            None => Err(StateError::new(
                database,
                format!("its marker {} holds no identity; run `ferry state reset` with this config to write it again", marker.display()),
            )),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StateError::new(database, format!("cannot read its marker {}: {err}", marker.display()))),
    }
}

/// Writes the marker 0600, replacing the old one at once: a crash leaves
/// the old marker or the new one, never half of one.
fn write_marker(database: &Path, marker: &Path, id: &str) -> Result<(), StateError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let error = |err: std::io::Error| StateError::new(database, format!("cannot write its marker {}: {err}", marker.display()));
    let temporary = marker.with_extension("marker.tmp~");
    let _ = std::fs::remove_file(&temporary);
    let name = database.file_name().map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let text = format!(
        "# ferry has run with the state database {name} beside this file, whose identity follows.\n# Do not delete; see `ferry state reset`.\n{id}\n"
    );
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary).map_err(error)?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(error)?;
    std::fs::rename(&temporary, marker).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_first_run_starts_and_leaves_a_private_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("storage/ferry.db");
        let state = State::open_guarded(&path, Path::new("ferry.toml")).await.expect("a first run starts");
        state.commit_cursor("file:a", "1").await.expect("commit");
        let id = state.identity().await.expect("identity");
        // While the database is open in WAL mode its -wal and -shm files exist.
        for file in ["ferry.db", "ferry.db-wal", "ferry.db-shm", "ferry.marker"] {
            assert_eq!(mode(&dir.path().join("storage").join(file)), 0o600, "{file}");
        }
        state.close().await;
        let marker = dir.path().join("storage/ferry.marker");
        assert!(std::fs::read_to_string(&marker).expect("marker").ends_with(&format!("\n{id}\n")));
        let again = State::open_guarded(&path, Path::new("ferry.toml")).await.expect("the same database opens again");
        assert_eq!(again.cursor("file:a").await.expect("read").as_deref(), Some("1"));
    }

    #[tokio::test]
    async fn a_deleted_database_is_refused_until_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferry.db");
        State::open_guarded(&path, Path::new("/etc/ferry/ferry.toml")).await.expect("first run").close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let err = State::open_guarded(&path, Path::new("/etc/ferry/ferry.toml")).await.expect_err("refused");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "state database {}: missing, but {} shows",
                path.display(),
                dir.path().join("ferry.marker").display()
            )),
            "{text}"
        );
        assert!(text.ends_with("run `ferry state reset --config /etc/ferry/ferry.toml`"), "{text}");
        assert!(!text.contains('\n'));
        assert!(!path.exists(), "a refused start creates no database");
        reset(&path).await.expect("reset");
        State::open_guarded(&path, Path::new("ferry.toml")).await.expect("accepted after a reset");
    }

    #[tokio::test]
    async fn a_replaced_database_is_refused_until_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferry.db");
        State::open_guarded(&path, Path::new("ferry.toml")).await.expect("first run").close().await;
        let other = dir.path().join("other.db");
        State::open(&other).await.expect("another database").close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        std::fs::rename(&other, &path).expect("replace");
        let err = State::open_guarded(&path, Path::new("ferry.toml")).await.expect_err("refused");
        assert!(err.to_string().contains("not the database ferry ran with before"), "{err}");
        assert!(err.to_string().contains("it has no identity"), "{err}");
        let id = reset(&path).await.expect("reset");
        let state = State::open_guarded(&path, Path::new("ferry.toml")).await.expect("accepted after a reset");
        assert_eq!(state.identity().await.expect("identity"), id);
    }

    #[tokio::test]
    async fn a_database_from_before_markers_is_adopted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferry.db");
        let old = State::open(&path).await.expect("open");
        old.commit_cursor("file:a", "9").await.expect("commit");
        old.close().await;
        let state = State::open_guarded(&path, Path::new("ferry.toml")).await.expect("adopted");
        assert_eq!(state.cursor("file:a").await.expect("read").as_deref(), Some("9"));
        assert!(marker_path(&path).exists());
    }

    #[tokio::test]
    async fn files_an_older_ferry_left_readable_become_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferry.db");
        State::open(&path).await.expect("open").close().await;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        State::open(&path).await.expect("open").close().await;
        assert_eq!(mode(&path), 0o600);
    }
}
