//! Hands each processed batch to its sinks and, once every sink has
//! answered, records the batch's dead letters and reports it complete.

use super::ChainOutput;
use crate::shutdown::Shutdown;
use crate::sink::OutEvent;
use crate::sink::worker::SinkJob;
use crate::source::Invalid;
use crate::state::{DeadLetter, Stage};
use std::collections::BTreeMap;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// A batch after the plugin chain.
pub struct Processed {
    /// The batch's sequence number.
    pub seq: u64,
    /// The source position just past the batch.
    pub position: String,
    /// The batch's in-flight slot.
    pub permit: OwnedSemaphorePermit,
    /// What the chain made of it.
    pub output: ChainOutput,
    /// Input the source could not read.
    pub invalid: Vec<Invalid>,
}

/// A batch whose every event is delivered, dropped or about to be
/// dead-lettered (with the cursor, in one transaction).
pub struct Completed {
    /// The batch's sequence number.
    pub seq: u64,
    /// The source position just past the batch.
    pub position: String,
    /// The batch's events that could not be delivered.
    pub dead: Vec<DeadLetter>,
    /// Released once the position is committed.
    #[expect(dead_code, reason = "held, never read: dropping it frees the in-flight slot")]
    pub permit: OwnedSemaphorePermit,
}

/// What the router needs besides its channels.
#[derive(Clone)]
pub struct RouterContext {
    /// The source name, for dead letters.
    pub source: String,
    /// Test-only and deliberately wrong (`FERRY_TEST_COMMIT_BEFORE_ACK=1`):
    /// report each batch complete as soon as it is handed to its sinks,
    /// without waiting for them, so that the torture test can show that it
    /// notices the loss this causes. Sink refusals are then not
    /// dead-lettered either.
    pub commit_before_ack: bool,
}

/// Sends each batch's events to their sinks in batch order, so that every
/// sink sees events in source order, then waits for the answers off to the
/// side so that the next batch can go out meanwhile.
///
/// Once `shutdown` fires, a batch not yet handed to every one of its sinks
/// is abandoned (never reported complete, so never committed: it is sent
/// again at the next start); batches already with their sinks complete as
/// the sinks answer.
pub async fn run(
    mut processed: mpsc::Receiver<Processed>,
    sinks: BTreeMap<String, mpsc::Sender<SinkJob>>,
    completed: mpsc::Sender<Completed>,
    context: RouterContext,
    mut shutdown: Shutdown,
) {
    while let Some(batch) = processed.recv().await {
        let Processed { seq, position, permit, output, invalid } = batch;
        let mut answers = Vec::with_capacity(output.deliveries.len());
        for (sink, events) in output.deliveries {
            let Some(jobs) = sinks.get(&sink) else { unreachable!("the chain routes only to configured sinks") };
            let (done, answer) = oneshot::channel();
            let handed = tokio::select! {
                sent = jobs.send(SinkJob { events, done }) => sent.is_ok(),
                () = shutdown.wait() => false,
            };
            if !handed {
                return; // Shutting down: the sink stopped, or no room before shutdown.
            }
            answers.push((sink, answer));
        }
        let mut dead = output.dead;
        dead.extend(invalid.into_iter().map(|bad| DeadLetter {
            source: context.source.clone(),
            position: Some(bad.position),
            event_id: None,
            stage: Stage::Source,
            component: context.source.clone(),
            reason: bad.reason,
            payload: bad.raw,
        }));
        let done = Completed { seq, position, permit, dead };
        if context.commit_before_ack {
            // Test-only (see `RouterContext`): the sinks still deliver, but
            // nobody waits for them before the position is committed.
            tokio::spawn(async move {
                for (_, answer) in answers {
                    let _ = answer.await;
                }
            });
            if completed.send(done).await.is_err() {
                return;
            }
            continue;
        }
        tokio::spawn(complete(answers, done, completed.clone(), context.clone()));
    }
}

/// Waits for every sink's answer and reports the batch complete. Returns
/// quietly if a sink gave up because of shutdown: the batch then stays
/// uncommitted.
async fn complete(
    answers: Vec<(String, oneshot::Receiver<Vec<(OutEvent, String)>>)>,
    mut done: Completed,
    completed: mpsc::Sender<Completed>,
    context: RouterContext,
) {
    for (sink, answer) in answers {
        let Ok(refused) = answer.await else { return };
        done.dead.extend(refused.into_iter().map(|(event, reason)| DeadLetter {
            source: context.source.clone(),
            position: None,
            event_id: Some(event.id),
            stage: Stage::Sink,
            component: sink.clone(),
            reason,
            payload: event.json,
        }));
    }
    let _ = completed.send(done).await;
}
