//! `ferry status`: where each source stands, how far behind it is, the
//! recordings under way, the dead letters per stage and the size of the
//! state, read from the state database (a running ferry need not stop).

use super::out::say;
use crate::app::FerryConfig;
use crate::state::{State, StoredCursor};
use anyhow::Context;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Prints the status of the config at `path`: for a person, or as one JSON
/// document with `json`. A state database that does not exist yet is one
/// line (or `"exists": false`), not an error: ferry has not run yet.
pub async fn run(path: PathBuf, json: bool) -> anyhow::Result<()> {
    let config = FerryConfig::load(&path)?;
    let location = config.state_location()?;
    let report = if location.is_missing() {
        json!({ "database": location.to_string(), "exists": false })
    } else {
        let state = State::open_at(&location).await?;
        let report = gather(&state, SystemTime::now()).await;
        state.close().await;
        report?
    };
    let text = if json { serde_json::to_string_pretty(&report).context("cannot encode the status")? } else { describe(&report) };
    say!("{text}")?;
    Ok(())
}

/// The status of `state` as JSON, with lags measured at `now`.
pub async fn gather(state: &State, now: SystemTime) -> anyhow::Result<Value> {
    let origins = state.position_origins().await?;
    let origin_of = |source: &str| {
        let base = source.split_once('#').map_or(source, |(base, _)| base);
        origins.iter().find(|origin| origin.source == base)
    };
    let sources: Vec<Value> = state
        .cursors()
        .await?
        .iter()
        .map(|cursor| {
            let mut out = source(cursor, now);
            if let Some(origin) = origin_of(&cursor.source) {
                out["origin"] = serde_json::to_value(origin).unwrap_or(Value::Null);
            }
            out
        })
        .collect();
    let counts = state.dead_letter_counts().await?;
    let mut by_stage = serde_json::Map::new();
    for (stage, _, count) in &counts {
        let entry = by_stage.entry(stage.clone()).or_insert(json!(0));
        *entry = json!(entry.as_u64().unwrap_or(0) + count);
    }
    let total: u64 = counts.iter().map(|(_, _, count)| count).sum();
    let by_component: Vec<Value> =
        counts.iter().map(|(stage, component, count)| json!({ "stage": stage, "component": component, "count": count })).collect();
    let mut report = json!({
        "database": state.location().to_string(),
        "exists": true,
        "size_bytes": state.path().map(size),
        "sources": sources,
        "dead_letters": { "total": total, "by_stage": by_stage, "by_component": by_component },
    });
    if state.is_shared() {
        let leases: Vec<Value> = state
            .leases()
            .await?
            .into_iter()
            .map(|holder| json!({ "lease": holder.lease, "holder": holder.name, "epoch": holder.epoch, "expires_in_seconds": holder.expires_in }))
            .collect();
        report["lease"] = leases.first().cloned().unwrap_or(Value::Null);
        report["leases"] = Value::Array(leases);
        report["instances"] = serde_json::to_value(state.instances().await?)?;
    }
    Ok(report)
}

/// The leases and every instance of a shared (PostgreSQL) state: who is
/// active on which slot, who stands by, and when each was last heard from.
fn describe_instances(report: &Value, text: &mut String) {
    let Some(instances) = report["instances"].as_array() else { return };
    let leases = report["leases"].as_array().map(Vec::as_slice).unwrap_or_default();
    if leases.is_empty() {
        _ = writeln!(text, "lease: never taken");
    }
    for lease in leases {
        let expires = lease["expires_in_seconds"].as_f64().unwrap_or(0.0);
        let state = if expires >= 0.0 { format!("renewed, runs out in {expires:.1}s") } else { format!("ran out {:.1}s ago", -expires) };
        let name = lease["lease"].as_str().unwrap_or("?");
        let what = if name == "active" { "lease".to_owned() } else { format!("lease {name}") };
        _ = writeln!(text, "{what}: held by {} (epoch {}), {state}", lease["holder"].as_str().unwrap_or("?"), lease["epoch"]);
    }
    for instance in instances {
        let lease = match instance["lease"].as_str() {
            Some(name) if name != "active" => format!(" {name}"),
            _ => String::new(),
        };
        let epoch = instance["epoch"].as_i64().map_or_else(String::new, |epoch| format!("{lease} (epoch {epoch})"));
        _ = writeln!(
            text,
            "instance {}: {}{epoch}, ferry {}, started {}, last seen {:.1}s ago",
            instance["name"].as_str().unwrap_or("?"),
            instance["role"].as_str().unwrap_or("?"),
            instance["version"].as_str().unwrap_or("?"),
            instance["started_at"].as_str().unwrap_or("?"),
            instance["seen_ago"].as_f64().unwrap_or(0.0),
        );
    }
}

