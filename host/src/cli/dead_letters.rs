//! `ferry dead-letters`: list a config's dead letters.

use crate::config::FerryConfig;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;

/// Writes up to `limit` dead letters of the config at `path`, oldest first,
/// to stdout as JSON Lines.
pub async fn run(path: PathBuf, limit: u32) -> anyhow::Result<()> {
    let config = FerryConfig::load(&path)?;
    let database = config.database_path();
    anyhow::ensure!(database.exists(), "no state database at {}: ferry has not run with this config", database.display());
    let state = crate::state::State::open(&database).await?;
    let mut out = std::io::stdout().lock();
    for letter in state.dead_letters(limit).await? {
        let line = serde_json::to_string(&letter).context("cannot encode a dead letter")?;
        match writeln!(out, "{line}") {
            Ok(()) => {}
            // The reader has seen enough (`ferry dead-letters | head`).
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(err) => return Err(err).context("cannot write to stdout"),
        }
    }
    Ok(())
}
