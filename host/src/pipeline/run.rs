//! Wires the stages together and runs them to the end of the input or to
//! shutdown.

use super::router::{self, RouterContext};
use super::{Chain, Halted, PipelineConfig, batcher, committer};
use crate::metrics::Metrics;
use crate::shutdown::{self, Shutdown};
use crate::retry::Backoff;
use crate::sink::{self, Sink};
use crate::source::{Source, SourceError};
use crate::state::{State, StateError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// A pipeline ready to run.
pub struct Pipeline {
    /// Where events come from.
    pub source: Source,
    /// The plugins.
    pub chain: Chain,
    /// The sinks, by name.
    pub sinks: BTreeMap<String, Box<dyn Sink>>,
    /// Cursors and dead letters.
    pub state: State,
    /// Batching and flow control.
    pub config: PipelineConfig,
    /// Counters, shared with the plugins.
    pub metrics: Arc<Metrics>,
    /// Retry timing for sinks.
    pub backoff: Backoff,
}

/// Why a pipeline stopped before the end of its input.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A plugin with `on-error = "halt"` failed.
    #[error(transparent)]
    Halted(#[from] Halted),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Records read from the source (events and unreadable input).
    pub events_in: u64,
    /// Deliveries acknowledged by sinks (an event sent to two sinks counts twice).
    pub delivered: u64,
    /// Events dropped by plugins.
    pub dropped: u64,
    /// Events written to the dead-letter table.
    pub dead_lettered: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Summary {
    /// Input records per second over the run.
    pub fn rate(&self) -> f64 {
        self.events_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events in, {} delivered, {} dropped, {} dead-lettered in {:.2}s ({:.0} events/s)",
            self.events_in,
            self.delivered,
            self.dropped,
            self.dead_lettered,
            self.elapsed.as_secs_f64(),
            self.rate()
        )
    }
}

impl Pipeline {
    /// Runs until the source ends or `shutdown` fires, then drains the
    /// batches in flight (for at most `shutdown-timeout`) and returns what
    /// was done. The cursor is committed as batches complete.
    pub async fn run(self, mut shutdown: Shutdown) -> Result<Summary, PipelineError> {
        let started = Instant::now();
        let Pipeline { source, mut chain, sinks, state, config, metrics, backoff } = self;
        let source_name = source.name().to_owned();
        let position = state.cursor(&source_name).await?;
        tracing::info!(source = %source_name, position = position.as_deref().unwrap_or("start"), "Starting the pipeline.");

        // One internal stop signal: fired by the caller's shutdown or by a halting plugin.
        let (stop, stopped) = shutdown::channel();
        let stop = Arc::new(stop);
        let forward = stop.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            forward.fire();
        });

        let size = config.batch_size;
        let (record_tx, record_rx) = mpsc::channel(size);
        let (batch_tx, mut batch_rx) = mpsc::channel::<batcher::Batch>(1);
        let (processed_tx, processed_rx) = mpsc::channel(1);
        let (completed_tx, completed_rx) = mpsc::channel(config.batches_in_flight + 1);
        let in_flight = Arc::new(Semaphore::new(config.batches_in_flight));

        let source_task = tokio::spawn(source.run(position, record_tx, stopped.clone()));
        tokio::spawn(batcher::run(record_rx, batch_tx, size, config.linger.0, in_flight));

        let chain_metrics = metrics.clone();
        let halt = stop.clone();
        let chain_task = tokio::task::spawn_blocking(move || -> Result<(), Halted> {
            while let Some(batch) = batch_rx.blocking_recv() {
                let count = batch.events.len() + batch.invalid.len();
                chain_metrics.add("ferry_events_received_total", &[], count as u64);
                let output = chain.apply_routed(batch.events, batch.sinks).inspect_err(|_| halt.fire())?;
                let processed = router::Processed {
                    seq: batch.seq,
                    position: batch.position,
                    permit: batch.permit,
                    output,
                    invalid: batch.invalid,
                };
                if processed_tx.blocking_send(processed).is_err() {
                    break;
                }
            }
            Ok(())
        });

        let mut jobs = BTreeMap::new();
        for (name, sink) in sinks {
            let (tx, rx) = mpsc::channel(1);
            jobs.insert(name.clone(), tx);
            tokio::spawn(sink::worker::run(name, sink, rx, backoff, metrics.clone(), stopped.clone()));
        }
        let context = RouterContext { source: source_name.clone() };
        tokio::spawn(router::run(processed_rx, jobs, completed_tx, context));
        let mut committer = tokio::spawn(committer::run(completed_rx, state.clone(), source_name, metrics.clone()));

        let mut stopped_wait = stopped.clone();
        let drained = tokio::select! {
            _ = &mut committer => true,
            () = async { stopped_wait.wait().await; tokio::time::sleep(config.shutdown_timeout.0).await } => false,
        };
        if !drained {
            committer.abort();
            tracing::warn!(timeout = ?config.shutdown_timeout.0, "Shutdown deadline passed with batches unacknowledged; they will be sent again at the next start.");
        }
        let source_result = source_task.await;
        let chain_result = chain_task.await;
        state.close().await;
        if let Ok(Err(halted)) = chain_result {
            return Err(halted.into());
        }
        if let Ok(Err(err)) = source_result {
            return Err(err.into());
        }
        Ok(Summary {
            events_in: metrics.total("ferry_events_received_total"),
            delivered: metrics.total("ferry_events_delivered_total"),
            dropped: metrics.total("ferry_events_dropped_total"),
            dead_lettered: metrics.total("ferry_events_dead_lettered_total"),
            elapsed: started.elapsed(),
        })
    }
}
