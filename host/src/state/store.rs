use super::lock::{self, StorageLock};
use super::{DeadLetter, Filter, StoredCursor, StoredDeadLetter};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The schema's migrations (`host/migrations`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A state database could not be opened, migrated, read or written.
#[derive(Debug, thiserror::Error)]
#[error("state database {}: {message}", path.display())]
pub struct StateError {
    path: PathBuf,
    message: String,
}

impl StateError {
    pub(super) fn new(path: &Path, message: String) -> StateError {
        StateError { path: path.to_owned(), message }
    }
}

/// Creates the database file 0600 before SQLite does (SQLite would use
/// 0644 and gives its `-wal` and `-shm` files the database's mode), and
/// takes the group's and others' access away from files an older ferry left.
/// A file that cannot be changed (another owner: an operator listing dead
/// letters) is only warned about: it can still be read.
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if !path.exists() {
        std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        let Ok(meta) = std::fs::metadata(&file) else { continue };
        if meta.permissions().mode() & 0o077 != 0
            && let Err(error) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(file = %file.display(), %error, "The state file is readable by others and cannot be made private (mode 0600).");
        }
    }
    Ok(())
}

/// The state database. Cheap to clone; clones share one connection pool
/// (and the storage lock, when this state holds it).
#[derive(Clone, Debug)]
pub struct State {
    pool: SqlitePool,
    path: PathBuf,
    lock: Option<Arc<StorageLock>>,
}

impl State {
    /// Opens (creating if needed) the database at `path` for reading, and
    /// brings its schema up to date. It takes no lock a running ferry would
    /// be refused by: `status` and `dead-letters list` work beside one.
    /// This does not look at the marker of past runs: `ferry start` opens
    /// its state with [`State::open_guarded`], holding the storage lock.
    pub async fn open(path: &Path) -> Result<State, StateError> {
        let beside = lock::share(path);
        let state = State::connect(path, None).await?;
        if matches!(beside, lock::Beside::Holder) && !state.schema_is_current().await {
            // The holder is bringing it up to date (a fresh database, a
            // newer ferry): migrating beside it would race it.
            lock::holder_schema_current(path).await;
        }
        state.migrate().await?;
        drop(beside);
        Ok(state)
    }

    /// Opens (creating if needed) the database at `path`, whose storage
    /// `lock` this process holds, for as long as the state lives, and brings
    /// its schema up to date.
    pub async fn open_locked(path: &Path, lock: Arc<StorageLock>) -> Result<State, StateError> {
        let state = State::connect(path, Some(lock)).await?;
        state.migrate().await?;
        if let Some(lock) = &state.lock {
            lock.schema_current();
        }
        Ok(state)
    }

