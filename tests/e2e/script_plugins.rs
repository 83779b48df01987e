//! The Python and JavaScript example plugins through the real binary: every
//! fixture event from a file source, through the plugin (loaded from a
//! plugins folder with its `NAME.toml`), into file sinks, and the exact
//! output checked against what the plugin's code says it does.
//!
//! The runs share one compile cache (the storage folder's `plugin-cache` is
//! linked to it), so each 12–18 MB component is compiled once per checkout,
//! not once per run.

use crate::util::{self, FixtureEvent, IN, OUT, Sandbox};
use serde_json::Value;

/// A sandbox whose plugins folder holds the built plugin `name` with
/// `settings` as its `NAME.toml`, and whose compile cache is the shared one.
fn sandbox_with(scenario: &str, config: &str, name: &str, settings: &str) -> Sandbox {
    let sandbox = Sandbox::new(scenario, config);
    sandbox.write(IN, util::jsonl(&util::fixtures()).as_bytes());
    let wasm = std::fs::read(util::plugin(name))
        .unwrap_or_else(|err| panic!("the {name} plugin is built by ferry-test-plugins (tests/plugins-build): {err}"));
    sandbox.write(&format!("plugins/{name}.wasm"), &wasm);
    sandbox.write(&format!("plugins/{name}.toml"), settings.as_bytes());
    let shared = std::path::Path::new(ferry_test_plugins::COMPILE_CACHE);
    std::fs::create_dir_all(shared).expect("shared compile cache");
    std::fs::create_dir_all(sandbox.path("storage")).expect("storage");
    std::os::unix::fs::symlink(shared, sandbox.path("storage/plugin-cache")).expect("link the compile cache");
    sandbox
}

#[test]
fn python_tag_sets_fields_and_drops_types() {
    let config = util::plugins_dir_job(64).text();
    let settings = "[config]\ntags = { pipeline = \"ferry\" }\ndrop = [\"sftp\", \"desktop.*\"]\n";
    let sandbox = sandbox_with("python_tag", &config, "tag", settings);
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let report = || sandbox.report(Some(&run));

    // Every event whose type is not dropped, in order, with the tag appended
    // as the last field: the fixtures have no `pipeline` field, and their
    // lines are exactly what Python's compact JSON writes.
    let events = util::fixtures();
    let dropped = |e: &FixtureEvent| e.event_type == "sftp" || e.event_type.starts_with("desktop.");
    assert!(events.iter().all(|e| e.value.get("pipeline").is_none()));
    let expected: Vec<String> = events
        .iter()
        .filter(|e| !dropped(e))
        .map(|e| format!("{},\"pipeline\":\"ferry\"}}", e.line.strip_suffix('}').expect("a JSON object")))
        .collect();
    let lines = sandbox.out_lines();
    assert_eq!(lines.len(), events.len() - 44, "36 sftp and 8 desktop.* events dropped{}", report());
    for (n, (line, expected)) in lines.iter().zip(&expected).enumerate() {
        assert_eq!(line, expected, "output line {n}{}", report());
    }
    assert!(sandbox.dead_letters().is_empty(), "nothing dead-lettered{}", report());
}

#[test]
fn javascript_reshape_renames_lowercases_and_routes_sessions() {
    let config = util::plugins_dir_job(64).file_sink("sessions", "sessions.jsonl").text();
    let settings = "[config]\nrename = { \"addr.remote\" = \"remote_addr\" }\nlowercase = [\"user\"]\n\
                    routes = [{ types = \"session.*\", sinks = [\"sessions\"] }]\n";
    let sandbox = sandbox_with("js_reshape", &config, "reshape", settings);
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let report = || sandbox.report(Some(&run));

    let events = util::fixtures();
    let is_session = |e: &&FixtureEvent| e.event_type.starts_with("session.");
    let check = |file: &str, expected: Vec<&FixtureEvent>| {
        let lines = util::complete_lines(&sandbox.read(file));
        assert_eq!(lines.len(), expected.len(), "{file}: one line per event{}", report());
        for (n, (line, input)) in lines.iter().zip(expected).enumerate() {
            let (value, keys) = reshaped(input);
            if value == input.value {
                assert_eq!(line, &input.line, "{file} line {n}: nothing to change, so the bytes are the input's{}", report());
            } else {
                let out: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{file} line {n} is not JSON ({err}){}", report()));
                assert_eq!(out, value, "{file} line {n}{}", report());
                assert_eq!(util::top_level_keys(line), keys, "{file} line {n}: fields keep their places{}", report());
            }
        }
    };
    check(OUT, events.iter().filter(|e| !is_session(e)).collect());
    check("sessions.jsonl", events.iter().filter(is_session).collect());
    let renamed = events.iter().filter(|e| e.value.get("addr.remote").is_some()).count();
    assert!(renamed > 50, "the fixtures should exercise the rename: {renamed}");
    assert!(sandbox.dead_letters().is_empty(), "nothing dead-lettered{}", report());
}

/// What reshape's config above makes of an event: the value, and its keys in order.
fn reshaped(input: &FixtureEvent) -> (Value, Vec<String>) {
    let mut value = input.value.clone();
    let object = value.as_object_mut().expect("an object");
    if let Some(remote) = object.remove("addr.remote") {
        object.insert("remote_addr".into(), remote);
    }
    if let Some(Value::String(user)) = object.get_mut("user") {
        *user = user.to_lowercase();
    }
    let keys = util::top_level_keys(&input.line)
        .into_iter()
        .map(|key| if key == "addr.remote" { "remote_addr".to_owned() } else { key })
        .collect();
    (value, keys)
}

#[test]
fn plugin_new_scaffolds_once_and_refuses_to_overwrite() {
    let sandbox = Sandbox::new("plugin_new", "");
    let new = || {
        let mut command = std::process::Command::new(util::FERRY);
        command.args(["plugin", "new", "edge-tagger", "--lang", "js", "--dir"]).arg(sandbox.root());
        sandbox.run_command(command)
    };
    let first = new();
    first.assert_success(&sandbox);
    for file in ["app.js", "package.json", "README.md", "wit/plugin.wit"] {
        assert!(sandbox.path("edge-tagger").join(file).is_file(), "{file} missing{}", sandbox.report(Some(&first)));
    }
    assert!(first.stdout.contains("npm run build"), "the build steps are printed{}", sandbox.report(Some(&first)));
    let package = sandbox.read("edge-tagger/package.json");
    assert!(package.contains("--out edge-tagger.wasm"), "{package}");
    let again = new();
    let message = again.one_line_error(&sandbox);
    assert_eq!(message, format!("{} already exists; choose another name or --dir", sandbox.path("edge-tagger").display()));
}