/// The database with its `-wal` and `-shm` files, in bytes: what it takes
/// on disk.
fn size(database: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut file = database.as_os_str().to_owned();
            file.push(suffix);
            std::fs::metadata(file).ok()
        })
        .map(|meta| meta.len())
        .sum()
}

/// One source's cursor, read as its kind writes it: a file source's path,
/// device, inode and offset; a Teleport source's engine place and the
/// recordings under way. A cursor that reads as neither is shown as stored.
fn source(stored: &StoredCursor, now: SystemTime) -> Value {
    let mut out = json!({
        "source": stored.source,
        "committed_at": stored.updated_at,
        "newest_event_time": stored.newest_event_time,
        "lag_seconds": stored.newest_event_time.as_deref().and_then(|time| lag(time, now)).map(|lag| lag.as_secs_f64()),
    });
    let parsed: Option<Value> = serde_json::from_str(&stored.position).ok();
    if let Some(path) = stored.source.strip_prefix("file:") {
        out["kind"] = json!("file");
        out["cursor"] = match parsed {
            // A bare byte offset, as an older ferry stored it.
            Some(Value::Number(offset)) => json!({ "path": path, "offset": offset }),
            Some(Value::Object(mut fields)) => {
                fields.insert("path".into(), json!(path));
                Value::Object(fields)
            }
            _ => json!({ "path": path, "stored": stored.position }),
        };
    } else if let Ok(cursor) = crate::source::teleport::cursor::Cursor::parse(&stored.position) {
        out["kind"] = json!("teleport");
        let mut cursor = serde_json::to_value(&cursor).unwrap_or(Value::Null);
        out["sessions"] = cursor.get_mut("sessions").map(Value::take).filter(|sessions| !sessions.is_null()).unwrap_or(json!([]));
        out["cursor"] = cursor.get_mut("audit").map(Value::take).unwrap_or(Value::Null);
    } else {
        out["kind"] = json!("other");
        out["cursor"] = parsed.unwrap_or_else(|| json!(stored.position));
    }
    out
}

/// How far `time` (RFC 3339) is behind `now`; none when it cannot be read.
/// An event time ahead of `now` (clock skew) is no lag.
fn lag(time: &str, now: SystemTime) -> Option<Duration> {
    let time = crate::units::parse_time(time).ok()?;
    Some(now.duration_since(time).unwrap_or_default())
}

