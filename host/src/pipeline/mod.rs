//! The pipeline: source → batcher → plugin chain → router → sinks, with the
//! cursor committed behind them.
//!
//! Every stage is joined to the next by a bounded channel, and a semaphore
//! caps the batches in flight, so a slow sink slows the source instead of
//! filling memory: memory stays near `batch-size × batches-in-flight` events.
//!
//! Every input event is accounted for: delivered to each sink it was routed
//! to, dropped by a plugin (counted), or written to the dead-letter table.
//! The cursor moves past a batch only when all of that is done for it and
//! for every batch before it, so a crash at any moment loses nothing and
//! re-sends at most the batches that were in flight.

mod batcher;
mod chain;
mod chain_stage;
mod committer;
mod config;
mod json;
mod router;
mod run;
#[cfg(test)]
mod tests;

pub use chain::{Chain, ChainOutput, ChainSwap, EventFate, Halted, settle};
pub use config::{MAX_BATCH_SIZE, PipelineConfig};
pub use run::{Pipeline, PipelineError, Summary};
