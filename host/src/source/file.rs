//! `[source.file]`: JSON Lines from a file, one event per line.
//!
//! The cursor is the byte offset just past the last line handed on. With
//! `follow` (the default) the source keeps reading what is appended, notices
//! a file that was truncated or replaced (log rotation) and starts it from
//! the beginning; without it, the source ends at the end of the file.

use super::{Invalid, Item, SourceError, SourceRecord};
use crate::config::{ConfigError, FerryConfig};
use crate::event::Event;
use crate::shutdown::Shutdown;
use crate::units::{ByteSize, ConfigDuration};
use serde::Deserialize;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// `[source.file]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The JSON Lines file to read, relative to the config file's folder.
    pub path: PathBuf,
    /// Keep reading lines appended to the file (default `true`). When
    /// `false`, ferry stops once it has delivered the whole file.
    #[serde(default = "default_follow")]
    pub follow: bool,
    /// How often to look for new lines when following. Default `"200ms"`.
    pub poll_interval: Option<ConfigDuration>,
    /// Longest line accepted; a longer one is dead-lettered (cut to this
    /// length) instead of filling memory. Default `"16MiB"`.
    pub max_line_bytes: Option<ByteSize>,
}

fn default_follow() -> bool {
    true
}

/// A file source ready to run.
pub struct FileSource {
    name: String,
    path: PathBuf,
    follow: bool,
    poll_interval: Duration,
    max_line: usize,
}

impl FileSource {
    /// Checks the settings; the file itself may appear later.
    pub fn build(config: &FileSourceConfig, ferry: &FerryConfig) -> Result<FileSource, ConfigError> {
        let path = ferry.resolve(&config.path);
        let max_line = config.max_line_bytes.map_or(16 << 20, |b| b.0);
        if max_line == 0 {
            return Err(ConfigError::invalid(&ferry.file, "source.file.max-line-bytes", "must be more than 0"));
        }
        Ok(FileSource {
            name: format!("file:{}", path.display()),
            path,
            follow: config.follow,
            poll_interval: config.poll_interval.map_or(Duration::from_millis(200), |d| d.0),
            max_line: usize::try_from(max_line).unwrap_or(usize::MAX),
        })
    }

    /// The cursor key: `file:` and the absolute path.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, message: String) -> SourceError {
        SourceError { source_name: self.name.clone(), message }
    }

    /// Reads from the byte offset in `position` and sends one record per line.
    pub async fn run(
        self,
        position: Option<String>,
        out: mpsc::Sender<SourceRecord>,
        mut shutdown: Shutdown,
    ) -> Result<(), SourceError> {
        let mut offset: u64 = match position {
            Some(text) => text.parse().map_err(|_| self.error(format!("stored cursor `{text}` is not a byte offset")))?,
            None => 0,
        };
        loop {
            let Some(opened) = self.open(offset, &mut shutdown).await? else { return Ok(()) };
            let (file, inode) = opened;
            if offset > file.metadata().await.map(|m| m.len()).unwrap_or(0) {
                tracing::warn!(path = %self.path.display(), offset, "The file is shorter than the saved position; reading it from the start.");
                offset = 0;
            }
            let mut lines = LineReader::new(file, offset, self.max_line).await.map_err(|err| self.error(err.to_string()))?;
            match self.read_lines(&mut lines, inode, &out, &mut shutdown).await? {
                Next::Stop => return Ok(()),
                Next::Reopen => {
                    tracing::info!(path = %self.path.display(), "The file was replaced or truncated; reading the new one from the start.");
                    offset = 0;
                }
            }
        }
    }

    /// Opens the file, waiting for it to appear when following.
    async fn open(&self, offset: u64, shutdown: &mut Shutdown) -> Result<Option<(tokio::fs::File, u64)>, SourceError> {
        let mut warned = false;
        loop {
            match tokio::fs::File::open(&self.path).await {
                Ok(file) => {
                    let inode = file.metadata().await.map(|m| m.ino()).unwrap_or(0);
                    return Ok(Some((file, inode)));
                }
                Err(err) if self.follow && err.kind() == std::io::ErrorKind::NotFound => {
                    if !warned {
                        tracing::warn!(path = %self.path.display(), offset, "The input file does not exist yet; waiting for it.");
                        warned = true;
                    }
                    if shutdown.sleep_or_stop(self.poll_interval).await {
                        return Ok(None);
                    }
                }
                Err(err) => return Err(self.error(format!("cannot open {}: {err}", self.path.display()))),
            }
        }
    }

    async fn read_lines(
        &self,
        lines: &mut LineReader,
        inode: u64,
        out: &mpsc::Sender<SourceRecord>,
        shutdown: &mut Shutdown,
    ) -> Result<Next, SourceError> {
        loop {
            let line = tokio::select! {
                line = lines.next_line(self.follow) => line.map_err(|err| self.error(format!("cannot read {}: {err}", self.path.display())))?,
                () = shutdown.wait() => return Ok(Next::Stop),
            };
            let Some(line) = line else {
                if !self.follow {
                    return Ok(Next::Stop);
                }
                if self.replaced(inode, lines.offset()).await {
                    return Ok(Next::Reopen);
                }
                if shutdown.sleep_or_stop(self.poll_interval).await {
                    return Ok(Next::Stop);
                }
                continue;
            };
            let Some(record) = line.into_record() else { continue };
            if out.send(record).await.is_err() {
                return Ok(Next::Stop);
            }
        }
    }

    /// True when the path now names another file, or the file got shorter
    /// than what was read of it.
    async fn replaced(&self, inode: u64, offset: u64) -> bool {
        match tokio::fs::metadata(&self.path).await {
            Ok(meta) => meta.ino() != inode || meta.len() < offset,
            Err(_) => false,
        }
    }
}

