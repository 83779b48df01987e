//! Moves the cursor over the completed batches, in order.

use super::router::Completed;
use crate::metrics::Metrics;
use crate::retry::{Backoff, Retry};
use crate::shutdown::{Shutdown, Stopped};
use crate::state::{DeadLetter, State, StateError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long commits may keep failing in a row before ferry gives up and
/// exits non-zero. Nothing moves while the database refuses commits, and a
/// restart (by the service manager) reopens the database, which cures most
/// such failures (a replaced file, a lost handle); a few seconds of a busy
/// or full disk are waited out.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Retry waits between failed commits: from 100 ms up to 5 s.
const COMMIT_BACKOFF: Backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };

/// The state database refused commits for [`GIVE_UP_AFTER`].
#[derive(Debug, thiserror::Error)]
#[error("cannot commit the cursor to the state database {database} ({attempts} attempts over {}s failed; the last: {error}); stopping so that the service manager restarts ferry", elapsed.as_secs())]
pub struct CommitFailed {
    /// The state database.
    pub database: String,
    /// Failed attempts in a row.
    pub attempts: u32,
    /// How long they went on.
    pub elapsed: Duration,
    /// The last failure.
    pub error: StateError,
}

/// Commits the position of each batch once it and every batch before it
/// are complete. Batches complete out of order (sinks answer when they
/// answer); only the contiguous prefix from the oldest is ever committed,
/// so the cursor is never ahead of an event that is not yet safe.
///
/// Ends when `completed` closes, when shutdown cuts a wait between failed
/// commits (what was not committed is sent again at the next start), or
/// with [`CommitFailed`] when the database keeps failing.
pub async fn run(
    mut completed: mpsc::Receiver<Completed>,
    state: State,
    source: String,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<(), CommitFailed> {
    let mut waiting: BTreeMap<u64, Completed> = BTreeMap::new();
    let mut next = 0;
    let mut retry = Retry::new(COMMIT_BACKOFF, shutdown);
    while let Some(batch) = completed.recv().await {
        waiting.insert(batch.seq, batch);
        let mut ready = Vec::new();
        while let Some(batch) = waiting.remove(&next) {
            ready.push(batch);
            next += 1;
        }
        let dead: Vec<DeadLetter> = ready.iter_mut().flat_map(|batch| std::mem::take(&mut batch.dead)).collect();
        let Some(last) = ready.last() else { continue };
        let newest = ready.iter().filter_map(|batch| batch.newest).max().map(|time| humantime::format_rfc3339_nanos(time).to_string());
        // A source's cursor document is written here, once per commit, not
        // once per record.
        match commit(&state, &source, &last.position.encode(), newest.as_deref(), &dead, &mut retry).await {
            Ok(()) => {}
            Err(Ok(Stopped)) => {
                tracing::warn!(
                    batches = ready.len(),
                    "Shutting down before the cursor could be committed; those batches will be sent again at the next start."
                );
                return Ok(());
            }
            Err(Err(failed)) => return Err(failed),
        }
        report(&dead, &metrics);
        metrics.add("ferry_batches_committed_total", &[], ready.len() as u64);
        metrics.committed_through(last.seq);
        // Dropping the batches frees their in-flight slots, after the commit.
        drop(ready);
    }
    Ok(())
}

/// Commits the cursor and the dead letters before it, retrying until the
/// database takes them: events must not count as handled while their dead
/// letters exist only in memory. Gives up after [`GIVE_UP_AFTER`] of
/// failures in a row, or when shutdown cuts a wait.
async fn commit(
    state: &State,
    source: &str,
    position: &str,
    newest: Option<&str>,
    dead: &[DeadLetter],
    retry: &mut Retry,
) -> Result<(), Result<Stopped, CommitFailed>> {
    retry.reset();
    let started = tokio::time::Instant::now();
    loop {
        let error = match state.commit(source, position, newest, dead).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let delay = retry.next_delay(None);
        let elapsed = started.elapsed();
        if error.is_deposed() {
            // Another instance leads now: retrying cannot succeed, and must not.
            tracing::error!(error = %error, "The cursor was not committed: another instance has taken over. Stopping.");
            return Err(Err(CommitFailed { database: state.location().to_string(), attempts: retry.attempts(), elapsed, error }));
        }
        if elapsed >= GIVE_UP_AFTER {
            let failed = CommitFailed { database: state.location().to_string(), attempts: retry.attempts(), elapsed, error };
            tracing::error!(database = %failed.database, attempts = failed.attempts, error = %failed.error, "The state database refused every commit for {}s; stopping so that the service manager restarts ferry.", GIVE_UP_AFTER.as_secs());
            return Err(Err(failed));
        }
        tracing::error!(database = %state.location(), error = %error, dead_letters = dead.len(), attempt = retry.attempts(), retry_in = ?delay, "Cannot commit the cursor; retrying. Events after it wait.");
        retry.sleep(delay).await.map_err(Ok)?;
    }
}

/// Logs and counts each dead letter once it is committed, so that no log
/// line names a letter the database does not hold.
fn report(dead: &[DeadLetter], metrics: &Metrics) {
    for letter in dead {
        tracing::warn!(stage = letter.stage.as_str(), component = %letter.component, event = letter.event_id.as_deref().unwrap_or("-"), position = letter.position.as_deref().unwrap_or("-"), reason = %letter.reason, "Event dead-lettered.");
        metrics.add("ferry_events_dead_lettered_total", &[("stage", letter.stage.as_str()), ("component", &letter.component)], 1);
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
        let committer = tokio::spawn(run(rx, state.clone(), "src".into(), Arc::new(Metrics::default()), Shutdown::never()));
        let batch = |seq: u64| Completed {
            seq,
            dead: Vec::new(),
            newest: None,
            position: format!("pos{seq}").into(),
            permit: slots.clone().try_acquire_owned().expect("slot"),
        };
        tx.send(batch(1)).await.expect("open");
        tx.send(batch(2)).await.expect("open");
        tokio::task::yield_now().await;
        assert_eq!(state.cursor("src").await.expect("read"), None, "batch 0 is not done yet");
        assert_eq!(slots.available_permits(), 6, "slots stay taken until committed");
        tx.send(batch(0)).await.expect("open");
        drop(tx);
        committer.await.expect("committer ends").expect("commits");
        assert_eq!(state.cursor("src").await.expect("read").as_deref(), Some("pos2"));
        assert_eq!(slots.available_permits(), 8);
    }

    fn completed(slots: &Arc<Semaphore>, seq: u64) -> Completed {
        Completed {
            seq,
            dead: Vec::new(),
            newest: None,
            position: format!("pos{seq}").into(),
            permit: slots.clone().try_acquire_owned().expect("slot"),
        }
    }

    #[tokio::test]
    async fn a_database_that_keeps_failing_ends_the_committer_with_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ferry.db");
        let state = State::open(&path).await.expect("open");
        // A closed pool fails every commit at once, like a database gone bad.
        state.close().await;
        tokio::time::pause();
        let slots = Arc::new(Semaphore::new(8));
        let (tx, rx) = mpsc::channel(8);
        let started = tokio::time::Instant::now();
        let committer = tokio::spawn(run(rx, state.clone(), "src".into(), Arc::new(Metrics::default()), Shutdown::never()));
        tx.send(completed(&slots, 0)).await.expect("open");
        let failed =
            tokio::time::timeout(GIVE_UP_AFTER * 2, committer).await.expect("the committer gives up").expect("joins").expect_err("fails");
        let waited = started.elapsed();
        assert!(waited >= GIVE_UP_AFTER && waited < GIVE_UP_AFTER + Duration::from_secs(6), "gave up after {waited:?}");
        let text = failed.to_string();
        assert!(text.contains(&path.display().to_string()), "names the database: {text}");
        assert!(!text.contains('\n'), "one line: {text}");
        assert!(failed.attempts > 5, "retried before giving up: {text}");
    }

    #[tokio::test]
    async fn shutdown_cuts_a_commit_retry_short_without_committing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("ferry.db")).await.expect("open");
        state.close().await;
        tokio::time::pause();
        let slots = Arc::new(Semaphore::new(8));
        let (tx, rx) = mpsc::channel(8);
        let (trigger, shutdown) = crate::shutdown::channel();
        let committer = tokio::spawn(run(rx, state.clone(), "src".into(), Arc::new(Metrics::default()), shutdown));
        tx.send(completed(&slots, 0)).await.expect("open");
        tokio::time::sleep(Duration::from_secs(2)).await;
        trigger.fire();
        let ended = tokio::time::timeout(Duration::from_millis(100), committer).await.expect("ends at shutdown").expect("joins");
        assert!(ended.is_ok(), "a shutdown is not a database failure: {ended:?}");
    }
}
