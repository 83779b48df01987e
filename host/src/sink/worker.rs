//! The task around each sink: takes jobs in order, retries until the sink
//! takes them, and reports back what was acknowledged and what refused.

use crate::retry::Backoff;
use super::{OutEvent, Sink};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The longest `Retry-After` ferry honours; a peer asking for more is
/// probably misconfigured, and waiting hours would look like a hang.
const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// Events for one sink from one batch, with where to report the result.
pub struct SinkJob {
    /// The events, in order.
    pub events: Vec<OutEvent>,
    /// Receives the result once the sink has taken the events. Dropped
    /// without a result when ferry shuts down first: the batch then stays
    /// unacknowledged and is sent again at the next start.
    pub done: oneshot::Sender<Vec<(OutEvent, String)>>,
}

/// Runs `sink` until `jobs` closes, with up to [`Sink::concurrency`] jobs
/// in delivery at once. A job whose delivery is still being retried when
/// shutdown fires is left unacknowledged.
pub async fn run(
    name: String,
    sink: Box<dyn Sink>,
    mut jobs: mpsc::Receiver<SinkJob>,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let sink: Arc<dyn Sink> = Arc::from(sink);
    let slots = Arc::new(tokio::sync::Semaphore::new(sink.concurrency().max(1)));
    let name: Arc<str> = name.into();
    while let Some(job) = jobs.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let delivery = deliver(name.clone(), sink.clone(), job, backoff, metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            delivery.await;
            drop(slot);
        });
    }
    // Wait for the deliveries still running before the sink is dropped.
    let _ = slots.acquire_many(u32::try_from(sink.concurrency().max(1)).unwrap_or(1)).await;
}

/// Delivers one job, retrying until the sink takes it, then reports back.
async fn deliver(name: Arc<str>, sink: Arc<dyn Sink>, job: SinkJob, backoff: Backoff, metrics: Arc<Metrics>, mut shutdown: Shutdown) {
    let mut attempt = 0;
    let delivery = loop {
        // An attempt under way is never cut short: its write may land anyway,
        // and cutting it would only turn it into a duplicate. Shutdown is
        // heeded between attempts; the pipeline's shutdown-timeout bounds
        // an attempt that hangs.
        match sink.deliver(&job.events).await {
            Ok(delivery) => break delivery,
            Err(err) => {
                metrics.add("ferry_sink_retries_total", &[("sink", &name)], 1);
                // A peer's Retry-After is honoured, within reason.
                let delay = match err.retry_after {
                    Some(after) => after.min(MAX_RETRY_AFTER),
                    None => backoff.delay(attempt),
                };
                tracing::warn!(sink = %name, error = %err, attempt = attempt + 1, retry_in = ?delay, "Delivery failed; retrying.");
                attempt = attempt.saturating_add(1);
                if shutdown.sleep_or_stop(delay).await {
                    tracing::warn!(sink = %name, events = job.events.len(), "Shutting down with a delivery unacknowledged; it will be sent again at the next start.");
                    return;
                }
            }
        }
    };
    let total = job.events.len() as u64;
    let refused = (delivery.rejected.len() as u64).min(total);
    metrics.add("ferry_events_delivered_total", &[("sink", &name)], total - refused);
    let mut events: Vec<Option<OutEvent>> = job.events.into_iter().map(Some).collect();
    let rejected = delivery
        .rejected
        .into_iter()
        .filter_map(|(index, reason)| events.get_mut(index).and_then(Option::take).map(|event| (event, reason)))
        .collect();
    // The pipeline may have given up on this batch (shutdown); that is fine.
    let _ = job.done.send(rejected);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{DeliverFuture, Delivery, RetryableError};
    use std::time::Duration;

    /// Fails a given number of times, then takes everything but index 1.
    struct Flaky {
        failures: u32,
        attempts: Arc<std::sync::atomic::AtomicU32>,
    }

    impl Sink for Flaky {
        fn deliver<'a>(&'a self, _events: &'a [OutEvent]) -> DeliverFuture<'a> {
            Box::pin(async move {
                let attempt = self.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if attempt < self.failures {
                    return Err(RetryableError::new("peer down"));
                }
                Ok(Delivery { rejected: vec![(1, "400 bad event".into())] })
            })
        }
    }

    fn events(n: usize) -> Vec<OutEvent> {
        (0..n).map(|i| OutEvent { id: format!("e{i}"), json: format!("{{\"i\":{i}}}").into_bytes(), ..Default::default() }).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_sink_takes_the_events_and_reports_refusals() {
        let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let sink = Flaky { failures: 3, attempts: attempts.clone() };
        let (tx, rx) = mpsc::channel(1);
        let metrics = Arc::new(Metrics::default());
        let (_trigger, shutdown) = crate::shutdown::channel();
        let backoff = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(4) };
        tokio::spawn(run("s".into(), Box::new(sink), rx, backoff, metrics.clone(), shutdown));
        let (done, result) = oneshot::channel();
        tx.send(SinkJob { events: events(3), done }).await.expect("worker running");
        let rejected = result.await.expect("acknowledged");
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0.id, "e1");
        assert_eq!(rejected[0].1, "400 bad event");
        assert_eq!(metrics.get("ferry_events_delivered_total", &[("sink", "s")]), 2);
        assert_eq!(metrics.get("ferry_sink_retries_total", &[("sink", "s")]), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_while_retrying_leaves_the_job_unacknowledged() {
        let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let sink = Flaky { failures: u32::MAX, attempts };
        let (tx, rx) = mpsc::channel(1);
        let (trigger, shutdown) = crate::shutdown::channel();
        let worker = tokio::spawn(run("s".into(), Box::new(sink), rx, Backoff::default(), Arc::new(Metrics::default()), shutdown));
        let (done, result) = oneshot::channel();
        tx.send(SinkJob { events: events(1), done }).await.expect("worker running");
        tokio::time::sleep(Duration::from_secs(5)).await;
        trigger.fire();
        drop(tx);
        worker.await.expect("worker ends");
        assert!(result.await.is_err(), "no acknowledgement after shutdown");
    }
}
