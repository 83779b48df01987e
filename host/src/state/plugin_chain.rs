//! The plugin chain ferry last ran: which plugins, in which order, from
//! which files. `ferry start` writes it once its pipeline is built (and each
//! reload that took rewrites it), so that a later start, check or replay can
//! tell a plugin the config takes out on purpose from one whose file went
//! missing while ferry was stopped (see `app::PluginChain::check_remembered`).

use super::backend::{Backend, Location, on_backend};
use super::{State, StateError};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use std::path::{Path, PathBuf};

/// One plugin of the chain that last ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlugin {
    /// Its name in logs, metrics and dead letters.
    pub name: String,
    /// Its component file.
    pub wasm: PathBuf,
    /// The settings file (`NAME.toml` in a plugins folder) it was read with.
    pub settings: Option<PathBuf>,
}

const SELECT_CHAIN: &str = "SELECT name, wasm, settings FROM plugin_chain ORDER BY position";

/// A plugin of the chain from a row of either backend.
macro_rules! chain_plugin {
    ($row:expr) => {{
        let row = $row;
        (|| -> Result<ChainPlugin, sqlx::Error> {
            Ok(ChainPlugin {
                name: row.try_get("name")?,
                wasm: PathBuf::from(row.try_get::<String, _>("wasm")?),
                settings: row.try_get::<Option<String>, _>("settings")?.map(PathBuf::from),
            })
        })()
    }};
}

/// The recorded chain through `$connection` (of either backend), none when
/// `$tables` (a query for the `plugin_chain` table) finds no such table: a
/// database from before this record.
macro_rules! read_recorded_chain {
    ($connection:ident, $tables:expr) => {
        async {
            let recorded: Option<String> = sqlx::query_scalar($tables).fetch_optional(&mut $connection).await?;
            if recorded.is_none() {
                return Ok(Vec::new());
            }
            let rows = sqlx::query(SELECT_CHAIN).fetch_all(&mut $connection).await?;
            rows.iter().map(|row| chain_plugin!(row)).collect::<Result<Vec<_>, sqlx::Error>>()
        }
        .await
    };
}

impl State {
    /// Records `plugins`, in order, as the chain that runs now, replacing
    /// the one recorded before, in one transaction.
    pub async fn remember_plugin_chain(&self, plugins: &[ChainPlugin]) -> Result<(), StateError> {
        let fence = self.fence();
        let done: Result<(), sqlx::Error> = on_backend!(self, |pool| async {
            let mut tx = Backend::begin(pool, fence).await?;
            sqlx::query("DELETE FROM plugin_chain").execute(&mut *tx).await?;
            for (position, plugin) in plugins.iter().enumerate() {
                sqlx::query("INSERT INTO plugin_chain (position, name, wasm, settings) VALUES ($1, $2, $3, $4)")
                    .bind(i64::try_from(position).unwrap_or(i64::MAX))
                    .bind(&plugin.name)
                    .bind(plugin.wasm.to_string_lossy().into_owned())
                    .bind(plugin.settings.as_ref().map(|path| path.to_string_lossy().into_owned()))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await);
        done.map_err(|err| self.error(err))
    }

    /// The chain recorded last, in order; empty when none was.
    pub async fn plugin_chain(&self) -> Result<Vec<ChainPlugin>, StateError> {
        on_backend!(self, |pool| {
            let rows = sqlx::query(SELECT_CHAIN).fetch_all(pool).await.map_err(|err| self.error(err))?;
            rows.iter().map(|row| chain_plugin!(row)).collect::<Result<_, _>>().map_err(|err| self.error(err))
        })
    }
}

/// The chain recorded last in the state at `location`, read without writing
/// anything: no database (a first run) or one from before this record
/// means none, an empty list. `ferry check` must not create or change state.
pub async fn last_plugin_chain(location: &Location) -> Result<Vec<ChainPlugin>, StateError> {
    match location {
        Location::Sqlite(path) => last_in_sqlite(path).await,
        Location::Postgres(postgres) => {
            let error = |err: sqlx::Error| StateError::at(location, format!("cannot read the plugin chain that last ran: {err}"));
            let unreachable = |err: sqlx::Error| StateError::at(location, format!("cannot connect: {err}"));
            let mut connection = postgres.options().map_err(error)?.connect().await.map_err(unreachable)?;
            let tables = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'plugin_chain'";
            let chain = read_recorded_chain!(connection, tables).map_err(error);
            let _ = connection.close().await;
            chain
        }
    }
}

async fn last_in_sqlite(path: &Path) -> Result<Vec<ChainPlugin>, StateError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let error = |err: sqlx::Error| StateError::new(path, format!("cannot read the plugin chain that last ran: {err}"));
    let mut connection = SqliteConnectOptions::new().filename(path).read_only(true).connect().await.map_err(error)?;
    let tables = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'plugin_chain'";
    let chain = read_recorded_chain!(connection, tables).map_err(error);
    let _ = connection.close().await;
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, settings: bool) -> ChainPlugin {
        ChainPlugin {
            name: name.to_owned(),
            wasm: PathBuf::from(format!("/etc/ferry/plugins/{name}.wasm")),
            settings: settings.then(|| PathBuf::from(format!("/etc/ferry/plugins/{name}.toml"))),
        }
    }

    #[tokio::test]
    async fn the_last_chain_is_read_back_in_order_without_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferry.db");
        assert_eq!(last_plugin_chain(&Location::Sqlite(path.clone())).await.expect("no database"), []);
        assert!(!path.exists(), "reading creates no database");

        let state = State::open(&path).await.expect("open");
        assert_eq!(state.plugin_chain().await.expect("read"), []);
        state.remember_plugin_chain(&[plugin("b", false), plugin("a", true)]).await.expect("write");
        state.remember_plugin_chain(&[plugin("redact", true), plugin("a", false)]).await.expect("rewrite");
        let expected = [plugin("redact", true), plugin("a", false)];
        assert_eq!(state.plugin_chain().await.expect("read"), expected);
        // While ferry runs (its WAL open) and after it stopped.
        assert_eq!(last_plugin_chain(&Location::Sqlite(path.clone())).await.expect("read-only"), expected);
        state.close().await;
        let modified = std::fs::metadata(&path).and_then(|meta| meta.modified()).expect("mtime");
        assert_eq!(last_plugin_chain(&Location::Sqlite(path.clone())).await.expect("read-only"), expected);
        assert_eq!(std::fs::metadata(&path).and_then(|meta| meta.modified()).expect("mtime"), modified);
    }

    #[tokio::test]
    async fn a_database_from_before_the_record_has_no_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferry.db");
        let connection = SqliteConnectOptions::new().filename(&path).create_if_missing(true).connect().await;
        let mut connection = connection.expect("an empty database");
        sqlx::query("CREATE TABLE cursors (source TEXT)").execute(&mut connection).await.expect("a table");
        connection.close().await.expect("close");
        assert_eq!(last_plugin_chain(&Location::Sqlite(path.clone())).await.expect("read-only"), []);
    }
}
