//! Wires the stages together and runs them to the end of the input or to
//! shutdown.

use super::committer::{self, CommitFailed};
use super::router::{self, RouterContext};
use super::{Chain, Halted, PipelineConfig, batcher, chain_stage};
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::shutdown::{self, Shutdown, Trigger};
use crate::sink::worker::SinkJob;
use crate::sink::{self, Sink};
use crate::source::{Source, SourceError};
use crate::state::{State, StateError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinError, JoinHandle};

/// The environment variable of the test-only switch that commits each batch
/// as soon as it is routed, before any sink acknowledged it (see
/// `RouterContext::commit_before_ack`). Loses events on purpose: it exists
/// so that the torture test can show that it detects loss, and only in a
/// ferry built for its own tests (feature `test-hooks`, which only ferry's
/// dev-dependency on itself turns on).
#[cfg(feature = "test-hooks")]
pub const COMMIT_BEFORE_ACK_VARIABLE: &str = "FERRY_TEST_COMMIT_BEFORE_ACK";

/// Whether the test-only switch above is on; never in a build of the product.
fn commit_before_ack() -> bool {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os(COMMIT_BEFORE_ACK_VARIABLE).is_some_and(|value| value == "1") {
        tracing::warn!(
            variable = COMMIT_BEFORE_ACK_VARIABLE,
            "Test-only switch on: batches are committed before the sinks acknowledge them, so events can be lost. Never set this outside ferry's tests."
        );
        return true;
    }
    false
}

/// The part of `shutdown-timeout` kept for winding down (at most 500 ms):
/// the stages are given the rest to drain.
const WIND_DOWN: Duration = Duration::from_millis(500);

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
    /// The state database kept refusing commits.
    #[error(transparent)]
    Commit(#[from] CommitFailed),
    /// A stage panicked (a bug in ferry).
    #[error("the {stage} stage of the pipeline panicked; stopping so that the service manager restarts ferry")]
    Panicked {
        /// Which stage.
        stage: &'static str,
    },
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
    /// What the run that started at `started` did, read from its counters.
    fn of_run(metrics: &Metrics, started: Instant) -> Summary {
        Summary {
            events_in: metrics.total("ferry_events_received_total"),
            delivered: metrics.total("ferry_sink_events_sent_total"),
            dropped: metrics.total("ferry_plugin_events_dropped_total"),
            dead_lettered: metrics.total("ferry_events_dead_lettered_total"),
            elapsed: started.elapsed(),
        }
    }

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
    /// batches in flight and returns what was done. The cursor is committed
    /// as batches complete. Once shutdown fires, this returns within
    /// `shutdown-timeout` whatever the source, the plugins or the sinks are
    /// doing: what was not acknowledged by then is not committed, and is
    /// sent again at the next start.
    pub async fn run(self, shutdown: Shutdown) -> Result<Summary, PipelineError> {
        let started = Instant::now();
        let source_name = self.source.name().to_owned();
        let position = self.state.cursor(&source_name).await?;
        tracing::info!(source = %source_name, position = position.as_deref().unwrap_or("start"), "Starting the pipeline.");
        let (stop, stopped) = stop_signal(shutdown);
        let (state, metrics, timeout) = (self.state.clone(), self.metrics.clone(), self.config.shutdown_timeout.0);
        let stages = self.start_stages(position, &stop, &stopped);
        stages.drain(&stop, stopped, timeout, &state).await?;
        Ok(Summary::of_run(&metrics, started))
    }

    /// Starts every stage, each joined to the next by a bounded channel:
    /// source → batcher → plugin chain → router → a worker per sink, and
    /// the committer behind them. The semaphore's permits are the batches
    /// in flight: the batcher takes one per batch and it is given back once
    /// the batch is committed, so a slow sink slows the source.
    fn start_stages(self, position: Option<String>, stop: &Trigger, stopped: &Shutdown) -> Stages {
        let Pipeline { source, chain, sinks, state, config, metrics, backoff } = self;
        let source_name = source.name().to_owned();
        let size = config.batch_size();
        let (record_tx, record_rx) = mpsc::channel(size);
        let (batch_tx, batch_rx) = mpsc::channel::<batcher::Batch>(1);
        let (processed_tx, processed_rx) = mpsc::channel(1);
        let (completed_tx, completed_rx) = mpsc::channel(config.batches_in_flight.saturating_add(1).min(Semaphore::MAX_PERMITS));
        let in_flight = Arc::new(Semaphore::new(config.batches_in_flight));

        let source = tokio::spawn(source.run(position, record_tx, stopped.clone()));
        let mut others = vec![tokio::spawn(batcher::run(record_rx, batch_tx, size, config.linger.0, in_flight, stopped.clone()))];
        let (chain_metrics, halt, chain_stopped) = (metrics.clone(), stop.clone(), stopped.clone());
        let chain =
            tokio::task::spawn_blocking(move || chain_stage::run(chain, batch_rx, processed_tx, chain_metrics, halt, chain_stopped));
        let jobs = spawn_sinks(sinks, backoff, &metrics, stopped, &mut others);
        others.push(tokio::spawn(router::run(processed_rx, jobs, completed_tx, router_context(&source_name))));
        let committer = tokio::spawn(committer::run(completed_rx, state, source_name, metrics, stopped.clone()));
        Stages { source, chain, committer, others }
    }
}

