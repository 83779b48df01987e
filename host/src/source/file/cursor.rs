//! The file source's stored position: which file (device, inode, first
//! bytes) and the byte offset just past the last line handed on, or a bare
//! byte offset as ferry stored it before it knew files by identity.

use super::identity::{FileId, Tracked};
use serde::Deserialize;
use std::sync::Arc;

/// The byte offset a stored file cursor holds (either form), for tools and
/// tests that compare it with the file.
pub fn offset_of(position: &str) -> Option<u64> {
    match FilePosition::parse(position).ok()? {
        FilePosition::Offset(offset) => Some(offset),
        FilePosition::File(cursor) => Some(cursor.offset),
    }
}

/// A stored file position (the file source's cursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FilePosition {
    /// A bare byte offset, as ferry stored before it knew files by identity.
    Offset(u64),
    /// A place in a file known by identity.
    File(FileCursor),
}

/// A place in one file: which file, and the byte offset just past the last
/// line handed on. Each record carries one ([`crate::source::Position::File`]);
/// its fingerprint is shared, so the copy per line costs a reference count,
/// and its text is written only when it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCursor {
    pub(super) id: FileId,
    /// The fingerprint of the first `min(offset, HEAD_BYTES)` bytes.
    pub(super) head: Arc<str>,
    pub(super) offset: u64,
}

/// The stored form of [`FileCursor`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredFilePosition {
    dev: u64,
    ino: u64,
    head: String,
    offset: u64,
}

impl FilePosition {
    pub(super) fn parse(text: &str) -> Result<FilePosition, String> {
        if let Ok(offset) = text.parse() {
            return Ok(FilePosition::Offset(offset));
        }
        match serde_json::from_str::<StoredFilePosition>(text) {
            Ok(s) => {
                Ok(FilePosition::File(FileCursor { id: FileId { dev: s.dev, ino: s.ino }, head: Arc::from(s.head), offset: s.offset }))
            }
            Err(err) => Err(format!("stored cursor `{text}` is neither a byte offset nor a file position: {err}")),
        }
    }
}

impl FileCursor {
    pub(super) fn new(tracked: &mut Tracked, offset: u64) -> FileCursor {
        FileCursor { id: tracked.id, head: tracked.fingerprint(offset), offset }
    }

    /// The text stored for this position.
    pub fn to_text(&self) -> String {
        format!(r#"{{"dev":{},"ino":{},"head":"{}","offset":{}}}"#, self.id.dev, self.id.ino, self.head, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bare_offsets_still_load() {
        let cursor = FileCursor { id: FileId { dev: 2049, ino: 77 }, head: "0123456789abcdef".into(), offset: 4096 };
        assert_eq!(cursor.to_text(), r#"{"dev":2049,"ino":77,"head":"0123456789abcdef","offset":4096}"#);
        assert_eq!(FilePosition::parse(&cursor.to_text()), Ok(FilePosition::File(cursor)));
        assert_eq!(FilePosition::parse("1234"), Ok(FilePosition::Offset(1234)));
        let err = FilePosition::parse("page-7").expect_err("not a cursor");
        assert!(err.starts_with("stored cursor `page-7` is neither a byte offset nor a file position: "), "{err}");
    }
}
