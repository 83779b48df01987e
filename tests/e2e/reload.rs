//! Hot reload: ferry follows a growing input file while the test changes its
//! plugins folder (or sends SIGHUP). Each chunk of events is appended only
//! after the reload it should see has been logged, so every output line can
//! be checked against the plugin that should have made it; at the end every
//! input event must be in the sink exactly once.

use crate::util::{self, Config, DEADLINE, FixtureEvent, IN, Running, Sandbox};
use serde_json::Value;

/// The plugins folder over `in.jsonl`, followed and polled every 20 ms,
/// into `out.jsonl`, in batches of 8.
fn config() -> Config {
    Config::file_job(true).set("plugins-dir", "plugins").pipeline(8, "20ms").set("source.file.poll-interval", "20ms")
}

const RELOADED: &str = "Plugin chain reloaded";
const REFUSED: &str = "Reload refused";

/// One run of ferry over a folder whose plugin is `plugins/p.wasm`.
struct Live {
    sandbox: Sandbox,
    ferry: Running,
    events: Vec<FixtureEvent>,
    /// How many fixture events were appended so far.
    sent: usize,
    /// Every output line so far, in order, as the scenario checked it.
    out: Vec<Value>,
}

impl Live {
    fn start(scenario: &str, wasm: &str, settings: &str) -> Live {
        let sandbox = Sandbox::new(scenario, &config().text());
        sandbox.write(IN, b"");
        sandbox.write("plugins/p.toml", settings.as_bytes());
        sandbox.write("plugins/p.wasm", &built(wasm));
        let ferry = sandbox.spawn_start();
        let live = Live { sandbox, ferry, events: util::fixtures(), sent: 0, out: Vec::new() };
        live.wait_stderr("Starting the pipeline.", 1);
        live
    }

    fn report(&self) -> String {
        self.sandbox.report(Some(&self.ferry.snapshot()))
    }

    /// Waits until `text` is on `count` lines of ferry's stderr.
    fn wait_stderr(&self, text: &str, count: usize) {
        util::wait_for(
            &format!("{count} stderr lines with `{text}`"),
            DEADLINE,
            || self.ferry.stderr_count(text) >= count,
            || self.report(),
        );
    }

    /// Appends the next `n` fixture events and waits until the sink holds
    /// every event sent so far; returns the output lines of these `n`.
    fn send(&mut self, n: usize) -> (Vec<FixtureEvent>, Vec<Value>) {
        let chunk: Vec<FixtureEvent> = self.events[self.sent..self.sent + n].to_vec();
        self.sandbox.append(IN, util::jsonl(&chunk).as_bytes());
        self.delivered(chunk)
    }

