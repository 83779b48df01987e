//! The plugin chain as a stage: takes each batch from the batcher, runs it
//! through the plugins and hands what came out to the router.

use super::batcher::Batch;
use super::router::Processed;
use super::{Chain, Halted};
use crate::metrics::Metrics;
use crate::shutdown::{Shutdown, Trigger};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Runs each batch through `chain`, in batch order, until `batches` closes,
/// the router is gone or `stopped` fires. Blocking: plugin calls are CPU
/// work that must not hold up the async stages, so this runs on a thread of
/// its own (`spawn_blocking`). The chain takes new plugins from its swap
/// handle at the start of a batch, so hot reload needs nothing here.
///
/// A plugin with `on-error = "halt"` that fails fires `halt` at once, so
/// that the batches before it drain within `shutdown-timeout`, and ends the
/// stage with [`Halted`]; its batch is never handed on, so its position is
/// never committed.
pub fn run(
    mut chain: Chain,
    mut batches: mpsc::Receiver<Batch>,
    processed: mpsc::Sender<Processed>,
    metrics: Arc<Metrics>,
    halt: Trigger,
    stopped: Shutdown,
) -> Result<(), Halted> {
    while let Some(batch) = batches.blocking_recv() {
        // A batch that reaches the chain after shutdown would not be
        // handed to the sinks anyway: spare its plugin calls.
        if stopped.is_fired() {
            break;
        }
        let done = process(&mut chain, batch, &metrics).inspect_err(|_| halt.fire())?;
        if processed.blocking_send(done).is_err() {
            break;
        }
    }
    Ok(())
}

/// Runs one batch through the chain, counting it as received and marking
/// the chain busy meanwhile, so that `/healthz` reports a batch stuck in
/// the plugins.
fn process(chain: &mut Chain, batch: Batch, metrics: &Metrics) -> Result<Processed, Halted> {
    let count = batch.events.len() + batch.invalid.len();
    metrics.add("ferry_events_received_total", &[], count as u64);
    // One reading of the batch's times, for the cursor's commit
    // (`ferry status`) and for the lag metric.
    let newest = newest_time(&batch);
    if let Some(newest) = newest {
        metrics.batch_read(batch.seq, newest);
    }
    crate::observe::health().chain_busy(true);
    let output = chain.apply(batch.events)?;
    crate::observe::health().chain_busy(false);
    Ok(Processed { seq: batch.seq, position: batch.position, permit: batch.permit, output, invalid: batch.invalid, newest })
}

/// The newest event time in `batch`; events whose time does not parse are
/// left out.
fn newest_time(batch: &Batch) -> Option<SystemTime> {
    batch.events.iter().filter_map(|event| crate::units::parse_time(&event.time).ok()).max()
}
