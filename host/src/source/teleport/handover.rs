//! Taking over teleport-event-handler's saved position, so that switching
//! over sends no event twice and skips none.
//!
//! The event handler keeps flat files in `<storage>/<host>_<port>/`
//! (Teleport's `integrations/event-handler/state.go`); this reads them and
//! writes nothing there, so a rollback to the event handler stays possible:
//!
//! - `start_time`, `window_time`: RFC 3339, whole seconds;
//! - `cursor`: the `start_key` of the page that held the last event
//!   forwarded; `id`: that event's id. The event handler fetches that page
//!   again and goes on after the event with that id
//!   (`legacy_events_watcher.go`, `fetch`): ferry's legacy cursor with no
//!   count of events read (`skip` unknown) does the same;
//! - `session<ID>`: 8 bytes, big-endian, the index of the last recording
//!   event forwarded (`session_events_job.go` saves `e.Index` after sending
//!   it, and registers a new recording with 0 before sending anything); the
//!   event handler asks again from that index, and Teleport streams the
//!   events whose index is at least it (`lib/events/auditlog.go`,
//!   `StreamSessionEvents`, although the proto's comment says "after"),
//!   so the event handler sends that event twice. ferry goes
//!   on from the next index, or from 0 when the index is 0 (nothing sent,
//!   or the first event: once more rather than never);
//! - `missing_recording<ID>`: JSON `{"Index","Attempt","Timestamp"}`, a
//!   recording not found yet, asked for again later;
//! - `cursor_v2/<YYYY-MM-DD>/completed-chunks` (one chunk a line) and
//!   `<chunk>.chunk` (the export cursor after the last event forwarded of a
//!   chunk under way; `lib/events/export/cursor.go`, `date_exporter.go`
//!   sets it after each event exported): ferry's export cursor holds the
//!   same, date by date. When `cursor_v2` holds a date the event handler
//!   resumes from it and not from the legacy files, and so does ferry.
//!
//! `dry_run/` folders hold a dry run's throw-away state and are ignored.

use super::config::parse_start_time;
use super::cursor::{AuditCursor, Cursor, DateCursor, ExportCursor, LegacyCursor, SessionProgress};
use crate::units::format_time;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Folders of ferry's own in the storage folder: never the event handler's.
const FERRY_FOLDERS: [&str; 3] = ["dry-run", "plugin-cache", "profiles"];

/// The event handler's saved position, read from its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// `start_time`, as ferry stores a start time.
    pub start_time: Option<String>,
    /// The position as a ferry cursor; `None` when the event handler had
    /// read nothing yet (it starts at `start_time`, and so does ferry).
    pub cursor: Option<Cursor>,
}

/// The event handler's folder for `addr` (`host:port`): `host_port`, as its
/// `net.SplitHostPort` and join make it (`[::1]:3025` → `::1_3025`).
pub fn folder_name(addr: &str) -> Option<String> {
    let (host, port) = super::connect::host_and_port(addr.trim())?;
    Some(format!("{host}_{port}"))
}

/// Whether `dir` holds any of the event handler's state files.
pub fn holds_state(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        matches!(name.as_str(), "start_time" | "window_time" | "cursor" | "id" | "cursor_v2")
            || name.starts_with("session")
            || name.starts_with("missing_recording")
    })
}

/// Where the event handler's state is in `storage`, for a source reading
/// from `addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// None there.
    Nothing,
    /// The folder for `addr`.
    ForThisAddress(PathBuf),
    /// The only folder there, of another address.
    OnlyOther(PathBuf),
    /// Several folders, none for `addr`: which one is this cluster's
    /// cannot be told.
    Several(Vec<PathBuf>),
}

/// Looks for the event handler's folders in `storage`: the one for `addr`
/// first, else the only one.
pub fn find(storage: &Path, addr: &str) -> Found {
    if let Some(name) = folder_name(addr) {
        let dir = storage.join(name);
        if holds_state(&dir) {
            return Found::ForThisAddress(dir);
        }
    }
    let Ok(entries) = std::fs::read_dir(storage) else { return Found::Nothing };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter(|entry| !FERRY_FOLDERS.contains(&entry.file_name().to_string_lossy().as_ref()))
        .map(|entry| entry.path())
        .filter(|dir| holds_state(dir))
        .collect();
    dirs.sort();
    match dirs.len() {
        0 => Found::Nothing,
        1 => Found::OnlyOther(dirs.remove(0)),
        _ => Found::Several(dirs),
    }
}

