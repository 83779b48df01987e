//! The shared engine, the linker, the compile cache and the epoch ticker.

use super::bindings::PluginPre;
use super::state::PluginState;
use super::{PluginError, PluginSettings, WasmPlugin};
use crate::metrics::Metrics;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

/// The version of `ferry:plugin` this host implements. A unit test keeps it
/// equal to the package version in `wit/plugin.wit`.
pub const CONTRACT_VERSION: &str = "0.2.0";

/// How often the epoch advances; plugin deadlines are counted in these ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Where a loaded component came from, so callers and tests can tell that an
/// unchanged file was not compiled again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Compiled by Cranelift just now.
    Compiled,
    /// Read back from the compile cache.
    FromCache,
}

/// One wasmtime engine for every plugin, with its linker and compile cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    cache_dir: Option<PathBuf>,
    metrics: Arc<Metrics>,
    ticker: Arc<EpochTicker>,
}

/// Advances the engine's epoch for as long as anyone holds it: the runtime
/// and every plugin it loaded. A plugin kept after its runtime is gone
/// (a reload drops the old runtime's handle first) still has its deadline.
pub(super) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Builds the engine. `cache_dir` is where compiled plugins are kept;
    /// `None` compiles in memory every time.
    pub fn new(cache_dir: Option<PathBuf>, metrics: Arc<Metrics>) -> Result<Runtime, PluginError> {
        let engine = Engine::new(&engine_config()).map_err(|err| runtime_error(Path::new("<engine>"), &err))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|err| runtime_error(Path::new("<linker>"), &err))?;
        super::bindings::Plugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |state| state)
            .map_err(|err| runtime_error(Path::new("<linker>"), &err))?;
        let stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), stop.clone());
        Ok(Runtime { engine, linker, cache_dir, metrics, ticker: Arc::new(EpochTicker { stop }) })
    }

    /// Loads a plugin: compiles (or reads from cache), checks it against the
    /// contract, instantiates it and calls its `init` with its config.
    pub fn load(&self, settings: PluginSettings) -> Result<(WasmPlugin, Loaded), PluginError> {
        let (component, loaded) = self.compile(&settings.path)?;
        check_contract(&self.engine, &component, &settings.path)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|err| runtime_error(&settings.path, &err))?;
        let pre = PluginPre::new(instance_pre).map_err(|err| runtime_error(&settings.path, &err))?;
        let plugin = WasmPlugin::new(self.engine.clone(), pre, settings, self.metrics.clone(), self.ticker.clone())?;
        Ok((plugin, loaded))
    }

    /// Whether this ferry would run `component`: the contract check, then
    /// every import resolved against ferry's linker. `init` is not called.
    pub(crate) fn check_accepts(&self, component: &Component, path: &Path) -> Result<(), PluginError> {
        check_contract(&self.engine, component, path)?;
        let instance_pre = self.linker.instantiate_pre(component).map_err(|err| runtime_error(path, &err))?;
        PluginPre::new(instance_pre).map_err(|err| runtime_error(path, &err))?;
        Ok(())
    }

    /// The engine, for reading component types.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads the file and returns its compiled component, from the cache when
    /// this exact file was compiled by a compatible engine before.
    pub(crate) fn compile(&self, path: &Path) -> Result<(Component, Loaded), PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read { path: path.to_owned(), source })?;
        check_is_component(&bytes, path)?;
        let Some(cache_dir) = &self.cache_dir else {
            let component = Component::new(&self.engine, &bytes).map_err(|err| invalid_component(path, &err))?;
            return Ok((component, Loaded::Compiled));
        };
        let cached = cache_dir.join(format!("{}.cwasm", self.cache_key(&bytes)));
        let untrusted_dir = cache_dir.exists().then(|| distrust(cache_dir)).flatten();
        if let Some(reason) = &untrusted_dir {
            tracing::warn!(
                path = %cache_dir.display(),
                "The compiled-plugin cache is not ferry's own ({reason}); compiling {} instead of loading or writing native code there (make the folder ferry's, mode 0700, or delete it).",
                path.display()
            );
        } else if cached.exists() {
            match distrust(&cached) {
                // SAFETY: the folder and the file belong to ferry's user and
                // nobody else may write them (`distrust`); they hold only what
                // `precompile_component` wrote, under a key that includes
                // the engine's compatibility hash: trusted like the binary.
                None => match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                    Ok(component) => return Ok((component, Loaded::FromCache)),
                    Err(err) => tracing::warn!(path = %cached.display(), error = %err, "Cached plugin is unusable; compiling again."),
                },
                Some(reason) => tracing::warn!(path = %cached.display(), "A cached plugin is not ferry's own ({reason}); compiling again."),
            }
        }
        let compiled = self.engine.precompile_component(&bytes).map_err(|err| invalid_component(path, &err))?;
        if untrusted_dir.is_none()
            && let Err(err) = write_atomically(cache_dir, &cached, &compiled)
        {
            tracing::warn!(path = %cached.display(), error = %err, "Cannot cache the compiled plugin; it will be compiled again at the next start.");
        }
        // SAFETY: `compiled` was produced by this engine a moment ago.
        let component = unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|err| runtime_error(path, &err))?;
        Ok((component, Loaded::Compiled))
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut engine_hash);
        // The first 16 bytes of the SHA-256 (32 hex digits), as cache file names have always been.
        let content = &ferry_event::hex_sha256(bytes)[..32];
        format!("{content}-{:016x}", engine_hash.finish())
    }
}

