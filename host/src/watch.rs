//! Seeing files change while ferry runs: the one file watcher, used for the
//! plugins folder and config ([`crate::reload`]) and for the Teleport
//! identity (`source/teleport/connect.rs`).
//!
//! Watching is a poll of file metadata rather than inotify through the
//! `notify` crate: a handful of `stat` calls a second costs nothing, needs no
//! extra dependency, and also sees changes that inotify misses (network
//! filesystems, a Kubernetes ConfigMap swapping its symlinks, an editor or
//! Machine ID replacing a file by rename). A file is known by its size,
//! modification and change times and inode, so a rewrite, a replacement by
//! rename and a deletion all count; a file of up to [`HASHED_UP_TO`] bytes
//! (a config, settings or identity file) is also known by a hash of its
//! contents, so that a rewrite in place with the same size within the file
//! system's timestamp granularity (`batch = 1` edited to `batch = 2`) is
//! seen too. Plugin components are larger (a Rust plugin 200–400 kB, a
//! Python or JavaScript one 10–20 MB) and are not read on every poll:
//! hashing six Rust plugins took 15 ms a look in a debug build; the compile
//! cache hashes them once when they load.
//!
//! A change is acted on only once it has settled: the files looked the same
//! at two looks [`Watch::settle`] apart, so a file still being copied or
//! written is not read half-way.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Files up to this size are also told apart by their contents.
pub const HASHED_UP_TO: u64 = 64 << 10;

/// The longest a change waits to settle, however long the poll interval.
pub const MAX_SETTLE: Duration = Duration::from_secs(1);

/// What a set of files looked like at one look, in the order they were
/// named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(Vec<(PathBuf, Option<Stamp>)>);

impl Snapshot {
    /// Looks at `paths` now; a missing or unreadable file counts as absent.
    pub fn of<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Snapshot {
        Snapshot(paths.into_iter().map(|path| (path.as_ref().to_owned(), Stamp::of(path.as_ref()))).collect())
    }

    /// Whether both looked at the same files, changed or not.
    pub fn same_files(&self, other: &Snapshot) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|((a, _), (b, _))| a == b)
    }
}

/// Enough of one file to tell that it changed: a write changes the size or
/// the times, a replacement by rename changes the inode, and for a small
/// file a write of the same size in the same clock tick changes the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    inode: u64,
    /// A hash of the contents, for files up to [`HASHED_UP_TO`] bytes.
    content: Option<u64>,
}

impl Stamp {
    /// The stamp of `path` now; `None` when it does not exist or cannot be
    /// looked at.
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        // Not a cryptographic hash: it only has to change when the bytes do.
        let content = (meta.is_file() && meta.len() <= HASHED_UP_TO).then(|| std::fs::read(path).ok()).flatten().map(|bytes| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            hasher.finish()
        });
        Some(Stamp {
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            content,
        })
    }
}

/// Tells when watched files have changed and settled.
///
/// The caller looks at its files (a [`Snapshot`]) every
/// [`next_look`](Watch::next_look) and hands each look to
/// [`look`](Watch::look); the state lives here, not in a future, so a
/// caller may wait for it inside `tokio::select!` next to other events.
#[derive(Debug)]
pub struct Watch {
    interval: Duration,
    settle: Duration,
    /// The files when last acted on.
    seen: Snapshot,
    /// A change seen at the last look, waiting to settle.
    unsettled: Option<Snapshot>,
}

impl Watch {
    /// A watch polling every `interval`, starting from `seen`. A change
    /// settles for `interval`, or [`MAX_SETTLE`] when that is shorter.
    pub fn new(seen: Snapshot, interval: Duration) -> Watch {
        Watch { interval, settle: interval.min(MAX_SETTLE), seen, unsettled: None }
    }

    /// How long a change must stay the same before it is acted on.
    pub fn settle(&self) -> Duration {
        self.settle
    }

    /// How long to wait before the next look: shorter while a change is
    /// settling.
    pub fn next_look(&self) -> Duration {
        if self.unsettled.is_some() { self.settle } else { self.interval }
    }

