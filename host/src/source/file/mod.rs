//! `[source.file]`: JSON Lines from a file, one event per line.
//!
//! The cursor names the file as well as the place in it: its device, its
//! inode, a fingerprint of its first bytes (up to [`HEAD_BYTES`], never past
//! the cursor) and the byte offset just past the last line handed on. A byte
//! offset alone cannot tell a rotated file from the one ferry was reading,
//! and would skip the start of a file rotated while ferry was stopped. At
//! start, ferry looks at what the path names:
//!
//! - the same file (device, inode and first bytes agree, and it is not
//!   shorter than the cursor): go on from the offset;
//! - another file: find the one the cursor names in the same folder (by
//!   inode, or by its first bytes for a `copytruncate` copy whose name starts
//!   with the file's own, such as `in.jsonl.1`), read it to its end, then
//!   read the new file from its start;
//! - the file it was reading cannot be found: say so at ERROR (what was
//!   appended to it after the cursor was not read) and read the new file
//!   from its start.
//!
//! With `follow` (the default) the same happens while running: a path that
//! names another file (rotated or replaced) is read from its start once the
//! open one has not grown for `rotate-wait` (a writer keeps its descriptor
//! until it reopens; a partial line is held until it ends, or until the
//! file is closed). The old file is read to the end before the new one is
//! opened, so the cursor names one file at a time and needs no second
//! place: a crash while the old file is read resumes in it (found again by
//! inode, read until quiet as well), then the new file is read from its
//! start. A file truncated in place
//! (`copytruncate`) has the rest read from its copy when one is found next to
//! it. The first bytes are compared again after every read from the file
//! (one small read per buffer), so a file truncated and written past the
//! offset between two looks is not read from its middle. Without `follow`,
//! the source ends at the end of the file. A cursor
//! holding a bare byte offset (written by ferry before file identities) is
//! taken as an offset into the file the path names.

mod config;
mod cursor;
mod identity;
mod lines;

pub use config::FileSourceConfig;
pub use cursor::{FileCursor, offset_of};
pub use identity::HEAD_BYTES;

use super::{Item, Position, SourceError, SourceRecord};
use crate::config::{ConfigError, Context};
use crate::shutdown::Shutdown;
use cursor::FilePosition;
use identity::{FileId, Tracked, find_file, head_matches};
use lines::LineReader;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// A file source ready to run.
pub struct FileSource {
    name: String,
    path: PathBuf,
    follow: bool,
    poll_interval: Duration,
    max_line: usize,
    rotate_wait: Duration,
}

/// Where to start reading the file the path names, once it is open.
enum Start {
    /// At this offset of the file the stored cursor names (checked to be it).
    At(u64),
    /// At this offset of a bare-offset cursor, or the start when the file is
    /// shorter.
    Legacy(u64),
    /// At the start of a file ferry has not read before: the cursor moves
    /// to it at once, so that a restart does not look for the old one again.
    New,
}

/// What happened to the path while ferry read the file it named.
enum Change {
    /// Nothing: still the same file, not shorter.
    Same,
    /// The path names another file (rotated by renaming, or replaced).
    Replaced,
    /// The same file was truncated (or rewritten) in place.
    Truncated,
}

enum Next {
    Stop,
    Replaced,
    /// Truncated after this many bytes of complete lines were handed on.
    Truncated(u64),
}

impl FileSource {
    /// Checks the settings; the file itself may appear later.
    pub fn build(config: &FileSourceConfig, ctx: &Context) -> Result<FileSource, ConfigError> {
        let path = ctx.resolve(&config.path);
        let max_line = config.max_line_bytes.map_or(16 << 20, |b| b.0);
        if max_line == 0 {
            return Err(ctx.invalid("source.file.max-line-bytes", "must be more than 0"));
        }
        Ok(FileSource {
            name: format!("file:{}", path.display()),
            path,
            follow: config.follow,
            poll_interval: config.poll_interval.map_or(Duration::from_millis(200), |d| d.0),
            max_line: usize::try_from(max_line).unwrap_or(usize::MAX),
            rotate_wait: config.rotate_wait.map_or(Duration::from_secs(5), |d| d.0),
        })
    }

