//! Events per second through the Python (`tag`) and JavaScript (`reshape`)
//! example plugins, on batches of 256 fixture events, through `WasmPlugin`
//! as the pipeline calls it: epoch deadline armed before every call, memory
//! cap on, outcomes checked. Each plugin runs with the config its tests use,
//! so every event is parsed, changed and re-serialised inside the guest.
//!
//! `cargo bench -p ferry --bench script_plugins`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry::event::Event;
use ferry::metrics::Metrics;
use ferry::plugin::{PluginSpec, Runtime, Transform, WasmPlugin};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

const BATCH: usize = 256;

/// 256 fixture events: the 183 sample events, then their start again.
fn batch() -> Vec<Event> {
    let lines: Vec<&str> = ferry::cli::demo::SAMPLE_EVENTS.lines().collect();
    (0..BATCH).map(|n| Event::from_json(lines[n % lines.len()].as_bytes().to_vec()).expect("fixture events are valid")).collect()
}

fn load(runtime: &Runtime, name: &str, settings: &str) -> WasmPlugin {
    let spec: PluginSpec = toml::from_str(settings).expect("settings");
    let mut settings = spec.settings();
    settings.name = name.to_owned();
    settings.path = PathBuf::from(ferry_test_plugins::PLUGIN_DIR).join(format!("{name}.wasm"));
    runtime.load(settings).unwrap_or_else(|err| panic!("{err}")).0
}

fn script_plugins(c: &mut Criterion) {
    // The test compile cache: the components are compiled once, not per run.
    let cache = PathBuf::from(ferry_test_plugins::COMPILE_CACHE);
    let runtime = Runtime::new(Some(cache), Arc::new(Metrics::default())).expect("runtime");
    let plugins = [
        // With an empty config each plugin keeps every event untouched: what
        // is left is the cost of crossing into the guest and back.
        ("python_keep", load(&runtime, "tag", "")),
        ("js_keep", load(&runtime, "reshape", "")),
        // Where the JavaScript time goes: routing alone (no parsing; sink
        // names are strings handed back), lowercasing alone (parse, change
        // in place, write), then everything.
        ("js_route_only", load(&runtime, "reshape", "[config]\nroutes = [{ types = \"session.*\", sinks = [\"sessions\"] }]")),
        ("js_lowercase_only", load(&runtime, "reshape", "[config]\nlowercase = [\"user\"]")),
        ("python_tag", load(&runtime, "tag", "[config]\ntags = { pipeline = \"ferry\" }\ndrop = [\"sftp\"]")),
        (
            "js_reshape",
            load(
                &runtime,
                "reshape",
                "[config]\nrename = { \"addr.remote\" = \"remote_addr\" }\nlowercase = [\"user\"]\n\
                 routes = [{ types = \"session.*\", sinks = [\"sessions\"] }]",
            ),
        ),
    ];
    let events = batch();
    let mut group = c.benchmark_group("script_plugins");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    for (label, mut plugin) in plugins {
        group.bench_function(label, |b| b.iter(|| black_box(plugin.process(black_box(&events)).expect("runs"))));
    }
    group.finish();
}

criterion_group!(benches, script_plugins);
criterion_main!(benches);
