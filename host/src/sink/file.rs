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
            let open = |read: bool| {
                let mut options = tokio::fs::OpenOptions::new();
                options.read(read).create(true).append(true).mode(0o600);
                let path = self.path.clone();
                async move { options.open(path).await }
            };
            let file = match open(true).await {
                Ok(mut file) => {
                    end_a_cut_line(&mut file).await?;
                    file
                }
                // A file ferry may append to but not read: written as it is.
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => open(false).await?,
                Err(err) => return Err(err),
            };
            *slot = Some(file);
        }
        let Some(file) = slot.as_mut() else { unreachable!("opened just above") };
        let before = file.metadata().await?.len();
        if let Err(err) = write_through(file, body, self.fsync).await {
            // Take back what part of the batch got written, so that the
            // retry does not leave a fragment; should that fail too, the
            // reopen ends the fragment's line.
            let _ = file.set_len(before).await;
            return Err(err);
        }
        Ok(())
    }
}

async fn write_through(file: &mut tokio::fs::File, body: &[u8], fsync: bool) -> std::io::Result<()> {
    file.write_all(body).await?;
    file.flush().await?;
    if fsync {
        file.sync_data().await?;
    }
    Ok(())
}

/// Ends the file's last line if a write was cut short (ferry killed
/// mid-write, a full disk): the fragment stays a line of its own, and the
/// next event starts on a new one instead of being glued to it.
async fn end_a_cut_line(file: &mut tokio::fs::File) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let len = file.metadata().await?.len();
    if len == 0 {
        return Ok(());
    }
    file.seek(std::io::SeekFrom::Start(len - 1)).await?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last).await?;
    if last[0] != b'\n' {
        // (Appending: the write lands at the end whatever the position.)
        file.write_all(b"\n").await?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Backoff;
    use crate::shutdown::Shutdown;

    fn event(i: usize) -> OutEvent {
        OutEvent { id: i.to_string(), json: format!("{{\"uid\":\"{i}\"}}").into_bytes(), ..Default::default() }
    }

    /// A write cut short (a full disk, ferry killed mid-write) leaves part of
    /// a line at the end of the file; the next events start on a line of
    /// their own, so a reader loses the fragment only, never an event.
    #[tokio::test]
    async fn a_fragment_left_by_a_cut_write_is_not_glued_to_the_next_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"{\"uid\":\"0\"}\n{\"uid\":\"1\",\"log").expect("a file ending in a fragment");
        let config = FileSinkConfig { path: path.clone(), fsync: false };
        let sink =
            FileSink::build("out", &config, &Context::for_file(&dir.path().join("ferry.toml"), false), Arc::default()).expect("sink");
        let retry = Retry::new(Backoff::default(), Shutdown::never());
        sink.deliver(&[event(2), event(3)], retry).await.expect("delivered");
        let text = std::fs::read_to_string(&path).expect("the file");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["{\"uid\":\"0\"}", "{\"uid\":\"1\",\"log", "{\"uid\":\"2\"}", "{\"uid\":\"3\"}"], "{text:?}");
    }
}
