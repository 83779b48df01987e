//! Hands each processed batch to its sinks and, once every sink has
//! answered, records the batch's dead letters and reports it complete.

use super::ChainOutput;
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
}

/// Sends each batch's events to their sinks in batch order, so that every
/// sink sees events in source order, then waits for the answers off to the
/// side so that the next batch can go out meanwhile.
pub async fn run(
    mut processed: mpsc::Receiver<Processed>,
    sinks: BTreeMap<String, mpsc::Sender<SinkJob>>,
    completed: mpsc::Sender<Completed>,
    context: RouterContext,
) {
    while let Some(batch) = processed.recv().await {
        let Processed { seq, position, permit, output, invalid } = batch;
        let mut answers = Vec::with_capacity(output.deliveries.len());
        for (sink, events) in output.deliveries {
            let Some(jobs) = sinks.get(&sink) else { unreachable!("the chain routes only to configured sinks") };
            let (done, answer) = oneshot::channel();
            if jobs.send(SinkJob { events, done }).await.is_err() {
                return; // The sink stopped: ferry is shutting down.
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
