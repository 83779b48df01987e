//! The Teleport source's cursor: how far the audit log has been read and
//! how far each pending session recording has been streamed.
//!
//! It is one JSON document, stored as the source's position. The pipeline
//! commits it with the batch it ends, in the same transaction as that
//! batch's dead letters, so the audit log position and every session's
//! progress move together and only once their events are acknowledged.
//!
//! Every record carries the cursor just past it, but only a batch's last is
//! committed: records carry a [`PositionSnapshot`], whose parts are shared
//! with the engines and the merge loop (a copy costs reference counts, no
//! allocation), and the document is written from it once per committed
//! batch.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything needed to resume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Where the audit log reading stands.
    #[serde(default)]
    pub audit: AuditCursor,
    /// Session recordings announced by `session.upload` and not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionProgress>,
}

/// Where each engine stands in the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "engine", rename_all = "kebab-case")]
pub enum AuditCursor {
    /// Nothing read yet; the engine is chosen at start.
    #[default]
    Start,
    /// Paging `GetUnstructuredEvents`.
    Legacy(LegacyCursor),
    /// The bulk export API.
    Export(ExportCursor),
}

/// The legacy engine's place: the window, the key of the page holding the
/// last event delivered, that event's id and time, and how many events of
/// the page were read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LegacyCursor {
    /// Start of the current search window (RFC 3339).
    #[serde(with = "shared_text")]
    pub window_start: Arc<str>,
    /// `start_key` of the page being read; empty for the first page.
    #[serde(with = "shared_text")]
    pub start_key: Arc<str>,
    /// Id of the last event read (kept when the next page starts, so that a
    /// search started over can find it); empty for none.
    #[serde(with = "shared_text")]
    pub last_id: Arc<str>,
    /// Time of the last event read (RFC 3339, nanoseconds): a search that
    /// must start over (Teleport refused the page key) starts there.
    #[serde(default, with = "shared_text", skip_serializing_if = "is_empty")]
    pub last_time: Arc<str>,
    /// Events read that have the time `last_time`, the last of them
    /// `last_id`: a search started over at `last_time` passes this many.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub same_time: usize,
    /// Events from the page at `start_key` on already read (more than the
    /// page holds after a search started over); `None` when not known (a
    /// cursor of an older ferry), and then the page is resumed after `last_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<usize>,
}

/// The legacy cursor's texts are shared (`Arc<str>`), so that the copy each
/// record carries costs reference counts, not allocations; stored as strings.
mod shared_text {
    use super::*;

    pub fn serialize<S: Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(deserializer).map(Arc::from)
    }
}

fn is_empty(text: &Arc<str>) -> bool {
    text.is_empty()
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl LegacyCursor {
    /// The start of the window at `window_start`, nothing of it read.
    pub fn start(window_start: String) -> LegacyCursor {
        LegacyCursor {
            window_start: Arc::from(window_start),
            start_key: Arc::default(),
            last_id: Arc::default(),
            last_time: Arc::default(),
            same_time: 0,
            skip: Some(0),
        }
    }
}

/// The export engine's place: per UTC date being exported, the chunks
/// finished and the cursor inside chunks under way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCursor {
    /// Dates still exported, oldest first.
    pub dates: Vec<DateCursor>,
}

/// One date of the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateCursor {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    /// Chunks read to their end.
    #[serde(default)]
    pub done: Vec<String>,
    /// Chunks under way: chunk name → cursor after the last event delivered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partial: BTreeMap<String, String>,
}

/// A session recording to stream, and how far it got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SessionProgress {
    /// The session id.
    pub sid: String,
    /// The index to ask for next (`start_index`): one past the last event
    /// delivered, 0 before the first.
    pub next_index: i64,
    /// When the recording was announced (the `session.upload` time).
    pub upload_time: String,
    /// How often the recording was not found.
    #[serde(default)]
    pub missing: u32,
    /// Rounds of tries that failed for a reason of the recording's own
    /// (see [`super::sessions::TRIES_PER_ROUND`]), since its last event.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub failed: u32,
    /// Teleport's last answer while the recording fails; none while it
    /// streams. Stored so that `ferry status` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<String>,
}

