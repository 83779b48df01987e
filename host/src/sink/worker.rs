//! The task around each sink: takes jobs in order, hands each to the sink
//! (which retries inside, through the one retry policy), and reports back
//! what was acknowledged and what refused.

use super::{OutEvent, Sink};
use crate::metrics::Metrics;
use crate::retry::{Backoff, Retry};
use crate::shutdown::{Shutdown, Stopped};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// The events a sink refused for good, each with the reason.
pub type RefusedEvents = Vec<(OutEvent, String)>;

/// Events for one sink from one batch, with where to report the result.
pub struct SinkJob {
    /// The events, in order.
    pub events: Vec<OutEvent>,
    /// Receives the result once the sink has taken the events. Dropped
    /// without a result when ferry shuts down first: the batch then stays
    /// unacknowledged and is sent again at the next start.
    pub done: oneshot::Sender<RefusedEvents>,
}

/// Runs `sink` until `jobs` closes, with up to [`Sink::concurrency`] jobs
/// in delivery at once. When shutdown fires, every delivery still waiting
/// to retry stops at once and its job is left unacknowledged (an attempt
/// under way may finish, within the pipeline's shutdown-timeout). Jobs that
/// arrive later get at most one attempt and never a retry: a sink that must
/// wait before its attempt (the HTTP sink, for a free connection) may stop
/// there without trying. Aborting this task aborts its deliveries too.
pub async fn run(
    name: String,
    sink: Box<dyn Sink>,
    mut jobs: mpsc::Receiver<SinkJob>,
    backoff: Backoff,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let sink: Arc<dyn Sink> = Arc::from(sink);
    let limit = sink.concurrency().max(1);
    let name: Arc<str> = name.into();
    let mut deliveries = JoinSet::new();
    while let Some(job) = jobs.recv().await {
        while deliveries.len() >= limit {
            deliveries.join_next().await;
        }
        let retry = Retry::new(backoff, shutdown.clone());
        deliveries.spawn(deliver(name.clone(), sink.clone(), job, retry, metrics.clone()));
        while deliveries.try_join_next().is_some() {}
    }
    while deliveries.join_next().await.is_some() {}
}

/// Delivers one job (the sink retries until it is taken or shutdown cuts a
/// wait), then reports back.
async fn deliver(name: Arc<str>, sink: Arc<dyn Sink>, job: SinkJob, retry: Retry, metrics: Arc<Metrics>) {
    let delivery = match sink.deliver(&job.events, retry).await {
        Ok(delivery) => delivery,
        Err(Stopped) => {
            tracing::warn!(sink = %name, events = job.events.len(), "Shutting down with a delivery unacknowledged; it will be sent again at the next start.");
            return;
        }
    };
    let total = job.events.len() as u64;
    let refused = (delivery.rejected.len() as u64).min(total);
    metrics.add("ferry_sink_events_sent_total", &[("sink", &name)], total - refused);
    metrics.add("ferry_sink_events_failed_total", &[("sink", &name)], refused);
    if delivery.rejected.is_empty() {
        // The common case: no second pass over the batch's events.
        let _ = job.done.send(Vec::new());
        return;
    }
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
    use crate::sink::{DeliverFuture, Delivery, RetryableError, retry_until};
    use std::time::Duration;

    /// Fails a given number of times, then takes everything but index 1.
    struct Flaky {
        failures: u32,
        attempts: Arc<std::sync::atomic::AtomicU32>,
        metrics: Arc<Metrics>,
    }

    impl Sink for Flaky {
        fn deliver<'a>(&'a self, _events: &'a [OutEvent], mut retry: Retry) -> DeliverFuture<'a> {
            Box::pin(async move {
                retry_until("s", &"flaky", &mut retry, &self.metrics, || async {
                    let attempt = self.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if attempt < self.failures {
                        return Err(RetryableError::new("peer down"));
                    }
                    Ok(Delivery { rejected: vec![(1, "400 bad event".into())] })
                })
                .await
            })
        }
    }

    fn events(n: usize) -> Vec<OutEvent> {
        (0..n).map(|i| OutEvent { id: format!("e{i}"), json: format!("{{\"i\":{i}}}").into_bytes(), ..Default::default() }).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_sink_takes_the_events_and_reports_refusals() {
        let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let metrics = Arc::new(Metrics::default());
        let sink = Flaky { failures: 3, attempts: attempts.clone(), metrics: metrics.clone() };
        let (tx, rx) = mpsc::channel(1);
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
        assert_eq!(metrics.get("ferry_sink_events_sent_total", &[("sink", "s")]), 2);
        assert_eq!(metrics.get("ferry_sink_retries_total", &[("sink", "s")]), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_while_retrying_leaves_the_job_unacknowledged() {
        let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let sink = Flaky { failures: u32::MAX, attempts, metrics: Arc::new(Metrics::default()) };
        let (tx, rx) = mpsc::channel(1);
        let (trigger, shutdown) = crate::shutdown::channel();
        // Waits of up to an hour: shutdown must cut them, not wait them out.
        let backoff = Backoff { initial: Duration::from_secs(3600), max: Duration::from_secs(3600) };
        let worker = tokio::spawn(run("s".into(), Box::new(sink), rx, backoff, Arc::new(Metrics::default()), shutdown));
        let (done, result) = oneshot::channel();
        tx.send(SinkJob { events: events(1), done }).await.expect("worker running");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let fired = tokio::time::Instant::now();
        trigger.fire();
        drop(tx);
        worker.await.expect("worker ends");
        assert!(fired.elapsed() < Duration::from_secs(1), "the worker ended {:?} after shutdown", fired.elapsed());
        assert!(result.await.is_err(), "no acknowledgement after shutdown");
    }
}