    /// Takes one look. Returns the files once they differ from the ones
    /// last acted on and are the same as at the previous look; they are then
    /// the ones acted on (see [`Watch::mark_seen`] to say otherwise).
    pub fn look(&mut self, now: Snapshot) -> Option<Snapshot> {
        if now == self.seen {
            self.unsettled = None;
            None
        } else if self.unsettled.as_ref() == Some(&now) {
            self.unsettled = None;
            self.seen = now.clone();
            Some(now)
        } else {
            // Changed since the last look: wait for it to settle.
            self.unsettled = Some(now);
            None
        }
    }

    /// Marks `files` as acted on (a reload that read them some other way,
    /// such as on SIGHUP), forgetting any change still settling.
    pub fn mark_seen(&mut self, files: Snapshot) {
        self.seen = files;
        self.unsettled = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).expect("write");
    }

    #[test]
    fn a_file_replaced_by_rename_is_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("identity");
        write(&file, b"one");
        let before = Snapshot::of([&file]);
        assert_eq!(before, Snapshot::of([&file]), "an untouched file looks the same");
        let other = dir.path().join("identity.tmp");
        write(&other, b"one");
        std::fs::rename(&other, &file).expect("rename");
        assert_ne!(before, Snapshot::of([&file]), "the same bytes under a new inode are a change");
    }

    #[test]
    fn a_file_rewritten_in_place_with_the_same_size_is_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ferry.toml");
        write(&file, b"batch = 1");
        let meta = std::fs::metadata(&file).expect("metadata");
        let before = Snapshot::of([&file]);
        write(&file, b"batch = 2");
        // Put the times back as they were: what a coarse clock leaves.
        let times = std::fs::FileTimes::new().set_modified(meta.modified().expect("mtime")).set_accessed(meta.accessed().expect("atime"));
        std::fs::File::options().write(true).open(&file).expect("open").set_times(times).expect("set times");
        let mut after = Snapshot::of([&file]);
        // The change time cannot be set back; take it out of the comparison.
        if let (Some(old), Some(new)) = (&before.0[0].1, &mut after.0[0].1) {
            new.changed = old.changed;
            assert_eq!((old.len, old.modified, old.inode), (new.len, new.modified, new.inode), "only the contents differ");
        }
        assert_ne!(before, after, "the contents tell the rewrite apart");
    }

    #[test]
    fn a_file_deleted_then_restored_is_two_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.wasm");
        write(&file, b"one");
        let mut watch = Watch::new(Snapshot::of([&file]), Duration::from_secs(1));
        std::fs::remove_file(&file).expect("remove");
        let deleted = Snapshot::of([&file]);
        assert_eq!(deleted.0[0].1, None);
        assert_eq!(watch.look(deleted.clone()), None, "first seen, not yet settled");
        assert_eq!(watch.look(deleted.clone()), Some(deleted.clone()), "the deletion settles");
        assert_eq!(watch.look(deleted), None, "and is acted on once");
        write(&file, b"two");
        let restored = Snapshot::of([&file]);
        assert_eq!(watch.look(restored.clone()), None);
        assert_eq!(watch.look(restored.clone()), Some(restored));
    }

    #[test]
    fn a_change_still_going_on_waits_until_it_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plugin.wasm");
        write(&file, b"");
        let mut watch = Watch::new(Snapshot::of([&file]), Duration::from_secs(60));
        assert_eq!(watch.next_look(), Duration::from_secs(60));
        let mut written = Vec::new();
        for part in [&b"\0asm"[..], b"more", b"end"] {
            written.extend_from_slice(part);
            write(&file, &written);
            assert_eq!(watch.look(Snapshot::of([&file])), None, "a copy in progress is not acted on");
            assert_eq!(watch.next_look(), MAX_SETTLE, "a change is looked at again soon");
        }
        assert!(watch.look(Snapshot::of([&file])).is_some(), "once it stays the same, it is");
        assert_eq!(watch.next_look(), Duration::from_secs(60));
    }

    #[test]
    fn a_change_marked_seen_is_not_acted_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ferry.toml");
        write(&file, b"a");
        let mut watch = Watch::new(Snapshot::of([&file]), Duration::from_millis(100));
        assert_eq!(watch.settle(), Duration::from_millis(100));
        write(&file, b"bb");
        assert_eq!(watch.look(Snapshot::of([&file])), None);
        watch.mark_seen(Snapshot::of([&file]));
        assert_eq!(watch.look(Snapshot::of([&file])), None);
        assert_eq!(watch.look(Snapshot::of([&file])), None);
    }
}