impl Cursor {
    /// Reads a stored position; a position of another source kind is an error.
    pub fn parse(text: &str) -> Result<Cursor, String> {
        serde_json::from_str(text).map_err(|err| format!("the stored cursor is not a Teleport cursor ({err})"))
    }

    /// The text stored as the position.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| unreachable!("a cursor always serialises: {err}"))
    }
}

/// The cursor as the merge loop keeps it and hands it out with each record:
/// cloning it costs reference counts. [`PositionSnapshot::cursor`] is the document.
#[derive(Debug, Clone, Default)]
pub struct PositionSnapshot {
    /// Where the audit log reading stands.
    pub audit: AuditPosition,
    /// Session recordings announced and not finished; changed through
    /// `Arc::make_mut`, so that records already out keep theirs.
    pub sessions: Arc<Vec<SessionProgress>>,
}

impl PositionSnapshot {
    /// The document stored.
    pub fn cursor(&self) -> Cursor {
        Cursor { audit: self.audit.cursor(), sessions: self.sessions.as_ref().clone() }
    }
}

impl From<Cursor> for PositionSnapshot {
    fn from(cursor: Cursor) -> PositionSnapshot {
        PositionSnapshot { audit: AuditPosition::from(cursor.audit), sessions: Arc::new(cursor.sessions) }
    }
}

/// [`AuditCursor`] as the engines hand it out, one per event.
#[derive(Debug, Clone, Default)]
pub enum AuditPosition {
    /// Nothing read yet.
    #[default]
    Start,
    /// The legacy engine's cursor; its texts are shared.
    Legacy(LegacyCursor),
    /// The export engine's cursor.
    Export(ExportPosition),
}

impl AuditPosition {
    /// The document stored.
    pub fn cursor(&self) -> AuditCursor {
        match self {
            AuditPosition::Start => AuditCursor::Start,
            AuditPosition::Legacy(legacy) => AuditCursor::Legacy(legacy.clone()),
            AuditPosition::Export(export) => AuditCursor::Export(export.cursor()),
        }
    }
}

impl From<AuditCursor> for AuditPosition {
    fn from(cursor: AuditCursor) -> AuditPosition {
        match cursor {
            AuditCursor::Start => AuditPosition::Start,
            AuditCursor::Legacy(legacy) => AuditPosition::Legacy(legacy),
            AuditCursor::Export(export) => AuditPosition::Export(ExportPosition { base: Arc::new(export), chunks: Arc::default() }),
        }
    }
}

/// The export engine's place, just past one event: the dates and chunks as
/// they stood when the last chunk finished (shared by the events of the
/// chunks open meanwhile), and each open chunk's cursor after the event.
#[derive(Debug, Clone)]
pub struct ExportPosition {
    /// Everything but the open chunks' latest cursors.
    pub base: Arc<ExportCursor>,
    /// The chunks under way (at most `concurrency`), each with its cursor
    /// as of this event.
    pub chunks: Arc<[ChunkPosition]>,
}

/// A chunk under way and its cursor after the last event read.
#[derive(Debug, Clone)]
pub struct ChunkPosition {
    /// Index of the chunk's date in `ExportCursor::dates`.
    pub date: usize,
    /// The chunk's name.
    pub name: Arc<str>,
    /// Teleport's cursor inside the chunk; empty when nothing of it is read
    /// (or Teleport refused the cursor and it is read again from its start).
    pub cursor: Arc<str>,
}

impl ExportPosition {
    /// The document stored.
    pub fn cursor(&self) -> ExportCursor {
        let mut cursor = self.base.as_ref().clone();
        for chunk in self.chunks.iter() {
            let Some(date) = cursor.dates.get_mut(chunk.date) else { continue };
            if chunk.cursor.is_empty() {
                date.partial.remove(&*chunk.name);
            } else {
                date.partial.insert(chunk.name.to_string(), chunk.cursor.to_string());
            }
        }
        cursor
    }
}