/// The engine's settings.
///
/// Runaway plugins are stopped by an epoch deadline (wall time), not by fuel
/// (an instruction budget). Both stop an endless loop; fuel adds a counter
/// update to every basic block, which measured +33 % on JSON work here
/// against +22 % for epochs (measured on this project's bench machine), and what it buys —
/// counting the same work the same way on every machine — matters for
/// replay and billing, not for a forwarder whose risk is a stalled pipeline.
/// A slow plugin that stays under its deadline is slow, and the benchmark
/// and the per-plugin deadline are where that shows. Memory, output size and
/// time are the limits; each is set per plugin.
fn engine_config() -> Config {
    let mut config = Config::new();
    // Deadlines: a ticker thread advances the epoch; each call gets a budget.
    config.epoch_interruption(true);
    // The epoch stops running wasm code, but not a host call the plugin is
    // blocked in: WASI's `subscribe-duration` + `poll` (what
    // `std::thread::sleep` becomes) would hold a synchronous call for as long
    // as the plugin asked. So plugins are called async (wasmtime 48 always
    // supports it; the linker takes WASI's async host functions): every call
    // is a future on a fiber, and a blocked WASI call is a pending future
    // inside it; `instance.rs` races that future against the deadline and
    // drops it, which cuts off *every* WASI call at once, whatever it waits
    // on. The alternative, ferry's own clock and poll imports, would cover
    // only the waits someone remembered to replace. Cost: a fiber switch
    // and a timer per call (the stack is reused), measured with
    // `cargo bench -p ferry --bench plugins`.
    // The concurrency machinery of the component model costs about twice the
    // fixed per-call time and ferry uses none of it.
    config.concurrency_support(false);
    // A trap message is one line for the user; backtraces would make it many.
    config.wasm_backtrace_max_frames(None);
    // `FERRY_WASM_PROFILER=perfmap` names plugin functions for `perf`
    // (/tmp/perf-<pid>.map), for profiling a plugin under a real load.
    if std::env::var_os("FERRY_WASM_PROFILER").is_some_and(|value| value == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new().name("ferry-epoch".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        }
    });
    if let Err(err) = spawned {
        // Without the ticker no deadline fires; refuse to run plugins blind.
        tracing::error!(error = %err, "Cannot start the plugin deadline thread; plugin calls will time out at once.");
    }
}

/// The first bytes tell a component (layer 1) from a core module (layer 0).
fn check_is_component(bytes: &[u8], path: &Path) -> Result<(), PluginError> {
    const MAGIC: &[u8] = b"\0asm";
    match bytes.get(..8) {
        Some(head) if head.starts_with(MAGIC) && head[6..8] == [1, 0] => Ok(()),
        Some(head) if head.starts_with(MAGIC) => Err(PluginError::NotAPlugin {
            path: path.to_owned(),
            message:
                "it is a core WebAssembly module, not a component; build it for wasm32-wasip2 or wrap it with `wasm-tools component new`"
                    .into(),
        }),
        _ => Err(PluginError::NotAPlugin { path: path.to_owned(), message: "it is not a WebAssembly file".into() }),
    }
}

