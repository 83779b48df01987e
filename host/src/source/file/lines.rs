//! Reading the file line by line: each line with where it starts and ends,
//! a cap on its length, and the record it makes.

use crate::event::Event;
use crate::source::{Invalid, Item, Position, SourceRecord};
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

/// One line read from the file, with where it starts and ends.
pub(super) struct Line {
    pub(super) start: u64,
    pub(super) end: u64,
    bytes: Vec<u8>,
    too_long: bool,
}

impl Line {
    /// The record for this line, with `position` (the cursor just past
    /// it); `None` for a blank line.
    pub(super) fn into_record(self, position: Position) -> Option<SourceRecord> {
        let start = self.start.to_string();
        if self.too_long {
            let reason = format!("line at byte {} is longer than max-line-bytes ({} bytes kept)", self.start, self.bytes.len());
            return Some(SourceRecord { item: Item::Invalid(Invalid { position: start, reason, raw: self.bytes }), position });
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
        Some(SourceRecord { item, position })
    }
}

/// The length of a line without its line ending.
fn trimmed_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| !matches!(b, b'\n' | b'\r')).map_or(0, |i| i + 1)
}

/// Reads lines with a cap on their length, keeping a partial last line until
/// its newline arrives (when following).
pub(super) struct LineReader {
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
    pub(super) async fn new(mut file: tokio::fs::File, offset: u64, max_line: usize) -> std::io::Result<LineReader> {
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
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// True once after bytes were read from the file itself.
    pub(super) fn take_refilled(&mut self) -> bool {
        std::mem::take(&mut self.refilled)
    }

    /// Bytes of complete lines handed on so far.
    pub(super) fn complete(&self) -> u64 {
        self.partial_start
    }

    /// The next complete line, or `None` at the end of the file. Without
    /// `follow`, a last line with no newline counts as complete.
    pub(super) async fn next_line(&mut self, follow: bool) -> std::io::Result<Option<Line>> {
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
        let records: Vec<_> = lines
            .into_iter()
            .filter_map(|line| {
                let end = line.end.to_string();
                line.into_record(end.into())
            })
            .collect();
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
        let records: Vec<_> = lines
            .into_iter()
            .filter_map(|line| {
                let end = line.end.to_string();
                line.into_record(end.into())
            })
            .collect();
        let Item::Invalid(invalid) = &records[0].item else { panic!("too long") };
        assert!(invalid.reason.contains("longer than max-line-bytes"), "{}", invalid.reason);
        assert_eq!(invalid.raw.len(), 8);
        assert!(matches!(records[1].item, Item::Event(_)));
    }
}
