//! Moves the cursor over the completed batches, in order.

use super::router::Completed;
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::state::{DeadLetter, State};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Commits the position of each batch once it and every batch before it
/// are complete. Batches complete out of order (sinks answer when they
/// answer); only the contiguous prefix from the oldest is ever committed,
/// so the cursor is never ahead of an event that is not yet safe.
pub async fn run(mut completed: mpsc::Receiver<Completed>, state: State, source: String, metrics: Arc<Metrics>) {
    let mut waiting: BTreeMap<u64, Completed> = BTreeMap::new();
    let mut next = 0;
    while let Some(batch) = completed.recv().await {
        waiting.insert(batch.seq, batch);
        let mut ready = Vec::new();
        while let Some(batch) = waiting.remove(&next) {
            ready.push(batch);
            next += 1;
        }
        let dead: Vec<DeadLetter> = ready.iter_mut().flat_map(|batch| std::mem::take(&mut batch.dead)).collect();
        let Some(last) = ready.last() else { continue };
        commit(&state, &source, &last.position, &dead).await;
        report(&dead, &metrics);
        metrics.add("ferry_batches_committed_total", &[], ready.len() as u64);
        // Dropping the batches frees their in-flight slots, after the commit.
        drop(ready);
    }
}

/// Commits the cursor and the dead letters before it, retrying until the
/// database takes them: events must not count as handled while their dead
/// letters exist only in memory.
async fn commit(state: &State, source: &str, position: &str, dead: &[DeadLetter]) {
    let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };
    let mut attempt = 0;
    while let Err(err) = state.commit(source, position, dead).await {
        tracing::error!(error = %err, dead_letters = dead.len(), "Cannot commit the cursor; retrying. Events after it wait.");
        tokio::time::sleep(backoff.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

fn report(dead: &[DeadLetter], metrics: &Metrics) {
    for letter in dead {
        tracing::warn!(stage = letter.stage.as_str(), component = %letter.component, event = letter.event_id.as_deref().unwrap_or("-"), position = letter.position.as_deref().unwrap_or("-"), reason = %letter.reason, "Event dead-lettered.");
        metrics.add("ferry_events_dead_lettered_total", &[("stage", letter.stage.as_str())], 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn only_the_contiguous_prefix_is_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("ferry.db")).await.expect("open");
        let slots = Arc::new(Semaphore::new(8));
        let (tx, rx) = mpsc::channel(8);
        let committer = tokio::spawn(run(rx, state.clone(), "src".into(), Arc::new(Metrics::default())));
        let batch = |seq: u64| Completed {
            seq,
            dead: Vec::new(),
            position: format!("pos{seq}"),
            permit: slots.clone().try_acquire_owned().expect("slot"),
        };
        tx.send(batch(1)).await.expect("open");
        tx.send(batch(2)).await.expect("open");
        tokio::task::yield_now().await;
        assert_eq!(state.cursor("src").await.expect("read"), None, "batch 0 is not done yet");
        assert_eq!(slots.available_permits(), 6, "slots stay taken until committed");
        tx.send(batch(0)).await.expect("open");
        drop(tx);
        committer.await.expect("committer ends");
        assert_eq!(state.cursor("src").await.expect("read").as_deref(), Some("pos2"));
        assert_eq!(slots.available_permits(), 8);
    }
}
