//! The Python and JavaScript plugins through the real runtime: each example
//! changes the fixture events as its code says, and the sandbox holds for
//! CPython and StarlingMonkey as it does for Rust guests (the probes report
//! what they could reach).
//!
//! All these tests share one compile cache under the target folder, so each
//! 12–18 MB component is compiled by Cranelift once, not once per test.

use super::*;
use crate::event::{Event, Outcome};
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Loads are serialised so that two tests never compile the same component
/// at once; after the first, a load reads the cache in milliseconds.
static LOADING: Mutex<()> = Mutex::new(());

fn load(file: &str, settings_toml: &str, metrics: Arc<Metrics>) -> Result<(WasmPlugin, Runtime), PluginError> {
    let path = PathBuf::from(ferry_test_plugins::PLUGIN_DIR).join(format!("{file}.wasm"));
    load_path(&path, file, settings_toml, metrics)
}

/// Loads the component at `path` as plugin `name` with settings from
/// `settings_toml`, through a runtime on the shared test compile cache. The
/// runtime is returned too: its epoch ticker, which enforces deadlines,
/// stops when it is dropped.
pub(crate) fn load_path(path: &Path, name: &str, settings_toml: &str, metrics: Arc<Metrics>) -> Result<(WasmPlugin, Runtime), PluginError> {
    let spec: PluginSpec = toml::from_str(settings_toml).expect("spec");
    let mut settings = spec.settings();
    settings.name = name.to_owned();
    settings.path = path.to_owned();
    let _serial = LOADING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let runtime = Runtime::new(Some(PathBuf::from(ferry_test_plugins::COMPILE_CACHE)), metrics).expect("runtime");
    runtime.load(settings).map(|(plugin, _)| (plugin, runtime))
}

/// The fixture events (`fixtures/teleport-events.jsonl`).
pub(crate) fn fixtures() -> Vec<Event> {
    crate::cli::demo::SAMPLE_EVENTS
        .lines()
        .map(|line| Event::from_json(line.as_bytes().to_vec()).expect("fixture events are valid"))
        .collect()
}

fn parse(json: &[u8]) -> Value {
    serde_json::from_slice(json).unwrap_or_else(|err| panic!("not JSON ({err}): {}", String::from_utf8_lossy(json)))
}

