//! Hot reload of the plugin chain while ferry runs.
//!
//! ferry watches its config file and the plugin files it names (the plugins
//! folder, or the `[[plugins]]` list). On a change, or on SIGHUP, it reads
//! the config again, loads the new chain on a blocking thread (compiling
//! only what the compile cache does not hold), and hands it to the running
//! pipeline, which takes it at the start of its next batch: no batch sees
//! half of one chain and half of the other, and the cursor, the committer
//! and the batches in flight are untouched, so nothing is lost or sent twice
//! by a reload.
//!
//! A new chain is all or nothing: if one plugin fails to load or refuses its
//! config, the reload is refused with one line naming the plugin and its
//! file, and the running chain stays. A new chain never silently loses a
//! running plugin either: a plugin whose file (or settings file) vanished
//! from the plugins folder is refused the same way, since a deploy that
//! deletes and then copies would otherwise let events out unredacted in
//! between. A plugin leaves the chain only when ferry.toml says so: named
//! in `removed-plugins`, or taken out of its `[[plugins]]` list. Only the plugin chain reloads; changes
//! to the source, sinks, storage or pipeline settings are reported as
//! needing a restart and the running ones are kept.
//!
//! The config file and the plugin files are watched by [`crate::watch`]
//! once a second. Bursts are debounced: a change is acted on once the files
//! have stayed the same for one whole poll, so a copy still in progress is
//! not loaded. If a copy pauses longer than that, the half-written component
//! fails to validate, the reload is refused, and the next change (the copy
//! going on) tries again.

use super::{ConfigFile, FerryConfig, Lost, Member, PluginChain, discover_chain};
use super::{Refused, load_plugins};
use crate::config::ConfigError;
use crate::metrics::Metrics;
use crate::pipeline::ChainSwap;
use crate::plugin::{Runtime, Transform};
use crate::shutdown::Shutdown;
use crate::state::State;
use crate::watch::{Snapshot, Watch};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How often the watched files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Listens for SIGHUP. Call it before anything slow at start-up: SIGHUP's
/// default action ends the process, so a SIGHUP that arrives before this is
/// in place would stop ferry instead of reloading it.
pub fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(error = %err, "Cannot listen for SIGHUP; plugins reload only when their files change.");
            None
        }
    }
}

/// Reloads the plugin chain of one running pipeline.
pub struct Reloader {
    /// The config file and the flags it is read with, at every reload.
    config_file: ConfigFile,
    /// What the running, not reloadable parts were built from.
    running: FixedParts,
    /// The config the watched files come from: the newest that parsed.
    watched_config: FerryConfig,
    runtime: Arc<Runtime>,
    swap: ChainSwap,
    metrics: Arc<Metrics>,
    /// The plugins of the running chain, which a new chain must keep
    /// unless the config takes them out.
    running_plugins: Vec<Member>,
    /// Where the running chain is remembered for the next start.
    state: State,
    /// The watched files: when last acted on, and any change settling.
    watch: Watch,
}

/// The parts of a config that only a restart changes, compared by their
/// debug form (their config types are plain data; nothing is printed).
#[derive(PartialEq)]
struct FixedParts {
    storage: String,
    leadership: String,
    pipeline: String,
    source: String,
    sinks: String,
}

impl FixedParts {
    fn of(config: &FerryConfig) -> FixedParts {
        FixedParts {
            storage: format!("{:?} {:?} {:?}", config.resolve(&config.storage), config.storage_password_file, config.plugin_cache),
            leadership: format!("{:?}", config.leadership),
            pipeline: format!("{:?}", config.pipeline),
            source: format!("{:?}", config.source),
            sinks: format!("{:?}", config.sinks),
        }
    }

    /// The config sections of `other` that differ from these.
    fn changed_in(&self, other: &FixedParts) -> Vec<&'static str> {
        [
            ("storage", self.storage != other.storage),
            ("[leadership]", self.leadership != other.leadership),
            ("[pipeline]", self.pipeline != other.pipeline),
            ("[source]", self.source != other.source),
            ("[sinks]", self.sinks != other.sinks),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}

impl Reloader {
    /// A reloader for the pipeline started from `config` (read from
    /// `config_file`), whose chain `swap` replaces. New plugins are loaded
    /// by `runtime`, the one the running plugins came from, so its compile
    /// cache and epoch ticker serve them too.
    ///
    /// `running_plugins` are the files the running chain was loaded from
    /// (not what the folder holds now: a file deleted while the pipeline
    /// started must still count as lost). Each chain that takes over is
    /// remembered in `state`, as the one a restart must keep.
    pub fn new(
        config_file: ConfigFile,
        config: FerryConfig,
        runtime: Arc<Runtime>,
        running_plugins: Vec<Member>,
        state: State,
        swap: ChainSwap,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        let mut reloader = Reloader {
            config_file,
            running: FixedParts::of(&config),
            watched_config: config,
            runtime,
            swap,
            metrics,
            running_plugins,
            state,
            watch: Watch::new(Snapshot::of(Vec::<PathBuf>::new()), POLL_INTERVAL),
        };
        // Taken now, not when `run` first polls, so that a change made
        // while the pipeline starts is not mistaken for the starting state.
        reloader.watch.mark_seen(reloader.watched_files());
        reloader
    }