/// The chunks of one date being streamed at once, as the export engine
/// tracks them between the events it forwards.
///
/// The shared [`ExportCursor`] changes once per finished chunk; an event's
/// position shares it and lists the open chunks' cursors beside it, so a
/// committed position resumes every chunk no later than what was forwarded.
#[derive(Debug)]
pub struct OpenChunks {
    date: usize,
    open: Vec<ChunkPosition>,
}

impl OpenChunks {
    /// None open yet, of the date at index `date` in `ExportCursor::dates`.
    pub fn new(date: usize) -> OpenChunks {
        OpenChunks { date, open: Vec::new() }
    }

    /// How many chunks are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no chunk is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Opens chunk `name`, resumed from `resume` (empty: its start).
    pub fn open(&mut self, name: Arc<str>, resume: Arc<str>) {
        self.open.push(ChunkPosition { date: self.date, name, cursor: resume });
    }

    /// Chunk `name` was read up to `cursor`.
    pub fn read(&mut self, name: &str, cursor: Arc<str>) {
        if let Some(chunk) = self.open.iter_mut().find(|chunk| &*chunk.name == name) {
            chunk.cursor = cursor;
        }
    }

    /// Chunk `name` is read to its end (or skipped): `base` marks it done,
    /// and later positions no longer list it. Call only once its last event
    /// is forwarded.
    pub fn finish(&mut self, base: &mut Arc<ExportCursor>, name: &str) {
        self.open.retain(|chunk| &*chunk.name != name);
        if let Some(date) = Arc::make_mut(base).dates.get_mut(self.date) {
            date.partial.remove(name);
            date.done.push(name.to_owned());
        }
    }