    /// Like [`Live::send`], but appends the events one every 25 ms from
    /// another thread while `during` runs: events flow while it acts.
    fn trickle(&mut self, n: usize, during: impl FnOnce(&Live)) -> (Vec<FixtureEvent>, Vec<Value>) {
        let chunk: Vec<FixtureEvent> = self.events[self.sent..self.sent + n].to_vec();
        let input = self.sandbox.path(IN);
        let lines: Vec<String> = chunk.iter().map(|event| format!("{}\n", event.line)).collect();
        let writer = std::thread::spawn(move || {
            for line in lines {
                util::append(&input, line.as_bytes());
                // The writer's pace: the time is the point, not a wait.
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        });
        during(self);
        writer.join().expect("the writer thread panicked");
        self.delivered(chunk)
    }

    /// Waits until the sink holds every event sent so far and `chunk`, just
    /// appended; returns the output lines of `chunk`.
    fn delivered(&mut self, chunk: Vec<FixtureEvent>) -> (Vec<FixtureEvent>, Vec<Value>) {
        let n = chunk.len();
        self.sent += n;
        let sent = self.sent;
        util::wait_for(&format!("{sent} events in the sink"), DEADLINE, || self.sandbox.out_count() >= sent, || self.report());
        let lines = self.sandbox.out_lines();
        assert_eq!(lines.len(), sent, "more output than input{}", self.report());
        let values: Vec<Value> = lines[sent - n..]
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("output is not JSON ({err}): {line}{}", self.report())))
            .collect();
        self.out.extend(values.iter().cloned());
        (chunk, values)
    }

    /// Replaces the plugin by rename, as a deployment tool would: its
    /// settings first, then the component.
    fn replace_plugin(&self, wasm: &[u8], settings: &str) {
        self.sandbox.write("plugins/p.toml", settings.as_bytes());
        self.sandbox.write("plugins/p.wasm.partial", wasm);
        std::fs::rename(self.sandbox.path("plugins/p.wasm.partial"), self.sandbox.path("plugins/p.wasm")).expect("rename");
    }

    /// Stops ferry with SIGTERM and checks that the sink holds exactly the
    /// lines each chunk was checked to produce: every input event once, in
    /// input order, nothing sent again at shutdown.
    fn stop_and_count(mut self) {
        self.ferry.terminate();
        let output = self.ferry.wait(&self.sandbox, DEADLINE);
        output.assert_success(&self.sandbox);
        let out: Vec<Value> = self.sandbox.out_lines().iter().map(|line| serde_json::from_str(line).unwrap_or(Value::Null)).collect();
        assert_eq!(out.len(), self.sent, "one output line per input event{}", self.sandbox.report(Some(&output)));
        assert!(out == self.out, "the output changed after it was checked{}", self.sandbox.report(Some(&output)));
        let summary = format!("{} events in, {} delivered, 0 dropped, 0 dead-lettered", self.sent, self.sent);
        assert!(output.stderr.contains(&summary), "the summary should read `{summary}`{}", self.sandbox.report(Some(&output)));
        for line in output.stderr_lines().iter().filter(|line| line.contains(REFUSED)) {
            assert!(line.contains("plugin=p ") && line.contains("p.wasm"), "a refusal names the plugin and its file: {line}");
        }
    }
}

fn built(name: &str) -> Vec<u8> {
    std::fs::read(util::plugin(name))
        .unwrap_or_else(|err| panic!("the {name} plugin is built by ferry-test-plugins (tests/plugins-build): {err}"))
}

fn redact_settings(replacement: &str) -> String {
    format!("[config]\nfields = [\"login\"]\nreplacement = \"{replacement}\"\n")
}

const REMEMBER: &str = "[config]\nmode = \"remember\"\n";

/// Every event of `chunk` that has a login came out with it masked as
/// `replacement`, and every other field unchanged.
fn assert_redacted(chunk: &[FixtureEvent], out: &[Value], replacement: &str, live: &Live) {
    for (event, value) in chunk.iter().zip(out) {
        let mut expected = event.value.clone();
        if let Some(login) = expected.get_mut("login") {
            *login = Value::from(replacement);
        }
        assert_eq!(*value, expected, "event {} should be redacted with {replacement:?}{}", event.id, live.report());
    }
}

/// `chunk` went through hostile's `remember`, whose instance had seen
/// `before` events (and first `first`) when the chunk began.
fn assert_remembered(chunk: &[FixtureEvent], out: &[Value], before: u64, first: &str, live: &Live) {
    for (n, (event, value)) in chunk.iter().zip(out).enumerate() {
        let expected = serde_json::json!({ "uid": event.id, "seen_before": before + n as u64, "first_seen": first });
        assert_eq!(*value, expected, "event {} should come from the remembering instance{}", event.id, live.report());
    }
}

