use super::backend::{Backend, Location, Pool, insert_dead_letter, now, on_backend, stored_dead_letter};
use super::lease::Held;
use super::lock::{self, StorageLock};
use super::{DeadLetter, Filter, StoredCursor, StoredDeadLetter};
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The SQLite schema's migrations (`host/migrations/sqlite`).
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The PostgreSQL schema's migrations (`host/migrations/postgres`).
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A state database could not be opened, migrated, read or written.
#[derive(Debug, thiserror::Error)]
#[error("state database {place}: {message}")]
pub struct StateError {
    place: String,
    message: String,
    deposed: bool,
}

impl StateError {
    pub(super) fn new(path: &Path, message: String) -> StateError {
        StateError { place: path.display().to_string(), message, deposed: false }
    }

    pub(super) fn at(location: &Location, message: String) -> StateError {
        StateError { place: location.to_string(), message, deposed: false }
    }

    /// The database of `state` gave no answer within `waited` (it hangs:
    /// a partition, a frozen server).
    pub fn no_answer(state: &State, waited: std::time::Duration) -> StateError {
        StateError::at(state.location(), format!("no answer within {waited:?}"))
    }

    /// True when the write was refused because another instance has taken
    /// over (PostgreSQL's fence): this one must stop, not retry.
    pub fn is_deposed(&self) -> bool {
        self.deposed
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

/// The state database. Cheap to clone; clones share one connection pool,
/// the storage lock (when this state holds it) and the lease epoch (when
/// this instance leads on PostgreSQL).
#[derive(Clone, Debug)]
pub struct State {
    pool: Pool,
    location: Arc<Location>,
    lock: Option<Arc<StorageLock>>,
    fence: Arc<Mutex<Option<Held>>>,
}

impl State {
    /// Opens (creating if needed) the SQLite database at `path` for
    /// reading, and brings its schema up to date. It takes no lock a running
    /// ferry would be refused by: `status` and `dead-letters list` work
    /// beside one. This does not look at the marker of past runs: `ferry
    /// start` opens its state with [`State::open_guarded`], holding the
    /// storage lock.
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

    /// Opens the state at `location` for reading: [`State::open`] for
    /// SQLite; for PostgreSQL, connects and brings the schema up to date
    /// (PostgreSQL serialises concurrent migrations itself).
    pub async fn open_at(location: &Location) -> Result<State, StateError> {
        match location {
            Location::Sqlite(path) => State::open(path).await,
            Location::Postgres(_) => State::connect_postgres(location).await,
        }
    }

    /// Opens the state at `location` for `ferry start`: the SQLite database
    /// holding its lock and checked against its marker
    /// ([`State::open_guarded`]); a PostgreSQL one is shared, and its lease
    /// (`state::lease`) decides who writes.
    pub async fn open_to_run(location: &Location, config: &Path) -> Result<State, StateError> {
        match location {
            Location::Sqlite(path) => State::open_guarded(path, config).await,
            Location::Postgres(_) => State::connect_postgres(location).await,
        }
    }

    /// Opens the state at `location` for a command that writes as `ferry
    /// start` does (a replay): SQLite's storage lock keeps it from running
    /// beside one; on PostgreSQL it runs beside the instances.
    pub async fn open_to_write(location: &Location) -> Result<State, StateError> {
        match location {
            Location::Sqlite(path) => State::open_exclusive(path).await,
            Location::Postgres(_) => State::connect_postgres(location).await,
        }
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
        let error = |message: String| StateError::new(path, message);
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
        Ok(State::with(Pool::Sqlite(pool), Location::Sqlite(path.to_owned()), lock))
    }

    /// Connects to the PostgreSQL database at `location` and brings its
    /// schema up to date.
    async fn connect_postgres(location: &Location) -> Result<State, StateError> {
        let Location::Postgres(postgres) = location else { unreachable!("only called for PostgreSQL") };
        let error = |message: String| StateError::at(location, message);
        let options = postgres.options().map_err(|err| error(err.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|err| error(format!("cannot connect: {err}")))?;
        let state = State::with(Pool::Postgres(pool), location.clone(), None);
        state.migrate().await?;
        Ok(state)
    }

    fn with(pool: Pool, location: Location, lock: Option<Arc<StorageLock>>) -> State {
        State { pool, location: Arc::new(location), lock, fence: Arc::default() }
    }

    async fn migrate(&self) -> Result<(), StateError> {
        let done = match &self.pool {
            Pool::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
            Pool::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await,
        };
        done.map_err(|err| StateError::at(&self.location, format!("cannot update its schema: {err}")))
    }

    /// True when every migration of this ferry has been applied.
    async fn schema_is_current(&self) -> bool {
        let migrator = match self.pool {
            Pool::Sqlite(_) => &SQLITE_MIGRATOR,
            Pool::Postgres(_) => &POSTGRES_MIGRATOR,
        };
        let applied: Vec<i64> = on_backend!(self, |pool| sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .unwrap_or_default());
        migrator
            .iter()
            .filter(|migration| !migration.migration_type.is_down_migration())
            .all(|migration| applied.contains(&migration.version))
    }

    /// Where this state is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The SQLite database file; `None` on PostgreSQL.
    pub fn path(&self) -> Option<&Path> {
        match &*self.location {
            Location::Sqlite(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }

    /// The connection pool, for the other parts of this module.
    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Makes every later write of this state (and its clones) carry
    /// `held`, the lease this instance holds (its slot and epoch):
    /// PostgreSQL's fence refuses them once another instance has taken that
    /// slot over.
    pub(super) fn fence_with(&self, held: Held) {
        *self.fence.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(held).filter(|held| held.epoch > 0);
    }

    /// The lease writes carry; `None` for an operator's command.
    pub(super) fn fence(&self) -> Option<Held> {
        *self.fence.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn error(&self, err: sqlx::Error) -> StateError {
        let deposed = err.as_database_error().and_then(|db| db.code()).is_some_and(|code| code == super::backend::FENCE_CODE);
        let message = match (&err, deposed) {
            (sqlx::Error::Database(db), true) => {
                format!("{}; this instance no longer leads and has stopped writing", db.message().trim_start_matches("ferry fence: "))
            }
            _ => err.to_string(),
        };
        StateError { place: self.location.to_string(), message, deposed }
    }

    /// This database's identity (see the `identity` migration), written
    /// now if it has none yet.
    pub async fn identity(&self) -> Result<String, StateError> {
        if let Some(id) = self.stored_identity().await? {
            return Ok(id);
        }
        let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        on_backend!(self, |pool| sqlx::query("INSERT INTO identity (\"only\", id) VALUES (1, $1) ON CONFLICT (\"only\") DO NOTHING")
            .bind(&id)
            .execute(pool)
            .await
            .map(drop)
            .map_err(|err| self.error(err)))?;
        // Another ferry on the same database may have written one first.
        self.stored_identity().await?.ok_or_else(|| StateError::at(&self.location, "its identity could not be written".into()))
    }

    /// This database's identity, if it has one.
    pub async fn stored_identity(&self) -> Result<Option<String>, StateError> {
        on_backend!(self, |pool| sqlx::query_scalar("SELECT id FROM identity WHERE \"only\" = 1")
            .fetch_optional(pool)
            .await
            .map_err(|err| self.error(err)))
    }

    /// The committed position of `source`, if it ever committed one.
    pub async fn cursor(&self, source: &str) -> Result<Option<String>, StateError> {
        on_backend!(self, |pool| sqlx::query_scalar("SELECT position FROM cursors WHERE source = $1")
            .bind(source)
            .fetch_optional(pool)
            .await
            .map_err(|err| self.error(err)))
    }

    /// Records that `source` has got to `position`.
    pub async fn commit_cursor(&self, source: &str, position: &str) -> Result<(), StateError> {
        self.commit(source, position, None, &[]).await
    }

    /// Records that `source` has got to `position` and stores the dead
    /// letters of everything before it, in one transaction: a crash leaves
    /// both or neither, so a dead letter is never stored twice. `newest` is
    /// the newest event time of the batches committed (RFC 3339 with
    /// nanoseconds, UTC); the stored one only moves forward, and with the
    /// cursor, so it never claims an event that is not yet acknowledged.
    pub async fn commit(&self, source: &str, position: &str, newest: Option<&str>, letters: &[DeadLetter]) -> Result<(), StateError> {
        let fence = self.fence();
        let done: Result<(), sqlx::Error> = on_backend!(self, |pool| async {
            let mut tx = Backend::begin(pool, fence).await?;
            for letter in letters {
                insert_dead_letter!(&mut *tx, letter).await?;
            }
            sqlx::query(UPSERT_CURSOR).bind(source).bind(position).bind(newest).bind(now()).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await);
        done.map_err(|err| self.error(err))
    }

    /// Writes dead letters in one transaction: all of them or none.
    pub async fn add_dead_letters(&self, letters: &[DeadLetter]) -> Result<(), StateError> {
        if letters.is_empty() {
            return Ok(());
        }
        let fence = self.fence();
        let done: Result<(), sqlx::Error> = on_backend!(self, |pool| async {
            let mut tx = Backend::begin(pool, fence).await?;
            for letter in letters {
                insert_dead_letter!(&mut *tx, letter).await?;
            }
            tx.commit().await
        }
        .await);
        done.map_err(|err| self.error(err))
    }

    /// Dead letters in the order they were written, oldest first.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>, StateError> {
        self.find_dead_letters(&Filter { limit: Some(limit), ..Filter::default() }).await
    }

    /// How many dead letters are stored.
    pub async fn dead_letter_count(&self) -> Result<u64, StateError> {
        let count: i64 = on_backend!(self, |pool| sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
            .fetch_one(pool)
            .await
            .map_err(|err| self.error(err)))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Every source's cursor, by source name.
    pub async fn cursors(&self) -> Result<Vec<StoredCursor>, StateError> {
        let sql = "SELECT source, position, updated_at, newest_event_time FROM cursors ORDER BY source";
        on_backend!(self, |pool| {
            let rows = sqlx::query(sql).fetch_all(pool).await.map_err(|err| self.error(err))?;
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
        })
    }

    /// How many dead letters each stage and component holds:
    /// `(stage, component, count)`, by stage then component.
    pub async fn dead_letter_counts(&self) -> Result<Vec<(String, String, u64)>, StateError> {
        let sql = "SELECT stage, component, COUNT(*) FROM dead_letters GROUP BY stage, component ORDER BY stage, component";
        let rows: Vec<(String, String, i64)> =
            on_backend!(self, |pool| sqlx::query_as(sql).fetch_all(pool).await.map_err(|err| self.error(err)))?;
        Ok(rows.into_iter().map(|(stage, component, count)| (stage, component, u64::try_from(count).unwrap_or(0))).collect())
    }

    /// The dead letters `filter` names, oldest first.
    pub async fn find_dead_letters(&self, filter: &Filter) -> Result<Vec<StoredDeadLetter>, StateError> {
        on_backend!(self, |pool| {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT id, created_at, source, position, event_id, stage, component, reason, payload, session_id, sink FROM dead_letters",
            );
            filter.push_where(&mut query);
            query.push(" ORDER BY id");
            if let Some(limit) = filter.limit {
                query.push(" LIMIT ").push_bind(i64::from(limit));
            }
            let rows = query.build().fetch_all(pool).await.map_err(|err| self.error(err))?;
            rows.iter().map(|row| stored_dead_letter!(row).map_err(|err| self.error(err))).collect()
        })
    }

    /// Deletes the dead letters `filter` names (its limit the oldest so
    /// many); how many were deleted.
    pub async fn purge_dead_letters(&self, filter: &Filter) -> Result<u64, StateError> {
        let fence = self.fence();
        let done: Result<u64, sqlx::Error> = on_backend!(self, |pool| async {
            let mut tx = Backend::begin(pool, fence).await?;
            let mut query = sqlx::QueryBuilder::new("DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters");
            filter.push_where(&mut query);
            query.push(" ORDER BY id");
            if let Some(limit) = filter.limit {
                query.push(" LIMIT ").push_bind(i64::from(limit));
            }
            query.push(")");
            let deleted = query.build().execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok(deleted)
        }
        .await);
        done.map_err(|err| self.error(err))
    }

    /// Records what a replay made of dead letters, in one transaction: a
    /// letter with no failures was delivered (or dropped by today's chain)
    /// and is deleted; one with failures keeps its row, which takes the
    /// first failure (stage, component, reason, payload), and each further
    /// failure (a second sink of a fan-out) gets a row of its own.
    pub async fn settle_replayed(&self, outcomes: &[(i64, Vec<DeadLetter>)]) -> Result<(), StateError> {
        let fence = self.fence();
        let done: Result<(), sqlx::Error> = on_backend!(self, |pool| async {
            let mut tx = Backend::begin(pool, fence).await?;
            for (id, failures) in outcomes {
                match failures.split_first() {
                    None => {
                        sqlx::query("DELETE FROM dead_letters WHERE id = $1").bind(id).execute(&mut *tx).await?;
                    }
                    Some((first, rest)) => {
                        sqlx::query(UPDATE_REPLAYED)
                            .bind(first.stage.as_str())
                            .bind(&first.component)
                            .bind(&first.reason)
                            .bind(&first.payload)
                            .bind(&first.event_id)
                            .bind(&first.session_id)
                            .bind(&first.sink)
                            .bind(now())
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        for letter in rest {
                            insert_dead_letter!(&mut *tx, letter).await?;
                        }
                    }
                }
            }
            tx.commit().await
        }
        .await);
        done.map_err(|err| self.error(err))
    }

    /// Closes the pool, waiting for writes in progress.
    pub async fn close(&self) {
        on_backend!(self, |pool| pool.close().await);
    }
}

const UPSERT_CURSOR: &str = "INSERT INTO cursors (source, position, newest_event_time, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (source) DO UPDATE SET position = excluded.position,
         newest_event_time = CASE
             WHEN cursors.newest_event_time IS NULL OR excluded.newest_event_time > cursors.newest_event_time THEN excluded.newest_event_time
             ELSE cursors.newest_event_time END,
         updated_at = excluded.updated_at";

const UPDATE_REPLAYED: &str = "UPDATE dead_letters SET stage = $1, component = $2, reason = $3, payload = $4,
     event_id = COALESCE($5, event_id), session_id = COALESCE($6, session_id), sink = COALESCE($7, sink), created_at = $8 WHERE id = $9";

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