    /// Opens the database's connection pool, creating the file 0600.
    async fn connect(path: &Path, lock: Option<Arc<StorageLock>>) -> Result<State, StateError> {
        let error = |message: String| StateError { path: path.to_owned(), message };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| error(format!("cannot create its folder: {err}")))?;
        }
        restrict(path).map_err(|err| error(format!("cannot make it private (mode 0600): {err}")))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool =
            SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(|err| error(format!("cannot open: {err}")))?;
        Ok(State { pool, path: path.to_owned(), lock })
    }

    async fn migrate(&self) -> Result<(), StateError> {
        MIGRATOR.run(&self.pool).await.map_err(|err| StateError::new(&self.path, format!("cannot update its schema: {err}")))
    }

    /// True when every migration of this ferry has been applied.
    async fn schema_is_current(&self) -> bool {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await.unwrap_or_default();
        MIGRATOR
            .iter()
            .filter(|migration| !migration.migration_type.is_down_migration())
            .all(|migration| applied.contains(&migration.version))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This database's identity (see the `identity` migration), written
    /// now if it has none yet.
    pub async fn identity(&self) -> Result<String, StateError> {
        if let Some(id) = self.stored_identity().await? {
            return Ok(id);
        }
        let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        sqlx::query("INSERT OR IGNORE INTO identity (only, id) VALUES (1, ?)")
            .bind(&id)
            .execute(&self.pool)
            .await
            .map_err(|err| self.error(err))?;
        // Another ferry on the same database may have written one first.
        self.stored_identity().await?.ok_or_else(|| StateError::new(&self.path, "its identity could not be written".into()))
    }

    /// This database's identity, if it has one.
    pub async fn stored_identity(&self) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT id FROM identity WHERE only = 1").fetch_optional(&self.pool).await.map_err(|err| self.error(err))
    }

    /// The connection pool, for the other parts of this module.
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(super) fn error(&self, err: sqlx::Error) -> StateError {
        StateError { path: self.path.clone(), message: err.to_string() }
    }

    /// The committed position of `source`, if it ever committed one.
    pub async fn cursor(&self, source: &str) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT position FROM cursors WHERE source = ?")
            .bind(source)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| self.error(err))
    }

    /// Records that `source` has got to `position`.
    pub async fn commit_cursor(&self, source: &str, position: &str) -> Result<(), StateError> {
        sqlx::query(UPSERT_CURSOR)
            .bind(source)
            .bind(position)
            .bind(None::<&str>)
            .execute(&self.pool)
            .await
            .map_err(|err| self.error(err))?;
        Ok(())
    }

    /// Records that `source` has got to `position` and stores the dead
    /// letters of everything before it, in one transaction: a crash leaves
    /// both or neither, so a dead letter is never stored twice. `newest` is
    /// the newest event time of the batches committed (RFC 3339 with
    /// nanoseconds, UTC); the stored one only moves forward, and with the
    /// cursor, so it never claims an event that is not yet acknowledged.
    pub async fn commit(&self, source: &str, position: &str, newest: Option<&str>, letters: &[DeadLetter]) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(|err| self.error(err))?;
        for letter in letters {
            insert_dead_letter(&mut tx, letter).await.map_err(|err| self.error(err))?;
        }
        sqlx::query(UPSERT_CURSOR).bind(source).bind(position).bind(newest).execute(&mut *tx).await.map_err(|err| self.error(err))?;
        tx.commit().await.map_err(|err| self.error(err))
    }

    /// Writes dead letters in one transaction: all of them or none.
    pub async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(|err| self.error(err))?;
        for letter in letters {
            insert_dead_letter(&mut tx, letter).await.map_err(|err| self.error(err))?;
        }
        tx.commit().await.map_err(|err| self.error(err))
    }

    /// Dead letters in the order they were written, oldest first.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>, StateError> {
        let rows = sqlx::query(
            "SELECT id, created_at, source, position, event_id, stage, component, reason, payload, session_id, sink
             FROM dead_letters ORDER BY id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|err| self.error(err))?;
        rows.iter().map(|row| StoredDeadLetter::from_row(row).map_err(|err| self.error(err))).collect()
    }

    /// How many dead letters are stored.
    pub async fn dead_letter_count(&self) -> Result<u64, StateError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters").fetch_one(&self.pool).await.map_err(|err| self.error(err))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Every source's cursor, by source name.
    pub async fn cursors(&self) -> Result<Vec<StoredCursor>, StateError> {
        let rows = sqlx::query("SELECT source, position, updated_at, newest_event_time FROM cursors ORDER BY source")
            .fetch_all(&self.pool)
            .await
            .map_err(|err| self.error(err))?;
        rows.iter()
            .map(|row| -> Result<StoredCursor, sqlx::Error> {
                Ok(StoredCursor {
                    source: row.try_get("source")?,
                    position: row.try_get("position")?,
                    updated_at: row.try_get("updated_at")?,
                    newest_event_time: row.try_get("newest_event_time")?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|err| self.error(err))
    }

    /// How many dead letters each stage and component holds:
    /// `(stage, component, count)`, by stage then component.
    pub async fn dead_letter_counts(&self) -> Result<Vec<(String, String, u64)>, StateError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT stage, component, COUNT(*) FROM dead_letters GROUP BY stage, component ORDER BY stage, component")
                .fetch_all(&self.pool)
                .await
                .map_err(|err| self.error(err))?;
        Ok(rows.into_iter().map(|(stage, component, count)| (stage, component, u64::try_from(count).unwrap_or(0))).collect())
    }

    /// The dead letters `filter` names, oldest first.
    pub async fn find_dead_letters(&self, filter: &Filter) -> Result<Vec<StoredDeadLetter>, StateError> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id, created_at, source, position, event_id, stage, component, reason, payload, session_id, sink FROM dead_letters",
        );
        filter.push_where(&mut query);
        query.push(" ORDER BY id");
        if let Some(limit) = filter.limit {
            query.push(" LIMIT ").push_bind(limit);
        }
        let rows = query.build().fetch_all(&self.pool).await.map_err(|err| self.error(err))?;
        rows.iter().map(|row| StoredDeadLetter::from_row(row).map_err(|err| self.error(err))).collect()
    }

    /// Deletes the dead letters `filter` names (its limit the oldest so
    /// many); how many were deleted.
    pub async fn purge_dead_letters(&self, filter: &Filter) -> Result<u64, StateError> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new("DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters");
        filter.push_where(&mut query);
        query.push(" ORDER BY id");
        if let Some(limit) = filter.limit {
            query.push(" LIMIT ").push_bind(limit);
        }
        query.push(")");
        let done = query.build().execute(&self.pool).await.map_err(|err| self.error(err))?;
        Ok(done.rows_affected())
    }

    /// Records what a replay made of dead letters, in one transaction: a
    /// letter with no failures was delivered (or dropped by today's chain)
    /// and is deleted; one with failures keeps its row, which takes the
    /// first failure (stage, component, reason, payload), and each further
    /// failure (a second sink of a fan-out) gets a row of its own.
    pub async fn settle_replayed(&self, outcomes: &[(i64, Vec<DeadLetter>)]) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(|err| self.error(err))?;
        for (id, failures) in outcomes {
            let result = match failures.split_first() {
                None => sqlx::query("DELETE FROM dead_letters WHERE id = ?").bind(id).execute(&mut *tx).await.map(drop),
                Some((first, rest)) => {
                    let updated = sqlx::query(
                        "UPDATE dead_letters SET stage = ?, component = ?, reason = ?, payload = ?, event_id = COALESCE(?, event_id),
                             session_id = COALESCE(?, session_id), sink = COALESCE(?, sink), created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                    )
                    .bind(first.stage.as_str())
                    .bind(&first.component)
                    .bind(&first.reason)
                    .bind(&first.payload)
                    .bind(&first.event_id)
                    .bind(&first.session_id)
                    .bind(&first.sink)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map(drop);
                    let mut inserted = Ok(());
                    for letter in rest {
                        inserted = inserted.and(insert_dead_letter(&mut tx, letter).await);
                    }
                    updated.and(inserted)
                }
            };
            result.map_err(|err| self.error(err))?;
        }
        tx.commit().await.map_err(|err| self.error(err))
    }

    /// Closes the pool, waiting for writes in progress.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const UPSERT_CURSOR: &str = "INSERT INTO cursors (source, position, newest_event_time) VALUES (?, ?, ?)
     ON CONFLICT (source) DO UPDATE SET position = excluded.position,
         newest_event_time = CASE
             WHEN cursors.newest_event_time IS NULL OR excluded.newest_event_time > cursors.newest_event_time THEN excluded.newest_event_time
             ELSE cursors.newest_event_time END,
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

