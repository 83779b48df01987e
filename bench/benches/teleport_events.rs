//! The Teleport source's work per event, the old ways against today's:
//! each fixture event (`fixtures/`, audit and session recording) as the
//! gRPC client receives it, a protobuf `Struct` on the wire, becomes a ferry
//! `Event`.
//!
//! - `value-path` is the first way: the Struct decoded into prost's tree,
//!   then → `serde_json::Value` → bytes, then `Event::from_json` parses the
//!   text again for the header.
//! - `tree-pass` is the second: the tree decoded, its JSON written straight
//!   into a reused buffer, the header taken from the tree's fields.
//! - `wire-pass` is `Event::from_struct` today: no tree; the JSON written
//!   from the protobuf bytes, the header noted on the way.
//!
//! All must give the same events, or the comparison means nothing.
//!
//! The cursor each record carries, for a page of 500 events, with the
//! legacy and the export engine's cursors (five chunks open at once) and
//! four recordings pending:
//!
//! - `encode-per-event` is the old way: the cursor document cloned and
//!   written as JSON for every record, all but the batch's last thrown away;
//! - `shared-snapshot` is what the source does now: a snapshot sharing the
//!   cursor's parts per record, the document written once for the batch.
//!
//! `cargo bench -p ferry --bench teleport_events` prints criterion's
//! figures, then events per second for each and the ratio.

mod common;

use criterion::{Criterion, Throughput};
use ferry::event::Event;
use ferry::source::Position;
use ferry::source::teleport::cursor::{
    AuditCursor, AuditPosition, ChunkPosition, Cursor, DateCursor, ExportCursor, ExportPosition, LegacyCursor, PositionSnapshot,
    SessionProgress,
};
use ferry_proto::rawstruct::RawStruct;
use ferry_proto::structjson::{json_to_struct, struct_to_json, write_struct_json};
use prost::Message;
use prost_types::Struct;
use prost_types::value::Kind;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

const SESSION_EVENTS: &str = include_str!("../../fixtures/teleport-session-events.jsonl");

/// Every fixture event, audit and session, as the bytes of the Struct the
/// client receives (Teleport builds it from the same JSON).
fn wires() -> Vec<Vec<u8>> {
    ferry::cli::demo::SAMPLE_EVENTS
        .lines()
        .chain(SESSION_EVENTS.lines())
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).expect("fixture line is JSON");
            json_to_struct(&json).expect("fixture line is an object").encode_to_vec()
        })
        .collect()
}

fn decode_tree(wire: &[u8]) -> Struct {
    Struct::decode(wire).expect("a fixture's Struct decodes")
}

/// The first way, kept here to compare against.
fn value_path(wires: &[Vec<u8>]) -> Vec<Event> {
    wires
        .iter()
        .map(|wire| {
            Event::from_json(serde_json::to_vec(&struct_to_json(&decode_tree(wire))).expect("a Value serialises"))
                .expect("a Struct's JSON is an event")
        })
        .collect()
}

/// The second way, as `Event::from_struct` was before it read the wire
/// (the fixtures all have string headers, so its slow way is left out).
fn tree_pass(wires: &[Vec<u8>], buffer: &mut Vec<u8>) -> Vec<Event> {
    wires
        .iter()
        .map(|wire| {
            let fields = decode_tree(wire);
            buffer.clear();
            write_struct_json(&fields, buffer);
            let text = |key: &str| match fields.fields.get(key).and_then(|value| value.kind.as_ref()) {
                Some(Kind::StringValue(text)) => text.clone(),
                _ => String::new(),
            };
            let index = match fields.fields.get("ei").and_then(|value| value.kind.as_ref()) {
                Some(&Kind::NumberValue(n)) => n as i64,
                _ => 0,
            };
            let json = buffer.clone();
            let uid = text("uid");
            Event {
                id: if uid.is_empty() { ferry_event::content_id(&json) } else { uid },
                event_type: text("event"),
                time: text("time"),
                index,
                session_id: text("sid"),
                stream_session: None,
                sink: None,
                json,
            }
        })
        .collect()
}