#[test]
fn a_replaced_plugin_takes_over_and_broken_replacements_are_refused() {
    let mut live = Live::start("reload_replace", "redact", &redact_settings("OLD"));
    let (chunk, out) = live.send(25);
    assert_redacted(&chunk, &out, "OLD", &live);

    // New settings for the same component.
    live.sandbox.write("plugins/p.toml", redact_settings("NEW").as_bytes());
    live.wait_stderr(RELOADED, 1);
    let (chunk, out) = live.send(25);
    assert_redacted(&chunk, &out, "NEW", &live);

    // Another component in its place. Its settings land first, so ferry may
    // see redact with hostile's settings for a moment: refused, not loaded.
    live.replace_plugin(&built("hostile"), REMEMBER);
    live.wait_stderr(RELOADED, 2);
    let (chunk, out) = live.send(25);
    let first = chunk[0].id.clone();
    assert_remembered(&chunk, &out, 0, &first, &live);

    // A plugin that refuses its config: refused, and the same instance runs on.
    let refused = live.ferry.stderr_count(REFUSED);
    live.sandbox.write("plugins/p.toml", b"[config]\nmode = \"init-fail\"\n");
    live.wait_stderr(REFUSED, refused + 1);
    let line = live.ferry.stderr().lines().rfind(|l| l.contains(REFUSED)).unwrap_or_default().to_owned();
    assert!(line.contains("refused its config: refusing config on purpose"), "{line}{}", live.report());
    let (chunk, out) = live.send(25);
    assert_remembered(&chunk, &out, 25, &first, &live);

    // Garbage where the component was (checked before the settings are).
    live.sandbox.write("plugins/p.wasm", b"this is not WebAssembly");
    live.wait_stderr(REFUSED, refused + 2);
    let line = live.ferry.stderr().lines().rfind(|l| l.contains(REFUSED)).unwrap_or_default().to_owned();
    assert!(line.contains("not a WebAssembly file"), "{line}{}", live.report());
    let (chunk, out) = live.send(25);
    assert_remembered(&chunk, &out, 50, &first, &live);

    // A copy caught half-way is refused; once complete, it loads.
    let redact = built("redact");
    live.sandbox.write("plugins/p.wasm", &redact[..redact.len() / 2]);
    live.sandbox.write("plugins/p.toml", redact_settings("LAST").as_bytes());
    live.wait_stderr("invalid component", 1);
    let (chunk, out) = live.send(10);
    assert_remembered(&chunk, &out, 75, &first, &live);
    live.sandbox.write("plugins/p.wasm", &redact);
    live.wait_stderr(RELOADED, 3);
    let (chunk, out) = live.send(20);
    assert_redacted(&chunk, &out, "LAST", &live);

    for line in live.ferry.stderr().lines().filter(|l| l.contains(REFUSED)) {
        assert!(!line.contains("\\n"), "one line per refusal: {line}");
    }
    live.stop_and_count();
}

#[test]
fn sighup_reloads_and_changes_outside_the_chain_wait_for_a_restart() {
    let mut live = Live::start("reload_sighup", "hostile", REMEMBER);
    let (chunk, out) = live.send(20);
    assert_remembered(&chunk, &out, 0, &chunk[0].id.clone(), &live);

    // Nothing changed on disk: only the signal reloads, and a fresh
    // instance remembers nothing.
    live.ferry.hangup();
    live.wait_stderr(RELOADED, 1);
    assert_eq!(live.ferry.stderr_count("SIGHUP: reloading"), 1, "{}", live.report());
    let (chunk, out) = live.send(20);
    assert_remembered(&chunk, &out, 0, &chunk[0].id.clone(), &live);

    // A pipeline setting changed: the chain reloads, the setting waits.
    live.sandbox.set_config(&config().set("pipeline.linger", "30ms").text());
    live.wait_stderr(RELOADED, 2);
    let warning = live.ferry.stderr().lines().find(|l| l.contains("need a restart")).unwrap_or_default().to_owned();
    assert!(warning.contains("[pipeline]") && !warning.contains("[sinks]"), "the warning names what changed: {warning}{}", live.report());
    let (chunk, out) = live.send(20);
    assert_remembered(&chunk, &out, 0, &chunk[0].id.clone(), &live);
    live.stop_and_count();
}

/// The last line of ferry's stderr holding `text`.
fn last_line(live: &Live, text: &str) -> String {
    live.ferry.stderr().lines().rev().find(|line| line.contains(text)).unwrap_or_default().to_owned()
}

