//! What each plugin's `Store` holds: an empty WASI context, the memory
//! limiter, and what the `host` imports need.

use super::bindings::ferry::plugin::{host, types};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// Longest log message or field a plugin may write; longer text is cut so
/// that a plugin cannot flood ferry's log with one call.
const MAX_LOG_TEXT: usize = 4096;

/// The data of one plugin's `Store`.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Enforces the memory cap.
    pub limiter: MemoryLimiter,
    plugin: Arc<str>,
    metrics: Arc<Metrics>,
}

impl PluginState {
    /// A state that grants the guest nothing but `max_memory` bytes of memory.
    pub fn new(plugin: Arc<str>, max_memory: u64, metrics: Arc<Metrics>) -> Self {
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            // No network: no name lookups, no sockets of either kind, and
            // (wasmtime's default) no address a socket may bind or connect to.
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { max: max_memory, used: 0 },
            plugin,
            metrics,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A clock that always reads zero. Plugins get no time source: time would be
/// a side channel, and events carry their own `time`.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Caps the sum of all linear memories of one instance. A component may hold
/// several core modules, each with its own memory, so the cap is on the total.
pub struct MemoryLimiter {
    max: u64,
    used: u64,
}

impl MemoryLimiter {
    /// Bytes of linear memory in use now.
    pub fn used(&self) -> u64 {
        self.used
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        let wanted = self.used.saturating_add(growth);
        if wanted > self.max {
            wasmtime::bail!("memory limit exceeded: wanted {wanted} bytes, the cap is {} bytes (max-memory)", self.max);
        }
        self.used = wanted;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real guest.
        if desired > 1_000_000 {
            wasmtime::bail!("table limit exceeded: wanted {desired} elements, the cap is 1000000");
        }
        Ok(true)
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: types::Level, message: String, fields: Vec<(String, String)>) {
        let message = clip(&message);
        let fields: Vec<String> = fields.iter().take(32).map(|(k, v)| format!("{}={}", clip(k), clip(v))).collect();
        let fields = fields.join(" ");
        let plugin = &*self.plugin;
        match level {
            types::Level::Trace => tracing::trace!(plugin, fields, "{message}"),
            types::Level::Debug => tracing::debug!(plugin, fields, "{message}"),
            types::Level::Info => tracing::info!(plugin, fields, "{message}"),
            types::Level::Warn => tracing::warn!(plugin, fields, "{message}"),
            types::Level::Error => tracing::error!(plugin, fields, "{message}"),
        }
    }

    fn count(&mut self, name: String, delta: u64) {
        self.metrics.add_plugin_counter(&self.plugin, clip(&name), delta);
    }
}

fn clip(text: &str) -> &str {
    if text.len() <= MAX_LOG_TEXT {
        return text;
    }
    let mut end = MAX_LOG_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
