//! `type = "stdout"`: writes events as JSON Lines to standard output, for
//! trying a pipeline out or piping into another tool.

use super::{DeliverFuture, Delivery, OutEvent, RetryableError, Sink, json_lines};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// `[sinks.NAME]` with `type = "stdout"`; it has no settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StdoutSinkConfig {}

/// Writes to standard output.
#[derive(Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn deliver<'a>(&'a self, events: &'a [OutEvent]) -> DeliverFuture<'a> {
        Box::pin(async move {
            let mut stdout = tokio::io::stdout();
            let body = json_lines(events);
            stdout.write_all(&body).await.map_err(|err| RetryableError::new(format!("cannot write to stdout: {err}")))?;
            stdout.flush().await.map_err(|err| RetryableError::new(format!("cannot write to stdout: {err}")))?;
            Ok(Delivery::default())
        })
    }
}