/// The status for a person: a few lines per source, then the dead letters.
pub fn describe(report: &Value) -> String {
    let database = report["database"].as_str().unwrap_or("?");
    if report["exists"] != json!(true) {
        return format!("no state database at {database}: ferry has not run with this config yet");
    }
    let mut text = String::new();
    match report["size_bytes"].as_u64() {
        Some(size) => _ = writeln!(text, "state database {database}: {}", crate::units::human_size(size)),
        None => _ = writeln!(text, "state database {database}"),
    }
    describe_instances(report, &mut text);
    let sources = report["sources"].as_array().map(Vec::as_slice).unwrap_or_default();
    if sources.is_empty() {
        let _ = writeln!(text, "no cursor committed yet");
    }
    for source in sources {
        let _ = writeln!(text, "source {}", source["source"].as_str().unwrap_or("?"));
        let _ = writeln!(text, "  cursor: {}", cursor_line(source));
        if let Some(line) = origin_line(&source["origin"]) {
            let _ = writeln!(text, "  position: {line}");
        }
        for session in source["sessions"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let _ = writeln!(
                text,
                "  recording in progress: session {}, next event {}, announced {}{}{}",
                session["sid"].as_str().unwrap_or("?"),
                session["next-index"],
                session["upload-time"].as_str().unwrap_or("?"),
                match session["missing"].as_u64() {
                    Some(0) | None => String::new(),
                    Some(n) => format!(", not found {n} time(s)"),
                },
                match session["failing"].as_str() {
                    Some(reason) => format!(", FAILING ({} round(s) of tries): {reason}", session["failed"].as_u64().unwrap_or(0)),
                    None => String::new(),
                }
            );
        }
        match (source["newest_event_time"].as_str(), source["lag_seconds"].as_f64()) {
            (Some(time), Some(lag)) => {
                let _ = writeln!(
                    text,
                    "  newest delivered event: {time} (lag {})",
                    humantime::format_duration(Duration::from_secs(lag as u64))
                );
            }
            (Some(time), None) => {
                let _ = writeln!(text, "  newest delivered event: {time}");
            }
            _ => {
                let _ = writeln!(text, "  newest delivered event: none recorded yet");
            }
        }
        let _ = writeln!(text, "  committed at: {}", source["committed_at"].as_str().unwrap_or("?"));
    }
    let letters = &report["dead_letters"];
    let _ = write!(text, "dead letters: {}", letters["total"].as_u64().unwrap_or(0));
    for entry in letters["by_component"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let _ = write!(
            text,
            "\n  {} {}: {}",
            entry["stage"].as_str().unwrap_or("?"),
            entry["component"].as_str().unwrap_or("?"),
            entry["count"].as_u64().unwrap_or(0)
        );
    }
    text
}

/// Where a position came from, on one line: `imported from DIR at TIME`,
/// `migrated from KEY at TIME`, `ferry's own, since TIME`; none when not recorded.
fn origin_line(origin: &Value) -> Option<String> {
    let at = origin["at"].as_str()?;
    let from = origin["from"].as_str().unwrap_or("?");
    Some(match origin["kind"].as_str()? {
        "imported" => format!("imported from {from} at {at} (the event handler's saved state)"),
        "migrated" => format!("migrated from {from} at {at} (an older ferry's key)"),
        _ => format!("ferry's own, since {at}"),
    })
}