    /// The position as of now.
    pub fn position(&self, base: &Arc<ExportCursor>) -> ExportPosition {
        ExportPosition { base: base.clone(), chunks: Arc::from(self.open.as_slice()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_through_their_text() {
        let cursor = Cursor {
            audit: AuditCursor::Export(ExportCursor {
                dates: vec![DateCursor {
                    date: "2024-05-01".into(),
                    done: vec!["c1".into()],
                    partial: BTreeMap::from([("c2".into(), "k".into())]),
                }],
            }),
            sessions: vec![SessionProgress {
                sid: "s".into(),
                next_index: 4,
                upload_time: "2024-05-01T00:00:00Z".into(),
                missing: 1,
                ..Default::default()
            }],
        };
        assert_eq!(Cursor::parse(&cursor.encode()).expect("parses"), cursor);
        let legacy = Cursor::parse(r#"{"audit":{"engine":"legacy","window-start":"2024-05-01T00:00:00Z","start-key":"","last-id":"x"}}"#)
            .expect("legacy");
        assert!(
            matches!(legacy.audit, AuditCursor::Legacy(ref l) if &*l.last_id == "x" && l.skip.is_none()),
            "an older ferry's cursor still reads"
        );
        assert!(Cursor::parse("1234").expect_err("a file offset").contains("not a Teleport cursor"));
    }

    /// The stored text, byte for byte as ferry wrote it before positions
    /// were shared: state files of older ferries load, and newer ones stay
    /// readable by them.
    #[test]
    fn the_stored_text_is_unchanged() {
        let legacy = r#"{"audit":{"engine":"legacy","window-start":"2024-05-01T00:00:00Z","start-key":"k","last-id":"e9","last-time":"2024-05-01T00:00:01.000000002Z","same-time":2,"skip":7}}"#;
        assert_eq!(Cursor::parse(legacy).expect("parses").encode(), legacy);
        let start = LegacyCursor::start("2024-05-01T00:00:00Z".into());
        let fresh = Cursor { audit: AuditCursor::Legacy(start), sessions: Vec::new() };
        assert_eq!(
            fresh.encode(),
            r#"{"audit":{"engine":"legacy","window-start":"2024-05-01T00:00:00Z","start-key":"","last-id":"","skip":0}}"#
        );
        let export = r#"{"audit":{"engine":"export","dates":[{"date":"2024-05-01","done":["c1"],"partial":{"c2":"k"}}]},"sessions":[{"sid":"s","next-index":4,"upload-time":"2024-05-01T00:00:00Z","missing":1}]}"#;
        assert_eq!(Cursor::parse(export).expect("parses").encode(), export);
        assert_eq!(
            PositionSnapshot::from(Cursor::parse(export).expect("parses")).cursor().encode(),
            export,
            "a position snapshot writes the same document"
        );
    }

    fn date(done: &[&str], partial: &[(&str, &str)]) -> DateCursor {
        DateCursor {
            date: "2024-05-01".into(),
            done: done.iter().map(|chunk| (*chunk).to_owned()).collect(),
            partial: partial.iter().map(|(chunk, cursor)| ((*chunk).to_owned(), (*cursor).to_owned())).collect(),
        }
    }

    fn export(dates: Vec<DateCursor>) -> ExportCursor {
        ExportCursor { dates }
    }

    #[test]
    fn an_export_position_writes_its_chunk_cursor_over_the_shared_one() {
        let base = Arc::new(export(vec![date(&["c1"], &[("c2", "old")])]));
        let position = |cursor: &str| ExportPosition {
            base: base.clone(),
            chunks: Arc::from([ChunkPosition { date: 0, name: Arc::from("c2"), cursor: Arc::from(cursor) }]),
        };
        assert_eq!(position("7").cursor(), export(vec![date(&["c1"], &[("c2", "7")])]));
        assert_eq!(position("8").cursor(), export(vec![date(&["c1"], &[("c2", "8")])]), "each event's position has its own chunk cursor");
        assert_eq!(position("").cursor(), export(vec![date(&["c1"], &[])]), "a chunk read again from its start has no cursor");
        assert_eq!(ExportPosition { base: base.clone(), chunks: Arc::default() }.cursor(), export(vec![date(&["c1"], &[("c2", "old")])]));
    }

    /// Three chunks read at once, their events interleaved: each position
    /// says every open chunk's cursor as of its event, and positions handed
    /// out earlier keep theirs.
    #[test]
    fn interleaved_chunks_each_keep_their_cursor_in_every_position() {
        let mut base = Arc::new(export(vec![date(&[], &[("b", "3")])]));
        let mut open = OpenChunks::new(0);
        open.open(Arc::from("a"), Arc::default());
        open.open(Arc::from("b"), Arc::from("3"));
        open.open(Arc::from("c"), Arc::default());
        let opened = open.position(&base);
        open.read("a", Arc::from("1"));
        let after_a1 = open.position(&base);
        open.read("c", Arc::from("1"));
        open.read("b", Arc::from("4"));
        let after_b4 = open.position(&base);
        open.read("a", Arc::from("2"));
        let after_a2 = open.position(&base);
        assert_eq!(opened.cursor(), export(vec![date(&[], &[("b", "3")])]), "nothing read: the saved cursor of b stays");
        assert_eq!(after_a1.cursor(), export(vec![date(&[], &[("a", "1"), ("b", "3")])]));
        assert_eq!(after_b4.cursor(), export(vec![date(&[], &[("a", "1"), ("b", "4"), ("c", "1")])]));
        assert_eq!(after_a2.cursor(), export(vec![date(&[], &[("a", "2"), ("b", "4"), ("c", "1")])]));
        assert!(Arc::ptr_eq(&after_a1.base, &after_a2.base), "events share the base; it is not copied per event");
        // The base changes only when a chunk finishes.
        open.finish(&mut base, "c");
        assert_eq!(after_a2.cursor(), export(vec![date(&[], &[("a", "2"), ("b", "4"), ("c", "1")])]), "a position handed out is unchanged");
    }

    /// A chunk finished while another is half read: the finished one is
    /// done, the other resumes from its cursor as of the last event.
    #[test]
    fn a_chunk_finished_while_another_is_half_read() {
        let mut base = Arc::new(export(vec![date(&["old"], &[]), date(&[], &[("b", "9")])]));
        let mut open = OpenChunks::new(1);
        open.open(Arc::from("a"), Arc::default());
        open.open(Arc::from("b"), Arc::from("9"));
        open.read("a", Arc::from("1"));
        open.read("b", Arc::from("10"));
        open.read("a", Arc::from("2"));
        let before = open.position(&base);
        open.finish(&mut base, "a");
        assert_eq!(open.len(), 1);
        let finished = open.position(&base);
        open.read("b", Arc::from("11"));
        let later = open.position(&base);
        assert_eq!(
            before.cursor(),
            export(vec![date(&["old"], &[]), date(&[], &[("a", "2"), ("b", "10")])]),
            "a is not done before its last event is forwarded"
        );
        assert_eq!(finished.cursor(), export(vec![date(&["old"], &[]), date(&["a"], &[("b", "10")])]));
        assert_eq!(later.cursor(), export(vec![date(&["old"], &[]), date(&["a"], &[("b", "11")])]));
        let stored = Cursor { audit: AuditCursor::Export(later.cursor()), sessions: Vec::new() }.encode();
        assert_eq!(
            stored,
            r#"{"audit":{"engine":"export","dates":[{"date":"2024-05-01","done":["old"]},{"date":"2024-05-01","done":["a"],"partial":{"b":"11"}}]}}"#,
            "the stored text names the done chunk and the other's cursor"
        );
        open.finish(&mut base, "b");
        assert!(open.is_empty());
        assert_eq!(open.position(&base).cursor(), export(vec![date(&["old"], &[]), date(&["a", "b"], &[])]));
    }

    /// Chunks of any sizes read `concurrency` at a time in any interleaving:
    /// every position handed out, once stored, resumes each chunk exactly
    /// after its last event forwarded before it, and names a chunk done only
    /// once all its events were forwarded.
    mod interleavings {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn each_position_resumes_every_chunk_where_it_was_forwarded(
                sizes in proptest::collection::vec(0usize..6, 1..7),
                concurrency in 1usize..5,
                picks in proptest::collection::vec(any::<usize>(), 64),
            ) {
                let names: Vec<String> = (0..sizes.len()).map(|n| format!("c{n}")).collect();
                let mut base = Arc::new(export(vec![date(&[], &[])]));
                let mut open = OpenChunks::new(0);
                // Per chunk: events forwarded, and whether it is finished.
                let mut read = vec![0usize; sizes.len()];
                let mut finished = vec![false; sizes.len()];
                let (mut next, mut opened) = (0, Vec::new());
                let mut handed_out = Vec::new();
                let mut picks = picks.into_iter().cycle();
                loop {
                    while opened.len() < concurrency && next < sizes.len() {
                        open.open(Arc::from(names[next].as_str()), Arc::default());
                        opened.push(next);
                        next += 1;
                    }
                    if opened.is_empty() {
                        break;
                    }
                    let at = picks.next().unwrap_or(0) % opened.len();
                    let chunk = opened[at];
                    if read[chunk] == sizes[chunk] {
                        open.finish(&mut base, &names[chunk]);
                        finished[chunk] = true;
                        opened.remove(at);
                    } else {
                        read[chunk] += 1;
                        open.read(&names[chunk], Arc::from(read[chunk].to_string()));
                    }
                    handed_out.push((open.position(&base), read.clone(), finished.clone()));
                }
                prop_assert!(open.is_empty());
                for (position, read, finished) in handed_out {
                    let stored = position.cursor();
                    let day = &stored.dates[0];
                    for (chunk, name) in names.iter().enumerate() {
                        prop_assert_eq!(day.done.contains(name), finished[chunk], "{} done", name);
                        let want = (!finished[chunk] && read[chunk] > 0).then(|| read[chunk].to_string());
                        prop_assert_eq!(day.partial.get(name).cloned(), want, "{} resumes after its last forwarded event", name);
                    }
                }
            }
        }
    }

    #[test]
    fn a_position_handed_out_keeps_its_sessions_when_the_merge_loop_moves_on() {
        let mut merge = PositionSnapshot::default();
        Arc::make_mut(&mut merge.sessions).push(SessionProgress {
            sid: "s".into(),
            next_index: 0,
            upload_time: String::new(),
            ..Default::default()
        });
        let out = merge.clone();
        Arc::make_mut(&mut merge.sessions)[0].next_index = 5;
        assert_eq!(out.cursor().sessions[0].next_index, 0);
        assert_eq!(merge.cursor().sessions[0].next_index, 5);
    }
}
