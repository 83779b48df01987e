//! Whether ferry is alive and whether it is ready, for `/healthz` and
//! `/readyz`.
//!
//! One per process ([`health`]): the parts that know (the Teleport reader,
//! each sink's retry loop, the plugin chain) report here with one call
//! each, without a handle threaded through every constructor. A ferry that
//! is not ready (Teleport or a sink unreachable) keeps retrying on its own,
//! so readiness never stops it; liveness fails only when restarting would
//! help: the plugin chain has been stuck in one batch for [`STALLED_AFTER`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the plugin chain may spend on one batch before `/healthz`
/// calls ferry stalled. Far beyond any plugin's deadline, and beyond the
/// isolation of a failing batch, which is bounded by a few deadlines.
pub const STALLED_AFTER: Duration = Duration::from_secs(300);

/// What `/healthz` and `/readyz` answer from.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The pipeline has started reading (plugins compiled, state open).
    running: bool,
    /// This instance stands by for another that is active (shared state):
    /// ready, though its pipeline does not run.
    standby: bool,
    /// Why the source failed its last call; `None` while it answers.
    source_down: Option<String>,
    /// Parts of the source's input that fail while the rest flows (a
    /// session recording, an export chunk), by name, with why.
    source_parts_down: BTreeMap<String, String>,
    /// Why each sink failed its last attempt, by sink; absent or `None`
    /// once an attempt succeeded.
    sinks_down: BTreeMap<String, Option<String>>,
    /// When the plugin chain took the batch it is working on.
    chain_busy_since: Option<Instant>,
}

/// The process's health.
pub fn health() -> &'static Health {
    static HEALTH: std::sync::OnceLock<Health> = std::sync::OnceLock::new();
    HEALTH.get_or_init(Health::default)
}

impl Health {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The pipeline started (`true`) or ended (`false`).
    pub fn set_running(&self, running: bool) {
        self.inner().running = running;
    }

    /// This instance stands by (`true`) or no longer does (`false`).
    pub fn set_standby(&self, standby: bool) {
        self.inner().standby = standby;
    }

    /// A call to the source failed for `reason`; ferry retries it.
    pub fn source_down(&self, reason: &str) {
        self.inner().source_down = Some(for_readyz(reason));
    }

    /// A call to the source succeeded.
    pub fn source_up(&self) {
        let mut inner = self.inner();
        if inner.source_down.is_some() {
            inner.source_down = None;
        }
    }

    /// One part of the source's input (`session recording <sid>`, `export
    /// chunk <date>/<name>`) fails for `reason` while the rest flows; ferry
    /// asks for it again, within bounds.
    pub fn source_part_down(&self, part: &str, reason: &str) {
        self.inner().source_parts_down.insert(part.to_owned(), for_readyz(reason));
    }

    /// The part was read, or given up on with a dead letter.
    pub fn source_part_up(&self, part: &str) {
        self.inner().source_parts_down.remove(part);
    }

    /// How many parts of the source's input fail, for `/metrics`.
    pub fn source_parts_failing(&self) -> usize {
        self.inner().source_parts_down.len()
    }

    /// An attempt to deliver to `sink` failed for `reason`; ferry retries it.
    pub fn sink_down(&self, sink: &str, reason: &str) {
        self.inner().sinks_down.insert(sink.to_owned(), Some(for_readyz(reason)));
    }

    /// An attempt to deliver to `sink` succeeded.
    pub fn sink_up(&self, sink: &str) {
        let mut inner = self.inner();
        if let Some(down) = inner.sinks_down.get_mut(sink) {
            *down = None;
        }
    }

    /// The plugin chain took a batch (`true`) or finished it (`false`).
    pub fn chain_busy(&self, busy: bool) {
        self.inner().chain_busy_since = busy.then(Instant::now);
    }

    /// `Ok` while ferry is alive and not stalled, else why not.
    pub fn live(&self) -> Result<(), String> {
        self.live_at(Instant::now())
    }

    fn live_at(&self, now: Instant) -> Result<(), String> {
        match self.inner().chain_busy_since {
            Some(since) if now.saturating_duration_since(since) >= STALLED_AFTER => {
                Err(format!("stalled: the plugin chain has been on one batch for {}s", now.saturating_duration_since(since).as_secs()))
            }
            _ => Ok(()),
        }
    }

