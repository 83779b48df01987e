//! `ferry-share`: one instance against several sharing the export. A tiny
//! run (one date of 12 chunks of 20 events) must deliver every event exactly
//! once in both runs, each chunk read by one instance, and report every
//! field: events per second of each run, their ratio, chunks per instance,
//! duplicates and the machine. Needs PostgreSQL's server binaries, as
//! `./test` installs them (`FERRY_PG_BIN`).

use serde_json::Value;

#[test]
fn the_share_bench_reports_both_runs_with_every_event_delivered_once() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let out = dir.path().join("share");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry-share"))
        .args(["--dates", "1", "--chunks", "12", "--events-per-chunk", "20", "--delay-ms", "50", "--dir"])
        .arg(&out)
        .current_dir(dir.path())
        .output()
        .expect("ferry-share runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "ferry-share failed ({}):\n{stderr}\n{stdout}", output.status);
    let text = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("report.json is not JSON: {err}\n{text}"));

    assert_eq!(report["events"], 240, "{report}");
    assert!(report["cores"].as_u64().is_some_and(|cores| cores >= 1), "the machine's cores\n{report}");
    let runs = report["runs"].as_array().expect("a list of runs");
    let shape: Vec<(u64, u64)> =
        runs.iter().map(|run| (run["slots"].as_u64().unwrap_or(0), run["instances"].as_u64().unwrap_or(0))).collect();
    assert_eq!(shape, [(1, 1), (3, 3)], "one instance alone, then three sharing\n{report}");
    for run in runs {
        let slots = &run["slots"];
        assert_eq!(run["distinct"], 240, "slots = {slots}: every event arrived\n{run}");
        assert_eq!(run["delivered"], 240, "slots = {slots}: each once\n{run}");
        assert_eq!(run["duplicates"], 0, "slots = {slots}: no duplicate\n{run}");
        assert!(run["events_per_second"].as_f64().is_some_and(|rate| rate > 0.0), "slots = {slots}: a rate\n{run}");
        let chunks = run["chunks_per_instance"].as_object().expect("chunks per instance");
        assert_eq!(chunks.len() as u64, run["instances"].as_u64().unwrap_or(0), "slots = {slots}: every instance is listed\n{run}");
        let read: u64 = chunks.values().filter_map(Value::as_u64).sum();
        assert_eq!(read, 12, "slots = {slots}: each chunk read by one instance\n{run}");
        assert!(run["load_before"].as_str().is_some_and(|load| !load.is_empty()), "slots = {slots}: the load\n{run}");
    }
    let (one, three) = (runs[0]["events_per_second"].as_f64().unwrap_or(0.0), runs[1]["events_per_second"].as_f64().unwrap_or(0.0));
    // The report went through JSON text: compare within a relative 1e-9.
    let ratio = report["ratio"].as_f64().expect("a ratio");
    assert!((ratio - three / one).abs() <= ratio.abs() * 1e-9, "the ratio is the shared run's rate over the single one's\n{report}");

    let markdown = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    for field in ["cores", "load average", "events/s", "duplicates", "chunks per instance", "slots = 1", "slots = 3", "ratio"] {
        assert!(markdown.contains(field), "report.md shows `{field}`:\n{markdown}");
    }
    assert!(stdout.contains(&markdown), "the report is printed too:\n{stdout}");
}
