//! `type = "stdout"`: writes events as JSON Lines to standard output, for
//! trying a pipeline out or piping into another tool.

use super::{DeliverFuture, Delivery, OutEvent, RetryableError, Sink, json_lines, retry_until};
use crate::metrics::Metrics;
use crate::retry::Retry;
use serde::Deserialize;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// `[sinks.NAME]` with `type = "stdout"`; it has no settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StdoutSinkConfig {}

/// Writes to standard output.
pub struct StdoutSink {
    name: String,
    metrics: Arc<Metrics>,
}

impl StdoutSink {
    /// The sink `name`, counting its retries in `metrics`.
    pub fn new(name: &str, metrics: Arc<Metrics>) -> StdoutSink {
        StdoutSink { name: name.to_owned(), metrics }
    }
}

impl Sink for StdoutSink {
    fn deliver<'a>(&'a self, events: &'a [OutEvent], mut retry: Retry) -> DeliverFuture<'a> {
        Box::pin(async move {
            let body = json_lines(events);
            retry_until(&self.name, &"stdout", &mut retry, &self.metrics, || async {
                let mut stdout = tokio::io::stdout();
                stdout.write_all(&body).await.map_err(|err| RetryableError::new(format!("cannot write to stdout: {err}")))?;
                stdout.flush().await.map_err(|err| RetryableError::new(format!("cannot write to stdout: {err}")))?;
                Ok(Delivery::default())
            })
            .await
        })
    }
}