    /// The cursor key: `file:` and the absolute path.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, message: String) -> SourceError {
        SourceError { source_name: self.name.clone(), message }
    }

    /// Reads from the place `position` names (see the module docs) and
    /// sends one record per line.
    pub async fn run(self, position: Option<String>, out: mpsc::Sender<SourceRecord>, mut shutdown: Shutdown) -> Result<(), SourceError> {
        let stored = match position {
            Some(text) => Some(FilePosition::parse(&text).map_err(|message| self.error(message))?),
            None => None,
        };
        let mut start = match stored {
            None => Start::At(0),
            Some(FilePosition::Offset(offset)) => Start::Legacy(offset),
            Some(FilePosition::File(cursor)) => match self.resume(&cursor, &out, &mut shutdown).await? {
                Some(start) => start,
                None => return Ok(()),
            },
        };
        loop {
            let Some((file, mut tracked)) = self.open(&mut shutdown).await? else { return Ok(()) };
            let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let offset = match start {
                Start::At(offset) => offset,
                Start::Legacy(offset) if offset > len => {
                    tracing::warn!(path = %self.path.display(), offset, "The file is shorter than the saved position; reading it from the start.");
                    0
                }
                Start::Legacy(offset) => offset,
                Start::New => {
                    let progress = SourceRecord { item: Item::Progress, position: Position::File(tracked.position(0)) };
                    if out.send(progress).await.is_err() {
                        return Ok(());
                    }
                    0
                }
            };
            let mut lines = LineReader::new(file, offset, self.max_line).await.map_err(|err| self.error(err.to_string()))?;
            match self.read_lines(&mut lines, &mut tracked, &out, &mut shutdown).await? {
                Next::Stop => return Ok(()),
                Next::Replaced => {
                    tracing::info!(path = %self.path.display(), "The file was rotated or replaced; the old one was read until it had been quiet for rotate-wait, the new one is read from its start.");
                }
                Next::Truncated(done) => {
                    let cursor = FileCursor::new(&mut tracked, done);
                    match self.find(&cursor, Some(tracked.id)).await {
                        Some(copy) => {
                            tracing::info!(path = %self.path.display(), copy = %copy.display(), offset = done, "The file was truncated; reading the rest of it from its copy, then the file from the start.");
                            if self.finish(&copy, done, None, &out, &mut shutdown).await? {
                                return Ok(());
                            }
                        }
                        None => {
                            tracing::warn!(path = %self.path.display(), offset = done, "The file was truncated and no copy of it was found beside it; reading it from the start (lines written just before the truncation may be missing).")
                        }
                    }
                }
            }
            start = Start::New;
        }
    }

    /// Decides where to start from a stored cursor: on the same file, or,
    /// when the path names another one, after reading the rest of the
    /// cursor's file if it can still be found. `None` when shutdown fired.
    async fn resume(
        &self,
        cursor: &FileCursor,
        out: &mpsc::Sender<SourceRecord>,
        shutdown: &mut Shutdown,
    ) -> Result<Option<Start>, SourceError> {
        let path = self.path.clone();
        let wanted = cursor.clone();
        let current = blocking(move || {
            let Ok(meta) = std::fs::metadata(&path) else { return (None, false) };
            let id = FileId::of(&meta);
            let same = id == wanted.id && meta.len() >= wanted.offset && head_matches(&path, &wanted);
            (Some(id), same)
        })
        .await;
        let (current, same) = current.unwrap_or((None, false));
        if same {
            return Ok(Some(Start::At(cursor.offset)));
        }
        match self.find(cursor, current).await {
            Some(found) => {
                tracing::info!(path = %self.path.display(), rotated = %found.display(), offset = cursor.offset, "The file was rotated while ferry was stopped; reading the rest of the old one first.");
                if self.finish(&found, cursor.offset, Some(cursor.id), out, shutdown).await? {
                    return Ok(None);
                }
            }
            // The same inode with other first bytes is a file truncated in
            // place, or a new file that got the deleted one's inode: the
            // two cannot be told apart, and neither can be read any more.
            None => tracing::error!(
                path = %self.path.display(), offset = cursor.offset, inode = cursor.id.ino, same_inode = current == Some(cursor.id),
                "The file ferry was reading was rotated, replaced or truncated while ferry was stopped and cannot be found beside the path; reading the file at the path from its start. Lines written to the old file after the cursor were not read."
            ),
        }
        Ok(Some(Start::New))
    }

    /// The file `cursor` names, in the path's folder: the same inode with
    /// the same first bytes, or else a file whose name starts with the path's
    /// file name and whose first bytes are the same (a `copytruncate` copy).
    /// Never `exclude`, the file the path names now.
    async fn find(&self, cursor: &FileCursor, exclude: Option<FileId>) -> Option<PathBuf> {
        let dir = self.path.parent().map_or_else(|| PathBuf::from("."), Path::to_owned);
        let name = self.path.file_name().map(|name| name.as_bytes().to_vec()).unwrap_or_default();
        let cursor = cursor.clone();
        blocking(move || find_file(&dir, &name, &cursor, exclude)).await.flatten()
    }

    /// Reads `path` from `offset` to its end. When it is the file `renamed`
    /// names (a rotated file a writer may still hold), it is read until it
    /// has been quiet for `rotate-wait`; a copy gets nothing more. True when
    /// shutdown fired or the receiver went away.
    async fn finish(
        &self,
        path: &Path,
        offset: u64,
        renamed: Option<FileId>,
        out: &mpsc::Sender<SourceRecord>,
        shutdown: &mut Shutdown,
    ) -> Result<bool, SourceError> {
        let cannot = |err: std::io::Error| self.error(format!("cannot read {}: {err}", path.display()));
        let file = tokio::fs::File::open(path).await.map_err(cannot)?;
        let mut tracked = Tracked::new(&file).await.map_err(cannot)?;
        let wait = if self.follow && renamed == Some(tracked.id) { self.rotate_wait } else { Duration::ZERO };
        let mut lines = LineReader::new(file, offset, self.max_line).await.map_err(cannot)?;
        self.drain(&mut lines, &mut tracked, wait, path, out, shutdown).await
    }

    /// Reads a file the path no longer names until it has not grown for
    /// `wait` (a writer may still hold it open), then its last line even
    /// without a line break: nothing more is coming to it. A partial line
    /// is held until then, so that a line the writer finishes late is one
    /// event. True when shutdown fired or the receiver went away.
    async fn drain(
        &self,
        lines: &mut LineReader,
        tracked: &mut Tracked,
        wait: Duration,
        path: &Path,
        out: &mpsc::Sender<SourceRecord>,
        shutdown: &mut Shutdown,
    ) -> Result<bool, SourceError> {
        let cannot = |err: std::io::Error| self.error(format!("cannot read {}: {err}", path.display()));
        let mut quiet = Quiet::new(lines.offset(), wait);
        loop {
            let closing = quiet.over(lines.offset());
            let line = tokio::select! {
                line = lines.next_line(!closing) => line.map_err(cannot)?,
                () = shutdown.wait() => return Ok(true),
            };
            let Some(line) = line else {
                if closing {
                    return Ok(false);
                }
                if shutdown.sleep_or_stop(self.poll_interval.min(wait)).await {
                    return Ok(true);
                }
                continue;
            };
            let position = Position::File(tracked.position(line.end));
            let Some(record) = line.into_record(position) else { continue };
            if out.send(record).await.is_err() {
                return Ok(true);
            }
        }
    }

    /// Opens the file, waiting for it to appear when following.
    async fn open(&self, shutdown: &mut Shutdown) -> Result<Option<(tokio::fs::File, Tracked)>, SourceError> {
        let mut warned = false;
        loop {
            match tokio::fs::File::open(&self.path).await {
                Ok(file) => {
                    let tracked =
                        Tracked::new(&file).await.map_err(|err| self.error(format!("cannot read {}: {err}", self.path.display())))?;
                    return Ok(Some((file, tracked)));
                }
                Err(err) if self.follow && err.kind() == std::io::ErrorKind::NotFound => {
                    if !warned {
                        tracing::warn!(path = %self.path.display(), "The input file does not exist yet; waiting for it.");
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
        tracked: &mut Tracked,
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
                if shutdown.sleep_or_stop(self.poll_interval).await {
                    return Ok(Next::Stop);
                }
                // Looked at after the wait, just before reading on: a file
                // truncated and rewritten past the offset meanwhile must not
                // be read from the middle.
                match self.change(tracked, lines.offset()).await {
                    Change::Same => {}
                    // What the writer adds to the old file until it lets go
                    // of it is read first, through the handle still open.
                    Change::Replaced => {
                        let path = self.path.clone();
                        let stopped = self.drain(lines, tracked, self.rotate_wait, &path, out, shutdown).await?;
                        return Ok(if stopped { Next::Stop } else { Next::Replaced });
                    }
                    Change::Truncated => return Ok(Next::Truncated(lines.complete())),
                }
                continue;
            };
            // Fresh bytes from the file: if its first bytes changed, the file
            // was truncated and written again past the offset since it was
            // last looked at, and these bytes are from the middle of new text.
            if lines.take_refilled() && tracked.head_changed(lines.offset()) {
                return Ok(Next::Truncated(line.start));
            }
            let position = Position::File(tracked.position(line.end));
            let Some(record) = line.into_record(position) else { continue };
            if out.send(record).await.is_err() {
                return Ok(Next::Stop);
            }
        }
    }

    /// What became of the path since the file was opened, `read` bytes of it
    /// consumed. A path that vanished is no change yet: the writer may still
    /// add to the renamed file until the new one appears.
    async fn change(&self, tracked: &Tracked, read: u64) -> Change {
        match tokio::fs::metadata(&self.path).await {
            Ok(meta) if FileId::of(&meta) != tracked.id => Change::Replaced,
            Ok(meta) if meta.len() < read => Change::Truncated,
            Ok(_) if tracked.head_changed(read) => Change::Truncated,
            _ => Change::Same,
        }
    }
}

/// When a rotated file has been quiet long enough to be closed: no byte
/// read from it for the whole wait.
struct Quiet {
    read: u64,
    since: tokio::time::Instant,
    wait: Duration,
}

impl Quiet {
    fn new(read: u64, wait: Duration) -> Quiet {
        Quiet { read, since: tokio::time::Instant::now(), wait }
    }

    /// True once `read` (bytes consumed so far) has not moved for the wait.
    fn over(&mut self, read: u64) -> bool {
        if read != self.read {
            self.read = read;
            self.since = tokio::time::Instant::now();
        }
        self.since.elapsed() >= self.wait
    }
}

/// Runs blocking file system work (folder listings, small reads) off the
/// async threads; `None` if it panicked.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(work).await.ok()
}

#[cfg(test)]
mod tests;
