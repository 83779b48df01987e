//! One loaded plugin: its `InstancePre`, a long-lived `Store`, and the rules
//! for rebuilding that store after a failure or when it has grown too big.

use super::bindings::{Plugin, PluginPre};
use super::runtime::{EPOCH_TICK, one_line};
use super::state::{LogLimit, PluginState};
use super::wire;
use super::{OnError, PluginError, PluginSettings, Transform};
use crate::event::{Event, Outcome};
use crate::metrics::Metrics;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;
use wasmtime::{Engine, Store, Trap};

/// A plugin ready to process batches.
///
/// The `Store` lives across calls (instantiating for every batch would cost
/// page faults on a fresh linear memory). It is dropped and rebuilt, with
/// `init` called again, after any failed call (a trapped or timed-out
/// instance cannot be entered again) and after a call that left it holding more than half of its
/// memory cap (linear memory never shrinks).
pub struct WasmPlugin {
    engine: Engine,
    pre: PluginPre<PluginState>,
    settings: PluginSettings,
    name: Arc<str>,
    metrics: Arc<Metrics>,
    live: Option<Live>,
    /// The last batch as JSON Lines; kept so that its memory is reused.
    lines: Vec<u8>,
    /// The plugin's log rate limit, kept across rebuilt stores so that a
    /// plugin cannot reset it by trapping.
    log_limit: Arc<Mutex<LogLimit>>,
    /// Keeps deadlines firing while this plugin exists.
    _ticker: Arc<super::runtime::EpochTicker>,
}

/// The runtime plugin calls run on when the calling thread has no tokio
/// runtime of its own: one worker thread for timers and WASI's waits (I/O
/// enabled too, so that a socket call is refused by WASI, not by tokio).
static FALLBACK: LazyLock<Result<tokio::runtime::Runtime, String>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ferry-plugin-timers")
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime for plugin deadlines: {err}"))
});

struct Live {
    store: Store<PluginState>,
    bindings: Plugin,
}

impl WasmPlugin {
    /// Instantiates the plugin and calls `init`; an error here means the
    /// plugin cannot be used with these settings.
    pub(super) fn new(
        engine: Engine,
        pre: PluginPre<PluginState>,
        settings: PluginSettings,
        metrics: Arc<Metrics>,
        ticker: Arc<super::runtime::EpochTicker>,
    ) -> Result<WasmPlugin, PluginError> {
        let name: Arc<str> = settings.name.as_str().into();
        let mut plugin =
            WasmPlugin { engine, pre, settings, name, metrics, live: None, lines: Vec::new(), log_limit: Arc::default(), _ticker: ticker };
        plugin.live = Some(plugin.instantiate()?);
        Ok(plugin)
    }