    /// `Ok` once the pipeline runs with its source and every sink answering,
    /// else one line naming each part that is not ready and why.
    pub fn ready(&self) -> Result<(), String> {
        let inner = self.inner();
        if inner.standby {
            return Ok(());
        }
        let mut problems = Vec::new();
        if !inner.running {
            problems.push("the pipeline is not running (starting or stopping)".to_owned());
        }
        if let Some(reason) = &inner.source_down {
            problems.push(format!("source unreachable: {reason}"));
        }
        if let Some((part, reason)) = inner.source_parts_down.iter().next() {
            let more = inner.source_parts_down.len() - 1;
            let others = if more > 0 { format!(" (and {more} more)") } else { String::new() };
            problems.push(format!("{part} cannot be read: {reason}{others}"));
        }
        for (sink, reason) in &inner.sinks_down {
            if let Some(reason) = reason {
                problems.push(format!("sink `{sink}` unreachable: {reason}"));
            }
        }
        drop(inner);
        self.live()?;
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}

/// Characters of one part's reason `/readyz` shows.
const READYZ_REASON_CHARS: usize = 160;

/// What `/readyz` says of a failure logged as `reason`: an HTTP answer by
/// its status line alone (`HTTP 403 Forbidden`), never the body after it: a
/// proxy's error page may name internal hosts or realms, and `/readyz` is
/// read by whoever can reach the port, where the log line (which keeps the
/// body's start) is read by the operator. Anything else on one line, cut
/// short.
fn for_readyz(reason: &str) -> String {
    let status_line = reason.match_indices("HTTP ").find_map(|(at, _)| {
        let rest = &reason[at + "HTTP ".len()..];
        let is_status = rest.len() >= 3 && rest.as_bytes()[..3].iter().all(u8::is_ascii_digit);
        is_status.then(|| rest.find(": ").map_or(reason, |end| &reason[..at + "HTTP ".len() + end]))
    });
    let line = status_line.unwrap_or(reason).split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().filter(|c| !c.is_control()).take(READYZ_REASON_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_names_each_part_that_is_not_and_recovers() {
        let health = Health::default();
        assert_eq!(health.ready(), Err("the pipeline is not running (starting or stopping)".to_owned()));
        health.set_running(true);
        assert_eq!(health.ready(), Ok(()));
        health.sink_down("default", "connection refused");
        health.sink_down("sessions", "503");
        health.source_down("cannot connect to Teleport at t:3025");
        assert_eq!(
            health.ready(),
            Err("source unreachable: cannot connect to Teleport at t:3025; sink `default` unreachable: connection refused; sink `sessions` unreachable: 503".to_owned())
        );
        health.sink_up("default");
        health.sink_up("sessions");
        health.source_up();
        assert_eq!(health.ready(), Ok(()));
    }

    #[test]
    fn a_standby_is_ready_though_its_pipeline_does_not_run() {
        let health = Health::default();
        health.set_standby(true);
        assert_eq!(health.ready(), Ok(()));
        health.set_standby(false);
        assert!(health.ready().is_err(), "taking over: not ready until the pipeline runs");
    }

    #[test]
    fn readyz_gives_a_peer_status_line_never_its_body() {
        let health = Health::default();
        health.set_running(true);
        let page = "HTTP 403 Forbidden: 403 Forbidden nginx internal-proxy-7.corp.example secret-realm";
        health.sink_down("default", page);
        assert_eq!(health.ready(), Err("sink `default` unreachable: HTTP 403 Forbidden".to_owned()));
        health.sink_down("default", "HTTP 502 Bad Gateway");
        assert_eq!(health.ready(), Err("sink `default` unreachable: HTTP 502 Bad Gateway".to_owned()));
        // Not a status: one line, cut short.
        health.sink_down("default", &format!("client error (Connect)\nsecond line {}", "x".repeat(500)));
        let why = health.ready().expect_err("down");
        assert!(why.starts_with("sink `default` unreachable: client error (Connect) second line x"), "{why}");
        assert!(!why.contains('\n') && why.chars().count() <= 200, "{why}");
        health.sink_up("default");
        health.source_down(&format!("Teleport at t:3025 answered Unavailable: {}", "y".repeat(500)));
        let why = health.ready().expect_err("down");
        assert!(why.starts_with("source unreachable: Teleport at t:3025 answered Unavailable: yyy") && why.chars().count() <= 200, "{why}");
    }

    #[test]
    fn a_failing_part_of_the_input_shows_until_read_or_given_up() {
        let health = Health::default();
        health.set_running(true);
        health.source_part_down("session recording s-2", "Teleport at t:3025 answered Internal: backend");
        health.source_part_down("session recording s-1", "Teleport at t:3025 answered Internal: s3 throttled");
        assert_eq!(health.source_parts_failing(), 2);
        assert_eq!(
            health.ready(),
            Err("session recording s-1 cannot be read: Teleport at t:3025 answered Internal: s3 throttled (and 1 more)".to_owned())
        );
        health.source_part_up("session recording s-1");
        assert_eq!(health.ready(), Err("session recording s-2 cannot be read: Teleport at t:3025 answered Internal: backend".to_owned()));
        health.source_part_up("session recording s-2");
        assert_eq!((health.ready(), health.source_parts_failing()), (Ok(()), 0));
    }

    #[test]
    fn a_chain_stuck_on_one_batch_is_stalled() {
        let health = Health::default();
        health.chain_busy(true);
        let now = Instant::now();
        assert_eq!(health.live_at(now), Ok(()));
        let later = now + STALLED_AFTER + Duration::from_secs(1);
        assert!(health.live_at(later).is_err_and(|why| why.starts_with("stalled: the plugin chain has been on one batch for 30")));
        health.chain_busy(false);
        assert_eq!(health.live_at(later), Ok(()));
    }
}