/// Checks that the component exports ferry's `guest` interface at a version
/// this host runs, and imports nothing beyond `host` and WASI.
fn check_contract(engine: &Engine, component: &Component, path: &Path) -> Result<(), PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    let Some(guest) = exports.iter().find_map(|name| name.strip_prefix("ferry:plugin/guest@")) else {
        let found = if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") };
        return Err(PluginError::NotAPlugin {
            path: path.to_owned(),
            message: format!("it does not export ferry:plugin/guest (it exports {found})"),
        });
    };
    check_version(guest, path)?;
    for (import, _) in ty.imports(engine) {
        if let Some(version) = import.strip_prefix("ferry:plugin/host@").or_else(|| import.strip_prefix("ferry:plugin/types@")) {
            check_version(version, path)?;
        } else if !import.starts_with("wasi:") {
            return Err(PluginError::UnsupportedImport { path: path.to_owned(), import: import.to_owned() });
        }
    }
    Ok(())
}

/// Versions are compatible when their major numbers agree, or, while the
/// major number is 0, when their minor numbers agree (semver's rule).
fn check_version(found: &str, path: &Path) -> Result<(), PluginError> {
    fn major_minor(version: &str) -> Option<(u64, u64)> {
        let mut parts = version.split(['.', '-', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }
    let compatible = match (major_minor(found), major_minor(CONTRACT_VERSION)) {
        (Some((0, found_minor)), Some((0, ours_minor))) => found_minor == ours_minor,
        (Some((found_major, _)), Some((ours_major, _))) => found_major == ours_major,
        _ => false,
    };
    if compatible {
        Ok(())
    } else {
        Err(PluginError::Incompatible { path: path.to_owned(), found: found.to_owned(), supported: CONTRACT_VERSION.to_owned() })
    }
}

/// Writes a compiled plugin into the cache, the folder 0700 and the file
/// 0600: ferry loads it as native code, so it is for ferry's user only.
fn write_atomically(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let temp = file.with_extension(format!("tmp{}", std::process::id()));
    let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
    out.write_all(bytes)?;
    drop(out);
    std::fs::rename(&temp, file)
}

/// Why `path` (the cache folder or a file in it, links followed: the
/// folder may be linked to a shared cache) cannot be trusted to hold only
/// what ferry wrote: it belongs to another user, or others may write it.
/// `None` when it is ferry's own.
fn distrust(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) => return Some(format!("cannot read its owner: {err}")),
    };
    let ferry = rustix::process::geteuid().as_raw();
    if metadata.uid() != ferry {
        Some(format!("{} belongs to uid {}, ferry runs as uid {ferry}", path.display(), metadata.uid()))
    } else if metadata.mode() & 0o022 != 0 {
        Some(format!("{} may be written by others (mode {:o})", path.display(), metadata.mode() & 0o777))
    } else {
        None
    }
}

fn runtime_error(path: &Path, err: &wasmtime::Error) -> PluginError {
    PluginError::Runtime { path: path.to_owned(), message: one_line(err) }
}

fn invalid_component(path: &Path, err: &wasmtime::Error) -> PluginError {
    PluginError::NotAPlugin { path: path.to_owned(), message: format!("invalid component: {}", one_line(err)) }
}

/// A wasmtime error and its causes on one line, each cause once.
pub(super) fn one_line(err: &wasmtime::Error) -> String {
    crate::error::join_causes(err.chain())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_version_matches_the_wit_package() {
        let wit = include_str!("../../../wit/plugin.wit");
        assert!(wit.contains(&format!("package ferry:plugin@{CONTRACT_VERSION};")));
    }

    #[test]
    fn versions_follow_semver_compatibility() {
        let path = Path::new("p.wasm");
        assert!(check_version("0.2.0", path).is_ok());
        assert!(check_version("0.2.7", path).is_ok());
        let err = check_version("0.1.0", path).expect_err("other minor while major is 0");
        assert_eq!(
            err.to_string(),
            "plugin p.wasm: built for ferry:plugin@0.1.0, but this ferry runs ferry:plugin@0.2.0; rebuild it against 0.2.0"
        );
        assert!(check_version("1.0.0", path).is_err());
        assert!(check_version("garbage", path).is_err());
    }

    #[test]
    fn core_modules_and_other_files_are_told_apart() {
        let path = Path::new("x.wasm");
        let core = check_is_component(b"\0asm\x01\0\0\0", path).expect_err("core module");
        assert!(core.to_string().contains("core WebAssembly module"), "{core}");
        let text = check_is_component(b"hello world", path).expect_err("not wasm");
        assert!(text.to_string().contains("not a WebAssembly file"), "{text}");
        assert!(check_is_component(b"\0asm\x0d\0\x01\0", path).is_ok());
    }
}
