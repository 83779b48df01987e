//! Building a runnable ferry from a config: the one path that `ferry start`,
//! `ferry check` and `ferry demo` share, so that a config that checks is a
//! config that starts. Here the config's parts meet: [`FerryConfig`], the
//! whole of ferry.toml ([`ferry_config`]), composes each component's own
//! table; the event handler's file is read into it ([`legacy`]); the plugin
//! chain is found ([`discover`]); each component is built from its own
//! table and the config's [`Context`], and the checks that span parts are
//! made. [`reload`] swaps the chain of a running pipeline.
//!
//! This is the composition above the components: `config` below them holds
//! only what every component builds from (a [`Context`], a [`ConfigError`]).

mod discover;
mod ferry_config;
pub mod leadership;
pub mod legacy;
#[cfg(test)]
mod proptests;
pub mod reload;

pub use discover::{KeptBy, Lost, Member, PluginChain, discover_chain, discover_plugins, spec_beside};
pub use ferry_config::{ConfigFile, FerryConfig, STORAGE_PASSWORD_VARIABLE};
pub use leadership::Leadership;

use crate::config::{ConfigError, Context};
use crate::metrics::Metrics;
use crate::pipeline::{Chain, Pipeline};
use crate::plugin::{Loaded, PluginError, PluginSpec, Runtime, Transform, WasmPlugin};
use crate::retry::Backoff;
use crate::sink::{self, Sink};
use crate::source::Source;
use crate::state::lease::Held;
use crate::state::{State, StateError, StorageLock};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Why ferry cannot start with a config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The config is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin cannot be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The state database cannot be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// The chain would run without a plugin ferry last ran with.
    #[error(transparent)]
    Lost(#[from] Lost),
}

/// Everything a config describes, checked, but not yet running.
pub struct Parts {
    /// The source.
    pub source: Source,
    /// The loaded plugins, in chain order.
    pub plugins: Vec<WasmPlugin>,
    /// How each plugin was loaded (compiled now or read from the cache).
    pub loaded: Vec<Loaded>,
    /// The sinks by name.
    pub sinks: BTreeMap<String, Box<dyn Sink>>,
    /// The sink for events no plugin routed.
    pub default_sink: String,
    /// Which plugin files the chain was loaded from: what a reload must
    /// keep unless the config takes them out.
    pub members: Vec<Member>,
    /// The plugin runtime; it must outlive the plugins.
    pub runtime: Arc<Runtime>,
}

/// Checks the config and loads every part of it: source settings, sinks,
/// and each plugin (compiled, checked against the contract, instantiated,
/// `init` called with its config). `use_cache` keeps compiled plugins in
/// the storage folder.
pub async fn build_parts(config: &FerryConfig, metrics: Arc<Metrics>, use_cache: bool) -> Result<Parts, BuildError> {
    config.pipeline.validate().map_err(|(key, message)| ConfigError::invalid(&config.file, key, message))?;
    config.check_slots()?;
    let context: Context = config.context();
    let mut source = Source::build(config.source()?, config.source_key(), &context)?;
    source.send_sessions_to(config.session_sink()?);
    let default_sink = config.default_sink()?;
    let mut sinks = BTreeMap::new();
    for (name, sink_config) in &config.sinks {
        let built = sink::build(name, sink_config, &context, metrics.clone())?;
        let sink: Box<dyn Sink> = if config.dry_run { Box::new(sink::DryRun::new(name)) } else { built };
        sinks.insert(name.clone(), sink);
    }
    let chain = discover_chain(config)?;
    check_last_chain(config, &chain).await?;
    let (specs, members) = (chain.specs, chain.members);
    let cache = use_cache.then(|| config.plugin_cache_dir()).flatten();
    let (runtime, plugins, loaded) = tokio::task::spawn_blocking(move || -> Result<_, PluginError> {
        let runtime = Arc::new(Runtime::new(cache, metrics)?);
        let (plugins, loaded): (Vec<WasmPlugin>, Vec<Loaded>) =
            load_plugins(&runtime, specs).map_err(|refused| refused.error)?.into_iter().unzip();
        Ok((runtime, plugins, loaded))
    })
    .await
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))?;
    Ok(Parts { source, plugins, loaded, sinks, default_sink, members, runtime })
}

/// Refuses a chain that would go without a plugin of the chain ferry last
/// ran with (a file deleted while ferry was stopped, an emptied volume),
/// unless the config takes it out on purpose. The state is only read: a
/// `check` creates nothing. A dry run sends nothing and keeps its state
/// apart, so it is not held to the real chain.
async fn check_last_chain(config: &FerryConfig, chain: &PluginChain) -> Result<(), BuildError> {
    if config.dry_run {
        return Ok(());
    }
    let last: Vec<Member> = crate::state::last_plugin_chain(&config.state_location()?).await?.into_iter().map(Member::from).collect();
    Ok(chain.check_remembered(&last)?)
}