/// A source's cursor on one line.
fn cursor_line(source: &Value) -> String {
    let cursor = &source["cursor"];
    match source["kind"].as_str() {
        Some("file") => {
            let mut line = format!("{} at byte {}", cursor["path"].as_str().unwrap_or("?"), cursor["offset"]);
            if let (Some(dev), Some(ino)) = (cursor["dev"].as_u64(), cursor["ino"].as_u64()) {
                let _ = write!(line, " (inode {ino} on device {dev})");
            }
            line
        }
        Some("teleport") => match cursor["engine"].as_str() {
            Some("legacy") => {
                let mut line = format!("legacy engine, window from {}", cursor["window-start"].as_str().unwrap_or("?"));
                if let Some(id) = cursor["last-id"].as_str().filter(|id| !id.is_empty()) {
                    let _ = write!(line, ", last event {id}");
                }
                if let Some(time) = cursor["last-time"].as_str().filter(|time| !time.is_empty()) {
                    let _ = write!(line, " at {time}");
                }
                line
            }
            Some("export") => {
                let dates = cursor["dates"].as_array().map(Vec::as_slice).unwrap_or_default();
                let names: Vec<String> = dates
                    .iter()
                    .map(|date| {
                        let done = date["done"].as_array().map_or(0, Vec::len);
                        let partial = date["partial"].as_object().map_or(0, serde_json::Map::len);
                        format!("{} ({done} chunk(s) done, {partial} under way)", date["date"].as_str().unwrap_or("?"))
                    })
                    .collect();
                if names.is_empty() {
                    "export engine, no date under way".to_owned()
                } else {
                    format!("export engine, {}", names.join(", "))
                }
            }
            Some("start") => "nothing read yet (the engine is chosen at start)".to_owned(),
            _ => cursor.to_string(),
        },
        _ => cursor.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DeadLetter, Stage};

    fn letter(stage: Stage, component: &str) -> DeadLetter {
        DeadLetter {
            source: "file:in".into(),
            position: None,
            event_id: None,
            stage,
            component: component.into(),
            reason: "r".into(),
            payload: b"{}".to_vec(),
            session_id: None,
            sink: None,
        }
    }

    #[tokio::test]
    async fn shows_the_cursor_the_newest_event_the_lag_and_dead_letters_per_stage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("ferry.db")).await.expect("open");
        let position = r#"{"dev":2049,"ino":77,"head":"abc","offset":1234}"#;
        let letters = [letter(Stage::Plugin, "redact"), letter(Stage::Plugin, "redact"), letter(Stage::Sink, "default")];
        state.commit("file:/var/log/in.jsonl", position, Some("2024-05-01T00:00:10.000000000Z"), &letters).await.expect("commit");
        // An older time does not move the newest back; a batch with no time keeps it.
        state.commit("file:/var/log/in.jsonl", position, Some("2024-05-01T00:00:05.000000000Z"), &[]).await.expect("commit");
        state.commit("file:/var/log/in.jsonl", position, None, &[]).await.expect("commit");
        let now = crate::units::parse_time("2024-05-01T00:01:10Z").expect("a time");
        let report = gather(&state, now).await.expect("status");
        let source = &report["sources"][0];
        assert_eq!(source["kind"], "file");
        assert_eq!(source["cursor"]["offset"], 1234);
        assert_eq!(source["cursor"]["ino"], 77);
        assert_eq!(source["newest_event_time"], "2024-05-01T00:00:10.000000000Z");
        assert_eq!(source["lag_seconds"], 60.0);
        assert_eq!(report["dead_letters"]["by_stage"], json!({ "plugin": 2, "sink": 1 }));
        assert_eq!(report["dead_letters"]["total"], 3);
        let text = describe(&report);
        assert!(text.contains("cursor: /var/log/in.jsonl at byte 1234 (inode 77 on device 2049)"), "{text}");
        assert!(text.contains("newest delivered event: 2024-05-01T00:00:10.000000000Z (lag 1m)"), "{text}");
        assert!(text.contains("plugin redact: 2"), "{text}");
        assert!(text.contains("sink default: 1"), "{text}");
    }

    #[tokio::test]
    async fn a_teleport_cursor_shows_its_engine_and_recordings_in_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("ferry.db")).await.expect("open");
        let position = r#"{"audit":{"engine":"legacy","window-start":"2024-05-01T00:00:00Z","start-key":"k","last-id":"u-9","last-time":"2024-05-01T00:00:09Z","skip":3},"sessions":[{"sid":"s-1","next-index":4,"upload-time":"2024-05-01T00:00:01Z","missing":1},{"sid":"s-2","next-index":0,"upload-time":"2024-05-01T00:00:02Z","failed":2,"failing":"Teleport at t:3025 answered Internal: s3 throttled"}]}"#;
        state.commit("teleport", position, None, &[]).await.expect("commit");
        let report = gather(&state, SystemTime::now()).await.expect("status");
        assert_eq!(report["sources"][0]["kind"], "teleport");
        assert_eq!(report["sources"][0]["sessions"][0]["sid"], "s-1");
        let text = describe(&report);
        assert!(text.contains("cursor: legacy engine, window from 2024-05-01T00:00:00Z, last event u-9 at 2024-05-01T00:00:09Z"), "{text}");
        assert!(
            text.contains("recording in progress: session s-1, next event 4, announced 2024-05-01T00:00:01Z, not found 1 time(s)"),
            "{text}"
        );
        assert!(
            text.contains("session s-2, next event 0, announced 2024-05-01T00:00:02Z, FAILING (2 round(s) of tries): Teleport at t:3025 answered Internal: s3 throttled"),
            "{text}"
        );
        assert!(text.contains("newest delivered event: none recorded yet"), "{text}");
    }

    #[test]
    fn a_missing_database_is_one_line() {
        let text = describe(&json!({ "database": "/x/ferry.db", "exists": false }));
        assert_eq!(text, "no state database at /x/ferry.db: ferry has not run with this config yet");
    }
}
