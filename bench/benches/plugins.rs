//! What the sandbox costs: the redact transform run as a WebAssembly plugin
//! through ferry's real runtime (`Runtime`, `WasmPlugin`, epoch deadline
//! armed before every call, as in production) against the same `redact`
//! crate compiled into the host, on batches of 256 fixture events.
//!
//! Both variants take a batch of ferry `Event`s and return one `Outcome`
//! per event through the same mapping as the plugin's glue
//! (`plugins/redact/src/guest.rs`), so the difference is the sandbox: copying
//! the batch into linear memory and the outcomes back, the call, and the
//! wasm code itself.
//!
//! `cargo bench -p ferry --bench plugins` prints criterion's figures, then
//! events per second for each variant, the WebAssembly/native ratio, and
//! what an empty plugin call costs per event (the sandbox's fixed share).

mod common;

use criterion::{BatchSize, Criterion, Throughput};
use ferry::event::{Event, Outcome};
use ferry::metrics::Metrics;
use ferry::plugin::{PluginSpec, Runtime, Transform};
use std::path::PathBuf;
use std::sync::Arc;

/// Events per batch: the pipeline's default batch size.
const BATCH: usize = 256;

/// The demo's redact settings: fields most fixture events have.
const CONFIG: &str = "[config]\nfields = [\"login\", \"addr.remote\", \"addr.local\"]\nreplacement = \"***\"\n";

/// 256 fixture events, the 183 of the file and then its first 73 again.
fn batch() -> Vec<Event> {
    let lines: Vec<&str> = ferry::cli::demo::SAMPLE_EVENTS.lines().collect();
    (0..BATCH).map(|i| Event::from_json(lines[i % lines.len()].as_bytes().to_vec()).expect("fixture events are valid")).collect()
}

/// The plugin's glue (`guest.rs`), natively: one outcome per event.
fn redact_natively(redactor: &redact::Redactor, batch: &[Event]) -> Vec<Outcome> {
    batch
        .iter()
        .map(|event| match redactor.redact(&event.json) {
            Ok(None) => Outcome::Keep,
            Ok(Some(json)) => Outcome::Replace(json),
            Err(reason) => Outcome::Fail(reason),
        })
        .collect()
}

fn bench_redact(criterion: &mut Criterion) {
    let spec: PluginSpec = toml::from_str(CONFIG).expect("bench config is TOML");
    let mut settings = spec.settings();
    settings.name = "redact".to_owned();
    settings.path = PathBuf::from(ferry_test_plugins::PLUGIN_DIR).join("redact.wasm");
    let redactor = redact::Redactor::from_config(&settings.config_json).expect("bench config is valid");
    let runtime = Runtime::new(None, Arc::new(Metrics::default())).expect("wasmtime engine");
    let (mut plugin, _) = runtime.load(settings).expect("redact.wasm loads");
    let mut empty = empty_plugin(&runtime);
    let events = batch();

    // Both variants must agree, or the comparison means nothing.
    let native = redact_natively(&redactor, &events);
    let wasm = plugin.process(&events).expect("the plugin runs");
    assert_eq!(format!("{native:?}"), format!("{wasm:?}"), "the plugin and the native code disagree");
    let replaced = native.iter().filter(|outcome| matches!(outcome, Outcome::Replace(_))).count();
    eprintln!("redact: {replaced} of {BATCH} events per batch have a field to mask");

    let mut group = criterion.benchmark_group("redact-256");
    group.throughput(Throughput::Elements(BATCH as u64));
    // The batch is borrowed by both variants; outcomes are dropped outside
    // the timing, so both pay the same for allocation and neither for freeing.
    group.bench_function("native", |bench| bench.iter_batched(|| (), |()| redact_natively(&redactor, &events), BatchSize::SmallInput));
    group.bench_function("wasm", |bench| {
        bench.iter_batched(|| (), |()| plugin.process(&events).expect("the plugin runs"), BatchSize::SmallInput)
    });
    // The sandbox's fixed cost: the same batch into a plugin that drops
    // every event without reading it, and one verdict per event back.
    group.bench_function("wasm-empty-call", |bench| {
        bench.iter_batched(|| (), |()| empty.process(&events).expect("the plugin runs"), BatchSize::SmallInput)
    });
    group.finish();
}

/// A plugin call that does no work: `hostile` in `drop` mode answers
/// `drop` for each event without reading any, so what it costs is the
/// sandbox's share: the batch into linear memory, the call, the verdicts
/// back.
fn empty_plugin(runtime: &Runtime) -> ferry::plugin::WasmPlugin {
    let spec: PluginSpec = toml::from_str("[config]\nmode = \"drop\"\n").expect("TOML");
    let mut settings = spec.settings();
    settings.name = "empty".to_owned();
    settings.path = PathBuf::from(ferry_test_plugins::PLUGIN_DIR).join("hostile.wasm");
    runtime.load(settings).expect("hostile.wasm loads").0
}

fn main() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut criterion = Criterion::default().output_directory(&out).configure_from_args();
    bench_redact(&mut criterion);
    criterion.final_summary();
    let [native, wasm, empty] = ["native", "wasm", "wasm-empty-call"].map(|variant| common::median_nanos(&out, "redact-256", variant));
    if let (Some(native), Some(wasm), Some(empty)) = (native, wasm, empty) {
        let rate = |nanos: f64| BATCH as f64 / (nanos / 1e9);
        println!("redact, batches of {BATCH} fixture events, median of criterion's samples:");
        println!("  native (compiled into ferry): {:>10.0} events/s", rate(native));
        println!("  wasm   (plugin, epoch on):    {:>10.0} events/s", rate(wasm));
        println!("  ratio wasm/native:            {:>10.2}", native / wasm);
        println!("  of which the empty call:      {:>10.2} µs per event", empty / 1e3 / BATCH as f64);
        println!("  on {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
}
