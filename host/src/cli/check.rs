//! `ferry check`: validate a config and load its plugins.

use crate::config::FerryConfig;
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;

/// Builds every part of the config at `path` without forwarding anything
/// and prints what it found.
pub async fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = FerryConfig::load(&path)?;
    let parts = crate::app::build_parts(&config, Arc::new(Metrics::default()), false).await?;
    let plugins: Vec<&str> = parts.plugins.iter().map(|p| p.settings().name.as_str()).collect();
    let sinks: Vec<&str> = parts.sinks.keys().map(String::as_str).collect();
    println!(
        "{}: ok: source {}, plugins [{}], sinks [{}] (default `{}`)",
        path.display(),
        parts.source.name(),
        plugins.join(", "),
        sinks.join(", "),
        parts.default_sink
    );
    Ok(())
}