/// A plugin that could not be loaded, named by both its name and its file
/// (load errors name the file, `init` errors the name; an operator needs both).
#[derive(Debug)]
pub struct Refused {
    /// The plugin's name.
    pub name: String,
    /// Its component file.
    pub path: PathBuf,
    /// Why it was refused.
    pub error: PluginError,
}

/// Loads `specs` in order (compiled or read from the cache, checked against
/// the contract, `init` called), stopping at the first plugin refused. This
/// blocks: Cranelift can take seconds.
pub fn load_plugins(runtime: &Runtime, specs: Vec<PluginSpec>) -> Result<Vec<(WasmPlugin, Loaded)>, Refused> {
    specs
        .into_iter()
        .map(|spec| {
            let settings = spec.settings();
            let (name, path) = (settings.name.clone(), settings.path.clone());
            runtime.load(settings).map_err(|error| Refused { name, path, error })
        })
        .collect()
}

/// Builds the whole pipeline for `ferry start`, opening the state database.
/// Also returns the runtime the plugins were loaded by and the plugin files
/// of the chain as loaded, for the reloader.
pub async fn build_pipeline(config: &FerryConfig, metrics: Arc<Metrics>) -> Result<(Pipeline, Arc<Runtime>, Vec<Member>), BuildError> {
    let built = build_pipeline_when(config, metrics, async |_: &State| Ok(Some(Held::ALONE))).await?;
    Ok(built.expect("a pipeline that needs no lease is always built"))
}

/// [`build_pipeline`], which reads and writes the state only once `lead`
/// says this instance may, and on which slot (it waits for a lease of a
/// shared state once the plugins are compiled and the sinks built); `None`
/// when it says no.
pub async fn build_pipeline_when(
    config: &FerryConfig,
    metrics: Arc<Metrics>,
    lead: impl AsyncFnOnce(&State) -> Result<Option<Held>, BuildError>,
) -> Result<Option<(Pipeline, Arc<Runtime>, Vec<Member>)>, BuildError> {
    let mut parts = build_parts(config, metrics.clone(), true).await?;
    let transforms: Vec<Box<dyn Transform>> =
        std::mem::take(&mut parts.plugins).into_iter().map(|p| Box::new(p) as Box<dyn Transform>).collect();
    let runtime = parts.runtime.clone();
    let members = std::mem::take(&mut parts.members);
    let state = open_state(config).await?;
    let Some(held) = lead(&state).await? else {
        state.close().await;
        return Ok(None);
    };
    parts.source.take_slot(held.slot, config.leadership.slots);
    let pipeline = assemble_on(config, parts, transforms, metrics, state).await?;
    // What a later start must not run without.
    pipeline.state.remember_plugin_chain(&members.iter().cloned().map(Into::into).collect::<Vec<_>>()).await?;
    Ok(Some((pipeline, runtime, members)))
}

/// Opens the state `ferry start` runs on. A dry run's is thrown away each
/// time and locked; the real one is checked against the marker of past runs
/// (SQLite) or shared (PostgreSQL).
pub async fn open_state(config: &FerryConfig) -> Result<State, BuildError> {
    if config.dry_run {
        // A dry run starts from scratch every time and leaves the real
        // cursor alone. Either is locked: a dry run beside the real one
        // runs, two dry runs would delete each other's state.
        let path = config.database_path();
        let lock = StorageLock::exclusive(&path).await?;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        tracing::warn!(state = %path.display(), "Dry run: events are read and processed but not sent; the cursor is kept apart.");
        return Ok(State::open_locked(&path, lock).await?);
    }
    Ok(State::open_to_run(&config.state_location()?, &config.file).await?)
}

/// Opens the state and joins the parts into a pipeline whose chain is
/// `transforms` (the loaded plugins, or native stand-ins for benchmarks).
pub async fn assemble(
    config: &FerryConfig,
    parts: Parts,
    transforms: Vec<Box<dyn Transform>>,
    metrics: Arc<Metrics>,
) -> Result<Pipeline, BuildError> {
    let state = open_state(config).await?;
    assemble_on(config, parts, transforms, metrics, state).await
}

/// Joins the parts into a pipeline on `state`, which the source reads its
/// position from.
async fn assemble_on(
    config: &FerryConfig,
    parts: Parts,
    transforms: Vec<Box<dyn Transform>>,
    metrics: Arc<Metrics>,
    state: State,
) -> Result<Pipeline, BuildError> {
    let mut parts = parts;
    if let (crate::source::Source::Teleport(source), Some(storage)) = (&mut parts.source, config.storage_dir()) {
        // The event handler kept its state in the same storage folder.
        source.take_over_from(storage);
    }
    parts.source.prepare(&state).await?;
    let chain =
        Chain::new(transforms, parts.sinks.keys().cloned().collect(), parts.default_sink, parts.source.name().to_owned(), metrics.clone());
    Ok(Pipeline {
        source: parts.source,
        chain,
        sinks: parts.sinks,
        state,
        config: config.pipeline.clone(),
        metrics,
        backoff: Backoff::default(),
    })
}
