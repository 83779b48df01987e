//! The whole path with a real plugin: every fixture event through the redact
//! plugin (loaded from a plugins folder) into a file sink, then a second run
//! that must deliver nothing because the cursor is at the end.

use crate::util::{self, FixtureEvent, IN, OUT, Sandbox};
use serde_json::Value;

const FIELDS: [&str; 2] = ["login", "addr.remote"];
const REPLACEMENT: &str = "***";

/// The plugins folder over the fixtures to their end, in batches of 16.
fn config() -> String {
    util::plugins_dir_job(16).text()
}

/// The value at a redact field path: a top-level key as written first, else
/// the path split on dots into nested keys (the plugin's documented rule).
fn field_mut<'a>(event: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    if event.get(path).is_some() {
        return event.get_mut(path);
    }
    let mut here = event;
    for key in path.split('.') {
        here = here.get_mut(key)?;
    }
    Some(here)
}

fn field<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    event.get(path).or_else(|| path.split('.').try_fold(event, |here, key| here.get(key)))
}

#[test]
fn redacts_every_event_once_and_a_second_run_delivers_nothing() {
    let sandbox = Sandbox::new("redact_file", &config());
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let wasm = std::fs::read(util::plugin("redact")).expect("the redact plugin is built by ferry-test-plugins (tests/plugins-build)");
    sandbox.write("plugins/redact.wasm", &wasm);
    sandbox.write("plugins/redact.toml", format!("[config]\nfields = {FIELDS:?}\nreplacement = {REPLACEMENT:?}\n").as_bytes());

    let first = sandbox.run("start");
    first.assert_success(&sandbox);
    let report = || sandbox.report(Some(&first));
    let lines = sandbox.out_lines();
    assert_eq!(lines.len(), events.len(), "one output line per input event{}", report());

    // What each output line should be: the input with the fields masked. The
    // output keeps the input order (one sink, batches delivered in order), but
    // ids are matched by content so that a reordering reads as such.
    let redacted = |event: &FixtureEvent| {
        let mut value = event.value.clone();
        for path in FIELDS {
            if let Some(slot) = field_mut(&mut value, path) {
                *slot = Value::from(REPLACEMENT);
            }
        }
        value
    };
    let by_expected: Vec<(Value, &FixtureEvent)> = events.iter().map(|e| (redacted(e), e)).collect();
    let mut seen = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let out: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("output line {n} is not JSON ({err}): {line}{}", report()));
        let Some((_, input)) = by_expected.iter().find(|(expected, _)| *expected == out) else {
            panic!("output line {n} matches no input event with {FIELDS:?} masked: {line}{}", report());
        };
        let had_fields: Vec<&str> = FIELDS.iter().copied().filter(|path| field(&input.value, path).is_some()).collect();
        for path in &had_fields {
            assert_eq!(field(&out, path), Some(&Value::from(REPLACEMENT)), "`{path}` not masked in output line {n}: {line}{}", report());
        }
        // Put the masked values back: the event must be its input again.
        let mut restored = out.clone();
        for path in &had_fields {
            let original = field(&input.value, path).cloned().unwrap_or(Value::Null);
            if let Some(slot) = field_mut(&mut restored, path) {
                *slot = original;
            }
        }
        assert_eq!(restored, input.value, "output line {n} differs from its input beyond the masked fields{}", report());
        if had_fields.is_empty() {
            assert_eq!(line, &input.line, "output line {n} has no field to mask, so it must be byte-identical to its input{}", report());
        } else {
            assert_eq!(
                util::top_level_keys(line),
                util::top_level_keys(&input.line),
                "output line {n} was re-serialised with its keys in another order{}",
                report()
            );
        }
        seen.push(input.id.as_str());
    }
    let counts = util::tally(seen.iter().copied());
    let missing: Vec<&str> = events.iter().map(|e| e.id.as_str()).filter(|id| !counts.contains_key(id)).collect();
    let repeated: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(missing.is_empty() && repeated.is_empty(), "every id exactly once; missing {missing:?}, repeated {repeated:?}{}", report());
    let in_order: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert!(seen == in_order, "the sink must receive events in source order{}", report());
    let masked = events.iter().filter(|e| FIELDS.iter().any(|path| field(&e.value, path).is_some())).count();
    assert!(masked > 50, "the fixtures should exercise the plugin: only {masked} events have {FIELDS:?}");

    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(sandbox.path(OUT)).expect("output file").permissions());
    assert_eq!(mode & 0o777, 0o600, "the file sink creates its file for its owner only{}", report());

    // The cursor is at the end of the file: a second run delivers nothing.
    let out_before = sandbox.read(OUT);
    let second = sandbox.run("start");
    second.assert_success(&sandbox);
    assert_eq!(
        sandbox.out_count(),
        lines.len(),
        "a second run over the same input must deliver nothing new{}",
        sandbox.report(Some(&second))
    );
    assert_eq!(sandbox.read(OUT), out_before, "the output changed on the second run{}", sandbox.report(Some(&second)));
    assert!(sandbox.dead_letters().is_empty(), "nothing should be dead-lettered{}", sandbox.report(Some(&second)));
}