    /// Watches until `shutdown` fires or the pipeline is gone, reloading on
    /// every settled change of the watched files and on every SIGHUP.
    pub async fn run(mut self, mut shutdown: Shutdown, mut hangups: Option<Signal>) {
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.wait() => return,
                _ = hangup => {
                    tracing::info!("SIGHUP: reloading the plugin chain.");
                    if !self.reload().await {
                        return;
                    }
                }
                () = tokio::time::sleep(self.watch.next_look()) => {
                    if self.watch.look(self.watched_files()).is_some() {
                        tracing::info!(config = %self.config_file.path.display(), "Plugin files or config changed: reloading the plugin chain.");
                        if !self.reload().await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Loads the chain the config now describes and queues it for the
    /// pipeline. Returns false once the pipeline is gone.
    ///
    /// The files are marked as seen as they were before loading: a refused
    /// reload is not tried again until they change, and a change made while
    /// loading (a copy that went on) is a change still to act on.
    async fn reload(&mut self) -> bool {
        let before = self.watched_files();
        let done = self.load_and_swap().await;
        let after = self.watched_files();
        // A config that moved the plugins makes other files the watched ones.
        self.watch.mark_seen(if after.same_files(&before) { before } else { after });
        done
    }

    async fn load_and_swap(&mut self) -> bool {
        match self.load_chain().await {
            Ok((transforms, chain)) => {
                let names: Vec<String> = transforms.iter().map(|t| t.name().to_owned()).collect();
                if !self.swap.replace(transforms) {
                    return false;
                }
                self.metrics.add("ferry_plugin_reloads_total", &[("result", "ok")], 1);
                for member in chain.taken_out(&self.running_plugins) {
                    tracing::warn!(
                        plugin = %member.name,
                        file = %member.wasm.display(),
                        "Plugin taken out of the chain by the config; events no longer pass through it from the next batch."
                    );
                }
                self.running_plugins = chain.members;
                tracing::info!(plugins = %names.join(", "), "Plugin chain reloaded; it takes over at the next batch.");
                self.remember_running_chain().await;
            }
            Err(refusal) => {
                self.metrics.add("ferry_plugin_reloads_total", &[("result", "refused")], 1);
                match refusal {
                    Refusal::Config(error) => {
                        tracing::error!(error = %error, "Reload refused: the config is invalid; the running plugin chain stays.");
                    }
                    Refusal::Plugin(Refused { name, path, error }) => tracing::error!(
                        plugin = %name,
                        file = %path.display(),
                        error = %error,
                        "Reload refused: a plugin cannot be loaded; the running plugin chain stays."
                    ),
                    Refusal::Lost(lost) => tracing::error!(
                        plugin = %lost.name,
                        file = %lost.file.display(),
                        error = %lost,
                        "Reload refused: it would drop a running plugin; the running plugin chain stays."
                    ),
                }
            }
        }
        true
    }

    /// Records the running chain as the one a restart must keep. A failure
    /// is logged: the chain runs already, and the next start checks
    /// against the chain before it (whose plugins this one may have dropped
    /// on purpose: then that start is refused until they are named again).
    async fn remember_running_chain(&self) {
        let plugins: Vec<crate::state::ChainPlugin> = self.running_plugins.iter().cloned().map(Into::into).collect();
        if let Err(error) = self.state.remember_plugin_chain(&plugins).await {
            tracing::warn!(%error, "Cannot record the reloaded plugin chain; the next start checks against the chain before it.");
        }
    }

    async fn load_chain(&mut self) -> Result<(Vec<Box<dyn Transform>>, PluginChain), Refusal> {
        let config = self.config_file.load().map_err(Refusal::Config)?;
        let chain = discover_chain(&config).map_err(Refusal::Config)?;
        let changed = self.running.changed_in(&FixedParts::of(&config));
        if !changed.is_empty() {
            tracing::warn!(
                sections = %changed.join(", "),
                "Config changes outside the plugin chain need a restart; the running settings stay until then."
            );
        }
        self.watched_config = config;
        chain.check_keeps(&self.running_plugins).map_err(Refusal::Lost)?;
        let runtime = self.runtime.clone();
        let specs = chain.specs.clone();
        let loaded = tokio::task::spawn_blocking(move || load_plugins(&runtime, specs))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
            .map_err(Refusal::Plugin)?;
        Ok((loaded.into_iter().map(|(plugin, _)| Box::new(plugin) as Box<dyn Transform>).collect(), chain))
    }

    /// The config file and every plugin file it points at, as they are now.
    fn watched_files(&self) -> Snapshot {
        let mut files = vec![self.config_file.path.clone()];
        let config = &self.watched_config;
        if config.plugins.is_empty() {
            let dir = config.resolve(config.plugins_dir.as_deref().unwrap_or(Path::new("plugins")));
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
                .unwrap_or_default();
            entries.retain(|path| path.extension().is_some_and(|ext| ext == "wasm" || ext == "toml"));
            entries.sort();
            files.push(dir);
            files.extend(entries);
        } else {
            files.extend(config.plugins.iter().filter_map(|spec| spec.path.as_deref()).map(|path| config.resolve(path)));
        }
        Snapshot::of(files)
    }
}

/// Why a reload was refused.
enum Refusal {
    Config(ConfigError),
    Plugin(Refused),
    /// The new chain would lose a running plugin the config does not take out.
    Lost(Lost),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_outside_the_chain_are_named_as_needing_a_restart() {
        let parse = |text: &str| FerryConfig::parse(text, Path::new("/etc/ferry/ferry.toml")).expect("valid config");
        let base = "[source.file]\npath = \"in.jsonl\"\n[sinks.default]\ntype = \"stdout\"\n";
        let running = FixedParts::of(&parse(base));
        let plugins_only = parse(&format!("plugins-dir = \"other\"\n{base}"));
        assert!(running.changed_in(&FixedParts::of(&plugins_only)).is_empty());
        let moved = parse("storage = \"elsewhere\"\n[source.file]\npath = \"in2.jsonl\"\n[sinks.default]\ntype = \"stdout\"\n");
        assert_eq!(running.changed_in(&FixedParts::of(&moved)), ["storage", "[source]"]);
    }
}