fn wire_pass(wires: &[Vec<u8>], buffer: &mut Vec<u8>) -> Vec<Event> {
    wires
        .iter()
        .map(|wire| {
            let fields = RawStruct::decode(wire.as_slice()).expect("a fixture's Struct decodes");
            Event::from_struct(&fields, buffer).expect("a fixture's Struct is well formed")
        })
        .collect()
}

fn bench_events(criterion: &mut Criterion, wires: &[Vec<u8>]) {
    let mut buffer = Vec::new();
    let expected = value_path(wires);
    assert_eq!(expected, tree_pass(wires, &mut buffer), "the tree pass disagrees");
    assert_eq!(expected, wire_pass(wires, &mut buffer), "the wire pass disagrees");
    let mut group = criterion.benchmark_group("teleport-events");
    group.throughput(Throughput::Elements(wires.len() as u64));
    group.bench_function("value-path", |bench| bench.iter(|| value_path(wires)));
    group.bench_function("tree-pass", |bench| bench.iter(|| tree_pass(wires, &mut buffer)));
    group.bench_function("wire-pass", |bench| bench.iter(|| wire_pass(wires, &mut buffer)));
    group.finish();
}

/// Events per page, as the original's config has it (`batch = 500`).
const PAGE: usize = 500;

fn sessions() -> Vec<SessionProgress> {
    (0..4)
        .map(|i| SessionProgress {
            sid: format!("5f1d2e8c-0a4b-4c7e-9d3f-{i:012}"),
            next_index: 17,
            upload_time: "2024-05-01T10:00:00.123Z".into(),
            ..SessionProgress::default()
        })
        .collect()
}

/// An export cursor two days in, with 40 chunks done per day.
fn export_base() -> ExportCursor {
    let day = |date: &str| DateCursor {
        date: date.into(),
        done: (0..40).map(|i| format!("chunk-{date}-{i:04}")).collect(),
        partial: BTreeMap::new(),
    };
    ExportCursor { dates: vec![day("2024-04-30"), day("2024-05-01")] }
}

fn event_ids() -> Vec<String> {
    (0..PAGE).map(|i| format!("8d8e1c5e-7a8f-4a73-b1a3-{i:012}")).collect()
}

/// The old way: per record, the audit cursor cloned, the document written.
fn encode_per_event(audit: impl Fn(usize) -> AuditCursor, sessions: &[SessionProgress]) -> String {
    let mut last = String::new();
    for i in 0..PAGE {
        let cursor = Cursor { audit: audit(i), sessions: sessions.to_vec() };
        last = cursor.encode();
    }
    last
}

/// Now: per record a snapshot sharing the parts; the batch's last written once.
fn shared_snapshot(audit: impl Fn(usize) -> AuditPosition, sessions: &Arc<Vec<SessionProgress>>) -> String {
    let mut positions = Vec::with_capacity(PAGE);
    for i in 0..PAGE {
        positions.push(Position::Teleport(PositionSnapshot { audit: audit(i), sessions: sessions.clone() }));
    }
    positions.last().map(|position| position.encode().into_owned()).unwrap_or_default()
}

