//! `ferry plugin test` and `ferry plugin inspect` through the real binary, on
//! the fixture events and the plugins this checkout builds.

use crate::util::{self, FixtureEvent, IN, Output, Sandbox};

/// Runs `ferry plugin test PLUGIN ARGS…` over every fixture event.
fn plugin_test(scenario: &str, plugin: &str, args: &[&str]) -> (Sandbox, Vec<FixtureEvent>, Output) {
    let sandbox = Sandbox::new(scenario, "");
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let wasm = util::plugin(plugin);
    let wasm = wasm.to_string_lossy();
    let cache = sandbox.path("cache");
    let cache = cache.to_string_lossy();
    let mut all = vec!["plugin", "test", &wasm, "--cache", &cache];
    all.extend_from_slice(args);
    let output = sandbox.run_args(&all, Some(IN));
    (sandbox, events, output)
}

/// The report lines for the events, then the summary line; fails unless
/// ferry succeeded and wrote one line per event and a summary.
fn report_lines<'a>(sandbox: &Sandbox, events: &[FixtureEvent], output: &'a Output) -> (Vec<&'a str>, &'a str) {
    output.assert_success(sandbox);
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), events.len() + 1, "one line per event and a summary\n{}", sandbox.report(Some(output)));
    (lines[..events.len()].to_vec(), lines[events.len()])
}