/// One internal stop signal, fired by the caller's `shutdown`, by a
/// halting plugin, or by a committer that gave up: every stage watches this
/// one, so whichever comes first winds down the whole pipeline.
fn stop_signal(mut shutdown: Shutdown) -> (Trigger, Shutdown) {
    let (stop, stopped) = shutdown::channel();
    let forward = stop.clone();
    tokio::spawn(async move {
        shutdown.wait().await;
        forward.fire();
    });
    (stop, stopped)
}

/// Starts a worker per sink (into `tasks`); returns where each takes its jobs.
fn spawn_sinks(
    sinks: BTreeMap<String, Box<dyn Sink>>,
    backoff: Backoff,
    metrics: &Arc<Metrics>,
    stopped: &Shutdown,
    tasks: &mut Vec<JoinHandle<()>>,
) -> BTreeMap<String, mpsc::Sender<SinkJob>> {
    let mut jobs = BTreeMap::new();
    for (name, sink) in sinks {
        let (tx, rx) = mpsc::channel(1);
        jobs.insert(name.clone(), tx);
        tasks.push(tokio::spawn(sink::worker::run(name, sink, rx, backoff, metrics.clone(), stopped.clone())));
    }
    jobs
}

/// What the router needs, with the test-only switch read (and warned
/// about) here, once.
fn router_context(source: &str) -> RouterContext {
    RouterContext { source: source.to_owned(), commit_before_ack: commit_before_ack() }
}

/// The tasks of a running pipeline. The source, the chain and the
/// committer end with what went wrong, so they are kept by name; the other
/// stages (batcher, router, sink workers) end quietly and are only aborted.
struct Stages {
    source: JoinHandle<Result<(), SourceError>>,
    chain: JoinHandle<Result<(), Halted>>,
    committer: JoinHandle<Result<(), CommitFailed>>,
    others: Vec<JoinHandle<()>>,
}

impl Stages {
    /// Waits for the run to end, then stops every stage and says why it
    /// ended: the first of a commit failure, a halting plugin, a source
    /// error, or a panic in one of them (in that order). The committer ends
    /// once every stage before it has ended; once the stop fires, the stages
    /// get `timeout` (less a moment to wind down) to get there.
    async fn drain(mut self, stop: &Trigger, stopped: Shutdown, timeout: Duration, state: &State) -> Result<(), PipelineError> {
        let wind_down = WIND_DOWN.min(timeout / 4);
        let (committed, deadline) = self.committed_or_deadline(stopped, timeout, wind_down).await;
        // From here on every stage stops, whatever it was doing.
        stop.fire();
        let deadline = deadline.unwrap_or_else(|| tokio::time::Instant::now() + wind_down);
        if committed.is_none() {
            self.committer.abort();
            tracing::warn!(timeout = ?timeout, "Shutdown deadline passed with batches unacknowledged; they will be sent again at the next start.");
        }
        let (source, chain) = self.stop_by(deadline).await;
        let _ = tokio::time::timeout_at(deadline.max(tokio::time::Instant::now() + Duration::from_millis(100)), state.close()).await;
        ended(committed, "commit")?;
        chain?;
        source
    }

    /// The committer's end, or, if the stop fires first, the shutdown
    /// deadline: `timeout` after the stop, reached `wind_down` early.
    async fn committed_or_deadline(
        &mut self,
        mut stopped: Shutdown,
        timeout: Duration,
        wind_down: Duration,
    ) -> (Option<Joined<CommitFailed>>, Option<tokio::time::Instant>) {
        let deadline = async {
            stopped.wait().await;
            let deadline = tokio::time::Instant::now() + timeout;
            tokio::time::sleep_until(deadline - wind_down).await;
            deadline
        };
        tokio::select! {
            committed = &mut self.committer => (Some(committed), None),
            deadline = deadline => (None, Some(deadline)),
        }
    }

    /// Aborts the async stages, then waits for the source and the chain
    /// (told to stop, their channels closed) only until `deadline`. A plugin
    /// call or a source read still under way then is left behind: ferry
    /// exits without it. Returns how each ended, as [`ended`] reads it.
    async fn stop_by(&mut self, deadline: tokio::time::Instant) -> (Result<(), PipelineError>, Result<(), PipelineError>) {
        for task in &self.others {
            task.abort();
        }
        let source = tokio::time::timeout_at(deadline, &mut self.source).await;
        let chain = tokio::time::timeout_at(deadline, &mut self.chain).await;
        if source.is_err() || chain.is_err() {
            self.source.abort();
            tracing::warn!("The source or a plugin call did not stop in time; leaving it behind.");
        }
        (ended(source.ok(), "source"), ended(chain.ok(), "plugin chain"))
    }
}

