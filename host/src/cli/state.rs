//! `ferry state …`: commands on the state database.

use std::path::PathBuf;

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
    },
}

impl StateCommand {
    /// Runs the command, printing what it did.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            StateCommand::Reset { config } => {
                let loaded = crate::app::FerryConfig::load(&config)?;
                let database = loaded.database_path();
                let existed = database.exists();
                let id = crate::state::reset(&database).await?;
                let what = if existed { "accepted as it is" } else { "created empty" };
                println!("{}: {what} (identity {id}); the next `ferry start` uses it.", database.display());
                Ok(())
            }
        }
    }
}