enum Next {
    Stop,
    Reopen,
}

/// One line read from the file, with where it starts and ends.
struct Line {
    start: u64,
    end: u64,
    bytes: Vec<u8>,
    too_long: bool,
}

impl Line {
    /// The record for this line; `None` for a blank line.
    fn into_record(self) -> Option<SourceRecord> {
        let position = self.end.to_string();
        let start = self.start.to_string();
        if self.too_long {
            let reason = format!("line at byte {} is longer than max-line-bytes ({} bytes kept)", self.start, self.bytes.len());
            return Some(SourceRecord { item: Item::Invalid(Invalid { position: start, reason, raw: self.bytes }), position, sink: None });
        }
        let mut bytes = self.bytes;
        bytes.truncate(trimmed_len(&bytes));
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let item = match Event::from_json(bytes) {
            Ok(event) => Item::Event(event),
            Err(err) => {
                Item::Invalid(Invalid { position: start, reason: format!("line at byte {}: {err}", self.start), raw: err.into_json() })
            }
        };
        Some(SourceRecord { item, position, sink: None })
    }
}

/// The length of a line without its line ending.
fn trimmed_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| !matches!(b, b'\n' | b'\r')).map_or(0, |i| i + 1)
}

/// Reads lines with a cap on their length, keeping a partial last line until
/// its newline arrives (when following).
struct LineReader {
    reader: BufReader<tokio::fs::File>,
    offset: u64,
    partial: Vec<u8>,
    partial_start: u64,
    dropping: bool,
    max_line: usize,
}

impl LineReader {
    async fn new(mut file: tokio::fs::File, offset: u64, max_line: usize) -> std::io::Result<LineReader> {
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        Ok(LineReader {
            reader: BufReader::with_capacity(256 * 1024, file),
            offset,
            partial: Vec::new(),
            partial_start: offset,
            dropping: false,
            max_line,
        })
    }

    /// Bytes consumed so far, including a partial line.
    fn offset(&self) -> u64 {
        self.offset
    }

    /// The next complete line, or `None` at the end of the file. Without
    /// `follow`, a last line with no newline counts as complete.
    async fn next_line(&mut self, follow: bool) -> std::io::Result<Option<Line>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if !follow && !self.partial.is_empty() {
                    return Ok(Some(self.take_line()));
                }
                return Ok(None);
            }
            let (chunk, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(newline) => (&available[..=newline], true),
                None => (available, false),
            };
            let room = self.max_line.saturating_sub(self.partial.len());
            if chunk.len() > room {
                self.dropping = true;
            }
            self.partial.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let consumed = chunk.len();
            self.reader.consume(consumed);
            self.offset += consumed as u64;
            if complete {
                return Ok(Some(self.take_line()));
            }
        }
    }

    fn take_line(&mut self) -> Line {
        let line = Line {
            start: self.partial_start,
            end: self.offset,
            bytes: std::mem::take(&mut self.partial),
            too_long: std::mem::take(&mut self.dropping),
        };
        self.partial_start = self.offset;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(text: &[u8], max_line: usize, follow: bool) -> Vec<Line> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, text).expect("write");
        let file = tokio::fs::File::open(&path).await.expect("open");
        let mut reader = LineReader::new(file, 0, max_line).await.expect("reader");
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line(follow).await.expect("read") {
            lines.push(line);
        }
        lines
    }

    #[tokio::test]
    async fn lines_carry_their_offsets() {
        let lines = read_all(b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}", 1024, false).await;
        let spans: Vec<_> = lines.iter().map(|l| (l.start, l.end)).collect();
        assert_eq!(spans, [(0, 8), (8, 9), (9, 18), (18, 25)]);
    }

    #[tokio::test]
    async fn a_partial_last_line_waits_when_following() {
        let lines = read_all(b"{\"a\":1}\n{\"b\"", 1024, true).await;
        assert_eq!(lines.len(), 1);
    }

    #[tokio::test]
    async fn records_parse_skip_blanks_and_mark_bad_lines() {
        let lines = read_all(b"{\"uid\":\"x\"}\n   \nnot json\n", 1024, false).await;
        let records: Vec<_> = lines.into_iter().filter_map(Line::into_record).collect();
        assert_eq!(records.len(), 2);
        assert!(matches!(&records[0].item, Item::Event(event) if event.id == "x"));
        assert_eq!(records[0].position, "12");
        let Item::Invalid(invalid) = &records[1].item else { panic!("bad line") };
        assert_eq!(invalid.position, "16");
        assert!(invalid.reason.starts_with("line at byte 16: invalid JSON: expected ident"), "{}", invalid.reason);
        assert_eq!(invalid.raw, b"not json");
        assert_eq!(records[1].position, "25");
    }

    #[tokio::test]
    async fn an_overlong_line_is_cut_and_marked() {
        let lines = read_all(b"{\"a\":\"0123456789\"}\n{}\n", 8, false).await;
        let records: Vec<_> = lines.into_iter().filter_map(Line::into_record).collect();
        let Item::Invalid(invalid) = &records[0].item else { panic!("too long") };
        assert!(invalid.reason.contains("longer than max-line-bytes"), "{}", invalid.reason);
        assert_eq!(invalid.raw.len(), 8);
        assert!(matches!(records[1].item, Item::Event(_)));
    }
}
