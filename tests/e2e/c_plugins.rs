//! The C example plugin, `plugins/c/drop-types`: its logic natively (its
//! own C test, built with the host's C compiler), then as WebAssembly
//! through the real binary: built by `ferry plugin build` (Debian's clang,
//! componentized in process), run by `ferry plugin test` on the fixtures,
//! and in a `ferry start` job from a plugins folder with its settings.

use crate::util::{self, FixtureEvent, IN, Sandbox};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example's folder in the repository.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/c/drop-types")
}

/// The config the runs below use, and the events it drops.
const CONFIG: &str = r#"{"types":["sftp","desktop.*"]}"#;
fn dropped(event: &FixtureEvent) -> bool {
    event.event_type == "sftp" || event.event_type.starts_with("desktop.")
}

#[test]
fn drop_types_logic_passes_its_native_test_and_counts_as_ferry_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("drop_types_test");
    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-o"]).arg(&binary).arg(example().join("test/drop_types_test.c"));
    util::stdout_of_success(cc);
    assert_eq!(util::stdout_of_success(Command::new(&binary)), "ok\n", "the fixed cases");

    let events = util::fixtures();
    let mut count = Command::new(&binary);
    count
        .arg(CONFIG)
        .stdin(std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-events.jsonl")).expect("fixtures"));
    let expected = events.iter().filter(|e| dropped(e)).count();
    assert_eq!(expected, 44, "36 sftp and 8 desktop.* events in the fixtures");
    assert_eq!(util::stdout_of_success(count), format!("dropped {expected} of {}\n", events.len()));
}

/// A copy of the example in the sandbox (the build writes beside the code),
/// with the contract from the repository's `wit/`; built; the component.
fn build_example(sandbox: &Sandbox) -> PathBuf {
    let dir = sandbox.path("drop-types");
    std::fs::create_dir_all(dir.join("wit")).expect("folder");
    for file in ["drop-types.c", "drop_types.h", "drop-types.toml"] {
        std::fs::copy(example().join(file), dir.join(file)).expect("copy the example");
    }
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/plugin.wit"), dir.join("wit/plugin.wit")).expect("copy the WIT");
    util::build_plugin(sandbox, &dir, "drop-types")
}

#[test]
fn drop_types_builds_and_drops_in_plugin_test_and_in_a_job() {
    let config = util::plugins_dir_job(64).text();
    let sandbox = Sandbox::new("c_drop_types", &config);
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let wasm = build_example(&sandbox);

    // `ferry plugin test`, as an author tries it.
    let output = util::plugin_test(&sandbox, &wasm, &["--config", CONFIG, "--cache", "none"], IN);
    output.assert_success(&sandbox);
    let drops = events.iter().filter(|e| dropped(e)).count();
    assert_eq!(
        output.stdout.lines().last().unwrap_or_default(),
        format!(
            "summary: {} events in {} calls: {} kept, 0 replaced, 0 routed, {drops} dropped, 0 failed (0 failed calls); 0 invalid lines",
            events.len(),
            events.len().div_ceil(256),
            events.len() - drops
        ),
        "{}",
        sandbox.report(Some(&output))
    );

    // A job: the component and its settings in the plugins folder; every
    // event not dropped comes out byte for byte, in order.
    sandbox.write("plugins/drop-types.wasm", &std::fs::read(&wasm).expect("component"));
    sandbox.write("plugins/drop-types.toml", b"max-memory = \"32MiB\"\n\n[config]\ntypes = [\"sftp\", \"desktop.*\"]\n");
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let expected: Vec<&str> = events.iter().filter(|e| !dropped(e)).map(|e| e.line.as_str()).collect();
    assert_eq!(sandbox.out_lines(), expected, "{}", sandbox.report(Some(&run)));
    assert!(sandbox.dead_letters().is_empty(), "nothing dead-lettered{}", sandbox.report(Some(&run)));
}

