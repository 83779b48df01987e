//! Groups source records into batches by size and linger time.

use crate::event::Event;
use crate::shutdown::Shutdown;
use crate::source::{Invalid, Item, Position, SourceRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

/// Records read together, with the source position just past the last one.
pub struct Batch {
    /// Sequence number, from 0, in source order.
    pub seq: u64,
    /// The events, in source order.
    pub events: Vec<Event>,
    /// Input the source could not read as events; dead-lettered with the batch.
    pub invalid: Vec<Invalid>,
    /// The source position just past this batch.
    pub position: Position,
    /// Holds one of the in-flight slots until the batch is committed.
    pub permit: OwnedSemaphorePermit,
}

/// Reads records and sends batches of at most `size`, each sent at most
/// `linger` after its first record arrived. Takes an in-flight slot before
/// reading a batch, so the source waits while the pipeline is full.
///
/// Returns as soon as `shutdown` fires, whatever it was waiting for (a
/// slot, a record, room downstream): a batch not yet handed on is dropped,
/// which is safe because nothing commits its position, and dropping the
/// records channel tells a source blocked on sending that it is over.
pub async fn run(
    mut records: mpsc::Receiver<SourceRecord>,
    batches: mpsc::Sender<Batch>,
    size: usize,
    linger: Duration,
    in_flight: Arc<Semaphore>,
    mut shutdown: Shutdown,
) {
    let mut seq = 0;
    // Records are taken as many at a time as have arrived: one wake-up and
    // one timer per batch, not per record.
    let mut arrived = Vec::with_capacity(size.min(4096));
    loop {
        let permit = tokio::select! {
            permit = in_flight.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = shutdown.wait() => return,
        };
        let first = tokio::select! {
            record = records.recv() => match record {
                Some(record) => record,
                None => return,
            },
            () = shutdown.wait() => return,
        };
        let deadline = tokio::time::sleep_until(Instant::now() + linger);
        tokio::pin!(deadline);
        let mut batch = Batch { seq, events: Vec::with_capacity(size), invalid: Vec::new(), position: Position::default(), permit };
        add(&mut batch, first);
        let mut closed = false;
        while batch.events.len() + batch.invalid.len() < size {
            let room = size - (batch.events.len() + batch.invalid.len());
            tokio::select! {
                count = records.recv_many(&mut arrived, room) => {
                    if count == 0 {
                        closed = true;
                        break;
                    }
                    for record in arrived.drain(..) {
                        add(&mut batch, record);
                    }
                },
                () = &mut deadline => break,
                () = shutdown.wait() => return,
            }
        }
        let sent = tokio::select! {
            sent = batches.send(batch) => sent.is_ok(),
            () = shutdown.wait() => false,
        };
        if !sent || closed {
            return;
        }
        seq += 1;
    }
}

fn add(batch: &mut Batch, record: SourceRecord) {
    batch.position = record.position;
    match record.item {
        Item::Event(event) => batch.events.push(event),
        Item::Invalid(invalid) => batch.invalid.push(invalid),
        Item::Progress => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> SourceRecord {
        let event = Event::from_json(format!("{{\"uid\":\"{i}\"}}").into_bytes()).expect("valid");
        SourceRecord { item: Item::Event(event), position: i.to_string().into() }
    }

    #[tokio::test(start_paused = true)]
    async fn batches_fill_to_size_or_leave_after_linger() {
        let (record_tx, record_rx) = mpsc::channel(16);
        let (batch_tx, mut batch_rx) = mpsc::channel(16);
        let slots = Arc::new(Semaphore::new(8));
        tokio::spawn(run(record_rx, batch_tx, 3, Duration::from_millis(100), slots, Shutdown::never()));
        for i in 0..4 {
            record_tx.send(record(i)).await.expect("open");
        }
        let full = batch_rx.recv().await.expect("first batch");
        assert_eq!((full.seq, full.events.len(), full.position.encode().as_ref()), (0, 3, "2"));
        let lingered = batch_rx.recv().await.expect("second batch after linger");
        assert_eq!((lingered.seq, lingered.events.len(), lingered.position.encode().as_ref()), (1, 1, "3"));
        drop(record_tx);
        assert!(batch_rx.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn records_waiting_together_still_split_at_the_size_in_order() {
        let (record_tx, record_rx) = mpsc::channel(16);
        let (batch_tx, mut batch_rx) = mpsc::channel(16);
        let slots = Arc::new(Semaphore::new(8));
        // Everything is queued before the batcher first runs.
        for i in 0..2 {
            record_tx.send(record(i)).await.expect("open");
        }
        record_tx.send(SourceRecord { item: Item::Progress, position: "p".to_owned().into() }).await.expect("open");
        for i in 2..7 {
            record_tx.send(record(i)).await.expect("open");
        }
        drop(record_tx);
        tokio::spawn(run(record_rx, batch_tx, 3, Duration::from_millis(100), slots, Shutdown::never()));
        let mut seen = Vec::new();
        while let Some(batch) = batch_rx.recv().await {
            let ids: Vec<String> = batch.events.iter().map(|event| event.id.clone()).collect();
            seen.push((ids.join(","), batch.position.encode().into_owned()));
        }
        let want = [("0,1,2", "2"), ("3,4,5", "5"), ("6", "6")].map(|(ids, at)| (ids.to_owned(), at.to_owned()));
        assert_eq!(seen, want, "a progress record is carried and does not count");
    }

    #[tokio::test(start_paused = true)]
    async fn no_batch_is_read_while_every_slot_is_taken() {
        let (record_tx, record_rx) = mpsc::channel(16);
        let (batch_tx, mut batch_rx) = mpsc::channel(16);
        let slots = Arc::new(Semaphore::new(1));
        tokio::spawn(run(record_rx, batch_tx, 1, Duration::from_millis(10), slots, Shutdown::never()));
        record_tx.send(record(0)).await.expect("open");
        record_tx.send(record(1)).await.expect("open");
        let first = batch_rx.recv().await.expect("first");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(batch_rx.try_recv().is_err(), "second batch waits for the slot");
        drop(first);
        let second = batch_rx.recv().await.expect("second after the slot is freed");
        assert_eq!(second.seq, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_batcher_waiting_for_a_slot_and_frees_the_source() {
        let (record_tx, record_rx) = mpsc::channel(1);
        let (batch_tx, mut batch_rx) = mpsc::channel(16);
        let slots = Arc::new(Semaphore::new(1));
        let (trigger, shutdown) = crate::shutdown::channel();
        let batcher = tokio::spawn(run(record_rx, batch_tx, 1, Duration::from_millis(10), slots, shutdown));
        record_tx.send(record(0)).await.expect("open");
        let _held = batch_rx.recv().await.expect("first batch holds the only slot");
        record_tx.send(record(1)).await.expect("room for one");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!batcher.is_finished(), "the batcher waits for the slot");
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(1), batcher).await.expect("the batcher ends at shutdown").expect("joins");
        assert!(record_tx.send(record(2)).await.is_err(), "a source blocked on sending learns that the pipeline is over");
    }
}