    /// The settings this plugin was loaded with.
    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    fn instantiate(&self) -> Result<Live, PluginError> {
        let state = PluginState::new(self.name.clone(), self.settings.max_memory, self.metrics.clone(), self.log_limit.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        // wasmtime charges every byte it copies out of the guest (each list
        // by its host size, each string by its length) against this fuel and
        // fails the lift, before the copy, when it runs out. Set to
        // max-output, it bounds what one result (verdicts, lines, sink lists
        // and every sink name) or one `log` call can make ferry allocate, so
        // that a small guest result of many entries pointing at the same
        // bytes cannot expand into gigabytes in the host.
        store.set_hostcall_fuel(usize::try_from(self.settings.max_output).unwrap_or(usize::MAX));
        // Instantiating (start functions) and `init` each get the deadline,
        // as a call does: `ferry check`, start and reload wait no longer.
        self.arm_deadline(&mut store);
        let bindings = self.within_deadline(self.pre.instantiate_async(&mut store))?;
        self.arm_deadline(&mut store);
        let refused = self.within_deadline(bindings.ferry_plugin_guest().call_init(&mut store, &self.settings.config_json))?;
        refused.map_err(|message| PluginError::InitRefused { plugin: self.settings.name.clone(), message })?;
        Ok(Live { store, bindings })
    }

    /// Runs one entry into the guest, cut off at the deadline.
    ///
    /// The epoch deadline traps wasm code that runs too long, but a plugin
    /// blocked in a host call (a WASI clock subscription and `poll`, which
    /// `std::thread::sleep` becomes) runs no wasm code to trap. Plugin calls
    /// are therefore futures (`runtime.rs` says why async), raced here
    /// against the same deadline: when it passes, the call's future is
    /// dropped, whatever host call it is in, and the caller drops the store,
    /// as after a trap. A call that needs no host wait never yields, so the
    /// race costs one timer registration per call.
    ///
    /// The chain calls this from a blocking thread, where the future runs
    /// on the ambient tokio runtime (whose timers drive the deadline);
    /// where there is none (tests, benchmarks) it runs on [`FALLBACK`].
    fn within_deadline<T>(&self, call: impl Future<Output = wasmtime::Result<T>>) -> Result<T, PluginError> {
        let deadline = self.settings.deadline;
        let raced = async move { tokio::time::timeout(deadline, call).await };
        let outcome = match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(raced),
            Err(_) => match &*FALLBACK {
                Ok(runtime) => runtime.block_on(raced),
                Err(message) => return Err(PluginError::Call { plugin: self.settings.name.clone(), message: message.clone() }),
            },
        };
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(self.call_error(&err)),
            Err(_elapsed) => Err(self.past_deadline()),
        }
    }

    /// The epoch deadline is relative to the epoch when it is set, so it is
    /// set again before every entry into the guest.
    fn arm_deadline(&self, store: &mut Store<PluginState>) {
        let ticks = self.settings.deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    }

    fn past_deadline(&self) -> PluginError {
        PluginError::Call {
            plugin: self.settings.name.clone(),
            message: format!("ran past its deadline of {:?} (deadline)", self.settings.deadline),
        }
    }

    fn call_error(&self, err: &wasmtime::Error) -> PluginError {
        let message = match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => return self.past_deadline(),
            Some(trap) => trap.to_string(),
            None => one_line(err),
        };
        // wasmtime's error type for spent hostcall fuel is private; its text
        // is what there is to recognise it by (a test pins it).
        if message.contains("fuel allocated for hostcalls has been exhausted") {
            return self.malformed(format!(
                "it handed ferry more than its max-output of {} bytes in one call (verdicts, lines, sink lists and sink names, counted as copied), refused before copying the rest",
                self.settings.max_output
            ));
        }
        PluginError::Call { plugin: self.settings.name.clone(), message }
    }

    fn malformed(&self, message: String) -> PluginError {
        PluginError::Malformed { plugin: self.settings.name.clone(), message }
    }
}

impl Transform for WasmPlugin {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn on_error(&self) -> OnError {
        self.settings.on_error
    }

    fn deadline(&self) -> std::time::Duration {
        self.settings.deadline
    }

    fn process(&mut self, batch: &[Event]) -> Result<Vec<Outcome>, PluginError> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.instantiate()?,
        };
        wire::encode(batch, &mut self.lines);
        self.arm_deadline(&mut live.store);
        // On any error `live` is dropped here: a trapped, timed-out or
        // refused instance is never entered again.
        let output = self.within_deadline(live.bindings.ferry_plugin_guest().call_process(&mut live.store, &self.lines))?;
        // A plugin that went quiet after flooding its log still gets its
        // suppressed lines reported once their window is over.
        let suppressed = self.log_limit.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).close_window(Instant::now());
        super::state::report_suppressed(&self.name, suppressed);
        let outcomes = wire::decode(output, batch.len(), self.settings.max_output).map_err(|message| self.malformed(message))?;
        if live.store.data().limiter.used() <= self.settings.max_memory / 2 {
            self.live = Some(live);
        } else {
            tracing::debug!(plugin = %self.name, "Recycling the plugin instance to give back memory.");
        }
        Ok(outcomes)
    }
}