#[test]
fn drop_types_refuses_a_config_it_cannot_read_on_one_line() {
    let sandbox = Sandbox::new("c_drop_types_config", "");
    sandbox.write(IN, util::jsonl(&util::fixtures()).as_bytes());
    let wasm = build_example(&sandbox);
    let output = util::plugin_test(&sandbox, &wasm, &["--config", r#"{"types":"sftp"}"#, "--cache", "none"], IN);
    let message = output.one_line_error(&sandbox);
    assert!(message.contains("`types` must be a list of event types"), "{message}");
}

#[test]
fn building_c_without_clang_says_what_to_install_on_one_line() {
    let sandbox = Sandbox::new("c_no_clang", "");
    let output = sandbox.run_args(&["plugin", "new", "no-clang", "--lang", "c", "--dir", &sandbox.root().to_string_lossy()], None);
    output.assert_success(&sandbox);
    let dir = sandbox.path("no-clang");
    let mut command = Command::new(util::FERRY);
    command.arg("plugin").arg("build").arg(&dir).current_dir(sandbox.root()).env_remove("FERRY_LOG").env("PATH", sandbox.path("no-tools"));
    let output = sandbox.run_command(command);
    assert!(!output.success(), "{}", sandbox.report(Some(&output)));
    // After the progress line that names the folder, the error on one line.
    let lines = output.stderr_lines();
    assert_eq!(lines.len(), 2, "{}", sandbox.report(Some(&output)));
    assert_eq!(lines[0], format!("Building the C plugin in {}", dir.display()));
    assert_eq!(
        lines[1],
        format!(
            "ferry: error: plugin folder {}: no clang found (clang-16, clang-19, clang, clang-18, clang-17); install Debian's C toolchain for \
             WebAssembly: apt-get install clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32",
            dir.display()
        )
    );
}

/// `ferry plugin new NAME --lang c --template json` into the sandbox; the folder.
fn json_scaffold(sandbox: &Sandbox, name: &str) -> PathBuf {
    let root = sandbox.root().to_string_lossy().into_owned();
    let output = sandbox.run_args(&["plugin", "new", name, "--lang", "c", "--template", "json", "--dir", &root], None);
    output.assert_success(sandbox);
    sandbox.path(name)
}

/// The JSON template's reader, natively: its own test (escapes, nesting,
/// bad text refused with a reason), built with the host's C compiler as the
/// scaffold's README says, with warnings as errors and the sanitizers on.
#[test]
fn the_c_json_templates_reader_passes_its_native_test() {
    let sandbox = Sandbox::new("c_json_reader", "");
    let dir = json_scaffold(&sandbox, "reader");
    let binary = dir.join("json_test");
    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-o"])
        .arg(&binary)
        .arg(dir.join("test/json_test.c"))
        .arg(dir.join("json.c"));
    util::stdout_of_success(cc);
    assert_eq!(util::stdout_of_success(Command::new(&binary)), "ok\n");
}

/// Events whose JSON only a real reader gets right, with the verdict the
/// JSON template gives each under its default settings (drop `session.data`
/// and `app.session.chunk`, redact `addr.remote`).
const ODD_EVENTS: [(&str, &str); 6] = [
    // The type with an escape in it is still `session.data`.
    (r#"{"event":"session.d\u0061ta","uid":"odd-1","time":"2024-05-01T00:00:00Z","ei":0}"#, "dropped"),
    // An `event` inside a nested object is not the event's type.
    (r#"{"meta":{"event":"session.data"},"event":"user.login","uid":"odd-2","time":"2024-05-01T00:00:00Z","ei":0}"#, "kept"),
    // A key written with an escape, and a value with quotes and braces in it.
    (
        r#"{"event":"user.login","uid":"odd-3","addr.r\u0065mote":"a \"}\" b","time":"2024-05-01T00:00:00Z","ei":0}"#,
        r#"replaced: ~/addr.remote "a \"}\" b" → "[redacted]""#,
    ),
    // A value that is an object is redacted whole.
    (
        r#"{"event":"user.login","uid":"odd-4","addr.remote":{"ip":"10.0.0.1","port":[22]},"time":"2024-05-01T00:00:00Z","ei":0}"#,
        r#"replaced: ~/addr.remote {"ip":"10.0.0.1","port":[22]} → "[redacted]""#,
    ),
    // A string with every kind of escape passes through untouched.
    (r#"{"event":"user.login","uid":"odd-5","note":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","time":"2024-05-01T00:00:00Z","ei":0}"#, "kept"),
    // JSON ferry reads, nested deeper than the reader goes: a fail verdict
    // with the reason, not a crash.
    (
        concat!(
            r#"{"event":"user.login","uid":"odd-6","time":"2024-05-01T00:00:00Z","ei":0,"deep":"#,
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"
        ),
        "failed: not a JSON object: nested deeper than JSON_MAX_DEPTH at byte 144",
    ),
];

/// The JSON template, built by `ferry plugin build` and run by `ferry plugin
/// test`: on the fixtures it drops the configured types and redacts the
/// configured field wherever it is a top-level key; on odd events it reads
/// escapes and nesting as JSON means them, and fails what it cannot read.
#[test]
fn the_c_json_template_builds_and_reads_events_as_json() {
    let sandbox = Sandbox::new("c_json_template", "");
    let dir = json_scaffold(&sandbox, "reads-json");
    let wasm = util::build_plugin(&sandbox, &dir, "reads-json");

    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let output = util::plugin_test(&sandbox, &wasm, &["--cache", "none"], IN);
    output.assert_success(&sandbox);
    let dropped = |e: &&FixtureEvent| ["session.data", "app.session.chunk"].contains(&e.event_type.as_str());
    let drops = events.iter().filter(dropped).count();
    let redacted = events.iter().filter(|e| !dropped(e) && e.value.get("addr.remote").is_some()).count();
    assert!(drops > 0 && redacted > 0, "the fixtures have events of both kinds");
    assert_eq!(
        output.stdout.lines().last().unwrap_or_default(),
        format!(
            "summary: {} events in 1 calls: {} kept, {redacted} replaced, 0 routed, {drops} dropped, 0 failed (0 failed calls); 0 invalid lines",
            events.len(),
            events.len() - drops - redacted
        ),
        "{}",
        sandbox.report(Some(&output))
    );

    let odd: String = ODD_EVENTS.iter().map(|(line, _)| format!("{line}\n")).collect();
    sandbox.write("odd.jsonl", odd.as_bytes());
    let output = util::plugin_test(&sandbox, &wasm, &["--cache", "none"], "odd.jsonl");
    output.assert_success(&sandbox);
    let verdicts: Vec<&str> = output.stdout.lines().take(ODD_EVENTS.len()).collect();
    for (i, ((_, expected), got)) in ODD_EVENTS.iter().zip(&verdicts).enumerate() {
        assert_eq!(*got, format!("#{} odd-{} {expected}", i + 1, i + 1), "{}", sandbox.report(Some(&output)));
    }
}

/// Settings the JSON template cannot use are refused at load, on one line.
#[test]
fn the_c_json_template_refuses_settings_it_cannot_use_on_one_line() {
    let sandbox = Sandbox::new("c_json_settings", "");
    let dir = json_scaffold(&sandbox, "strict");
    let wasm = util::build_plugin(&sandbox, &dir, "strict");
    sandbox.write(IN, util::jsonl(&util::fixtures()).as_bytes());
    for (config, expected) in [
        (r#"{"drop":"session.data"}"#, "config: `drop` must be a list of strings"),
        (r#"{"redact":["login",7]}"#, "config: `redact` must be a list of strings"),
        (r#"{"drops":["session.data"]}"#, "config: unknown key `drops` (there are `drop` and `redact`)"),
    ] {
        let output = util::plugin_test(&sandbox, &wasm, &["--config", config, "--cache", "none"], IN);
        assert_eq!(output.one_line_error(&sandbox), format!("plugin `strict` refused its config: {expected}"), "{config}");
    }
    let output = sandbox.run_args(&["plugin", "new", "go-json", "--lang", "go", "--template", "json"], None);
    assert_eq!(output.one_line_error(&sandbox), "--template json: there is no such Go template (`json` is a C template: give --lang c)");
}