#[test]
fn a_deleted_plugin_is_refused_and_no_event_leaves_unredacted() {
    let mut live = Live::start("reload_delete", "redact", &redact_settings("***"));
    let (chunk, out) = live.send(20);
    assert_redacted(&chunk, &out, "***", &live);

    // A deploy that deletes, then copies: the plugin's files vanish while
    // events go on arriving, one every 25 ms, until ferry has acted on it.
    let (chunk, out) = live.trickle(70, |live| {
        std::fs::remove_file(live.sandbox.path("plugins/p.wasm")).expect("delete the plugin");
        std::fs::remove_file(live.sandbox.path("plugins/p.toml")).expect("delete its settings");
        util::wait_for(
            "ferry to act on the deletion",
            DEADLINE,
            || live.ferry.stderr_count(REFUSED) + live.ferry.stderr_count(RELOADED) >= 1,
            || live.report(),
        );
    });
    assert_redacted(&chunk, &out, "***", &live);
    assert_eq!(live.ferry.stderr_count(RELOADED), 0, "a chain without the deleted plugin was loaded{}", live.report());
    let line = last_line(&live, REFUSED);
    assert!(line.contains(" ERROR ") && line.contains("it would drop a running plugin"), "{line}{}", live.report());
    assert!(
        line.contains("plugin=p ") && line.contains("p.wasm no longer exists") && line.contains("removed-plugins"),
        "{line}{}",
        live.report()
    );
    let (chunk, out) = live.send(20);
    assert_redacted(&chunk, &out, "***", &live);

    // The copy lands: the plugin loads again.
    live.replace_plugin(&built("redact"), &redact_settings("AGAIN"));
    live.wait_stderr(RELOADED, 1);
    let (chunk, out) = live.send(20);
    assert_redacted(&chunk, &out, "AGAIN", &live);

    // A truncated file in its place is refused; the running chain stays.
    let redact = built("redact");
    live.sandbox.write("plugins/p.wasm", &redact[..redact.len() / 3]);
    live.wait_stderr(REFUSED, 2);
    assert!(last_line(&live, REFUSED).contains("a plugin cannot be loaded"), "{}", live.report());
    let (chunk, out) = live.send(20);
    assert_redacted(&chunk, &out, "AGAIN", &live);
    live.sandbox.write("plugins/p.wasm", &redact);
    live.wait_stderr(RELOADED, 2);

    // Taken out on purpose: ferry.toml names it, and events pass unchanged.
    live.sandbox.set_config(&config().set("removed-plugins", vec!["p"]).text());
    live.wait_stderr(RELOADED, 3);
    let warning = last_line(&live, "taken out of the chain");
    assert!(warning.contains(" WARN ") && warning.contains("plugin=p "), "{warning}{}", live.report());
    let (chunk, out) = live.send(20);
    for (event, value) in chunk.iter().zip(&out) {
        assert_eq!(*value, event.value, "event {} should pass unchanged once p is removed{}", event.id, live.report());
    }
    live.stop_and_count();
}

/// A run over a fixed input that ends with it, and names no plugins folder.
fn to_the_end() -> Config {
    Config::file_job(false)
}

#[test]
fn a_missing_plugins_folder_named_by_the_config_fails_start_and_check_on_one_line() {
    let sandbox = util::Sandbox::new("reload_missing_folder", &to_the_end().set("plugins-dir", "plugins").text());
    sandbox.write(IN, util::jsonl(&util::fixtures()[..3]).as_bytes());
    for command in ["check", "start"] {
        let output = sandbox.run(command);
        let message = output.one_line_error(&sandbox);
        assert!(
            message.contains("ferry.toml: `plugins-dir`: cannot read the plugins folder ") && message.contains("/plugins: "),
            "`ferry {command}`: {message}{}",
            sandbox.report(Some(&output))
        );
    }
    assert_eq!(sandbox.out_count(), 0, "nothing was delivered without the plugins{}", sandbox.report(None));

    // A config that names no folder (as teleport-event-handler's) runs
    // without plugins when `./plugins` is not there.
    sandbox.set_config(&to_the_end().text());
    sandbox.run("check").assert_success(&sandbox);
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    assert_eq!(sandbox.out_count(), 3, "{}", sandbox.report(Some(&output)));
}
