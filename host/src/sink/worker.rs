//! The task around each sink: takes jobs in order, retries until the sink
//! takes them, and reports back what was acknowledged and what refused.

use super::retry::Backoff;
use super::{OutEvent, Sink};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Events for one sink from one batch, with where to report the result.
pub struct SinkJob {
    /// The events, in order.
    pub events: Vec<OutEvent>,
    /// Receives the result once the sink has taken the events. Dropped
    /// without a result when ferry shuts down first: the batch then stays
    /// unacknowledged and is sent again at the next start.
    pub done: oneshot::Sender<Vec<(OutEvent, String)>>,
}

/// Runs `sink` until `jobs` closes or shutdown fires while a delivery is
/// being retried.
pub async fn run(
    name: String,
    mut sink: Box<dyn Sink>,
    mut jobs: mpsc::Receiver<SinkJob>,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    while let Some(job) = jobs.recv().await {
        let mut attempt = 0;
        let delivery = loop {
            match sink.deliver(&job.events).await {
                Ok(delivery) => break delivery,
                Err(err) => {
                    metrics.add("ferry_sink_retries_total", &[("sink", &name)], 1);
                    let delay = backoff.delay(attempt);
                    tracing::warn!(sink = %name, error = %err, attempt = attempt + 1, retry_in = ?delay, "Delivery failed; retrying.");
                    attempt = attempt.saturating_add(1);
                    if shutdown.sleep_or_stop(delay).await {
                        tracing::warn!(sink = %name, events = job.events.len(), "Shutting down with a delivery unacknowledged; it will be sent again at the next start.");
                        return;
                    }
                }
            }
        };
        let refused = delivery.rejected.len() as u64;
        metrics.add("ferry_events_delivered_total", &[("sink", &name)], job.events.len() as u64 - refused.min(job.events.len() as u64));
        let mut events: Vec<Option<OutEvent>> = job.events.into_iter().map(Some).collect();
        let rejected = delivery
            .rejected
            .into_iter()
            .filter_map(|(index, reason)| events.get_mut(index).and_then(Option::take).map(|event| (event, reason)))
            .collect();
        // The pipeline may have given up on this batch (shutdown); that is fine.
        let _ = job.done.send(rejected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{DeliverFuture, Delivery, RetryableError};
    use std::time::Duration;

    /// Fails a given number of times, then takes everything but index 1.
    struct Flaky {
        failures_left: u32,
        attempts: Arc<std::sync::atomic::AtomicU32>,
    }

    impl Sink for Flaky {
        fn deliver<'a>(&'a mut self, _events: &'a [OutEvent]) -> DeliverFuture<'a> {
            Box::pin(async move {
                self.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if self.failures_left > 0 {
                    self.failures_left -= 1;
                    return Err(RetryableError("peer down".into()));
                }
                Ok(Delivery { rejected: vec![(1, "400 bad event".into())] })
            })
        }
    }

    fn events(n: usize) -> Vec<OutEvent> {
        (0..n).map(|i| OutEvent { id: format!("e{i}"), json: format!("{{\"i\":{i}}}").into_bytes() }).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_sink_takes_the_events_and_reports_refusals() {
        let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let sink = Flaky { failures_left: 3, attempts: attempts.clone() };
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
        let sink = Flaky { failures_left: u32::MAX, attempts };
        let (tx, rx) = mpsc::channel(1);
        let (trigger, shutdown) = crate::shutdown::channel();
        let worker = tokio::spawn(run("s".into(), Box::new(sink), rx, Backoff::default(), Arc::new(Metrics::default()), shutdown));
        let (done, result) = oneshot::channel();
        tx.send(SinkJob { events: events(1), done }).await.expect("worker running");
        tokio::time::sleep(Duration::from_secs(5)).await;
        trigger.fire();
        worker.await.expect("worker ends");
        assert!(result.await.is_err(), "no acknowledgement after shutdown");
    }
}