#[test]
fn plugin_test_keeps_compiled_plugins_in_its_cache() {
    let (sandbox, events, output) = plugin_test("plugin-test-cache", "redact", &["--config", r#"{"fields":["login"]}"#]);
    report_lines(&sandbox, &events, &output);
    let cached: Vec<_> = std::fs::read_dir(sandbox.path("cache")).expect("the cache folder exists").flatten().collect();
    assert_eq!(cached.len(), 1, "one compiled plugin in the cache: {cached:?}");
    assert!(cached[0].file_name().to_string_lossy().ends_with(".cwasm"), "{cached:?}");
}

#[test]
fn plugin_test_shows_what_redact_changes_in_each_fixture_event() {
    let (sandbox, events, output) =
        plugin_test("tool_redact", "redact", &["--config", r#"{"fields": ["login"], "replacement": "***"}"#, "--batch", "16"]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    let mut replaced = 0;
    for (n, (event, line)) in events.iter().zip(&lines).enumerate() {
        let verdict = match event.value.get("login") {
            Some(login) if login.as_str() != Some("***") => {
                replaced += 1;
                format!("replaced: ~/login {login} → \"***\"")
            }
            _ => "kept".to_owned(),
        };
        let expected = format!("#{} {} {verdict}", n + 1, event.id);
        assert_eq!(*line, expected, "\n{}", sandbox.report(Some(&output)));
    }
    assert!(replaced > 10, "the fixtures hold logins to redact");
    let kept = events.len() - replaced;
    assert_eq!(
        summary,
        format!(
            "summary: {} events in 12 calls: {kept} kept, {replaced} replaced, 0 routed, 0 dropped, 0 failed (0 failed calls); 0 invalid lines",
            events.len()
        )
    );
}

#[test]
fn plugin_test_reports_failed_events_and_failed_calls_of_hostile() {
    let (sandbox, events, output) =
        plugin_test("tool_fail_each", "hostile", &["--config", r#"{"mode":"fail-each","when-type":"user.login"}"#]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    let logins = events.iter().filter(|e| e.event_type == "user.login").count();
    for (n, (event, line)) in events.iter().zip(&lines).enumerate() {
        let verdict = if event.event_type == "user.login" { "failed: failed on purpose" } else { "kept" };
        assert_eq!(*line, format!("#{} {} {verdict}", n + 1, event.id), "\n{}", sandbox.report(Some(&output)));
    }
    assert!(
        summary.ends_with(&format!(
            "{} kept, 0 replaced, 0 routed, 0 dropped, {logins} failed (0 failed calls); 0 invalid lines",
            events.len() - logins
        )),
        "{summary}"
    );

    // A trap fails its whole call: every event of the batches holding a login.
    let (sandbox, events, output) =
        plugin_test("tool_trap", "hostile", &["--config", r#"{"mode":"trap","when-type":"user.login"}"#, "--batch", "5"]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    let mut failed = 0;
    for (batch, chunk) in events.chunks(5).enumerate() {
        let trapped = chunk.iter().any(|e| e.event_type == "user.login");
        for (i, event) in chunk.iter().enumerate() {
            let n = batch * 5 + i;
            let verdict = if trapped {
                failed += 1;
                "failed (the whole call): plugin `hostile` failed: wasm trap: wasm `unreachable` instruction executed"
            } else {
                "kept"
            };
            assert_eq!(lines[n], format!("#{} {} {verdict}", n + 1, event.id), "\n{}", sandbox.report(Some(&output)));
        }
    }
    let calls = events.len().div_ceil(5);
    let failed_calls = events.chunks(5).filter(|c| c.iter().any(|e| e.event_type == "user.login")).count();
    assert_eq!(
        summary,
        format!(
            "summary: {} events in {calls} calls: {} kept, 0 replaced, 0 routed, 0 dropped, {failed} failed ({failed_calls} failed calls); 0 invalid lines",
            events.len(),
            events.len() - failed
        )
    );

    // Lines that are not events are named, in place, and the rest goes on.
    sandbox.write("mixed.jsonl", b"{\"uid\":\"a\",\"event\":\"x\"}\nnot json\n\n[1,2]\n{\"uid\":\"b\"}\n");
    let wasm = util::plugin("hostile");
    let output = sandbox.run_args(&["plugin", "test", &wasm.to_string_lossy(), "--config", r#"{"mode":"drop"}"#], Some("mixed.jsonl"));
    output.assert_success(&sandbox);
    assert_eq!(
        output.stdout.lines().collect::<Vec<_>>(),
        [
            "#1 a dropped",
            "#2 invalid input: invalid JSON: expected ident at line 1 column 2",
            "#4 invalid input: not a JSON object (it starts with `[`)",
            "#5 b dropped",
            "summary: 2 events in 1 calls: 0 kept, 0 replaced, 0 routed, 2 dropped, 0 failed (0 failed calls); 2 invalid lines",
        ]
    );
}

#[test]
fn plugin_test_fails_in_one_line_when_the_plugin_cannot_load() {
    let (sandbox, _, output) = plugin_test("tool_init_fail", "hostile", &["--config", r#"{"mode":"init-fail"}"#]);
    assert_eq!(output.one_line_error(&sandbox), "plugin `hostile` refused its config: refusing config on purpose");
    assert!(output.stdout.is_empty(), "{}", sandbox.report(Some(&output)));

    let (sandbox, _, output) = plugin_test("tool_bad_config", "redact", &["--config", "[\"login\"]"]);
    assert!(output.one_line_error(&sandbox).starts_with("--config: must be a JSON object"), "{}", sandbox.report(Some(&output)));

    sandbox.write("fake.wasm", b"\0asm\x01\0\0\0");
    let fake = sandbox.path("fake.wasm");
    let output = sandbox.run_args(&["plugin", "test", &fake.to_string_lossy()], Some(IN));
    let message = output.one_line_error(&sandbox);
    assert!(message.starts_with(&format!("plugin {}: not a ferry plugin: it is a core WebAssembly module", fake.display())), "{message}");
}

#[test]
fn inspect_shows_redacts_contract_exports_and_imports() {
    let sandbox = Sandbox::new("tool_inspect", "");
    let wasm = util::plugin("redact");
    let size = std::fs::metadata(&wasm).expect("redact is built").len();
    let output = sandbox.run_args(&["plugin", "inspect", &wasm.to_string_lossy()], None);
    output.assert_success(&sandbox);
    let lines: Vec<&str> = output.stdout.lines().collect();
    let report = || sandbox.report(Some(&output));
    assert_eq!(lines[0], format!("plugin    {}", wasm.display()), "{}", report());
    assert!(lines[1].starts_with(&format!("size      {size} bytes (")), "{}", report());
    assert_eq!(lines[2], "contract  ferry:plugin@0.2.0 (this ferry runs ferry:plugin@0.2.0)", "{}", report());
    assert_eq!(lines[3], "exports   1", "{}", report());
    assert_eq!(lines[4], "  ferry:plugin/guest@0.2.0: init(config), process(events)", "{}", report());
    assert!(lines.iter().any(|l| l.starts_with("  ferry:plugin/host@0.2.0: ") && l.contains("count(name, delta)")), "{}", report());
    assert!(lines.iter().any(|l| l.starts_with("  wasi:")), "a Rust plugin imports WASI{}", report());
    assert_eq!(lines.last().copied(), Some("accepted  yes"), "{}", report());
}

#[test]
fn inspect_accepts_every_built_example_plugin() {
    let sandbox = Sandbox::new("tool_inspect_all", "");
    // The tests' shared compile cache: the Python and JavaScript components
    // are compiled once for all tests, not again here.
    let cache = ferry_test_plugins::COMPILE_CACHE;
    for name in ferry_test_plugins::PLUGINS {
        let path = util::plugin(name);
        let output = sandbox.run_args(&["plugin", "inspect", "--cache", cache, &path.to_string_lossy()], None);
        output.assert_success(&sandbox);
        assert!(output.stdout.ends_with("accepted  yes\n"), "{}", sandbox.report(Some(&output)));
    }
}

#[test]
fn inspect_refuses_a_file_that_is_not_a_component_in_one_line() {
    let sandbox = Sandbox::new("tool_inspect_bad", "");
    sandbox.write("notes.wasm", b"hello, I am text");
    let path = sandbox.path("notes.wasm");
    let output = sandbox.run_args(&["plugin", "inspect", &path.to_string_lossy()], None);
    assert_eq!(output.one_line_error(&sandbox), format!("plugin {}: not a ferry plugin: it is not a WebAssembly file", path.display()));
    assert!(output.stdout.is_empty(), "{}", sandbox.report(Some(&output)));
    let output = sandbox.run_args(&["plugin", "inspect", &sandbox.path("missing.wasm").to_string_lossy()], None);
    assert!(output.one_line_error(&sandbox).contains("missing.wasm: cannot read"), "{}", sandbox.report(Some(&output)));
}

/// The summary's count of `what` (`kept`, `replaced`, `routed`, `dropped`, `failed`).
fn count_in(summary: &str, what: &str) -> usize {
    let before = summary.split(&format!(" {what}")).next().unwrap_or_default();
    before.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no `{what}` count in: {summary}"))
}

/// The report line of the fixture event with `uid`.
fn line_of<'a>(events: &[FixtureEvent], lines: &[&'a str], uid: &str) -> &'a str {
    let at = events.iter().position(|e| e.id == uid).unwrap_or_else(|| panic!("no fixture {uid}"));
    lines[at]
}

const FAILED_LOGIN: &str = "597bf08b-75b2-4dda-a578-e387c5ce9b76";

#[test]
fn plugin_test_with_each_example_plugin_gives_the_expected_output() {
    let events = util::fixtures();
    let total = events.len();
    let code = |e: &FixtureEvent| e.value.get("code").and_then(|c| c.as_str()).unwrap_or_default().to_owned();

    let (sandbox, events, output) =
        plugin_test("tool_filter", "filter", &["--config", r#"{"exclude":[{"type":"session.*"},{"type":"sftp","code":"*E"}]}"#]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    let dropped =
        events.iter().filter(|e| e.event_type.starts_with("session.") || (e.event_type == "sftp" && code(e).ends_with('E'))).count();
    assert_eq!((count_in(summary, "dropped"), count_in(summary, "kept")), (dropped, total - dropped), "{summary}");
    assert!(line_of(&events, &lines, FAILED_LOGIN).ends_with(" kept"));

    let route = r#"{"default":"default","rules":[{"when":{"type":"session.*"},"sinks":"sessions"},{"when":{"type":"user.login","success":false},"sinks":["security","default"]}]}"#;
    let (sandbox, events, output) =
        plugin_test("tool_route", "route", &["--config", route, "--sink", "default", "--sink", "security", "--sink", "sessions"]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    assert_eq!(count_in(summary, "routed"), total, "{summary}");
    assert!(line_of(&events, &lines, FAILED_LOGIN).ends_with(" routed to security, default"), "{lines:?}");

    let (sandbox, events, output) = plugin_test("tool_ecs", "ecs", &[]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    assert_eq!(count_in(summary, "replaced"), total, "{summary}");
    assert!(
        line_of(&events, &lines, FAILED_LOGIN).contains(r#"~/user "fsdfsdf" → {"name":"fsdfsdf"}, +/@timestamp "2019-04-22T18:06:32Z""#),
        "{}",
        line_of(&events, &lines, FAILED_LOGIN)
    );

    let (sandbox, events, output) = plugin_test("tool_enrich", "enrich", &["--config", r#"{"fields":{"labels.environment":"prod"}}"#]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    assert_eq!(count_in(summary, "replaced"), total, "{summary}");
    assert!(line_of(&events, &lines, FAILED_LOGIN).contains(r#"+/severity "high""#), "{}", line_of(&events, &lines, FAILED_LOGIN));

    let (sandbox, events, output) =
        plugin_test("tool_tag", "tag", &["--config", r#"{"tags":{"pipeline":"ferry"},"drop":["sftp","desktop.*"]}"#]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    let dropped = events.iter().filter(|e| e.event_type == "sftp" || e.event_type.starts_with("desktop.")).count();
    assert_eq!((count_in(summary, "dropped"), count_in(summary, "replaced")), (dropped, total - dropped), "{summary}");
    assert!(line_of(&events, &lines, FAILED_LOGIN).contains(r#"+/pipeline "ferry""#), "{}", line_of(&events, &lines, FAILED_LOGIN));

    let reshape = r#"{"rename":{"addr.remote":"remote_addr"},"lowercase":["user"],"routes":[{"types":"session.*","sinks":["sessions"]}]}"#;
    let (sandbox, events, output) = plugin_test("tool_reshape", "reshape", &["--config", reshape, "--sink", "sessions"]);
    let (_, summary) = report_lines(&sandbox, &events, &output);
    let sessions = events.iter().filter(|e| e.event_type.starts_with("session.")).count();
    assert_eq!(count_in(summary, "routed"), sessions, "{summary}");
}

#[test]
fn plugin_test_reports_a_route_to_a_sink_not_named_with_sink_as_a_failure() {
    let route = r#"{"rules":[{"when":{"type":"user.login","success":false},"sinks":["security","default"]}]}"#;
    let (sandbox, events, output) = plugin_test("tool_route_unknown", "route", &["--config", route]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    let failed_logins =
        events.iter().filter(|e| e.event_type == "user.login" && e.value.get("success") == Some(&serde_json::Value::Bool(false))).count();
    assert!(failed_logins > 0, "the fixtures hold failed logins");
    assert_eq!(
        line_of(&events, &lines, FAILED_LOGIN),
        format!(
            "#{} {FAILED_LOGIN} failed: routed to unknown sink `security`",
            events.iter().position(|e| e.id == FAILED_LOGIN).map_or(0, |at| at + 1)
        )
    );
    assert_eq!((count_in(summary, "failed"), count_in(summary, "routed")), (failed_logins, 0), "{summary}");

    // Named with --sink, the same routes are good.
    let (sandbox, events, output) =
        plugin_test("tool_route_known", "route", &["--config", route, "--sink", "default", "--sink", "security"]);
    let (lines, summary) = report_lines(&sandbox, &events, &output);
    assert!(line_of(&events, &lines, FAILED_LOGIN).ends_with(" routed to security, default"), "{lines:?}");
    assert_eq!((count_in(summary, "failed"), count_in(summary, "routed")), (0, failed_logins), "{summary}");
}

/// `ferry plugin test NAME.wasm` takes the settings of the `NAME.toml`
/// beside it, as `ferry start` does with a plugins folder (the redact
/// plugin refuses to start without `fields`); `--config` overrides them.
#[test]
fn plugin_test_reads_the_settings_beside_the_plugin_and_config_overrides_them() {
    let sandbox = Sandbox::new("plugin-test-beside", "");
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    sandbox.write("plugins/10-redact.wasm", &std::fs::read(util::plugin("redact")).expect("the redact plugin is built"));
    sandbox.write("plugins/10-redact.toml", b"[config]\nfields = [\"login\"]\nreplacement = \"[hidden]\"\n");
    let cache = sandbox.path("cache");
    let cache = cache.to_string_lossy();
    let base = ["plugin", "test", "plugins/10-redact.wasm", "--cache", &cache];

    let output = sandbox.run_args(&base, Some(IN));
    let (lines, _) = report_lines(&sandbox, &events, &output);
    assert!(lines.iter().any(|line| line.contains("~/login") && line.ends_with("→ \"[hidden]\"")), "{}", sandbox.report(Some(&output)));

    let overridden: Vec<&str> = base.iter().copied().chain(["--config", r#"{"fields": ["user"], "replacement": "***"}"#]).collect();
    let output = sandbox.run_args(&overridden, Some(IN));
    let (lines, _) = report_lines(&sandbox, &events, &output);
    assert!(lines.iter().any(|line| line.contains("~/user") && line.contains("→ \"***\"")), "{}", sandbox.report(Some(&output)));
    assert!(!lines.iter().any(|line| line.contains("~/login")), "--config replaces the file's config{}", sandbox.report(Some(&output)));
}
