//! ferry's example plugins (`filter`, `route`, `ecs`, `enrich`), built from
//! `plugins/` for wasm32, loaded through the real runtime and run on the 183
//! fixture events ferry embeds (`fixtures/teleport-events.jsonl`), with the
//! outcome of each checked exactly.

use super::*;
use crate::event::{Event, Outcome, Route};
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The fixture events, as the source would hand them to the chain.
pub(crate) fn fixtures() -> Vec<Event> {
    crate::cli::demo::SAMPLE_EVENTS
        .lines()
        .map(|line| Event::from_json(line.as_bytes().to_vec()).expect("fixture events are valid"))
        .collect()
}

/// Loads the built plugin `name` with `config` (a TOML table body).
pub(crate) fn load(name: &str, config: &str) -> WasmPlugin {
    let spec: PluginSpec = toml::from_str(&format!("[config]\n{config}")).expect("test config is TOML");
    let mut settings = spec.settings();
    settings.name = name.to_owned();
    settings.path = PathBuf::from(ferry_test_plugins::PLUGIN_DIR).join(format!("{name}.wasm"));
    let runtime = Runtime::new(None, Arc::new(Metrics::default())).expect("runtime");
    let (plugin, _) = runtime.load(settings).unwrap_or_else(|err| panic!("{name} loads: {err}"));
    plugin
}

/// Runs all fixtures through `plugin` in batches of 64 (as the pipeline
/// would), pairing each event with its outcome.
fn run(plugin: &mut WasmPlugin) -> Vec<(Event, Outcome)> {
    let events = fixtures();
    let mut outcomes = Vec::new();
    for batch in events.chunks(64) {
        outcomes.extend(plugin.process(batch).expect("the call succeeds"));
    }
    assert_eq!(outcomes.len(), events.len());
    events.into_iter().zip(outcomes).collect()
}

fn by_id<'a>(results: &'a [(Event, Outcome)], id: &str) -> &'a Outcome {
    &results.iter().find(|(event, _)| event.id == id).unwrap_or_else(|| panic!("no fixture {id}")).1
}

fn replaced_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Replace(json) => serde_json::from_slice(json).expect("plugins write JSON"),
        other => panic!("expected a replacement, got {other:?}"),
    }
}

const SESSION_START: &str = "84c07a99-856c-419f-9de5-15560451a116";
const FAILED_LOGIN: &str = "597bf08b-75b2-4dda-a578-e387c5ce9b76";
const GOOD_LOGIN: &str = "173d6b6e-d613-44be-8ff6-f9f893791ef2";

#[test]
fn filter_drops_exactly_the_excluded_types() {
    let mut filter = load("filter", "exclude = [{ type = \"session.*\" }, { type = \"sftp\", code = \"*E\" }]");
    let results = run(&mut filter);
    let mut dropped: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kept = 0;
    for (event, outcome) in &results {
        match outcome {
            Outcome::Drop => *dropped.entry(event.event_type.as_str()).or_default() += 1,
            Outcome::Keep => kept += 1,
            other => panic!("filter only keeps or drops, got {other:?}"),
        }
    }
    let expected: BTreeMap<&str, usize> = BTreeMap::from([
        ("session.command", 1),
        ("session.connect", 1),
        ("session.data", 2),
        ("session.disk", 1),
        ("session.end", 3),
        ("session.join", 1),
        ("session.leave", 1),
        ("session.network", 2),
        ("session.process_exit", 1),
        ("session.recording.access", 1),
        ("session.rejected", 1),
        ("session.start", 1),
        ("session.summarized", 2),
        ("session.upload", 1),
        ("sftp", 18),
    ]);
    assert_eq!(dropped, expected);
    assert_eq!(kept, 183 - 19 - 18);
}

#[test]
fn filter_include_with_a_json_pointer_keeps_only_failures() {
    let mut filter = load("filter", "include = [{ match = [{ pointer = \"/success\", equals = false }] }]");
    let kept: Vec<String> =
        run(&mut filter).into_iter().filter(|(_, outcome)| matches!(outcome, Outcome::Keep)).map(|(event, _)| event.event_type).collect();
    assert_eq!(kept.len(), 10, "{kept:?}");
    assert!(kept.contains(&"user.login".to_owned()) && kept.contains(&"auth".to_owned()));
}

