//! Sinks: where events are delivered, each acknowledging what it took.
//!
//! A sink's [`Sink::deliver`] ends with every event either acknowledged or
//! refused for good (refused events go to the dead-letter table with the
//! reason). Failures worth retrying are retried inside it, in one loop per
//! request ([`retry_until`], through [`crate::retry::Retry`]: capped
//! exponential backoff with full jitter, a peer's `Retry-After` capped),
//! until the peer takes the events or ferry shuts down; nothing is skipped
//! because a peer was down. Shutdown cuts every wait between attempts: the
//! delivery then ends in [`Stopped`] and its events stay unacknowledged.

pub mod file;
pub mod http;
pub mod stdout;
pub mod worker;

use crate::config::{ConfigError, Context};
use crate::metrics::Metrics;
use crate::retry::Retry;
use crate::shutdown::Stopped;
use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// An event on its way to a sink: its id (for dedupe downstream and for
/// dead letters), its session (for per-session destinations) and its final
/// JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutEvent {
    /// The event id (Teleport's `uid`, or the derived one).
    pub id: String,
    /// The session it belongs to (Teleport's `sid`), or empty.
    pub session_id: String,
    /// One JSON object, without a trailing newline.
    pub json: Vec<u8>,
}

/// What a sink did with a request it took.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Events the peer refused for good, by index into the request, with
    /// the reason. Every other event was acknowledged.
    pub rejected: Vec<(usize, String)>,
}

/// A delivery attempt that failed and may succeed later (peer down, busy,
/// timed out, disk full).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RetryableError {
    /// What failed, on one line.
    pub message: String,
    /// How long the peer asked to wait (HTTP `Retry-After`), if it did.
    pub retry_after: Option<std::time::Duration>,
}

impl RetryableError {
    /// A failure worth retrying after the usual backoff.
    pub fn new(message: impl Into<String>) -> Self {
        RetryableError { message: message.into(), retry_after: None }
    }
}

/// The future a sink returns for one delivery: what became of the events,
/// or [`Stopped`] when shutdown came before the sink took them all.
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<Delivery, Stopped>> + Send + 'a>>;

/// A place events are delivered to.
pub trait Sink: Send + Sync + 'static {
    /// Delivers `events` in order, retrying what fails through `retry`
    /// until the peer takes or refuses every event. Returning `Ok`
    /// acknowledges every event not listed in [`Delivery::rejected`];
    /// [`Stopped`] (shutdown cut a wait) acknowledges nothing. May be called
    /// again before an earlier call finished, up to [`Sink::concurrency`]
    /// calls at once.
    fn deliver<'a>(&'a self, events: &'a [OutEvent], retry: Retry) -> DeliverFuture<'a>;

    /// How many batches may be in delivery at once. 1 keeps the order of
    /// batches at the peer; more overlaps round trips.
    fn concurrency(&self) -> usize {
        1
    }
}

/// One sink, `[sinks.NAME]`, chosen by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkConfig {
    /// `type = "file"`: appends JSON Lines to a file.
    File(file::FileSinkConfig),
    /// `type = "stdout"`: writes JSON Lines to standard output.
    Stdout(stdout::StdoutSinkConfig),
    /// `type = "logstash"`: HTTPS (mutual TLS) to a Logstash `http` input,
    /// a JSON array per request.
    Logstash(http::HttpSinkConfig),
    /// `type = "http"`: HTTPS (mutual TLS) to any JSON receiver, one event
    /// per request unless `format` says otherwise.
    Http(http::HttpSinkConfig),
}

/// Builds the sink configured as `[sinks.NAME]` from its own table; errors
/// name its keys as `sinks.NAME.KEY`.
pub fn build(name: &str, config: &SinkConfig, ctx: &Context, metrics: Arc<Metrics>) -> Result<Box<dyn Sink>, ConfigError> {
    match config {
        SinkConfig::File(file) => Ok(Box::new(file::FileSink::build(name, file, ctx, metrics)?)),
        SinkConfig::Stdout(_) => Ok(Box::new(stdout::StdoutSink::new(name, metrics))),
        SinkConfig::Logstash(http) => Ok(Box::new(http::HttpSink::build(name, http, ctx, true, metrics)?)),
        SinkConfig::Http(http) => Ok(Box::new(http::HttpSink::build(name, http, ctx, false, metrics)?)),
    }
}

/// Stands in for every sink with `dry-run = true`: takes every event and
/// sends nothing, so that a config can be tried against a live cluster
/// without touching the receivers.
pub struct DryRun {
    name: String,
}

impl DryRun {
    /// The stand-in for the sink `name`.
    pub fn new(name: &str) -> DryRun {
        DryRun { name: name.to_owned() }
    }
}

impl Sink for DryRun {
    fn deliver<'a>(&'a self, events: &'a [OutEvent], _retry: Retry) -> DeliverFuture<'a> {
        for event in events {
            tracing::debug!(sink = %self.name, event = %event.id, "Dry run: not sent.");
        }
        Box::pin(async { Ok(Delivery::default()) })
    }
}

/// The one retry loop of a delivery: runs `attempt` until it succeeds,
/// waiting through `retry` after each failure (the peer's `Retry-After`
/// capped, shutdown cutting the wait short: then [`Stopped`]). Each failure
/// is counted and logged for the sink `sink`; `target` says where it went
/// (a path, a URL).
pub async fn retry_until<T, F, Fut>(
    sink: &str,
    target: &(dyn std::fmt::Display + Sync),
    retry: &mut Retry,
    metrics: &Metrics,
    mut attempt: F,
) -> Result<T, Stopped>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RetryableError>>,
{
    loop {
        // An attempt under way is not cut short by shutdown: its write may
        // land anyway, and cutting it would only make a duplicate. The
        // pipeline's shutdown-timeout bounds an attempt that hangs.
        match attempt().await {
            Ok(done) => {
                crate::observe::health().sink_up(sink);
                return Ok(done);
            }
            Err(err) => {
                let delay = retry.next_delay(err.retry_after);
                metrics.add("ferry_sink_retries_total", &[("sink", sink)], 1);
                crate::observe::health().sink_down(sink, &err.to_string());
                tracing::warn!(sink, %target, error = %err, attempt = retry.attempts(), retry_in = ?delay, "Delivery failed; retrying.");
                retry.sleep(delay).await?;
            }
        }
    }
}

/// The bytes of a JSON Lines body for `events`.
pub fn json_lines(events: &[OutEvent]) -> Vec<u8> {
    let size = events.iter().map(|e| e.json.len() + 1).sum();
    let mut body = Vec::with_capacity(size);
    for event in events {
        body.extend_from_slice(&event.json);
        body.push(b'\n');
    }
    body
}