/// Reads the event handler's state in `dir`. Errors name the file and what
/// is wrong with it, on one line.
pub fn read(dir: &Path) -> Result<Handover, String> {
    let text = |name: &str| read_text(&dir.join(name));
    let start_time = text("start_time")?.map(|time| canonical_time(&dir.join("start_time"), &time)).transpose()?;
    let window_time = text("window_time")?.map(|time| check_time(&dir.join("window_time"), &time)).transpose()?;
    let page_key = text("cursor")?.unwrap_or_default();
    let last_id = text("id")?.unwrap_or_default();
    let sessions = read_sessions(dir)?;
    let export = read_export(&dir.join("cursor_v2"))?;
    let audit = if !export.dates.is_empty() {
        AuditCursor::Export(export)
    } else if !page_key.is_empty() || !last_id.is_empty() || window_time.is_some() {
        let Some(window_start) = window_time.or_else(|| start_time.clone()) else {
            return Err(format!("{}: a `cursor` or `id` but neither `window_time` nor `start_time` to search from", dir.display()));
        };
        AuditCursor::Legacy(LegacyCursor {
            window_start: Arc::from(window_start),
            start_key: Arc::from(page_key),
            last_id: Arc::from(last_id),
            last_time: Arc::default(),
            same_time: 0,
            // Not known: the page is resumed after the event `last_id`.
            skip: None,
        })
    } else {
        AuditCursor::Start
    };
    let cursor = (audit != AuditCursor::Start || !sessions.is_empty()).then_some(Cursor { audit, sessions });
    Ok(Handover { dir: dir.to_owned(), start_time, cursor })
}

/// A file's text, trimmed; `None` when it is missing or empty (the event
/// handler's "unset").
fn read_text(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
            let text = text.trim();
            Ok((!text.is_empty()).then(|| text.to_owned()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("{}: cannot read: {err}", path.display())),
    }
}

fn check_time(path: &Path, time: &str) -> Result<String, String> {
    crate::units::parse_time(time).map(|_| time.to_owned()).map_err(|err| format!("{}: not an RFC 3339 time ({err})", path.display()))
}

/// A start time as ferry stores it, so that it compares equal to the
/// config's `start-time` written the same way.
fn canonical_time(path: &Path, time: &str) -> Result<String, String> {
    parse_start_time(time).map(format_time).map_err(|err| format!("{}: not an RFC 3339 time ({err})", path.display()))
}

/// `missing_recording<ID>`, as the event handler writes it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MissingRecording {
    #[serde(default)]
    index: i64,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    timestamp: String,
}

/// The index to ask for next after the event handler saved `index`.
fn next_index(index: i64) -> i64 {
    if index > 0 { index + 1 } else { 0 }
}

/// Recordings in progress and missing ones, by session id.
fn read_sessions(dir: &Path) -> Result<Vec<SessionProgress>, String> {
    let entries = std::fs::read_dir(dir).map_err(|err| format!("{}: cannot list: {err}", dir.display()))?;
    let mut sessions = BTreeMap::new();
    let mut missing = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(sid) = name.strip_prefix("missing_recording").filter(|sid| !sid.is_empty()) {
            let bytes = std::fs::read(&path).map_err(|err| format!("{}: cannot read: {err}", path.display()))?;
            let record: MissingRecording = serde_json::from_slice(&bytes)
                .map_err(|err| format!("{}: not a missing recording ({{\"Index\",\"Attempt\",\"Timestamp\"}}): {err}", path.display()))?;
            let upload_time = if record.timestamp.starts_with("0001-01-01") { String::new() } else { record.timestamp };
            let progress = SessionProgress {
                sid: sid.to_owned(),
                next_index: next_index(record.index),
                upload_time,
                missing: record.attempt,
                ..Default::default()
            };
            missing.insert(sid.to_owned(), progress);
        } else if let Some(sid) = name.strip_prefix("session").filter(|sid| !sid.is_empty()) {
            let bytes = std::fs::read(&path).map_err(|err| format!("{}: cannot read: {err}", path.display()))?;
            let index = match bytes.len() {
                0 => 0,
                8 => i64::from_be_bytes(bytes.try_into().unwrap_or_default()),
                n => return Err(format!("{}: {n} bytes, not an 8-byte big-endian index", path.display())),
            };
            let progress =
                SessionProgress { sid: sid.to_owned(), next_index: next_index(index), upload_time: String::new(), ..Default::default() };
            sessions.insert(sid.to_owned(), progress);
        }
    }
    // A recording in progress wins over a missing one of the same session.
    missing.extend(sessions);
    Ok(missing.into_values().collect())
}

