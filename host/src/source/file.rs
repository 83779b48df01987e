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
//! names another file (rotated or replaced) is read from its start once what
//! is left of the open one has been read; a file truncated in place
//! (`copytruncate`) has the rest read from its copy when one is found next to
//! it. The first bytes are compared again after every read from the file
//! (one small read per buffer), so a file truncated and written past the
//! offset between two looks is not read from its middle. Without `follow`,
//! the source ends at the end of the file. A cursor
//! holding a bare byte offset (written by ferry before file identities) is
//! taken as an offset into the file the path names.

use super::{Invalid, Item, SourceError, SourceRecord};
use crate::config::{ConfigError, Context};
use crate::event::Event;
use crate::shutdown::Shutdown;
use crate::units::{ByteSize, ConfigDuration};
use serde::Deserialize;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// How many bytes at the start of a file go into its fingerprint: enough for
/// the first event's time and `uid`, which no two audit logs share, while a
/// check costs one small read.
pub const HEAD_BYTES: u64 = 256;

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
    pub async fn run(
        self,
        position: Option<String>,
        out: mpsc::Sender<SourceRecord>,
        mut shutdown: Shutdown,
    ) -> Result<(), SourceError> {
        let stored = match position {
            Some(text) => Some(Cursor::parse(&text).map_err(|message| self.error(message))?),
            None => None,
        };
        let mut start = match stored {
            None => Start::At(0),
            Some(Cursor::Offset(offset)) => Start::Legacy(offset),
            Some(Cursor::File(cursor)) => match self.resume(&cursor, &out, &mut shutdown).await? {
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
                    let progress = SourceRecord { item: Item::Progress, position: tracked.position(0).into(), sink: None };
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
                    tracing::info!(path = %self.path.display(), "The file was rotated or replaced; the old one was read to its end, the new one is read from its start.");
                }
                Next::Truncated(done) => {
                    let cursor = FileCursor::new(&mut tracked, done);
                    match self.find(&cursor, Some(tracked.id)).await {
                        Some(copy) => {
                            tracing::info!(path = %self.path.display(), copy = %copy.display(), offset = done, "The file was truncated; reading the rest of it from its copy, then the file from the start.");
                            if self.finish(&copy, done, &out, &mut shutdown).await? {
                                return Ok(());
                            }
                        }
                        None => tracing::warn!(path = %self.path.display(), offset = done, "The file was truncated and no copy of it was found beside it; reading it from the start (lines written just before the truncation may be missing)."),
                    }
                }
            }
            start = Start::New;
        }
    }

    /// Decides where to start from a stored cursor: on the same file, or,
    /// when the path names another one, after reading the rest of the
    /// cursor's file if it can still be found. `None` when shutdown fired.
    async fn resume(&self, cursor: &FileCursor, out: &mpsc::Sender<SourceRecord>, shutdown: &mut Shutdown) -> Result<Option<Start>, SourceError> {
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
                if self.finish(&found, cursor.offset, out, shutdown).await? {
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

    /// Reads `path` from `offset` to its end (a last line without a line
    /// break counts: nothing more is coming to a rotated file). True when
    /// shutdown fired or the receiver went away.
    async fn finish(&self, path: &Path, offset: u64, out: &mpsc::Sender<SourceRecord>, shutdown: &mut Shutdown) -> Result<bool, SourceError> {
        let cannot = |err: std::io::Error| self.error(format!("cannot read {}: {err}", path.display()));
        let file = tokio::fs::File::open(path).await.map_err(cannot)?;
        let mut tracked = Tracked::new(&file).await.map_err(cannot)?;
        let mut lines = LineReader::new(file, offset, self.max_line).await.map_err(cannot)?;
        loop {
            let line = tokio::select! {
                line = lines.next_line(false) => line.map_err(cannot)?,
                () = shutdown.wait() => return Ok(true),
            };
            let Some(line) = line else { return Ok(false) };
            let position = tracked.position(line.end);
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
                    let tracked = Tracked::new(&file).await.map_err(|err| self.error(format!("cannot read {}: {err}", self.path.display())))?;
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
        let mut draining = false;
        loop {
            let line = tokio::select! {
                line = lines.next_line(self.follow && !draining) => line.map_err(|err| self.error(format!("cannot read {}: {err}", self.path.display())))?,
                () = shutdown.wait() => return Ok(Next::Stop),
            };
            let Some(line) = line else {
                if !self.follow {
                    return Ok(Next::Stop);
                }
                if draining {
                    return Ok(Next::Replaced);
                }
                if shutdown.sleep_or_stop(self.poll_interval).await {
                    return Ok(Next::Stop);
                }
                // Looked at after the wait, just before reading on: a file
                // truncated and rewritten past the offset meanwhile must not
                // be read from the middle.
                match self.change(tracked, lines.offset()).await {
                    Change::Same => {}
                    // What the writer added to the old file before it let go
                    // of it is read first, through the handle still open.
                    Change::Replaced => draining = true,
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
            let position = tracked.position(line.end);
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

/// The byte offset a stored file cursor holds (either form), for tools and
/// tests that compare it with the file.
pub fn offset_of(position: &str) -> Option<u64> {
    match Cursor::parse(position).ok()? {
        Cursor::Offset(offset) => Some(offset),
        Cursor::File(cursor) => Some(cursor.offset),
    }
}

/// Runs blocking file system work (folder listings, small reads) off the
/// async threads; `None` if it panicked.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(work).await.ok()
}

/// A file's device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }
}

/// A stored cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cursor {
    /// A bare byte offset, as ferry stored before it knew files by identity.
    Offset(u64),
    /// A place in a file known by identity.
    File(FileCursor),
}

/// A place in one file: which file, and the byte offset just past the last
/// line handed on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileCursor {
    id: FileId,
    /// The fingerprint of the first `min(offset, HEAD_BYTES)` bytes.
    head: String,
    offset: u64,
}

/// The stored form of [`FileCursor`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCursor {
    dev: u64,
    ino: u64,
    head: String,
    offset: u64,
}

impl Cursor {
    fn parse(text: &str) -> Result<Cursor, String> {
        if let Ok(offset) = text.parse() {
            return Ok(Cursor::Offset(offset));
        }
        match serde_json::from_str::<StoredCursor>(text) {
            Ok(s) => Ok(Cursor::File(FileCursor { id: FileId { dev: s.dev, ino: s.ino }, head: s.head, offset: s.offset })),
            Err(err) => Err(format!("stored cursor `{text}` is neither a byte offset nor a file position: {err}")),
        }
    }
}

impl FileCursor {
    fn new(tracked: &mut Tracked, offset: u64) -> FileCursor {
        FileCursor { id: tracked.id, head: tracked.fingerprint(offset), offset }
    }

    fn to_text(&self) -> String {
        format!(r#"{{"dev":{},"ino":{},"head":"{}","offset":{}}}"#, self.id.dev, self.id.ino, self.head, self.offset)
    }
}

/// The open file's identity, and its first bytes for the cursor's
/// fingerprint.
struct Tracked {
    id: FileId,
    /// A second handle on the open file (not the path, which may name
    /// another file by now), to read its first bytes.
    handle: std::fs::File,
    head: Vec<u8>,
    /// The fingerprint of all [`HEAD_BYTES`], once the file has them; the
    /// common case costs no hashing per line.
    full: Option<String>,
}

impl Tracked {
    async fn new(file: &tokio::fs::File) -> std::io::Result<Tracked> {
        let handle = file.try_clone().await?.into_std().await;
        blocking(move || {
            let id = FileId::of(&handle.metadata()?);
            let mut tracked = Tracked { id, handle, head: Vec::new(), full: None };
            tracked.refresh()?;
            Ok(tracked)
        })
        .await
        .unwrap_or_else(|| Err(std::io::Error::other("reading the file's first bytes stopped unexpectedly")))
    }

    /// Reads the first bytes again, keeping them only if the file grew: a
    /// file rewritten in place must not lend its new bytes to a cursor into
    /// the old ones.
    fn refresh(&mut self) -> std::io::Result<()> {
        let head = read_head(&self.handle, HEAD_BYTES)?;
        if !head.starts_with(&self.head) {
            return Ok(());
        }
        self.head = head;
        if self.head.len() as u64 == HEAD_BYTES {
            self.full = Some(fingerprint(&self.head));
        }
        Ok(())
    }

    /// The fingerprint of the first `min(offset, HEAD_BYTES)` bytes.
    fn fingerprint(&mut self, offset: u64) -> String {
        let wanted = usize::try_from(offset.min(HEAD_BYTES)).unwrap_or(0);
        if wanted as u64 == HEAD_BYTES
            && let Some(full) = &self.full {
                return full.clone();
            }
        if self.head.len() < wanted {
            // Only while a small file grows past what was there when it was
            // opened: one read of at most HEAD_BYTES.
            let _ = self.refresh();
        }
        fingerprint(&self.head[..wanted.min(self.head.len())])
    }

    /// The stored cursor text for `offset` in this file. Past the first
    /// bytes only the offset changes, so the rest is written once.
    fn position(&mut self, offset: u64) -> String {
        if offset >= HEAD_BYTES
            && let Some(full) = &self.full {
                use std::fmt::Write;
                let mut text = String::with_capacity(96);
                // Writing to a String cannot fail.
                let _ = write!(text, r#"{{"dev":{},"ino":{},"head":"{full}","offset":{offset}}}"#, self.id.dev, self.id.ino);
                return text;
            }
        FileCursor::new(self, offset).to_text()
    }

    /// True when the file's first bytes (as many as were read, up to
    /// `read`) are no longer those it had: rewritten in place.
    fn head_changed(&self, read: u64) -> bool {
        let wanted = usize::try_from(read.min(HEAD_BYTES)).unwrap_or(0).min(self.head.len());
        match read_head(&self.handle, wanted as u64) {
            Ok(now) => now != self.head[..wanted],
            Err(_) => false,
        }
    }
}

/// Up to `limit` bytes from the start of `file`.
fn read_head(file: &std::fs::File, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0; usize::try_from(limit).unwrap_or(0)];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// The first 8 bytes of the SHA-256 of `bytes`, in hex.
fn fingerprint(bytes: &[u8]) -> String {
    ferry_event::hex_sha256(bytes)[..16].to_owned()
}

/// True when the file at `path` starts with the bytes `cursor` fingerprints.
fn head_matches(path: &Path, cursor: &FileCursor) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    let wanted = cursor.offset.min(HEAD_BYTES);
    match read_head(&file, wanted) {
        Ok(head) => head.len() as u64 == wanted && fingerprint(&head) == cursor.head,
        Err(_) => false,
    }
}

/// See [`FileSource::find`]; blocking. Candidates are taken in name order,
/// so that the choice among identical copies is the same every time.
fn find_file(dir: &Path, name: &[u8], cursor: &FileCursor, exclude: Option<FileId>) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
    entries.sort();
    let mut copy = None;
    for path in entries {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let id = FileId::of(&meta);
        if !meta.is_file() || Some(id) == exclude || meta.len() < cursor.offset {
            continue;
        }
        let same_inode = id == cursor.id;
        let named_like = path.file_name().is_some_and(|file| file.as_bytes().starts_with(name));
        // A copy is known by its first bytes alone, so it needs some.
        if !same_inode && (!named_like || cursor.offset == 0 || copy.is_some()) {
            continue;
        }
        if !head_matches(&path, cursor) {
            continue;
        }
        if same_inode {
            return Some(path);
        }
        copy = Some(path);
    }
    copy
}

/// One line read from the file, with where it starts and ends.
struct Line {
    start: u64,
    end: u64,
    bytes: Vec<u8>,
    too_long: bool,
}

impl Line {
    /// The record for this line, with `position` (the cursor just past
    /// it); `None` for a blank line.
    fn into_record(self, position: String) -> Option<SourceRecord> {
        let start = self.start.to_string();
        if self.too_long {
            let reason = format!("line at byte {} is longer than max-line-bytes ({} bytes kept)", self.start, self.bytes.len());
            return Some(SourceRecord { item: Item::Invalid(Invalid { position: start, reason, raw: self.bytes }), position: position.into(), sink: None });
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
        Some(SourceRecord { item, position: position.into(), sink: None })
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
    /// Bytes were read from the file (not from the buffer) since
    /// [`LineReader::take_refilled`] was last called.
    refilled: bool,
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
            refilled: false,
        })
    }

    /// Bytes consumed so far, including a partial line.
    fn offset(&self) -> u64 {
        self.offset
    }

    /// True once after bytes were read from the file itself.
    fn take_refilled(&mut self) -> bool {
        std::mem::take(&mut self.refilled)
    }

    /// Bytes of complete lines handed on so far.
    fn complete(&self) -> u64 {
        self.partial_start
    }

    /// The next complete line, or `None` at the end of the file. Without
    /// `follow`, a last line with no newline counts as complete.
    async fn next_line(&mut self, follow: bool) -> std::io::Result<Option<Line>> {
        loop {
            let was_empty = self.reader.buffer().is_empty();
            let available = self.reader.fill_buf().await?;
            self.refilled |= was_empty && !available.is_empty();
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
        let records: Vec<_> = lines.into_iter().filter_map(|line| { let end = line.end.to_string(); line.into_record(end) }).collect();
        assert_eq!(records.len(), 2);
        assert!(matches!(&records[0].item, Item::Event(event) if event.id == "x"));
        assert_eq!(records[0].position, "12");
        let Item::Invalid(invalid) = &records[1].item else { panic!("bad line") };
        assert_eq!(invalid.position, "16");
        assert!(invalid.reason.starts_with("line at byte 16: invalid JSON: expected ident"), "{}", invalid.reason);
        assert_eq!(invalid.raw, b"not json");
        assert_eq!(records[1].position, "25");
    }

    fn source(dir: &Path, follow: bool) -> FileSource {
        FileSource { name: "file:test".into(), path: dir.join("in.jsonl"), follow, poll_interval: Duration::from_millis(10), max_line: 1 << 20 }
    }

    /// `count` events with uids `PREFIX-N`, each about 60 bytes.
    fn events(prefix: &str, range: std::ops::Range<usize>) -> String {
        range.map(|n| format!("{{\"uid\":\"{prefix}-{n}\",\"event\":\"user.login\",\"pad\":\"xxxxxxxx\"}}\n")).collect()
    }

    fn append(path: &Path, text: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open to append");
        file.write_all(text.as_bytes()).expect("append");
    }

    /// Runs a source to its end (`follow = false`) from `position`; every
    /// record it sent.
    async fn run_to_end(dir: &Path, position: Option<String>) -> Vec<SourceRecord> {
        let (tx, mut rx) = mpsc::channel(100_000);
        source(dir, false).run(position, tx, Shutdown::never()).await.expect("the source runs");
        let mut records = Vec::new();
        while let Ok(record) = rx.try_recv() {
            records.push(record);
        }
        records
    }

    fn ids(records: &[SourceRecord]) -> Vec<String> {
        records.iter().filter_map(|r| if let Item::Event(e) = &r.item { Some(e.id.clone()) } else { None }).collect()
    }

    fn expected(parts: &[(&str, std::ops::Range<usize>)]) -> Vec<String> {
        parts.iter().flat_map(|(prefix, range)| range.clone().map(move |n| format!("{prefix}-{n}"))).collect()
    }

    /// The last cursor a run left.
    fn last(records: &[SourceRecord]) -> Option<String> {
        records.last().map(|r| r.position.encode().into_owned())
    }

    #[test]
    fn cursors_round_trip_and_bare_offsets_still_load() {
        let cursor = FileCursor { id: FileId { dev: 2049, ino: 77 }, head: "0123456789abcdef".into(), offset: 4096 };
        assert_eq!(cursor.to_text(), r#"{"dev":2049,"ino":77,"head":"0123456789abcdef","offset":4096}"#);
        assert_eq!(Cursor::parse(&cursor.to_text()), Ok(Cursor::File(cursor)));
        assert_eq!(Cursor::parse("1234"), Ok(Cursor::Offset(1234)));
        let err = Cursor::parse("page-7").expect_err("not a cursor");
        assert!(err.starts_with("stored cursor `page-7` is neither a byte offset nor a file position: "), "{err}");
    }

    #[tokio::test]
    async fn the_same_file_goes_on_from_its_cursor_and_a_bare_offset_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        append(&path, &events("a", 0..10));
        let first = run_to_end(dir.path(), None).await;
        assert_eq!(ids(&first), expected(&[("a", 0..10)]));
        append(&path, &events("a", 10..13));
        let second = run_to_end(dir.path(), last(&first)).await;
        assert_eq!(ids(&second), expected(&[("a", 10..13)]));
        // ferry before file identities stored the offset alone.
        let offset = std::fs::metadata(&path).expect("stat").len() - events("a", 12..13).len() as u64;
        let legacy = run_to_end(dir.path(), Some(offset.to_string())).await;
        assert_eq!(ids(&legacy), expected(&[("a", 12..13)]));
        assert!(matches!(Cursor::parse(&legacy[0].position.encode()), Ok(Cursor::File(_))), "the cursor is stored with the file's identity from then on");
    }

    #[tokio::test]
    async fn rotation_while_stopped_finishes_the_old_file_then_reads_the_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        append(&path, &events("old", 0..20));
        let first = run_to_end(dir.path(), None).await;
        // Written while ferry was stopped, just before the rotation.
        append(&path, &events("old", 20..23));
        std::fs::rename(&path, dir.path().join("in.jsonl.1")).expect("rotate");
        append(&path, &events("new", 0..40));
        let second = run_to_end(dir.path(), last(&first)).await;
        assert_eq!(ids(&second), expected(&[("old", 20..23), ("new", 0..40)]));
        assert!(second.iter().any(|r| matches!(r.item, Item::Progress)), "the cursor moves to the new file before its first line");
        // Stopped again: the new file is now the one the cursor names.
        append(&path, &events("new", 40..42));
        let third = run_to_end(dir.path(), last(&second)).await;
        assert_eq!(ids(&third), expected(&[("new", 40..42)]));
    }

    #[tokio::test]
    async fn a_rotated_file_that_is_gone_leaves_the_new_one_read_from_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        append(&path, &events("old", 0..20));
        let first = run_to_end(dir.path(), None).await;
        std::fs::remove_file(&path).expect("delete");
        append(&path, &events("new", 0..30));
        let second = run_to_end(dir.path(), last(&first)).await;
        assert_eq!(ids(&second), expected(&[("new", 0..30)]));
    }

    #[tokio::test]
    async fn copytruncate_while_stopped_reads_the_rest_from_the_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        append(&path, &events("old", 0..20));
        let first = run_to_end(dir.path(), None).await;
        append(&path, &events("old", 20..25));
        std::fs::copy(&path, dir.path().join("in.jsonl.1")).expect("copy");
        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("truncate");
        // Longer than before, so that only the first bytes tell it apart.
        append(&path, &events("new", 0..60));
        let second = run_to_end(dir.path(), last(&first)).await;
        assert_eq!(ids(&second), expected(&[("old", 20..25), ("new", 0..60)]));
    }

    #[tokio::test]
    async fn truncation_while_stopped_without_a_copy_reads_from_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        append(&path, &events("old", 0..20));
        let first = run_to_end(dir.path(), None).await;
        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("truncate");
        append(&path, &events("new", 0..5));
        let second = run_to_end(dir.path(), last(&first)).await;
        assert_eq!(ids(&second), expected(&[("new", 0..5)]));
    }

    /// A following source over `dir`; the records it sends, and the trigger
    /// that stops it.
    fn follow(dir: &Path) -> (mpsc::Receiver<SourceRecord>, crate::shutdown::Trigger, tokio::task::JoinHandle<Result<(), SourceError>>) {
        let (tx, rx) = mpsc::channel(100_000);
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(source(dir, true).run(None, tx, shutdown));
        (rx, trigger, task)
    }

    /// The ids of the next `n` events the source sends (within 10 s).
    async fn next_ids(rx: &mut mpsc::Receiver<SourceRecord>, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let record = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap_or_else(|_| panic!("only {got:?} arrived"));
            if let Item::Event(event) = record.expect("the source runs").item {
                got.push(event.id);
            }
        }
        got
    }

    #[tokio::test]
    async fn rotation_and_replacement_while_running_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        append(&path, &events("a", 0..10));
        let (mut rx, trigger, task) = follow(dir.path());
        assert_eq!(next_ids(&mut rx, 10).await, expected(&[("a", 0..10)]));
        // The writer adds to the old file after the rename, then moves on.
        std::fs::rename(&path, dir.path().join("in.jsonl.1")).expect("rotate");
        append(&dir.path().join("in.jsonl.1"), &events("a", 10..12));
        append(&path, &events("b", 0..10));
        assert_eq!(next_ids(&mut rx, 12).await, expected(&[("a", 10..12), ("b", 0..10)]));
        // Replaced in one step (rename over it).
        let fresh = dir.path().join("fresh.tmp");
        append(&fresh, &events("c", 0..10));
        std::fs::rename(&fresh, &path).expect("replace");
        assert_eq!(next_ids(&mut rx, 10).await, expected(&[("c", 0..10)]));
        trigger.fire();
        task.await.expect("joins").expect("the source ends cleanly");
    }

    #[tokio::test]
    async fn truncation_while_running_reads_the_copy_then_the_file_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        append(&path, &events("a", 0..10));
        let (mut rx, trigger, task) = follow(dir.path());
        assert_eq!(next_ids(&mut rx, 10).await, expected(&[("a", 0..10)]));
        // copytruncate: lines the source has not read yet are in the copy.
        let mut with_more = std::fs::read(&path).expect("read");
        with_more.extend_from_slice(events("a", 10..12).as_bytes());
        std::fs::write(dir.path().join("in.jsonl.1"), &with_more).expect("copy");
        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("truncate");
        append(&path, &events("b", 0..3));
        assert_eq!(next_ids(&mut rx, 5).await, expected(&[("a", 10..12), ("b", 0..3)]));
        // Truncated and rewritten past the old length before the source looked.
        let rewritten = events("c", 0..30);
        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("truncate");
        append(&path, &rewritten);
        assert_eq!(next_ids(&mut rx, 30).await, expected(&[("c", 0..30)]));
        trigger.fire();
        task.await.expect("joins").expect("the source ends cleanly");
    }

    #[tokio::test]
    async fn an_overlong_line_is_cut_and_marked() {
        let lines = read_all(b"{\"a\":\"0123456789\"}\n{}\n", 8, false).await;
        let records: Vec<_> = lines.into_iter().filter_map(|line| { let end = line.end.to_string(); line.into_record(end) }).collect();
        let Item::Invalid(invalid) = &records[0].item else { panic!("too long") };
        assert!(invalid.reason.contains("longer than max-line-bytes"), "{}", invalid.reason);
        assert_eq!(invalid.raw.len(), 8);
        assert!(matches!(records[1].item, Item::Event(_)));
    }
}