#[test]
fn python_tag_sets_its_tags_and_drops_the_configured_types() {
    let metrics = Arc::new(Metrics::default());
    let settings = "[config]\ntags = { pipeline = \"ferry\", cluster_name = \"renamed\" }\ndrop = [\"sftp\", \"desktop.*\"]";
    let (mut plugin, _runtime) = load("tag", settings, metrics.clone()).expect("tag loads");
    let events = fixtures();
    let outcomes = plugin.process(&events).expect("runs");
    assert_eq!(outcomes.len(), events.len());
    let mut dropped = 0;
    for (event, outcome) in events.iter().zip(&outcomes) {
        let dropped_type = event.event_type == "sftp" || event.event_type.starts_with("desktop.");
        match outcome {
            Outcome::Drop if dropped_type => dropped += 1,
            Outcome::Replace(json) if !dropped_type => {
                let mut expected = parse(&event.json);
                expected["pipeline"] = json!("ferry");
                expected["cluster_name"] = json!("renamed");
                assert_eq!(parse(json), expected, "event {}", event.id);
            }
            other => panic!("event {} of type {}: unexpected {other:?}", event.id, event.event_type),
        }
    }
    assert_eq!(dropped, 36 + 8, "36 sftp and 8 desktop.* fixture events");
    assert_eq!(metrics.get("ferry_plugin_counter_total", &[("plugin", "tag"), ("name", "dropped_by_type")]), dropped);
    // The type is the top-level `event`, however the text reads.
    let odd = |json: &str| Event::from_json(json.as_bytes().to_vec()).expect("valid");
    let batch =
        [odd(r#"{"uid":"a","meta":{"event":"sftp"}}"#), odd(r#"{"uid":"b","ev\u0065nt":"sftp"}"#), odd(r#"{"uid":"c","event":"exec"}"#)];
    let outcomes = plugin.process(&batch).expect("runs");
    assert!(matches!(outcomes.as_slice(), [Outcome::Replace(_), Outcome::Drop, Outcome::Replace(_)]), "{outcomes:?}");
    let batch = [odd(r#"{"uid":"a","meta":{"event":"sftp"}}"#), odd(r#"{"uid":"c","event":"exec"}"#)];
    let outcomes = plugin.process(&batch).expect("runs");
    assert!(matches!(outcomes.as_slice(), [Outcome::Replace(_), Outcome::Replace(_)]), "{outcomes:?}");
}

#[test]
fn javascript_reshape_renames_lowercases_and_routes() {
    let metrics = Arc::new(Metrics::default());
    let settings = "[config]\nrename = { \"addr.remote\" = \"remote_addr\" }\nlowercase = [\"user\"]\n\
                    routes = [{ types = \"session.*\", sinks = [\"sessions\", \"archive\"] }]";
    let (mut plugin, _runtime) = load("reshape", settings, metrics.clone()).expect("reshape loads");
    let events = fixtures();
    let outcomes = plugin.process(&events).expect("runs");
    assert_eq!(outcomes.len(), events.len());
    let (mut routed, mut replaced) = (0, 0);
    for (event, outcome) in events.iter().zip(&outcomes) {
        let input = parse(&event.json);
        let mut expected = input.clone();
        if let Some(remote) = expected.as_object_mut().and_then(|object| object.remove("addr.remote")) {
            expected["remote_addr"] = remote;
        }
        if let Some(user) = expected.get("user").and_then(Value::as_str) {
            expected["user"] = json!(user.to_lowercase());
        }
        let changed = expected != input;
        let json = match outcome {
            Outcome::Route(route) if event.event_type.starts_with("session.") => {
                assert_eq!(route.sinks.to_vec(), ["sessions", "archive"], "event {}", event.id);
                routed += 1;
                route.json.as_deref()
            }
            Outcome::Replace(json) if !event.event_type.starts_with("session.") => Some(json.as_slice()),
            Outcome::Keep if !event.event_type.starts_with("session.") => None,
            other => panic!("event {} of type {}: unexpected {other:?}", event.id, event.event_type),
        };
        match json {
            Some(json) => {
                assert!(changed, "event {} has nothing to change, yet came back changed", event.id);
                assert_eq!(parse(json), expected, "event {}", event.id);
                replaced += 1;
            }
            None => assert!(!changed, "event {} should have changed", event.id),
        }
    }
    assert_eq!(routed, 19, "the fixtures hold 19 session.* events");
    // A nested field of the renamed name stays as it is (the plugin copies
    // the object key by key when the name occurs more than once).
    let nested = br#"{"event":"x","addr.remote":"a","nested":{"addr.remote":"b"},"note":"\"addr.remote\":","user":"BOB"}"#;
    let outcomes = plugin.process(&[Event::from_json(nested.to_vec()).expect("valid")]).expect("runs");
    let [Outcome::Replace(json)] = outcomes.as_slice() else { panic!("{outcomes:?}") };
    assert_eq!(
        String::from_utf8_lossy(json),
        r#"{"event":"x","remote_addr":"a","nested":{"addr.remote":"b"},"note":"\"addr.remote\":","user":"bob"}"#
    );
    // A plain event is edited in its own text: everything else stays as written.
    let plain = br#"{"event":"y","user":"ALICE", "addr.remote":"1.2.3.4:5","n":1.0e3}"#;
    let outcomes = plugin.process(&[Event::from_json(plain.to_vec()).expect("valid")]).expect("runs");
    let [Outcome::Replace(json)] = outcomes.as_slice() else { panic!("{outcomes:?}") };
    assert_eq!(String::from_utf8_lossy(json), r#"{"event":"y","user":"alice", "remote_addr":"1.2.3.4:5","n":1.0e3}"#);
    assert!(replaced > 50, "the fixtures should exercise the renames: only {replaced} changed");
    assert_eq!(metrics.get("ferry_plugin_counter_total", &[("plugin", "reshape"), ("name", "routed")]), routed);
}

#[test]
fn script_plugins_refuse_a_bad_config_in_one_line() {
    let metrics = Arc::new(Metrics::default());
    let python = load("tag", "[config]\ntagz = {}", metrics.clone()).err().expect("refused");
    assert_eq!(python.to_string(), "plugin `tag` refused its config: unknown config key `tagz` (expected `tags` or `drop`)");
    let js = load("reshape", "[config]\nroutes = [{ types = \"x\", sinks = [] }]", metrics).err().expect("refused");
    assert_eq!(js.to_string(), "plugin `reshape` refused its config: `routes[0].sinks` must name at least one sink");
}

#[test]
fn cpython_gets_no_files_no_network_no_environment_and_a_frozen_clock() {
    // SAFETY (test only): set before the plugin runs, read by nothing else.
    unsafe { std::env::set_var("FERRY_TEST_SECRET", "hunter2") };
    let (mut probe, _runtime) =
        load("probe-py", "[config]\nmode = \"observe\"", Arc::new(Metrics::default())).expect("CPython starts in the sandbox");
    let outcomes = probe.process(&fixtures()[..1]).expect("runs");
    let [Outcome::Fail(report)] = outcomes.as_slice() else { panic!("{outcomes:?}") };
    let report: Value = serde_json::from_str(report).expect("report");
    assert_eq!(
        report,
        json!({"file": "denied: FileNotFoundError", "listdir": "denied: FileNotFoundError", "env": {}, "net": "denied: PermissionError", "time": 0.0, "random": true}),
    );
}

#[test]
fn starlingmonkey_starts_with_a_frozen_clock() {
    let (mut probe, _runtime) =
        load("probe-js", "[config]\nmode = \"observe\"", Arc::new(Metrics::default())).expect("StarlingMonkey starts in the sandbox");
    let outcomes = probe.process(&fixtures()[..1]).expect("runs");
    let [Outcome::Fail(report)] = outcomes.as_slice() else { panic!("{outcomes:?}") };
    let report: Value = serde_json::from_str(report).expect("report");
    assert_eq!(report, json!({"random": true, "time": 0}));
}

#[test]
fn script_plugins_are_cut_at_the_deadline_and_the_memory_cap() {
    for probe in ["probe-py", "probe-js"] {
        let limits = "deadline = \"300ms\"\nmax-memory = \"64MiB\"\n";
        let (mut looping, _runtime) =
            load(probe, &format!("{limits}[config]\nmode = \"loop\""), Arc::new(Metrics::default())).expect("loads");
        for _ in 0..2 {
            // The second call runs on a fresh instance: the first trapped.
            let err = looping.process(&fixtures()[..1]).expect_err("loops");
            assert_eq!(err.to_string(), format!("plugin `{probe}` failed: ran past its deadline of 300ms (deadline)"));
        }
        let (mut hoarding, _hoarding_runtime) =
            load(probe, &format!("{limits}[config]\nmode = \"hoard\""), Arc::new(Metrics::default())).expect("loads");
        let err = hoarding.process(&fixtures()[..1]).expect_err("hoards");
        assert!(err.to_string().contains("memory limit exceeded"), "{probe}: {err}");
    }
}