fn bench_cursors(criterion: &mut Criterion) {
    let ids = event_ids();
    let sessions = sessions();
    let shared_sessions = Arc::new(sessions.clone());
    let legacy = |i: usize| {
        let mut cursor = LegacyCursor::start("2024-05-01T00:00:00Z".into());
        cursor.start_key = Arc::from("page-key-0000000000000000000001");
        cursor.last_id = Arc::from(ids[i].as_str());
        cursor.last_time = Arc::from("2024-05-01T10:00:00.123456789Z");
        cursor.skip = Some(i + 1);
        cursor
    };
    let base = Arc::new(export_base());
    let name: Arc<str> = Arc::from("chunk-2024-05-01-0040");
    let chunk_cursors: Vec<Arc<str>> = (0..PAGE).map(|i| Arc::from(format!("{{\"offset\":{}}}", i + 1).as_str())).collect();
    // Five chunks read at once (the default `concurrency`): four others
    // stand at a cursor while this one moves.
    let others: Vec<ChunkPosition> = (41..45)
        .map(|n| ChunkPosition {
            date: 1,
            name: Arc::from(format!("chunk-2024-05-01-{n:04}").as_str()),
            cursor: Arc::from("{\"offset\":7}"),
        })
        .collect();
    let export_document = |i: usize| {
        let mut cursor = base.as_ref().clone();
        cursor.dates[1].partial.insert(name.to_string(), chunk_cursors[i].to_string());
        for other in &others {
            cursor.dates[1].partial.insert(other.name.to_string(), other.cursor.to_string());
        }
        AuditCursor::Export(cursor)
    };
    let export_position = |i: usize| {
        let mut open = Vec::with_capacity(5);
        open.push(ChunkPosition { date: 1, name: name.clone(), cursor: chunk_cursors[i].clone() });
        open.extend(others.iter().cloned());
        AuditPosition::Export(ExportPosition { base: base.clone(), chunks: Arc::from(open) })
    };
    let mut group = criterion.benchmark_group("teleport-cursor");
    group.throughput(Throughput::Elements(PAGE as u64));
    assert_eq!(
        encode_per_event(|i| AuditCursor::Legacy(legacy(i)), &sessions),
        shared_snapshot(|i| AuditPosition::Legacy(legacy(i)), &shared_sessions),
        "legacy: the two ways disagree"
    );
    assert_eq!(
        encode_per_event(export_document, &sessions),
        shared_snapshot(export_position, &shared_sessions),
        "export: the two ways disagree"
    );
    group.bench_function("legacy-encode-per-event", |bench| bench.iter(|| encode_per_event(|i| AuditCursor::Legacy(legacy(i)), &sessions)));
    group.bench_function("legacy-shared-snapshot", |bench| {
        bench.iter(|| shared_snapshot(|i| AuditPosition::Legacy(legacy(i)), &shared_sessions))
    });
    group.bench_function("export-encode-per-event", |bench| bench.iter(|| encode_per_event(export_document, &sessions)));
    group.bench_function("export-shared-snapshot", |bench| bench.iter(|| shared_snapshot(export_position, &shared_sessions)));
    group.finish();
}

fn main() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default().output_directory(&out).configure_from_args();
    let wires = wires();
    bench_events(&mut criterion, &wires);
    bench_cursors(&mut criterion);
    criterion.final_summary();
    if let [Some(value), Some(tree), Some(wire)] =
        ["value-path", "tree-pass", "wire-pass"].map(|variant| common::median_nanos(&out, "teleport-events", variant))
    {
        let rate = |nanos: f64| wires.len() as f64 / (nanos / 1e9);
        println!("Teleport events (protobuf Struct bytes → ferry Event), {} fixture events, median of criterion's samples:", wires.len());
        println!("  value path (first):   {:>10.0} events/s", rate(value));
        println!("  tree pass  (second):  {:>10.0} events/s   ×{:.2}", rate(tree), value / tree);
        println!("  wire pass  (today):   {:>10.0} events/s   ×{:.2} the first, ×{:.2} the second", rate(wire), value / wire, tree / wire);
    }
    println!("The cursor per record, pages of {PAGE} events, median of criterion's samples:");
    for engine in ["legacy", "export"] {
        let [before, after] =
            ["encode-per-event", "shared-snapshot"].map(|way| common::median_nanos(&out, "teleport-cursor", &format!("{engine}-{way}")));
        if let (Some(before), Some(after)) = (before, after) {
            let per_event = |nanos: f64| nanos / PAGE as f64;
            println!("  {engine:<6} encoded per event (before): {:>8.0} ns/event", per_event(before));
            println!("  {engine:<6} shared snapshot   (after):  {:>8.0} ns/event   ratio {:.1}", per_event(after), before / after);
        }
    }
    println!("  on {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
}