/// `cursor_v2`: per date folder, the chunks completed and those under way.
/// Files at the top and folders that are not dates are ignored, as the
/// event handler does.
fn read_export(dir: &Path) -> Result<ExportCursor, String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(ExportCursor::default()) };
    let mut dates = Vec::new();
    for entry in entries.flatten() {
        let date = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) || !is_date(&date) {
            continue;
        }
        dates.push(read_date(&entry.path(), date)?);
    }
    dates.sort_by(|a: &DateCursor, b| a.date.cmp(&b.date));
    Ok(ExportCursor { dates })
}

fn is_date(name: &str) -> bool {
    name.len() == 10 && crate::units::parse_time(&format!("{name}T00:00:00Z")).is_ok()
}

fn read_date(dir: &Path, date: String) -> Result<DateCursor, String> {
    let done: Vec<String> =
        read_text(&dir.join("completed-chunks"))?.map(|text| text.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
    let mut partial = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|err| format!("{}: cannot list: {err}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(chunk) = name.strip_suffix(".chunk").filter(|chunk| !chunk.is_empty()) else { continue };
        if done.iter().any(|finished| finished == chunk) {
            continue;
        }
        if let Some(cursor) = read_text(&entry.path())? {
            partial.insert(chunk.to_owned(), cursor);
        }
    }
    Ok(DateCursor { date, done, partial })
}

impl fmt::Display for Handover {
    /// What was taken, in a few words: `legacy cursor (window …, after event …), 1 recording in progress, start time …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        match self.cursor.as_ref().map(|cursor| &cursor.audit) {
            Some(AuditCursor::Legacy(legacy)) => {
                let after = if legacy.last_id.is_empty() { "from its start".to_owned() } else { format!("after event {}", legacy.last_id) };
                parts.push(format!("legacy cursor (window from {}, {after})", legacy.window_start));
            }
            Some(AuditCursor::Export(export)) => {
                let done: usize = export.dates.iter().map(|date| date.done.len()).sum();
                let partial: usize = export.dates.iter().map(|date| date.partial.len()).sum();
                let (first, last) = (&export.dates[0].date, &export.dates[export.dates.len() - 1].date);
                parts.push(format!("export cursor ({first} to {last}: {done} chunks done, {partial} under way)"));
            }
            Some(AuditCursor::Start) | None => parts.push("no audit position (nothing read yet)".to_owned()),
        }
        let sessions = self.cursor.as_ref().map(|cursor| cursor.sessions.as_slice()).unwrap_or_default();
        let missing = sessions.iter().filter(|session| session.missing > 0).count();
        parts.push(format!("{} recording(s) in progress", sessions.len() - missing));
        parts.push(format!("{missing} missing recording(s)"));
        if let Some(start) = &self.start_time {
            parts.push(format!("start time {start}"));
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder");
        std::fs::write(path, bytes).expect("written");
    }

    #[test]
    fn folder_names_are_the_event_handlers() {
        assert_eq!(folder_name("auth.example.com:3025").as_deref(), Some("auth.example.com_3025"));
        assert_eq!(folder_name("[::1]:3025").as_deref(), Some("::1_3025"));
        assert_eq!(folder_name("tenant.teleport.sh"), None, "no port: the event handler fails too");
        assert_eq!(folder_name("::1:3025"), None, "too many colons");
    }

    #[test]
    fn the_legacy_files_make_a_legacy_cursor_resumed_after_the_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "start_time", b"2024-05-01T10:00:00Z");
        write(dir.path(), "window_time", b"2024-05-02T00:00:00Z");
        write(dir.path(), "cursor", b"0:123:4");
        write(dir.path(), "id", b"e-9");
        write(dir.path(), "sessionabc", &7u64.to_be_bytes());
        write(dir.path(), "sessionnew", &0u64.to_be_bytes());
        write(dir.path(), "sessionempty", b"");
        write(dir.path(), "missing_recordinggone", br#"{"Index":0,"Attempt":2,"Timestamp":"2024-05-01T11:00:00.5Z"}"#);
        write(dir.path(), "dry_run/x/cursor", b"ignored");
        let handover = read(dir.path()).expect("reads");
        assert_eq!(handover.start_time.as_deref(), Some("2024-05-01T10:00:00Z"));
        let cursor = handover.cursor.expect("a cursor");
        let AuditCursor::Legacy(legacy) = &cursor.audit else { panic!("legacy: {cursor:?}") };
        assert_eq!(
            (&*legacy.window_start, &*legacy.start_key, &*legacy.last_id, legacy.skip),
            ("2024-05-02T00:00:00Z", "0:123:4", "e-9", None)
        );
        let sessions: Vec<(&str, i64, &str, u32)> =
            cursor.sessions.iter().map(|s| (s.sid.as_str(), s.next_index, s.upload_time.as_str(), s.missing)).collect();
        assert_eq!(
            sessions,
            [("abc", 8, "", 0), ("empty", 0, "", 0), ("gone", 0, "2024-05-01T11:00:00.5Z", 2), ("new", 0, "", 0)],
            "after the index saved (sent already); from 0 when 0 (nothing, or only the first, sent)"
        );
    }

    #[test]
    fn cursor_v2_wins_over_the_legacy_files_and_its_oddities_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "cursor", b"k");
        write(dir.path(), "id", b"e");
        write(dir.path(), "window_time", b"2024-05-01T00:00:00Z");
        write(dir.path(), "cursor_v2/2024-05-02/completed-chunks", b"c1\nc2\n");
        write(dir.path(), "cursor_v2/2024-05-02/c3.chunk", b"  cur-3\n");
        write(dir.path(), "cursor_v2/2024-05-02/c4.chunk", b"");
        write(dir.path(), "cursor_v2/2024-05-02/notes.txt", b"x");
        write(dir.path(), "cursor_v2/2024-05-01/completed-chunks", b"c0\n");
        std::fs::create_dir_all(dir.path().join("cursor_v2/2024-05-03")).expect("an empty date: started");
        std::fs::create_dir_all(dir.path().join("cursor_v2/not-a-date")).expect("folder");
        write(dir.path(), "cursor_v2/stray", b"x");
        let cursor = read(dir.path()).expect("reads").cursor.expect("a cursor");
        let AuditCursor::Export(export) = cursor.audit else { panic!("export") };
        type Date<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);
        let dates: Vec<Date> = export
            .dates
            .iter()
            .map(|d| {
                (
                    d.date.as_str(),
                    d.done.iter().map(String::as_str).collect(),
                    d.partial.iter().map(|(c, k)| (c.as_str(), k.as_str())).collect(),
                )
            })
            .collect();
        assert_eq!(
            dates,
            [("2024-05-01", vec!["c0"], vec![]), ("2024-05-02", vec!["c1", "c2"], vec![("c3", "cur-3")]), ("2024-05-03", vec![], vec![])]
        );
    }

    #[test]
    fn nothing_read_yet_is_a_start_time_and_no_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!holds_state(dir.path()));
        write(dir.path(), "start_time", b"2024-05-01T10:00:00Z");
        assert!(holds_state(dir.path()));
        let handover = read(dir.path()).expect("reads");
        assert_eq!((handover.start_time.as_deref(), handover.cursor), (Some("2024-05-01T10:00:00Z"), None));
    }

    #[test]
    fn a_broken_file_is_named_on_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "sessionabc", b"123");
        let err = read(dir.path()).expect_err("3 bytes");
        assert!(err.contains("sessionabc") && err.contains("8-byte"), "{err}");
        std::fs::remove_file(dir.path().join("sessionabc")).expect("removed");
        write(dir.path(), "window_time", b"yesterday");
        let err = read(dir.path()).expect_err("not a time");
        assert!(err.contains("window_time") && !err.contains('\n'), "{err}");
        std::fs::remove_file(dir.path().join("window_time")).expect("removed");
        write(dir.path(), "id", b"e-1");
        let err = read(dir.path()).expect_err("nowhere to search from");
        assert!(err.contains("start_time"), "{err}");
    }

    #[test]
    fn the_folder_for_the_address_comes_first_else_the_only_one() {
        let storage = tempfile::tempdir().expect("tempdir");
        assert_eq!(find(storage.path(), "auth:3025"), Found::Nothing);
        write(storage.path(), "plugin-cache/x", b"");
        write(storage.path(), "dry-run/ferry.db", b"");
        write(storage.path(), "ferry.db", b"");
        write(storage.path(), "proxy_443/start_time", b"2024-05-01T10:00:00Z");
        assert_eq!(find(storage.path(), "auth:3025"), Found::OnlyOther(storage.path().join("proxy_443")));
        write(storage.path(), "auth_3025/id", b"e");
        assert_eq!(find(storage.path(), "auth:3025"), Found::ForThisAddress(storage.path().join("auth_3025")));
        assert_eq!(
            find(storage.path(), "other:1"),
            Found::Several(vec![storage.path().join("auth_3025"), storage.path().join("proxy_443")])
        );
    }
}
