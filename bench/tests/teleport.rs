//! `ferry-bench --teleport`: the real job measured end to end, the
//! stand-ins in processes of their own. A small run (2,000 events, one
//! round) must report every variant with a rate above zero, and every event
//! must have reached the Logstash stand-in exactly once in every variant,
//! ferry's (the Python, JavaScript, Go and C examples among them, the Go
//! and C ones built by `ferry plugin build`, so Go and clang must be there
//! as `./test` installs them) and the
//! reference client's alike. `--backlog` must show ferry
//! holding back while the sink refuses or ignores it, and stopping when told.

use serde_json::Value;

/// Runs `ferry-bench` with `args` in a folder of its own and reads its JSON
/// report; a failed run panics with what it printed.
fn bench_json(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry-bench"))
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("ferry-bench runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "ferry-bench {args:?} failed ({}):\n{stderr}\n{stdout}", output.status);
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("the report is not JSON: {err}\n{stdout}\n{stderr}"))
}

#[test]
fn the_teleport_bench_reports_every_variant_with_every_event_delivered_once() {
    let (examples, cache) = (ferry_test_plugins::PLUGIN_DIR, ferry_test_plugins::COMPILE_CACHE);
    std::fs::create_dir_all(cache).expect("the shared compile cache");
    let report =
        bench_json(&["--teleport", "--events", "2000", "--rounds", "1", "--json", "--examples", examples, "--plugin-cache", cache]);
    assert_eq!(report["events"], 2000, "{report}");
    let variants = report["variants"].as_array().expect("a list of variants");
    let names: Vec<&str> = variants.iter().filter_map(|v| v["variant"].as_str()).collect();
    for expected in [
        "reference client",
        "original config, redact (WebAssembly)",
        "original config, no plugin",
        "native sinks, redact (WebAssembly)",
        "native sinks, redact (compiled in)",
        "native sinks, no plugin",
        "single, redact (WebAssembly)",
        "original config, Python tag",
        "original config, JavaScript reshape",
        "original config, Go team-tags",
        "original config, C drop-types",
    ] {
        assert!(names.contains(&expected), "variant `{expected}` missing from {names:?}");
    }
    for variant in variants {
        let name = &variant["variant"];
        assert!(variant["events_per_second"].as_f64().is_some_and(|rate| rate > 0.0), "{name}: no rate\n{variant}");
        assert_eq!(variant["delivered"], 2000, "{name}: every event reached the Logstash stand-in\n{variant}");
        assert_eq!(variant["unique"], 2000, "{name}: each of them once\n{variant}");
        assert!(
            variant["cpu_seconds_per_100k"].as_f64().is_some_and(|cpu| cpu > 0.0),
            "{name}: the child's CPU time was measured\n{variant}"
        );
        assert!(variant["cpu_us_per_request"].as_f64().is_some_and(|cpu| cpu > 0.0), "{name}: and its cost per request\n{variant}");
        assert!(variant["peak_rss_mib"].as_f64().is_some_and(|rss| rss > 1.0), "{name}: the child's peak RSS was measured\n{variant}");
        assert!(variant["requests"].as_u64().is_some_and(|requests| requests > 0), "{name}: requests counted\n{variant}");
    }
    let single = variants.iter().find(|v| v["variant"] == "single, redact (WebAssembly)").expect("the single variant");
    assert_eq!(single["requests"], 2000, "format = \"single\" sends one event per request\n{single}");
    for batched in variants.iter().filter(|v| v["variant"] != "single, redact (WebAssembly)") {
        assert!(
            batched["requests"].as_u64().is_some_and(|requests| requests <= 2000 / 100),
            "arrays of up to 500 events, not one per request\n{batched}"
        );
    }
    let reference = variants.iter().find(|v| v["variant"] == "reference client").expect("the reference client");
    assert_eq!(reference["ratio_to_reference"], 1.0, "{reference}");

    // One row per language, each with its component's size and first-start
    // compile time; the targets' two figures from those rows.
    let languages = report["languages"].as_array().expect("a list of languages");
    let names: Vec<&str> = languages.iter().filter_map(|row| row["language"].as_str()).collect();
    assert_eq!(names, ["Rust", "Python", "JavaScript", "Go", "C"], "{report}");
    for row in languages {
        let language = &row["language"];
        assert!(row["events_per_second"].as_f64().is_some_and(|rate| rate > 0.0), "{language}: a rate\n{row}");
        assert!(row["component_kib"].as_f64().is_some_and(|kib| kib > 10.0), "{language}: the component's size\n{row}");
        assert!(row["first_start_compile_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{language}: its compile time\n{row}");
    }
    let rate = |language: &str| languages.iter().find(|row| row["language"] == language).and_then(|row| row["events_per_second"].as_f64());
    let (c, rust, go) = (rate("C").expect("C"), rate("Rust").expect("Rust"), rate("Go").expect("Go"));
    // The report went through JSON text, whose float parsing may differ from
    // the written value in the last bit: compare within a relative 1e-9.
    let close = |reported: Option<f64>, expected: f64| reported.is_some_and(|value| (value - expected).abs() <= expected.abs() * 1e-9);
    assert!(close(report["targets"]["c_to_rust"].as_f64(), c / rust), "c_to_rust is not C's rate over Rust's\n{report}");
    assert!(close(report["targets"]["go_events_per_second"].as_f64(), go), "go_events_per_second is not Go's rate\n{report}");
}

#[test]
fn the_backlog_bench_shows_ferry_holding_back_from_a_stalled_sink_and_stopping() {
    let report = bench_json(&["--teleport", "--backlog", "--events", "20000", "--backlog-seconds", "3", "--json"]);
    assert_eq!(report["events"], 20000, "{report}");
    let runs = report["runs"].as_array().expect("a list of runs");
    assert_eq!(runs.len(), 2, "a refusing sink and a silent one\n{report}");
    for run in runs {
        let sink = &run["sink"];
        assert!(run["requests"].as_u64().is_some_and(|requests| requests > 0), "{sink}: ferry tried the sink\n{run}");
        assert_eq!(run["delivered"], 0, "{sink}: nothing was accepted\n{run}");
        let read = run["events_read"].as_u64().expect("events read");
        assert!(read > 0 && read < 20000, "{sink}: ferry read some of the log, not all of it ahead of a stalled sink\n{run}");
        assert!(
            run["peak_rss_mib"].as_f64().is_some_and(|rss| rss > 1.0 && rss < 150.0),
            "{sink}: peak RSS measured, under 150 MiB\n{run}"
        );
        assert_eq!(run["stopped_cleanly"], true, "{sink}: ferry stopped on SIGTERM with success\n{run}");
    }
    assert_eq!(runs[0]["refused"], runs[0]["requests"], "the refusing sink refused every request\n{report}");
}
