//! Progress while ferry runs: a line that keeps itself up to date (rate,
//! lag, totals) when stderr is a terminal, as during a backfill started by
//! hand; otherwise an INFO line at an interval, for journald and log
//! collectors, and only when events moved since the last one.
//!
//! Log lines and the progress line share stderr: [`log_writer`] writes each
//! log line above the progress line rather than through it.

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the terminal's progress line is redrawn.
const REDRAW: Duration = Duration::from_secs(1);

/// The progress line on screen, if any; log lines go above it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn shown() -> Option<ProgressBar> {
    BAR.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// Where log lines go: stderr, above the progress line while one is shown.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See [`log_writer`].
#[derive(Debug)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match shown() {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Totals at one moment, and what they say since the one before.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Totals {
    read: u64,
    sent: u64,
    dropped: u64,
    dead_lettered: u64,
}

impl Totals {
    fn now(metrics: &Metrics) -> Totals {
        Totals {
            read: metrics.total("ferry_events_received_total"),
            sent: metrics.total("ferry_sink_events_sent_total"),
            dropped: metrics.total("ferry_plugin_events_dropped_total"),
            dead_lettered: metrics.total("ferry_events_dead_lettered_total"),
        }
    }
}

/// Events read per second between two readings.
fn rate(before: Totals, after: Totals, elapsed: Duration) -> f64 {
    after.read.saturating_sub(before.read) as f64 / elapsed.as_secs_f64().max(1e-3)
}

/// The lag for people: whole seconds, or `-` before the first delivery.
fn lag_text(lag: Option<Duration>) -> String {
    lag.map_or_else(|| "-".to_owned(), |lag| humantime::format_duration(Duration::from_secs(lag.as_secs())).to_string())
}

fn line(totals: Totals, rate: f64, lag: Option<Duration>) -> String {
    format!(
        "{} read, {:.0} events/s, {} sent, {} dropped, {} dead-lettered, lag {}",
        totals.read,
        rate,
        totals.sent,
        totals.dropped,
        totals.dead_lettered,
        lag_text(lag)
    )
}

/// Shows progress until `shutdown` fires: a progress line redrawn every
/// second when `terminal`, else an INFO line every `every` (none when
/// `every` is zero).
pub async fn run(metrics: Arc<Metrics>, terminal: bool, every: Duration, mut shutdown: Shutdown) {
    if terminal {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        *BAR.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(bar.clone());
        let mut before = (Totals::now(&metrics), Instant::now());
        while !shutdown.sleep_or_stop(REDRAW).await {
            let after = (Totals::now(&metrics), Instant::now());
            bar.set_message(line(after.0, rate(before.0, after.0, after.1 - before.1), metrics.lag()));
            bar.tick();
            before = after;
        }
        *BAR.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        bar.finish_and_clear();
        return;
    }
    if every.is_zero() {
        return;
    }
    let mut before = (Totals::now(&metrics), Instant::now());
    while !shutdown.sleep_or_stop(every).await {
        let after = (Totals::now(&metrics), Instant::now());
        if after.0 != before.0 {
            let totals = after.0;
            tracing::info!(
                read = totals.read,
                sent = totals.sent,
                dropped = totals.dropped,
                dead_lettered = totals.dead_lettered,
                rate = %format!("{:.0}/s", rate(before.0, totals, after.1 - before.1)),
                lag = %lag_text(metrics.lag()),
                "Progress."
            );
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_totals_rate_and_lag() {
        let before = Totals { read: 100, sent: 90, dropped: 5, dead_lettered: 1 };
        let after = Totals { read: 1100, sent: 1000, dropped: 10, dead_lettered: 2 };
        let rate = rate(before, after, Duration::from_secs(2));
        assert_eq!(
            line(after, rate, Some(Duration::from_millis(65_400))),
            "1100 read, 500 events/s, 1000 sent, 10 dropped, 2 dead-lettered, lag 1m 5s"
        );
        assert_eq!(line(after, 0.0, None), "1100 read, 0 events/s, 1000 sent, 10 dropped, 2 dead-lettered, lag -");
    }

    #[tokio::test(start_paused = true)]
    async fn plain_lines_stop_at_shutdown() {
        let metrics = Arc::new(Metrics::default());
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(run(metrics.clone(), false, Duration::from_secs(10), shutdown));
        metrics.add("ferry_events_received_total", &[], 5);
        tokio::time::sleep(Duration::from_secs(25)).await;
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(1), task).await.expect("stops at shutdown").expect("no panic");
    }
}
