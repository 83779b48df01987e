//! `type = "file"`: appends events as JSON Lines to a file.

use super::{DeliverFuture, Delivery, OutEvent, RetryableError, Sink, json_lines, retry_until};
use crate::config::{ConfigError, Context};
use crate::metrics::Metrics;
use crate::retry::Retry;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// `[sinks.NAME]` with `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to, relative to the config file's folder; created
    /// (with its folder) if missing.
    pub path: PathBuf,
    /// Flush every batch to the disk before acknowledging it (default
    /// `true`). Without it a power cut can lose acknowledged events; a crash
    /// of ferry alone cannot.
    #[serde(default = "default_fsync")]
    pub fsync: bool,
}

fn default_fsync() -> bool {
    true
}

/// A file sink. The file is opened at the first delivery and kept open; a
/// failed write closes it so the next attempt starts fresh.
pub struct FileSink {
    name: String,
    metrics: Arc<Metrics>,
    path: PathBuf,
    fsync: bool,
    file: tokio::sync::Mutex<Option<tokio::fs::File>>,
}

impl FileSink {
    /// Checks the settings.
    pub fn build(name: &str, config: &FileSinkConfig, ctx: &Context, metrics: Arc<Metrics>) -> Result<FileSink, ConfigError> {
        if config.path.as_os_str().is_empty() {
            return Err(ctx.invalid(format!("sinks.{name}.path"), "must name a file"));
        }
        Ok(FileSink {
            name: name.to_owned(),
            metrics,
            path: ctx.resolve(&config.path),
            fsync: config.fsync,
            file: tokio::sync::Mutex::new(None),
        })
    }

    async fn append(&self, slot: &mut Option<tokio::fs::File>, body: &[u8]) -> std::io::Result<()> {
        if slot.is_none() {
            if let Some(dir) = self.path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            // Audit events are for the operator's eyes only: a file ferry
            // creates is readable by its owner alone (an existing one keeps
            // the mode the operator gave it).
            let file = tokio::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path).await?;
            *slot = Some(file);
        }
        let Some(file) = slot.as_mut() else { unreachable!("opened just above") };
        file.write_all(body).await?;
        file.flush().await?;
        if self.fsync {
            file.sync_data().await?;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn deliver<'a>(&'a self, events: &'a [OutEvent], mut retry: Retry) -> DeliverFuture<'a> {
        Box::pin(async move {
            let body = json_lines(events);
            retry_until(&self.name, &self.path.display(), &mut retry, &self.metrics, || async {
                let mut slot = self.file.lock().await;
                match self.append(&mut slot, &body).await {
                    Ok(()) => Ok(Delivery::default()),
                    Err(err) => {
                        *slot = None;
                        Err(RetryableError::new(format!("cannot write {}: {err}", self.path.display())))
                    }
                }
            })
            .await
        })
    }
}
