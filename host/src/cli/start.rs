//! `ferry start`: forward events until stopped.

use crate::config::FerryConfig;
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;

/// Runs the pipeline of the config at `path`, reloading plugins on change
/// or SIGHUP, until SIGINT/SIGTERM or the end of a non-following source.
pub async fn run(path: PathBuf) -> anyhow::Result<()> {
    let hangups = crate::reload::hangups();
    let config = FerryConfig::load(&path)?;
    let metrics = Arc::new(Metrics::default());
    let (mut pipeline, runtime, plugins) = crate::app::build_pipeline(&config, metrics.clone()).await?;
    let (trigger, shutdown) = crate::shutdown::channel();
    crate::shutdown::fire_on_signals(trigger.clone());
    crate::shutdown::fire_on_panic(trigger);
    let reloader = crate::reload::Reloader::new(path, config, runtime, plugins, pipeline.chain.swap_handle(), metrics);
    tokio::spawn(reloader.run(shutdown.clone(), hangups));
    let summary = pipeline.run(shutdown).await?;
    // A panic anywhere (a sink's delivery, a reload) stopped the pipeline
    // through the hook; it must not look like a clean stop.
    anyhow::ensure!(!crate::shutdown::panicked(), "a part of ferry panicked (see the log above); exiting with a failure so that the service manager restarts ferry");
    tracing::info!(%summary, "Stopped.");
    Ok(())
}
