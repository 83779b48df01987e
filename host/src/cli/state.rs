//! `ferry state …`: commands on the state database.

use super::out::say;
use crate::app::FerryConfig;
use crate::source::Source;
use crate::source::teleport::TeleportSource;
use crate::state::{State, StorageLock};
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
            StateCommand::Reset { config, empty } => {
                let loaded = FerryConfig::load(&config)?;
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
                let said = source.import_event_handler(&state, &dir, replace).await;
                state.close().await;
                say!("{}", said.map_err(anyhow::Error::msg)?)?;
                Ok(())
            }
            StateCommand::AdoptPosition { key, config } => {
                let (source, state) = teleport_and_state(&config).await?;
                let said = source.adopt_position(&state, &key).await;
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
    let state = State::open_guarded(&loaded.database_path(), &loaded.file).await?;
    Ok((source, state))
}
