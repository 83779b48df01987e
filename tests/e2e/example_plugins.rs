//! `ferry plugin new --example NAME`: the example plugins the binary carries,
//! written out with their settings and run as written, so that a user of the
//! binary alone gets the plugins the README offers.

use crate::util::{self, IN, Sandbox};
use serde_json::Value;

const EXAMPLES: [&str; 5] = ["redact", "filter", "route", "ecs", "enrich"];

/// Writes every example into the sandbox's `plugins/` with the real binary.
fn write_examples(sandbox: &Sandbox) {
    for name in EXAMPLES {
        let output = sandbox.run_args(&["plugin", "new", "--example", name, "--dir", "plugins"], None);
        output.assert_success(sandbox);
        for file in [format!("plugins/{name}.wasm"), format!("plugins/{name}.toml")] {
            assert!(sandbox.path(&file).is_file(), "`plugin new --example {name}` wrote no {file}\n{}", sandbox.report(Some(&output)));
            assert!(output.stdout.contains(&file), "the command names {file}\n{}", sandbox.report(Some(&output)));
        }
    }
}

#[test]
fn the_examples_written_by_the_binary_run_as_a_chain_with_their_settings() {
    let sandbox = Sandbox::new("example_plugins", &util::plugins_dir_job(32).text());
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    write_examples(&sandbox);
    // Redact first, while `login` is still a top-level key (ecs moves the
    // original under `teleport`).
    for ext in ["wasm", "toml"] {
        std::fs::rename(sandbox.path(&format!("plugins/redact.{ext}")), sandbox.path(&format!("plugins/00-redact.{ext}")))
            .expect("rename the redact example");
    }
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let report = || sandbox.report(Some(&run));

    let expected: Vec<_> = events.iter().filter(|event| event.event_type != "session.data").collect();
    assert!(expected.len() < events.len(), "the fixtures hold session.data events for the filter to drop");
    let lines = sandbox.out_lines();
    assert_eq!(lines.len(), expected.len(), "filter.toml drops session.data, and only it{}", report());
    let mut masked = 0;
    for (line, input) in lines.iter().zip(&expected) {
        let out: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}{}", report()));
        // (Not the id: an event without a `uid` is known by a hash of its text, which redact changes.)
        assert_eq!(out["event"]["action"], input.value["event"], "ecs maps each event, in order: {line}");
        assert_eq!(out["@timestamp"], input.value["time"], "ecs maps each event, in order: {line}");
        assert_eq!(out["labels"]["environment"], "prod", "enrich.toml's field: {line}");
        assert_eq!(out["event"]["dataset"], "teleport.audit", "ecs.toml's dataset: {line}");
        if input.value.get("login").is_some() {
            assert_eq!(out["teleport"]["login"], "[REDACTED]", "redact.toml masks login: {line}");
            masked += 1;
        }
    }
    assert!(masked > 10, "the fixtures hold logins to mask");
}

#[test]
fn an_example_never_overwrites_a_file() {
    let sandbox = Sandbox::new("example_plugins_exists", "");
    sandbox.write("plugins/filter.toml", b"[config]\nexclude = [{ type = \"print\" }]\n");
    let output = sandbox.run_args(&["plugin", "new", "--example", "filter", "--dir", "plugins"], None);
    let error = output.one_line_error(&sandbox);
    assert!(error.contains("filter.toml") && error.contains("already exists"), "{error}");
    assert!(!sandbox.path("plugins/filter.wasm").exists(), "nothing written when one file exists");
    assert_eq!(sandbox.read("plugins/filter.toml"), "[config]\nexclude = [{ type = \"print\" }]\n");
}
