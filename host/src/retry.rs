//! The one retry policy of ferry: every loop that waits on a peer or on the
//! database (sink deliveries, Teleport calls, session streams, locks, the
//! committer) waits through [`Retry`], so that every wait is capped, a
//! peer's `Retry-After` is honoured only within reason, and shutdown cuts
//! any wait short.

use crate::shutdown::{Shutdown, Stopped};
use std::time::Duration;

/// The longest `Retry-After` honoured by default: a peer asking for more is
/// probably misconfigured, and waiting hours would look like a hang.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long to wait between attempts: capped exponential with full jitter,
/// so that many ferries retrying one peer do not arrive in step.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub initial: Duration,
    /// The ceiling no wait exceeds.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The ceiling for attempt `attempt` (0-based): `initial × 2^attempt`,
    /// capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// A random wait between zero and the ceiling for `attempt`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// The state of one retry loop: how many attempts failed, how long the next
/// wait is, and the shutdown that ends any wait.
#[derive(Debug, Clone)]
pub struct Retry {
    backoff: Backoff,
    max_retry_after: Duration,
    attempt: u32,
    shutdown: Shutdown,
}

impl Retry {
    /// A loop that waits by `backoff` and stops waiting when `shutdown` fires.
    pub fn new(backoff: Backoff, shutdown: Shutdown) -> Retry {
        Retry { backoff, max_retry_after: DEFAULT_MAX_RETRY_AFTER, attempt: 0, shutdown }
    }

    /// Waits by `backoff` instead (a sink with its own retry settings).
    pub fn with_backoff(mut self, backoff: Backoff) -> Retry {
        self.backoff = backoff;
        self
    }

    /// Caps the `Retry-After` a peer may ask for.
    pub fn max_retry_after(mut self, cap: Duration) -> Retry {
        self.max_retry_after = cap;
        self
    }

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// An attempt succeeded: the next failure starts from the first wait.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Counts a failed attempt and says how long to wait before the next:
    /// the peer's `retry_after`, capped, or the backoff's jittered delay,
    /// whichever is longer (a peer answering `Retry-After: 0` every time
    /// must not be hammered in a tight loop).
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff.delay(self.attempt);
        let delay = match retry_after {
            Some(after) => after.min(self.max_retry_after).max(backoff),
            None => backoff,
        };
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Sleeps `delay`, or less if shutdown fires first (then [`Stopped`]).
    pub async fn sleep(&mut self, delay: Duration) -> Result<(), Stopped> {
        if self.shutdown.sleep_or_stop(delay).await { Err(Stopped) } else { Ok(()) }
    }

    /// [`Retry::next_delay`] then [`Retry::sleep`].
    pub async fn wait(&mut self, retry_after: Option<Duration>) -> Result<(), Stopped> {
        let delay = self.next_delay(retry_after);
        self.sleep(delay).await
    }

    /// The shutdown this loop heeds, to race an attempt against it.
    pub fn shutdown(&mut self) -> &mut Shutdown {
        &mut self.shutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_then_stop_at_the_cap() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        let ceilings: Vec<_> = (0..6).map(|a| backoff.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(1000), Duration::from_secs(1));
    }

    #[test]
    fn delays_stay_within_their_ceiling() {
        let backoff = Backoff::default();
        for attempt in 0..40 {
            assert!(backoff.delay(attempt) <= backoff.ceiling(attempt));
        }
    }

    #[test]
    fn a_peers_retry_after_is_capped() {
        let mut retry = Retry::new(Backoff::default(), Shutdown::never()).max_retry_after(Duration::from_secs(120));
        assert_eq!(retry.next_delay(Some(Duration::from_secs(86_400))), Duration::from_secs(120));
        assert_eq!(retry.next_delay(Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(retry.attempts(), 2);
        assert!(retry.next_delay(Some(Duration::ZERO)) <= Backoff::default().ceiling(2), "a zero Retry-After falls back to the backoff");
        retry.reset();
        assert_eq!(retry.attempts(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_wait_short() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let mut retry = Retry::new(Backoff::default(), shutdown);
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn(async move { retry.sleep(Duration::from_secs(3600)).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        trigger.fire();
        assert!(waiting.await.expect("joins").is_err(), "a wait cut by shutdown says Stopped");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
