//! The Teleport source's work per event, before and after it was made one
//! pass: each fixture event (`host/demo/`, audit and session recording) as
//! the gRPC client hands it over, a protobuf `Struct`, becomes a ferry
//! `Event`.
//!
//! - `value-path` is the old way: Struct → `serde_json::Value` → bytes, then
//!   `Event::from_json` parses the text again for the header.
//! - `one-pass` is `Event::from_struct`: the JSON written straight into a
//!   reused buffer, the header taken from the Struct's fields.
//!
//! Both must give the same events, or the comparison means nothing.
//! `cargo bench -p ferry --bench teleport_events` prints criterion's
//! figures, then events per second for each and the ratio.

mod common;

use criterion::{Criterion, Throughput};
use ferry::event::Event;
use ferry_proto::structjson::{json_to_struct, struct_to_json};
use prost_types::Struct;
use std::path::PathBuf;

const SESSION_EVENTS: &str = include_str!("../demo/teleport-session-events.jsonl");

/// Every fixture event, audit and session, as the Struct the client
/// receives (Teleport builds it from the same JSON).
fn structs() -> Vec<Struct> {
    ferry::demo::SAMPLE_EVENTS
        .lines()
        .chain(SESSION_EVENTS.lines())
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).expect("fixture line is JSON");
            json_to_struct(&json).expect("fixture line is an object")
        })
        .collect()
}

/// Today's path before the change, kept here to compare against.
fn value_path(structs: &[Struct]) -> Vec<Event> {
    structs
        .iter()
        .map(|fields| Event::from_json(serde_json::to_vec(&struct_to_json(fields)).expect("a Value serialises")).expect("a Struct's JSON is an event"))
        .collect()
}

fn one_pass(structs: &[Struct], buffer: &mut Vec<u8>) -> Vec<Event> {
    structs.iter().map(|fields| Event::from_struct(fields, buffer)).collect()
}

fn bench_events(criterion: &mut Criterion, structs: &[Struct]) {
    let mut buffer = Vec::new();
    assert_eq!(value_path(structs), one_pass(structs, &mut buffer), "the two paths disagree");
    let mut group = criterion.benchmark_group("teleport-events");
    group.throughput(Throughput::Elements(structs.len() as u64));
    group.bench_function("value-path", |bench| bench.iter(|| value_path(structs)));
    group.bench_function("one-pass", |bench| bench.iter(|| one_pass(structs, &mut buffer)));
    group.finish();
}

fn main() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default().output_directory(&out).configure_from_args();
    let structs = structs();
    bench_events(&mut criterion, &structs);
    criterion.final_summary();
    if let [Some(before), Some(after)] = ["value-path", "one-pass"].map(|variant| common::median_nanos(&out, "teleport-events", variant)) {
        let rate = |nanos: f64| structs.len() as f64 / (nanos / 1e9);
        println!("Teleport events (Struct → ferry Event), {} fixture events, median of criterion's samples:", structs.len());
        println!("  value path (before): {:>10.0} events/s", rate(before));
        println!("  one pass   (after):  {:>10.0} events/s", rate(after));
        println!("  ratio after/before:  {:>10.2}", before / after);
        println!("  on {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
}
