//! The four example plugins chained through the real binary: filter → ecs →
//! enrich → route, into three file sinks, on the 183 fixture events. Each
//! sink must hold exactly the events the rules send it, mapped to ECS,
//! enriched, with the original Teleport event intact under `teleport`.

use crate::util::{self, Config, FixtureEvent, IN, Plugin, Sandbox, toml_value};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// The chain over the fixtures to their end, into the sinks `default`,
/// `sessions` and `security`; the plugins are copied into `wasm/`.
fn config() -> String {
    let filter = Plugin::new(Path::new("wasm/filter.wasm"))
        .set("config.exclude", toml_value(r#"[{ type = "session.data" }, { type = "sftp", code = "*I" }]"#));
    let enrich = Plugin::new(Path::new("wasm/enrich.wasm")).set("config.fields", toml_value(r#"{ "labels.environment" = "e2e" }"#));
    let route = Plugin::new(Path::new("wasm/route.wasm")).set("config.default", "default").set(
        "config.rules",
        toml_value(
            r#"[
                { when = { type = "session.*" }, sinks = "sessions" },
                { when = { type = "user.login", success = false }, sinks = ["security", "default"] },
            ]"#,
        ),
    );
    Config::file_job(false)
        .pipeline(32, "20ms")
        .plugin(filter)
        .plugin(Plugin::new(Path::new("wasm/ecs.wasm")))
        .plugin(enrich)
        .plugin(route)
        .file_sink("sessions", "sessions.jsonl")
        .file_sink("security", "security.jsonl")
        .text()
}

/// What the filter keeps: all but `session.data` and successful `sftp`.
fn kept(event: &FixtureEvent) -> bool {
    let code = event.value["code"].as_str().unwrap_or_default();
    !(event.event_type == "session.data" || event.event_type == "sftp" && code.ends_with('I'))
}

fn failed_login(event: &FixtureEvent) -> bool {
    event.event_type == "user.login" && event.value["success"] == Value::Bool(false)
}

#[test]
fn filter_ecs_enrich_route_fill_each_sink_with_exactly_its_events() {
    let sandbox = Sandbox::new("example_chain", &config());
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    for name in ["filter", "ecs", "enrich", "route"] {
        let wasm = std::fs::read(util::plugin(name))
            .unwrap_or_else(|err| panic!("{name}.wasm is built by ferry-test-plugins (tests/plugins-build): {err}"));
        sandbox.write(&format!("wasm/{name}.wasm"), &wasm);
    }
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let report = || sandbox.report(Some(&run));

    let expect =
        |wanted: &dyn Fn(&FixtureEvent) -> bool| -> Vec<&FixtureEvent> { events.iter().filter(|e| kept(e) && wanted(e)).collect() };
    let sessions = expect(&|e| e.event_type.starts_with("session."));
    let security = expect(&failed_login);
    let default = expect(&|e| !e.event_type.starts_with("session."));
    assert_eq!((sessions.len(), security.len(), default.len()), (17, 2, 146), "the fixtures changed");

    for (file, expected) in [("sessions.jsonl", &sessions), ("security.jsonl", &security), ("out.jsonl", &default)] {
        let lines: Vec<String> = sandbox.read(file).lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), expected.len(), "{file} holds {} events, expected {}{}", lines.len(), expected.len(), report());
        let mut seen = BTreeSet::new();
        for (line, input) in lines.iter().zip(expected.iter()) {
            let out: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{file}: not JSON ({err}): {line}{}", report()));
            // In source order, each the ECS form of its input, enriched.
            assert_eq!(out["teleport"], input.value, "{file}: events out of order or original changed{}", report());
            assert_eq!(out["event"]["id"], Value::from(input.id.as_str()), "{file}: {line}");
            assert_eq!(out["event"]["action"], Value::from(input.event_type.as_str()), "{file}: {line}");
            assert_eq!(out["@timestamp"], input.value["time"], "{file}: {line}");
            assert_eq!(out["labels"]["environment"], "e2e", "{file}: {line}");
            let severity = out["severity"].as_str().unwrap_or("missing");
            if failed_login(input) {
                assert_eq!(severity, "high", "{file}: a failed login is high: {line}");
            } else {
                assert!(["low", "medium", "high"].contains(&severity), "{file}: severity {severity:?}: {line}");
            }
            seen.insert(input.id.clone());
        }
        assert_eq!(seen.len(), expected.len(), "{file}: an event came twice{}", report());
    }
    let security_lines = sandbox.read("security.jsonl");
    for line in security_lines.lines() {
        let out: Value = serde_json::from_str(line).expect("checked above");
        assert_eq!((&out["event"]["outcome"], &out["severity"]), (&Value::from("failure"), &Value::from("high")), "{line}");
    }
    assert!(sandbox.dead_letters().is_empty(), "nothing should be dead-lettered{}", report());
}
