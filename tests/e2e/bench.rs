//! `ferry bench --teleport`: the real job measured end to end. A small run
//! (2,000 events, one round) must report every variant with a rate above
//! zero, and every event must have reached the Logstash stand-in exactly
//! once in every variant, ferry's and the reference client's alike.

use crate::util::Sandbox;
use serde_json::Value;

#[test]
fn the_teleport_bench_reports_every_variant_with_every_event_delivered_once() {
    let sandbox = Sandbox::new("bench-teleport", "");
    let output = sandbox.run_args(&["bench", "--teleport", "--events", "2000", "--rounds", "1", "--json"], None);
    output.assert_success(&sandbox);
    let report: Value = serde_json::from_str(&output.stdout).unwrap_or_else(|err| panic!("the report is not JSON: {err}\n{}", sandbox.report(Some(&output))));
    assert_eq!(report["events"], 2000, "{report}");
    let variants = report["variants"].as_array().expect("a list of variants");
    let names: Vec<&str> = variants.iter().filter_map(|v| v["variant"].as_str()).collect();
    for expected in [
        "reference client",
        "original config, redact (WebAssembly)",
        "original config, no plugin",
        "native sinks, redact (WebAssembly)",
        "native sinks, no plugin",
        "single, redact (WebAssembly)",
    ] {
        assert!(names.contains(&expected), "variant `{expected}` missing from {names:?}");
    }
    for variant in variants {
        let name = &variant["variant"];
        assert!(variant["events_per_second"].as_f64().is_some_and(|rate| rate > 0.0), "{name}: no rate\n{variant}");
        assert_eq!(variant["delivered"], 2000, "{name}: every event reached the Logstash stand-in\n{variant}");
        assert_eq!(variant["unique"], 2000, "{name}: each of them once\n{variant}");
        assert!(variant["cpu_seconds_per_100k"].as_f64().is_some_and(|cpu| cpu > 0.0), "{name}: the child's CPU time was measured\n{variant}");
        assert!(variant["peak_rss_mib"].as_f64().is_some_and(|rss| rss > 1.0), "{name}: the child's peak RSS was measured\n{variant}");
    }
    let single = variants.iter().find(|v| v["variant"] == "single, redact (WebAssembly)").expect("the single variant");
    assert_eq!(single["requests"], 2000, "format = \"single\" sends one event per request\n{single}");
    let reference = variants.iter().find(|v| v["variant"] == "reference client").expect("the reference client");
    assert_eq!(reference["ratio_to_reference"], 1.0, "{reference}");
}