/// How a stage's task ended: the task's own result, or the join error of
/// one that panicked or was aborted.
type Joined<E> = Result<Result<(), E>, JoinError>;

/// What a stage's end means for the run: its error, or
/// [`PipelineError::Panicked`] naming `stage`. A stage that ended well, was
/// aborted, or was left behind at the shutdown deadline (`None`) ends the
/// run without error: what it had not finished is not committed.
fn ended<E>(joined: Option<Joined<E>>, stage: &'static str) -> Result<(), PipelineError>
where
    PipelineError: From<E>,
{
    match joined {
        Some(Ok(Err(error))) => Err(error.into()),
        Some(Err(join)) if join.is_panic() => Err(PipelineError::Panicked { stage }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::FerryConfig;
    use crate::event::{Event, Outcome};
    use crate::plugin::{OnError, PluginError, Transform};

    /// A plugin whose every call panics: a bug in ferry's own code.
    struct Panics;

    impl Transform for Panics {
        fn name(&self) -> &str {
            "panics"
        }

        fn on_error(&self) -> OnError {
            OnError::Halt
        }

        fn process(&mut self, _batch: &[Event]) -> Result<Vec<Outcome>, PluginError> {
            panic!("a bug");
        }
    }

    /// A plugin whose second and later calls take 3 s.
    struct SlowAfterFirst(u32);

    impl Transform for SlowAfterFirst {
        fn name(&self) -> &str {
            "slow"
        }

        fn on_error(&self) -> OnError {
            OnError::Halt
        }

        fn process(&mut self, batch: &[Event]) -> Result<Vec<Outcome>, PluginError> {
            self.0 += 1;
            if self.0 > 1 {
                std::thread::sleep(Duration::from_secs(3));
            }
            Ok(vec![Outcome::Keep; batch.len()])
        }
    }

    /// A sink that never answers and never looks at shutdown.
    struct Hangs;

    impl crate::sink::Sink for Hangs {
        fn deliver<'a>(&'a self, _events: &'a [crate::sink::OutEvent], _retry: crate::retry::Retry) -> crate::sink::DeliverFuture<'a> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_ends_the_run_within_its_timeout_whatever_source_plugin_and_sink_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input: String = (0..100).map(|i| format!("{{\"uid\":\"e{i}\",\"event\":\"x\"}}\n")).collect();
        std::fs::write(dir.path().join("in.jsonl"), input).expect("input");
        let text = "storage = \"storage\"\n[pipeline]\nbatch-size = 1\nbatches-in-flight = 2\nlinger = \"10ms\"\nshutdown-timeout = \"1s\"\n\
                    [source.file]\npath = \"in.jsonl\"\nfollow = true\n[sinks.default]\ntype = \"file\"\npath = \"out.jsonl\"\n";
        let config = FerryConfig::parse(text, &dir.path().join("ferry.toml")).expect("config");
        let metrics = Arc::new(Metrics::default());
        let mut parts = crate::app::build_parts(&config, metrics.clone(), false).await.expect("parts");
        parts.sinks.insert("default".into(), Box::new(Hangs));
        let pipeline = crate::app::assemble(&config, parts, vec![Box::new(SlowAfterFirst(0))], metrics.clone()).await.expect("pipeline");
        let state = pipeline.state.clone();
        let source = pipeline.source.name().to_owned();
        let (trigger, shutdown) = crate::shutdown::channel();
        let run = tokio::spawn(pipeline.run(shutdown));
        // The sink holds the first batch, the plugin the second, and the source waits for room.
        while metrics.total("ferry_events_received_total") < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let fired = Instant::now();
        trigger.fire();
        let ended = tokio::time::timeout(Duration::from_secs(5), run).await.expect("the run ends").expect("joins");
        let took = fired.elapsed();
        assert!(ended.is_ok(), "{ended:?}");
        assert!(took < Duration::from_millis(1200), "the run took {took:?} after shutdown with shutdown-timeout = 1s");
        let state = State::open(state.path().expect("SQLite")).await.expect("reopen");
        assert_eq!(state.cursor(&source).await.expect("read"), None, "nothing acknowledged, nothing committed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_stage_ends_the_run_with_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("in.jsonl"), "{\"uid\":\"a\",\"event\":\"x\"}\n").expect("input");
        let text = "storage = \"storage\"\n[source.file]\npath = \"in.jsonl\"\nfollow = false\n[sinks.default]\ntype = \"file\"\npath = \"out.jsonl\"\n";
        let config = FerryConfig::parse(text, &dir.path().join("ferry.toml")).expect("config");
        let metrics = Arc::new(Metrics::default());
        let parts = crate::app::build_parts(&config, metrics.clone(), false).await.expect("parts");
        let pipeline = crate::app::assemble(&config, parts, vec![Box::new(Panics)], metrics).await.expect("pipeline");
        let ended = tokio::time::timeout(Duration::from_secs(20), pipeline.run(Shutdown::never())).await.expect("the run ends");
        assert!(matches!(ended, Err(PipelineError::Panicked { stage: "plugin chain" })), "{ended:?}");
        assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default(), "", "nothing delivered");
    }
}
