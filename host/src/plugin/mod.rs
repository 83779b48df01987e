//! The WebAssembly plugin runtime.
//!
//! Plugins are untrusted. Each runs in its own wasmtime `Store` with a WASI
//! context that grants nothing (no files, network, environment or inherited
//! stdio, a frozen clock), a memory cap, a deadline per call that also cuts
//! off any host call the plugin is blocked in, and a cap on the bytes a
//! result may make ferry copy. A trap, timeout, over-limit or malformed
//! result fails that call only: the plugin is instantiated anew for the next
//! call and the caller decides what happens to the failed batch (the chain
//! isolates the events that fail on their own, then applies the plugin's
//! [`OnError`] policy to them).
//!
//! Components are compiled once and cached on disk keyed by the file's
//! SHA-256 and the engine's compatibility hash, so restarts and reloads of an
//! unchanged plugin skip Cranelift (seconds for Python and JavaScript guests).

pub mod bindings;
mod config;
mod error;
#[cfg(test)]
pub(crate) mod examples_tests;
mod instance;
mod runtime;
#[cfg(test)]
pub(crate) mod script_tests;
mod state;
#[cfg(test)]
mod tests;
mod wire;

pub use config::{OnError, PluginSettings, PluginSpec};
pub use error::PluginError;
pub use instance::WasmPlugin;
pub use runtime::{CONTRACT_VERSION, Loaded, Runtime};

use crate::event::{Event, Outcome};

/// One step of the plugin chain: a WebAssembly plugin, or (for benchmarks)
/// the same logic compiled into the host.
pub trait Transform: Send {
    /// The name used in logs, metrics and dead letters.
    fn name(&self) -> &str;

    /// What to do with a batch when a call fails.
    fn on_error(&self) -> OnError;

    /// The longest one call may take; the chain budgets the retries that
    /// isolate a failing event in multiples of it. Default: ferry's default
    /// plugin deadline.
    fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(2)
    }

    /// Returns one outcome per event of `batch`, in order, or the reason the
    /// call failed as a whole.
    fn process(&mut self, batch: &[Event]) -> Result<Vec<Outcome>, PluginError>;
}
