//! One loaded plugin: its `InstancePre`, a long-lived `Store`, and the rules
//! for rebuilding that store after a failure or when it has grown too big.

use super::bindings::{Plugin, PluginPre};
use super::runtime::{EPOCH_TICK, one_line};
use super::state::PluginState;
use super::wire;
use super::{OnError, PluginError, PluginSettings, Transform};
use crate::event::{Event, Outcome};
use crate::metrics::Metrics;
use std::sync::Arc;
use wasmtime::{Engine, Store, Trap};

/// A plugin ready to process batches.
///
/// The `Store` lives across calls (instantiating for every batch would cost
/// page faults on a fresh linear memory). It is dropped and rebuilt, with
/// `init` called again, after any failed call (a trapped instance cannot be
/// entered again) and after a call that left it holding more than half of its
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
    /// Keeps deadlines firing while this plugin exists.
    _ticker: Arc<super::runtime::EpochTicker>,
}

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
        let mut plugin = WasmPlugin { engine, pre, settings, name, metrics, live: None, lines: Vec::new(), _ticker: ticker };
        plugin.live = Some(plugin.instantiate()?);
        Ok(plugin)
    }

    /// The settings this plugin was loaded with.
    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    fn instantiate(&self) -> Result<Live, PluginError> {
        let state = PluginState::new(self.name.clone(), self.settings.max_memory, self.metrics.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        self.arm_deadline(&mut store);
        let bindings = self.pre.instantiate(&mut store).map_err(|err| self.call_error(&err))?;
        self.arm_deadline(&mut store);
        let refused = bindings
            .ferry_plugin_guest()
            .call_init(&mut store, &self.settings.config_json)
            .map_err(|err| self.call_error(&err))?;
        refused.map_err(|message| PluginError::InitRefused { plugin: self.settings.name.clone(), message })?;
        Ok(Live { store, bindings })
    }

    /// The epoch deadline is relative to the epoch when it is set, so it is
    /// set again before every entry into the guest.
    fn arm_deadline(&self, store: &mut Store<PluginState>) {
        let ticks = self.settings.deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    }

    fn call_error(&self, err: &wasmtime::Error) -> PluginError {
        let message = match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!("ran past its deadline of {:?} (deadline)", self.settings.deadline),
            Some(trap) => trap.to_string(),
            None => one_line(err),
        };
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

    fn process(&mut self, batch: &[Event]) -> Result<Vec<Outcome>, PluginError> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.instantiate()?,
        };
        wire::encode(batch, &mut self.lines);
        self.arm_deadline(&mut live.store);
        let output = live
            .bindings
            .ferry_plugin_guest()
            .call_process(&mut live.store, &self.lines)
            .map_err(|err| self.call_error(&err))?;
        let outcomes = wire::decode(output, batch.len(), self.settings.max_output).map_err(|message| self.malformed(message))?;
        if live.store.data().limiter.used() <= self.settings.max_memory / 2 {
            self.live = Some(live);
        } else {
            tracing::debug!(plugin = %self.name, "Recycling the plugin instance to give back memory.");
        }
        Ok(outcomes)
    }
}
