//! The Teleport source's cursor: how far the audit log has been read and
//! how far each pending session recording has been streamed.
//!
//! It is one JSON document, stored as the source's position. The pipeline
//! commits it with the batch it ends, in the same transaction as that
//! batch's dead letters, so the audit log position and every session's
//! progress move together and only once their events are acknowledged.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub window_start: String,
    /// `start_key` of the page being read; empty for the first page.
    pub start_key: String,
    /// Id of the last event read (kept when the next page starts, so that a
    /// search started over can find it); empty for none.
    pub last_id: String,
    /// Time of the last event read (RFC 3339, nanoseconds): a search that
    /// must start over (Teleport refused the page key) starts there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_time: String,
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

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl LegacyCursor {
    /// The start of the window at `window_start`, nothing of it read.
    pub fn start(window_start: String) -> LegacyCursor {
        LegacyCursor { window_start, start_key: String::new(), last_id: String::new(), last_time: String::new(), same_time: 0, skip: Some(0) }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
            sessions: vec![SessionProgress { sid: "s".into(), next_index: 4, upload_time: "2024-05-01T00:00:00Z".into(), missing: 1 }],
        };
        assert_eq!(Cursor::parse(&cursor.encode()).expect("parses"), cursor);
        let legacy = Cursor::parse(r#"{"audit":{"engine":"legacy","window-start":"2024-05-01T00:00:00Z","start-key":"","last-id":"x"}}"#)
            .expect("legacy");
        assert!(matches!(legacy.audit, AuditCursor::Legacy(ref l) if l.last_id == "x" && l.skip.is_none()), "an older ferry's cursor still reads");
        assert!(Cursor::parse("1234").expect_err("a file offset").contains("not a Teleport cursor"));
    }
}
