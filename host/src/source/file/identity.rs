//! Knowing a file by identity: its device and inode, and a fingerprint of
//! its first bytes, so that a rotated, replaced or truncated file is told
//! apart from the one ferry was reading, and its copy found beside it.

use super::blocking;
use super::cursor::FileCursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many bytes at the start of a file go into its fingerprint: enough for
/// the first event's time and `uid`, which no two audit logs share, while a
/// check costs one small read.
pub const HEAD_BYTES: u64 = 256;

/// A file's device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    pub(super) dev: u64,
    pub(super) ino: u64,
}

impl FileId {
    pub(super) fn of(meta: &std::fs::Metadata) -> FileId {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }
}

/// The open file's identity, and its first bytes for the cursor's
/// fingerprint.
pub(super) struct Tracked {
    pub(super) id: FileId,
    /// A second handle on the open file (not the path, which may name
    /// another file by now), to read its first bytes.
    handle: std::fs::File,
    head: Vec<u8>,
    /// The fingerprint of all [`HEAD_BYTES`], once the file has them; the
    /// common case costs no hashing per line.
    full: Option<Arc<str>>,
}

impl Tracked {
    pub(super) async fn new(file: &tokio::fs::File) -> std::io::Result<Tracked> {
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
            self.full = Some(Arc::from(fingerprint(&self.head)));
        }
        Ok(())
    }

    /// The fingerprint of the first `min(offset, HEAD_BYTES)` bytes.
    pub(super) fn fingerprint(&mut self, offset: u64) -> Arc<str> {
        let wanted = usize::try_from(offset.min(HEAD_BYTES)).unwrap_or(0);
        if wanted as u64 == HEAD_BYTES
            && let Some(full) = &self.full
        {
            return full.clone();
        }
        if self.head.len() < wanted {
            // Only while a small file grows past what was there when it was
            // opened: one read of at most HEAD_BYTES.
            let _ = self.refresh();
        }
        Arc::from(fingerprint(&self.head[..wanted.min(self.head.len())]))
    }

    /// The position at `offset` in this file. Past the first bytes only
    /// the offset changes: the fingerprint is shared, not hashed or copied.
    pub(super) fn position(&mut self, offset: u64) -> FileCursor {
        if offset >= HEAD_BYTES
            && let Some(full) = &self.full
        {
            return FileCursor { id: self.id, head: full.clone(), offset };
        }
        FileCursor::new(self, offset)
    }

    /// True when the file's first bytes (as many as were read, up to
    /// `read`) are no longer those it had: rewritten in place.
    pub(super) fn head_changed(&self, read: u64) -> bool {
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
pub(super) fn head_matches(path: &Path, cursor: &FileCursor) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    let wanted = cursor.offset.min(HEAD_BYTES);
    match read_head(&file, wanted) {
        Ok(head) => head.len() as u64 == wanted && fingerprint(&head) == *cursor.head,
        Err(_) => false,
    }
}

/// See [`FileSource::find`]; blocking. Candidates are taken in name order,
/// so that the choice among identical copies is the same every time.
pub(super) fn find_file(dir: &Path, name: &[u8], cursor: &FileCursor, exclude: Option<FileId>) -> Option<PathBuf> {
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