#[test]
fn route_sends_sessions_failed_logins_and_the_rest_to_their_sinks() {
    let mut route = load(
        "route",
        r#"default = "default"
rules = [
  { when = { type = "session.*" }, sinks = "sessions" },
  { when = { type = "user.login", success = false }, sinks = ["security", "default"] },
]"#,
    );
    let results = run(&mut route);
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (_, outcome) in &results {
        let Outcome::Route(Route { sinks, json: None }) = outcome else { panic!("route routes unchanged, got {outcome:?}") };
        *tally.entry(sinks.join("+")).or_default() += 1;
    }
    assert_eq!(tally, BTreeMap::from([("sessions".into(), 19), ("security+default".into(), 2), ("default".into(), 162)]));
    let sinks = |id: &str| match by_id(&results, id) {
        Outcome::Route(route) => route.sinks.to_vec(),
        other => panic!("{other:?}"),
    };
    assert_eq!(sinks(FAILED_LOGIN), ["security", "default"]);
    assert_eq!(sinks(GOOD_LOGIN), ["default"]);
    assert_eq!(sinks(SESSION_START), ["sessions"]);
}

#[test]
fn ecs_maps_every_fixture_and_ferry_keeps_each_events_headers() {
    let mut ecs = load("ecs", "");
    let results = run(&mut ecs);
    for (event, outcome) in &results {
        let Outcome::Replace(json) = outcome else { panic!("{}: every fixture is a Teleport event, got {outcome:?}", event.id) };
        let mapped = Event::from_json(json.clone()).unwrap_or_else(|err| panic!("{}: ferry refuses the mapped event: {err}", event.id));
        assert_eq!(
            (&mapped.id, &mapped.event_type, &mapped.time, mapped.index, &mapped.session_id),
            (&event.id, &event.event_type, &event.time, event.index, &event.session_id),
            "headers changed through the mapping"
        );
    }
    let start = replaced_json(by_id(&results, SESSION_START));
    assert_eq!(start["@timestamp"], "2019-04-22T19:39:26.676Z");
    assert_eq!(
        start["event"],
        json!({"id": SESSION_START, "action": "session.start", "code": "T2000I", "kind": "event", "category": ["session"],
               "type": ["start"], "outcome": "success", "module": "teleport", "dataset": "teleport.audit", "sequence": 0})
    );
    assert_eq!(start["user"], json!({"name": "admin@example.com"}));
    assert_eq!(start["source"], json!({"address": "151.181.228.114:51454", "ip": "151.181.228.114", "port": 51454}));
    assert_eq!(start["teleport"]["login"], "root");
    let failed = replaced_json(by_id(&results, FAILED_LOGIN));
    assert_eq!((&failed["event"]["outcome"], &failed["event"]["category"]), (&json!("failure"), &json!(["authentication"])));
    let sftp = replaced_json(by_id(&results, "9db3b52b-a6b8-5f97-8d9e-6adc3e60567a"));
    assert_eq!(sftp["destination"]["ip"], "::1");
    assert_eq!(sftp["host"]["name"], "im-a-server-hostname");
    assert_eq!(sftp["labels"]["teleport_cluster"], "im-a-cluster-name");
}

#[test]
fn enrich_adds_static_fields_and_the_builtin_severity() {
    let mut enrich = load("enrich", "fields = { \"labels.environment\" = \"prod\" }");
    let results = run(&mut enrich);
    let mut levels: BTreeMap<String, usize> = BTreeMap::new();
    for (event, outcome) in &results {
        let json = replaced_json(outcome);
        assert_eq!(json["labels"]["environment"], "prod", "{}", event.id);
        *levels.entry(json["severity"].as_str().unwrap_or("none").to_owned()).or_default() += 1;
    }
    assert_eq!(levels, BTreeMap::from([("high".into(), 4), ("medium".into(), 48), ("low".into(), 131)]));
    assert_eq!(replaced_json(by_id(&results, FAILED_LOGIN))["severity"], "high");
    assert_eq!(replaced_json(by_id(&results, GOOD_LOGIN))["severity"], "low");
}

#[test]
fn a_bad_example_config_is_refused_in_one_line_naming_plugin_and_key() {
    let runtime = Runtime::new(None, Arc::new(Metrics::default())).expect("runtime");
    let refuse = |name: &str, config: &str| {
        let spec: PluginSpec = toml::from_str(&format!("[config]\n{config}")).expect("TOML");
        let mut settings = spec.settings();
        settings.name = name.to_owned();
        settings.path = PathBuf::from(ferry_test_plugins::PLUGIN_DIR).join(format!("{name}.wasm"));
        runtime.load(settings).err().expect("refused").to_string()
    };
    assert_eq!(
        refuse("filter", "exclude = [{ type = [] }]"),
        "plugin `filter` refused its config: config: `exclude[0].type`: is an empty list; give at least one pattern"
    );
    assert_eq!(
        refuse("route", "rules = [{ sinks = [] }]"),
        "plugin `route` refused its config: config: `rules[0].sinks` is empty; name at least one sink of ferry.toml"
    );
    assert_eq!(
        refuse("ecs", "datset = \"x\""),
        "plugin `ecs` refused its config: config: `datset`: unknown field `datset`, expected `dataset`"
    );
    assert!(
        refuse("enrich", "severity = { enabled = false }").ends_with("config: nothing to add; give `fields`, or leave `severity` enabled")
    );
}
