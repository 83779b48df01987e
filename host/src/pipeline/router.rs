//! Hands each processed batch to its sinks and, once every sink has
//! answered, records the batch's dead letters and reports it complete.

use super::ChainOutput;
use crate::sink::OutEvent;
use crate::sink::worker::{RefusedEvents, SinkJob};
use crate::source::{Invalid, Position};
use crate::state::{DeadLetter, Stage};
use std::collections::BTreeMap;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// A batch after the plugin chain.
pub struct Processed {
    /// The batch's sequence number.
    pub seq: u64,
    /// The source position just past the batch.
    pub position: Position,
    /// The batch's in-flight slot.
    pub permit: OwnedSemaphorePermit,
    /// What the chain made of it.
    pub output: ChainOutput,
    /// Input the source could not read.
    pub invalid: Vec<Invalid>,
    /// The newest event time in the batch, stored with its cursor.
    pub newest: Option<std::time::SystemTime>,
}

/// A batch whose every event is delivered, dropped or about to be
/// dead-lettered (with the cursor, in one transaction).
pub struct Completed {
    /// The batch's sequence number.
    pub seq: u64,
    /// The source position just past the batch.
    pub position: Position,
    /// The batch's events that could not be delivered.
    pub dead: Vec<DeadLetter>,
    /// The newest event time in the batch, stored with its cursor.
    pub newest: Option<std::time::SystemTime>,
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
/// A processed batch always goes to its sinks, shutdown or not: a halting
/// plugin stops ferry after the batches before it were processed, and those
/// are delivered rather than cut at a boundary chosen by timing. After
/// shutdown each sink gives a job one attempt, and the pipeline's
/// shutdown deadline aborts whatever is still waiting then (never reported
/// complete, so never committed: it is sent again at the next start).
pub async fn run(
    mut processed: mpsc::Receiver<Processed>,
    sinks: BTreeMap<String, mpsc::Sender<SinkJob>>,
    completed: mpsc::Sender<Completed>,
    context: RouterContext,
) {
    while let Some(batch) = processed.recv().await {
        let Processed { seq, position, permit, output, invalid, newest } = batch;
        let Some(answers) = hand_to_sinks(output.deliveries, &sinks).await else {
            return; // A sink's worker was aborted at the shutdown deadline.
        };
        let mut dead = output.dead;
        dead.extend(invalid.into_iter().map(|bad| source_letter(bad, &context.source)));
        let done = Completed { seq, position, permit, dead, newest };
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

/// Queues each sink's share of a batch at that sink, in sink-name order,
/// waiting for room (a batch is never abandoned for a full queue); returns
/// where each sink will answer, or `None` when a sink's worker is gone.
async fn hand_to_sinks(
    deliveries: BTreeMap<String, Vec<OutEvent>>,
    sinks: &BTreeMap<String, mpsc::Sender<SinkJob>>,
) -> Option<Vec<(String, oneshot::Receiver<RefusedEvents>)>> {
    let mut answers = Vec::with_capacity(deliveries.len());
    for (sink, events) in deliveries {
        let Some(jobs) = sinks.get(&sink) else { unreachable!("the chain routes only to configured sinks") };
        let (done, answer) = oneshot::channel();
        jobs.send(SinkJob { events, done }).await.ok()?;
        answers.push((sink, answer));
    }
    Some(answers)
}

/// The dead letter of input the source could not read as an event: it has
/// a position but no event id, and is kept with the batch it was read in,
/// so that the cursor never moves past it before it is stored.
fn source_letter(bad: Invalid, source: &str) -> DeadLetter {
    DeadLetter {
        source: source.to_owned(),
        position: Some(bad.position),
        event_id: None,
        stage: Stage::Source,
        component: source.to_owned(),
        reason: bad.reason,
        payload: bad.raw,
        session_id: None,
        sink: None,
    }
}

/// Waits for every sink's answer and reports the batch complete. Returns
/// quietly if a sink gave up because of shutdown: the batch then stays
/// uncommitted.
async fn complete(
    answers: Vec<(String, oneshot::Receiver<RefusedEvents>)>,
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
            // The session it was posted under (a recording's, even for its
            // `print` events): a replay posts it to the same URL.
            session_id: Some(event.session_id).filter(|sid| !sid.is_empty()),
            sink: None,
        }));
    }
    let _ = completed.send(done).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    fn processed(seq: u64, permit: OwnedSemaphorePermit) -> Processed {
        let event = OutEvent { id: format!("e{seq}"), session_id: String::new(), json: b"{}".to_vec() };
        let mut output = ChainOutput::default();
        output.deliveries.insert("s".into(), vec![event]);
        Processed { seq, position: seq.to_string().into(), permit, output, invalid: Vec::new(), newest: None }
    }

    /// A halting plugin stops ferry after the batches before it were
    /// processed: those must reach their sink even when its queue is full for
    /// a moment, or the output stops at a batch boundary chosen by timing.
    #[tokio::test]
    async fn a_processed_batch_waits_for_room_at_its_sink_and_is_never_abandoned() {
        let permits = Arc::new(Semaphore::new(2));
        let (processed_tx, processed_rx) = mpsc::channel(2);
        for seq in [1, 2] {
            processed_tx.send(processed(seq, permits.clone().try_acquire_owned().expect("a permit"))).await.expect("room");
        }
        drop(processed_tx);
        let (job_tx, mut job_rx) = mpsc::channel(1);
        let (completed_tx, _completed_rx) = mpsc::channel(2);
        let context = RouterContext { source: "src".into(), commit_before_ack: false };
        let router = tokio::spawn(run(processed_rx, BTreeMap::from([("s".to_owned(), job_tx)]), completed_tx, context));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let first = job_rx.recv().await.expect("the first batch");
        let second = job_rx.recv().await.expect("the second batch, handed once the sink made room");
        assert_eq!((first.events[0].id.as_str(), second.events[0].id.as_str()), ("e1", "e2"));
        router.await.expect("the router ends once its input closes");
    }
}
