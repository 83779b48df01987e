//! `ferry start`: forward events until stopped.

use crate::app::{ConfigFile, FerryConfig};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// Runs the pipeline of `config`, loaded from `file`, reloading plugins on
/// change or SIGHUP, until SIGINT/SIGTERM or the end of a non-following
/// source. Serves `/metrics`, `/healthz` and `/readyz` on `http_addr` (or
/// the config's `http-addr`) and shows progress: a line on the `terminal`,
/// else every `progress_every` in the log.
pub async fn run(
    file: ConfigFile,
    config: FerryConfig,
    http_addr: Option<String>,
    progress_every: Duration,
    terminal: bool,
) -> anyhow::Result<()> {
    let hangups = crate::app::reload::hangups();
    let path = &file.path;
    // First of all: a second ferry on this storage stops here, naming the
    // first, before it takes the first's port or compiles anything. The
    // state opened below shares this lock; it is held until ferry exits.
    // Instances sharing a PostgreSQL state take turns through its lease.
    let _lock = match config.state_location()? {
        crate::state::Location::Sqlite(database) => Some(crate::state::StorageLock::exclusive(&database).await?),
        crate::state::Location::Postgres(_) => None,
    };
    let metrics = Arc::new(Metrics::default());
    let health = crate::observe::health();
    // The endpoint listens before the plugins compile, so that a liveness
    // probe sees ferry alive (and not ready) during a slow start, and a
    // taken port fails at once.
    let http = match (http_addr, &config.http_addr) {
        (Some(addr), _) => Some(crate::observe::http::bind(&addr, "--http-addr").await?),
        (None, Some(addr)) => Some(crate::observe::http::bind(addr, &format!("http-addr in {}", path.display())).await?),
        (None, None) => None,
    };
    let (trigger, shutdown) = crate::shutdown::channel();
    if let Some(listener) = http {
        tokio::spawn(crate::observe::http::serve(listener, metrics.clone(), health, shutdown.clone()));
    }
    crate::shutdown::fire_on_panic(trigger.clone());
    let leadership = crate::app::Leadership::new(&config.leadership, metrics.clone());
    let held = std::cell::Cell::new(None);
    let lead = async |state: &crate::state::State| {
        // Signals are heeded from here, once the plugins are compiled (a
        // SIGTERM during the compile ends ferry at once, as it should: there
        // is nothing to drain), and while a standby waits for the lease.
        crate::shutdown::fire_on_signals(trigger.clone());
        let lease = leadership.wait_for_lease(state, shutdown.clone()).await?;
        held.set(lease);
        Ok(lease)
    };
    let Some((mut pipeline, runtime, plugins)) = crate::app::build_pipeline_when(&config, metrics.clone(), lead).await? else {
        tracing::info!("Stopped while standing by.");
        return Ok(());
    };
    let kept = leadership.keep(pipeline.state.clone(), held.get().unwrap_or(crate::state::lease::Held::ALONE), trigger);
    let reloader = crate::app::reload::Reloader::new(
        file,
        config,
        runtime,
        plugins,
        pipeline.state.clone(),
        pipeline.chain.swap_handle(),
        metrics.clone(),
    );
    tokio::spawn(reloader.run(shutdown.clone(), hangups));
    let (progress_stop, progress_shutdown) = crate::shutdown::channel();
    let progress = tokio::spawn(crate::observe::progress::run(metrics, terminal, progress_every, progress_shutdown));
    health.set_running(true);
    let summary = pipeline.run(shutdown).await;
    health.set_running(false);
    let lost = kept.finish().await;
    progress_stop.fire();
    let _ = progress.await;
    if let Some(lost) = lost {
        anyhow::bail!(
            "this instance is no longer the active one ({lost}); exiting so that the service manager starts it again, as a standby"
        );
    }
    let summary = summary?;
    // A panic anywhere (a sink's delivery, a reload) stopped the pipeline
    // through the hook; it must not look like a clean stop.
    anyhow::ensure!(
        !crate::shutdown::panicked(),
        "a part of ferry panicked (see the log above); exiting with a failure so that the service manager restarts ferry"
    );
    tracing::info!(%summary, "Stopped.");
    Ok(())
}