async fn insert_dead_letter(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, letter: &DeadLetter) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (source, position, event_id, stage, component, reason, payload, session_id, sink)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&letter.source)
    .bind(&letter.position)
    .bind(&letter.event_id)
    .bind(letter.stage.as_str())
    .bind(&letter.component)
    .bind(&letter.reason)
    .bind(&letter.payload)
    .bind(&letter.session_id)
    .bind(&letter.sink)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl StoredDeadLetter {
    fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredDeadLetter, sqlx::Error> {
        Ok(StoredDeadLetter {
            id: row.try_get("id")?,
            created_at: row.try_get("created_at")?,
            source: row.try_get("source")?,
            position: row.try_get("position")?,
            event_id: row.try_get("event_id")?,
            stage: row.try_get("stage")?,
            component: row.try_get("component")?,
            reason: row.try_get("reason")?,
            payload: row.try_get("payload")?,
            session_id: row.try_get("session_id")?,
            sink: row.try_get("sink")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Stage;

    #[tokio::test]
    async fn cursors_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/ferry.db");
        let state = State::open(&path).await.expect("open");
        assert_eq!(state.cursor("file:a").await.expect("read"), None);
        state.commit_cursor("file:a", "10").await.expect("commit");
        state.commit_cursor("file:a", "25").await.expect("commit");
        state.close().await;
        let state = State::open(&path).await.expect("reopen");
        assert_eq!(state.cursor("file:a").await.expect("read").as_deref(), Some("25"));
    }

    #[tokio::test]
    async fn dead_letters_keep_everything_needed_to_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("ferry.db")).await.expect("open");
        let letter = DeadLetter {
            source: "file:a".into(),
            position: Some("17".into()),
            event_id: Some("u-1".into()),
            stage: Stage::Plugin,
            component: "redact".into(),
            reason: "trapped".into(),
            payload: b"{\"uid\":\"u-1\"}".to_vec(),
            session_id: Some("s-1".into()),
            sink: Some("sessions".into()),
        };
        state.add_dead_letters(&[letter.clone(), letter]).await.expect("write");
        let stored = state.dead_letters(10).await.expect("read");
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].stage, "plugin");
        assert_eq!(stored[0].component, "redact");
        assert_eq!(stored[0].payload, b"{\"uid\":\"u-1\"}");
        assert_eq!((stored[0].session_id.as_deref(), stored[0].sink.as_deref()), (Some("s-1"), Some("sessions")));
        assert_eq!(state.dead_letter_count().await.expect("count"), 2);
    }

    #[tokio::test]
    async fn a_replay_deletes_what_was_delivered_and_keeps_every_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("ferry.db")).await.expect("open");
        let letter = |component: &str, payload: &[u8]| DeadLetter {
            source: "file:a".into(),
            position: Some("3".into()),
            event_id: Some("u-1".into()),
            stage: Stage::Plugin,
            component: component.into(),
            reason: "trapped".into(),
            payload: payload.to_vec(),
            session_id: None,
            sink: None,
        };
        state.add_dead_letters(&[letter("redact", b"{}"), letter("redact", b"{}"), letter("redact", b"{}")]).await.expect("write");
        let ids: Vec<i64> = state.dead_letters(10).await.expect("read").iter().map(|l| l.id).collect();
        let refused = |sink: &str| DeadLetter { stage: Stage::Sink, reason: format!("400 from {sink}"), ..letter(sink, b"{\"new\":1}") };
        // The first was delivered; the second refused by one sink; the third by both sinks of a fan-out.
        let outcomes = [(ids[0], vec![]), (ids[1], vec![refused("a")]), (ids[2], vec![refused("a"), refused("b")])];
        state.settle_replayed(&outcomes).await.expect("settle");
        let left = state.dead_letters(10).await.expect("read");
        let seen: Vec<(i64, &str, &str, &[u8])> =
            left.iter().map(|l| (l.id, l.stage.as_str(), l.component.as_str(), l.payload.as_slice())).collect();
        assert_eq!(seen[0], (ids[1], "sink", "a", &b"{\"new\":1}"[..]));
        assert_eq!(seen[1], (ids[2], "sink", "a", &b"{\"new\":1}"[..]));
        assert_eq!((seen[2].1, seen[2].2), ("sink", "b"), "the second sink's refusal gets a row of its own");
        assert_eq!(left.len(), 3);

        let purged = state.purge_dead_letters(&Filter { component: Some("b".into()), ..Filter::default() }).await.expect("purge");
        assert_eq!(purged, 1);
        let purged = state.purge_dead_letters(&Filter { ids: vec![ids[1]], ..Filter::default() }).await.expect("purge");
        assert_eq!(purged, 1);
        let left: Vec<i64> = state.find_dead_letters(&Filter::default()).await.expect("read").iter().map(|l| l.id).collect();
        assert_eq!(left, [ids[2]]);
    }

    #[tokio::test]
    async fn an_unwritable_place_is_a_clear_error() {
        let err = State::open(Path::new("/proc/ferry/ferry.db")).await.expect_err("cannot create");
        assert!(err.to_string().starts_with("state database /proc/ferry/ferry.db: "), "{err}");
    }
}
