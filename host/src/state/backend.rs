//! The two places ferry's state can live: a SQLite file (one instance, the
//! default) or a PostgreSQL database (several instances, one of them
//! active). One [`State`](super::State) API sits above both: a query is
//! written once, in SQL both understand (`$1` placeholders, `ON CONFLICT`,
//! times as RFC 3339 text bound from here), and [`on_backend!`] compiles it
//! for each pool. What differs (the schema's types, the lease and its
//! fence) lives in each backend's migrations.

use super::lease::Held;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Postgres, Sqlite, Transaction};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;

/// The SQLSTATE the PostgreSQL fence raises for a write with a stale
/// epoch (see the `init` migration of `migrations/postgres`).
pub(super) const FENCE_CODE: &str = "FE001";

/// Where the state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared by the instances of one deployment.
    Postgres(PostgresLocation),
}

impl Location {
    /// True for a SQLite file that is not there yet: ferry has not run.
    /// A PostgreSQL database is always there to ask.
    pub fn is_missing(&self) -> bool {
        matches!(self, Location::Sqlite(path) if !path.exists())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(postgres) => write!(f, "{}", postgres.url),
        }
    }
}

/// A PostgreSQL database: its URL, which holds no password (it is shown in
/// logs and errors), and the password, kept apart.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresLocation {
    url: String,
    password: Option<String>,
}

impl fmt::Debug for PostgresLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLocation").field("url", &self.url).field("password", &self.password.as_ref().map(|_| "…")).finish()
    }
}

impl PostgresLocation {
    /// True when `storage` names a PostgreSQL database rather than a folder.
    pub fn is_url(storage: &str) -> bool {
        storage.starts_with("postgres://") || storage.starts_with("postgresql://")
    }

    /// Reads a `postgres://` URL (with `sslmode`, `sslrootcert`, `sslcert`,
    /// `sslkey` and the other libpq parameters sqlx knows) and the password
    /// that goes with it. A password inside the URL is refused: the URL is
    /// written in logs and `ferry status`.
    pub fn new(url: &str, password: Option<String>) -> Result<PostgresLocation, String> {
        if url_has_password(url) {
            return Err(
                "the URL holds a password; put it in `storage-password-file` or FERRY_STORAGE_PASSWORD instead (the URL is shown in logs)"
                    .into(),
            );
        }
        PgConnectOptions::from_str(url).map_err(|err| format!("not a PostgreSQL URL ferry can use: {err}"))?;
        Ok(PostgresLocation { url: url.to_owned(), password })
    }

    /// The URL, without a password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How to connect.
    pub(super) fn options(&self) -> Result<PgConnectOptions, sqlx::Error> {
        let options = PgConnectOptions::from_str(&self.url)?.application_name("ferry");
        Ok(match &self.password {
            Some(password) => options.password(password),
            None => options,
        })
    }
}

/// Whether the user part of `url` (`user:password@`) holds a password.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit_once('@').is_some_and(|(user, _)| user.contains(':'))
}

/// The connection pool of either backend.
#[derive(Clone, Debug)]
pub(super) enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$pool` bound to the pool of the state's backend: the
/// body is compiled once per backend, so one query text serves both.
macro_rules! on_backend {
    ($state:expr, |$pool:ident| $body:expr) => {
        match $state.pool() {
            $crate::state::backend::Pool::Sqlite($pool) => $body,
            $crate::state::backend::Pool::Postgres($pool) => $body,
        }
    };
}
pub(super) use on_backend;

/// Writes one dead letter through `$tx` (of either backend); a future.
macro_rules! insert_dead_letter {
    ($tx:expr, $letter:expr) => {{
        let letter: &$crate::state::DeadLetter = $letter;
        sqlx::query(
            "INSERT INTO dead_letters (source, position, event_id, stage, component, reason, payload, session_id, sink, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        .bind($crate::state::backend::now())
        .execute($tx)
    }};
}
pub(super) use insert_dead_letter;

/// A dead letter from a row of either backend (the same columns in both).
macro_rules! stored_dead_letter {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        (|| -> Result<$crate::state::StoredDeadLetter, sqlx::Error> {
            Ok($crate::state::StoredDeadLetter {
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
        })()
    }};
}
pub(super) use stored_dead_letter;

/// Now, as the state's times are written (RFC 3339, UTC, milliseconds, as
/// SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ')` wrote them before).
pub(super) fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// What each backend does to begin a write.
pub(super) trait Backend: sqlx::Database {
    /// Begins a transaction that carries `fence`, the lease of the instance
    /// writing (none for an operator's command): PostgreSQL's fence checks
    /// its epoch against its slot's lease on every row written; SQLite has
    /// one writer and no fence.
    fn begin(pool: &sqlx::Pool<Self>, fence: Option<Held>) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send;
}

impl Backend for Sqlite {
    fn begin(
        pool: &sqlx::Pool<Self>,
        _fence: Option<Held>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send {
        pool.begin()
    }
}

impl Backend for Postgres {
    fn begin(pool: &sqlx::Pool<Self>, fence: Option<Held>) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await?;
            if let Some(held) = fence {
                sqlx::query("SELECT set_config('ferry.epoch', $1, true), set_config('ferry.lease', $2, true)")
                    .bind(held.epoch.to_string())
                    .bind(super::lease::lease_name(held.slot))
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(tx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_and_the_url_is_what_is_shown() {
        let err = PostgresLocation::new("postgres://ferry:hunter2@db:5432/ferry", None).expect_err("refused");
        assert!(err.contains("storage-password-file"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let location = PostgresLocation::new("postgres://ferry@db:5432/ferry?sslmode=verify-full", Some("hunter2".into())).expect("taken");
        let shown = format!("{} {:?}", Location::Postgres(location.clone()), location);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.starts_with("postgres://ferry@db:5432/ferry?sslmode=verify-full "), "{shown}");
        assert!(!url_has_password("postgres://db/ferry?options=a:b@c"), "a colon after the host is not a password");
        assert!(PostgresLocation::new("postgres://db/ferry?sslmode=sometimes", None).is_err(), "a bad sslmode");
    }
}
