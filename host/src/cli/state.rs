//! `ferry state …`: commands on the state database.

use super::out::say;
use crate::app::FerryConfig;
use crate::source::Source;
use crate::source::teleport::TeleportSource;
use crate::state::{Location, PostgresLocation, State, StorageLock};
use std::path::{Path, PathBuf};

/// `ferry state …`: the state database's commands.
#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Accept the state database as it is now (or a fresh one when it is
    /// missing) after ferry refused to start because it was deleted or
    /// replaced. A Teleport source then starts at `start-time` (or now), a
    /// file source at the start of its file.
    Reset {
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
        /// Start over with an empty database instead: every cursor, the
        /// start time and the dead letters are deleted, and the next start
        /// reads from `start-time` (or now). Refused while ferry runs.
        #[arg(long)]
        empty: bool,
    },
    /// Take over teleport-event-handler's saved position from its state
    /// folder (`<storage>/<host>_<port>`): the legacy cursor, the export
    /// chunks, recordings in progress and missing recordings. The folder is
    /// only read. Refused when the database already holds a position for
    /// the cluster, unless --replace.
    ImportEventHandler {
        /// The event handler's state folder, `<storage>/<host>_<port>`.
        dir: PathBuf,
        /// Replace the position the database holds for the cluster.
        #[arg(long)]
        replace: bool,
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
    },
    /// Create the state's schema, or bring it up to date, and exit: for a
    /// PostgreSQL database before the instances start (any instance would
    /// do it too; this lets a deploy do it as its own step).
    Migrate {
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
    },
    /// Copy a deployment's state (cursors, dead letters, the plugin chain)
    /// from one place to another, each a storage folder or a postgres://
    /// URL (its password from FERRY_STORAGE_PASSWORD), to move from SQLite
    /// to PostgreSQL or back. Stop ferry first: the copy is refused while a
    /// ferry runs on FROM, and TO must hold no state yet. Then point
    /// `storage` at TO and start: nothing is lost or sent again.
    Copy {
        /// Where the state is now: a storage folder or a postgres:// URL.
        from: String,
        /// Where it goes.
        to: String,
    },
    /// Make the Teleport position an older ferry stored under an address
    /// (`teleport:<addr>`, as `ferry status` lists it) this cluster's, when
    /// ferry cannot tell which of several it is.
    AdoptPosition {
        /// The key it is stored under, `teleport:<addr>`.
        key: String,
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
    },
}

impl StateCommand {
    /// Runs the command, printing what it did.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            StateCommand::Migrate { config } => {
                let loaded = FerryConfig::load(&config)?;
                let location = loaded.state_location()?;
                let state = State::open_to_write(&location).await?;
                state.close().await;
                say!("{location}: the schema is up to date.")?;
                Ok(())
            }
            StateCommand::Copy { from, to } => {
                let (from, to) = (location_of(&from)?, location_of(&to)?);
                let copied = crate::state::copy::copy(&from, &to).await?;
                say!(
                    "copied {} cursor(s), {} dead letter(s) and a plugin chain of {} from {from} to {to}; point `storage` at {to} and start ferry.",
                    copied.cursors,
                    copied.dead_letters,
                    copied.plugins
                )?;
                Ok(())
            }
            StateCommand::Reset { config, empty } => {
                let loaded = FerryConfig::load(&config)?;
                let Some(_) = loaded.storage_dir() else {
                    anyhow::bail!(
                        "{}: `storage` is a PostgreSQL database; `state reset` is for a storage folder (SQLite). To start afresh there, drop and create the database",
                        config.display()
                    );
                };
                let database = loaded.database_path();
                if empty {
                    delete_database(&database).await?;
                }
                let existed = database.exists();
                let id = crate::state::reset(&database).await?;
                let what = match (empty, existed) {
                    (true, _) => "emptied",
                    (false, true) => "accepted as it is",
                    (false, false) => "created empty",
                };
                say!("{}: {what} (identity {id}); the next `ferry start` uses it.", database.display())?;
                Ok(())
            }
            StateCommand::ImportEventHandler { dir, replace, config } => {
                let (source, state) = teleport_and_state(&config).await?;
                let held = state.hold_still("ferry state import-event-handler").await?;
                let said = source.import_event_handler(&state, &dir, replace).await;
                if held.is_some() {
                    state.release_all("ferry state import-event-handler").await?;
                }
                state.close().await;
                say!("{}", said.map_err(anyhow::Error::msg)?)?;
                Ok(())
            }
            StateCommand::AdoptPosition { key, config } => {
                let (source, state) = teleport_and_state(&config).await?;
                let held = state.hold_still("ferry state adopt-position").await?;
                let said = source.adopt_position(&state, &key).await;
                if held.is_some() {
                    state.release_all("ferry state adopt-position").await?;
                }
                state.close().await;
                say!("{}", said.map_err(anyhow::Error::msg)?)?;
                Ok(())
            }
        }
    }
}

/// Deletes the state database at `database` (with SQLite's journal files)
/// for `ferry state reset --empty`, holding the storage lock meanwhile: it
/// is refused while a ferry (or another command) uses the database. A ferry
/// starting between this and the reset that follows finds the marker
/// without its database and refuses to start, so nothing is lost to it.
async fn delete_database(database: &Path) -> anyhow::Result<()> {
    let lock = StorageLock::exclusive(database).await?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        let path = PathBuf::from(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => anyhow::bail!("cannot delete {}: {err}", path.display()),
        }
    }
    drop(lock);
    Ok(())
}

/// The config's Teleport source (its identity names the cluster) and the
/// state database, opened as `ferry start` opens it.
async fn teleport_and_state(config: &Path) -> anyhow::Result<(Box<TeleportSource>, State)> {
    let loaded = FerryConfig::load(config)?;
    let Source::Teleport(source) = Source::build(loaded.source()?, loaded.source_key(), &loaded.context())? else {
        anyhow::bail!("{}: the source is not Teleport; there is no Teleport position to set", config.display());
    };
    let state = State::open_to_run(&loaded.state_location()?, &loaded.file).await?;
    Ok((source, state))
}

/// A place named on the command line: a postgres:// URL (the password from
/// FERRY_STORAGE_PASSWORD) or a storage folder (its `ferry.db`).
fn location_of(place: &str) -> anyhow::Result<Location> {
    if PostgresLocation::is_url(place) {
        let password = std::env::var(crate::app::STORAGE_PASSWORD_VARIABLE).ok();
        return PostgresLocation::new(place, password).map(Location::Postgres).map_err(|message| anyhow::anyhow!("{place}: {message}"));
    }
    let folder = Path::new(place);
    anyhow::ensure!(
        folder.extension().is_none_or(|ext| ext != "db"),
        "{place}: name the storage folder (the one `storage` names), not the database file in it"
    );
    Ok(Location::Sqlite(folder.join("ferry.db")))
}
