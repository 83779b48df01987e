//! Each language's scaffold is written, built the way its README says with
//! the real tools (offline: the tools ferry's build installed, the crates in
//! cargo's cache), loaded through the runtime and run on events.

use super::*;
use crate::event::Outcome;
use crate::metrics::Metrics;
use crate::plugin::script_tests::{fixtures, load_path};
use std::process::Command;
use std::sync::Arc;

/// The plugin tools ferry-test-plugins installed (tests/plugins-build).
fn tools() -> PathBuf {
    PathBuf::from(ferry_test_plugins::TOOLS_DIR)
}

/// Runs `command` in `dir`, failing the test with its output when it fails.
fn run(mut command: Command, dir: &Path) {
    command.current_dir(dir);
    let shown = format!("{command:?}");
    let output = command.output().unwrap_or_else(|err| panic!("cannot run {shown}: {err}"));
    assert!(
        output.status.success(),
        "{shown} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Loads the built scaffold with `drop = ["sftp"]` and checks what it does
/// to the fixtures: sftp events dropped, every other one marked.
fn check_built(wasm: &Path, name: &str) {
    let (mut plugin, _runtime) =
        load_path(wasm, name, "[config]\ndrop = [\"sftp\"]", Arc::new(Metrics::default())).expect("the scaffold loads");
    let events = fixtures();
    let outcomes = crate::plugin::Transform::process(&mut plugin, &events).expect("runs");
    for (event, outcome) in events.iter().zip(&outcomes) {
        match outcome {
            Outcome::Drop => assert_eq!(event.event_type, "sftp"),
            Outcome::Replace(json) => {
                let mut expected: serde_json::Value = serde_json::from_slice(&event.json).expect("fixture");
                expected["processed_by"] = name.into();
                assert_eq!(serde_json::from_slice::<serde_json::Value>(json).expect("JSON"), expected);
            }
            other => panic!("{name}: event {}: unexpected {other:?}", event.id),
        }
    }
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Outcome::Drop)).count(), 36, "the fixtures hold 36 sftp events");
}

#[test]
fn a_python_scaffold_builds_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scaffold = create("py-start", Language::Python, dir.path()).expect("scaffolds");
    assert_eq!(scaffold.files, ["app.py", "README.md", "wit/plugin.wit"]);
    let readme = std::fs::read_to_string(scaffold.dir.join("README.md")).expect("README");
    for step in &scaffold.build {
        assert!(readme.contains(step.as_str()), "the README should say `{step}`");
    }
    // The README's componentize command, with the componentize-py ferry's build installed.
    let mut build = Command::new(tools().join("python/bin/componentize-py"));
    build.args(["-d", "wit", "-w", "plugin", "componentize", "app", "-o", &scaffold.output]);
    run(build, &scaffold.dir);
    check_built(&scaffold.dir.join(&scaffold.output), "py-start");
}

#[test]
fn a_javascript_scaffold_builds_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scaffold = create("js-start", Language::Js, dir.path()).expect("scaffolds");
    assert_eq!(scaffold.files, ["app.js", "package.json", "README.md", "wit/plugin.wit"]);
    // `npm run build` as the README says, finding componentize-js where
    // ferry's build installed it instead of running `npm install` again.
    let bin = tools().join("js/node_modules/.bin");
    let path = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())))
        .expect("PATH");
    let mut build = Command::new("npm");
    build.args(["run", "--silent", "build"]).env("PATH", path);
    run(build, &scaffold.dir);
    check_built(&scaffold.dir.join(&scaffold.output), "js-start");
}

#[test]
fn a_rust_scaffold_builds_on_its_own_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scaffold = create("rust-start", Language::Rust, dir.path()).expect("scaffolds");
    let has = |file: &str| scaffold.files.iter().any(|written| written == file);
    assert!(has("ferry-guest/src/lib.rs") && has("wit/plugin.wit"));
    assert!(has("ferry-event/src/header.rs"), "the SDK reads events with the contract beside it");
    let mut build = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    build.args(["build", "--release", "--offline", "--target", "wasm32-wasip2"]);
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("RUSTC") || key == "RUSTFLAGS" {
            build.env_remove(key);
        }
    }
    // A target folder kept between runs: only the first compiles the SDK's
    // dependencies. Set after the clean-up above, which would otherwise drop
    // it whenever the outer build runs with CARGO_TARGET_DIR of its own.
    let target = tools().join("rust-scaffold-target");
    build.env("CARGO_TARGET_DIR", &target);
    run(build, &scaffold.dir);
    assert_eq!(scaffold.output, "target/wasm32-wasip2/release/rust_start.wasm");
    check_built(&target.join("wasm32-wasip2/release/rust_start.wasm"), "rust-start");
}

/// Built as `ferry plugin build` builds it: Debian's clang (`./test`
/// installs it), then made a component in process.
#[test]
fn a_c_scaffold_builds_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scaffold = create("c-start", Language::C, dir.path()).expect("scaffolds");
    assert_eq!(
        scaffold.files,
        [
            "c-start.c",
            "c-start.toml",
            "README.md",
            "wit/plugin.wit",
            "bindings/plugin.h",
            "bindings/plugin.c",
            "bindings/plugin_component_type.o"
        ]
    );
    for file in &scaffold.files {
        assert!(scaffold.dir.join(file).is_file(), "{file} is written");
    }
    let readme = std::fs::read_to_string(scaffold.dir.join("README.md")).expect("README");
    for step in &scaffold.build {
        assert!(readme.contains(step.as_str()), "the README should say `{step}`");
    }
    let wasm = ferry_plugin_build::c::build_plugin(&scaffold.dir, &ferry_plugin_build::quiet).expect("builds");
    assert_eq!(wasm, scaffold.dir.join(&scaffold.output));
    let settings = std::fs::read_to_string(scaffold.dir.join("c-start.toml")).expect("settings");
    load_path(&wasm, "c-start", &settings, Arc::new(Metrics::default())).expect("loads with the settings it was written with");
    check_built(&wasm, "c-start");
}

/// The C template with a JSON reader: the reader and its native test are
/// written beside the plugin, built as the plugin's own code; it is a C
/// template only.
#[test]
fn the_c_json_scaffold_carries_its_reader_and_builds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scaffold = create_from("c-json", Language::C, Template::Json, dir.path()).expect("scaffolds");
    assert_eq!(
        scaffold.files,
        [
            "c-json.c",
            "json.h",
            "json.c",
            "test/json_test.c",
            "c-json.toml",
            "README.md",
            "wit/plugin.wit",
            "bindings/plugin.h",
            "bindings/plugin.c",
            "bindings/plugin_component_type.o"
        ]
    );
    let readme = std::fs::read_to_string(scaffold.dir.join("README.md")).expect("README");
    for step in &scaffold.build {
        assert!(readme.contains(step.as_str()), "the README should say `{step}`");
    }
    let wasm = ferry_plugin_build::c::build_plugin(&scaffold.dir, &ferry_plugin_build::quiet).expect("builds");
    let settings = std::fs::read_to_string(scaffold.dir.join("c-json.toml")).expect("settings");
    load_path(&wasm, "c-json", &settings, Arc::new(Metrics::default())).expect("loads with the settings it was written with");

    let err = create_from("go-json", Language::Go, Template::Json, dir.path()).expect_err("no Go JSON template");
    assert_eq!(err.to_string(), "--template json: there is no such Go template (`json` is a C template: give --lang c)");
    assert!(!dir.path().join("go-json").exists(), "nothing is written");
}

/// Built as `ferry plugin build` builds it: the Go toolchain (`./test`
/// installs it and names it in `FERRY_GO`), then made a component in
/// process; offline, with the SDK the scaffold carries.
#[test]
fn a_go_scaffold_builds_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scaffold = create("go-start", Language::Go, dir.path()).expect("scaffolds");
    assert_eq!(
        scaffold.files,
        [
            "main.go",
            "go.mod",
            "go-start.toml",
            "README.md",
            "wit/plugin.wit",
            "ferry-plugin/go.mod",
            "ferry-plugin/doc.go",
            "ferry-plugin/plugin.go",
            "ferry-plugin/event.go",
            "ferry-plugin/fields.go",
            "ferry-plugin/outcome.go",
            "ferry-plugin/abi.go",
            "ferry-plugin/host_native.go"
        ]
    );
    let readme = std::fs::read_to_string(scaffold.dir.join("README.md")).expect("README");
    for step in &scaffold.build {
        assert!(readme.contains(step.as_str()), "the README should say `{step}`");
    }
    let wasm = ferry_plugin_build::go::build_plugin(&scaffold.dir, &ferry_plugin_build::quiet).expect("builds");
    assert_eq!(wasm, scaffold.dir.join(&scaffold.output));
    let settings = std::fs::read_to_string(scaffold.dir.join("go-start.toml")).expect("settings");
    load_path(&wasm, "go-start", &settings, Arc::new(Metrics::default())).expect("loads with the settings it was written with");
    check_built(&wasm, "go-start");
}

#[test]
fn names_are_checked_and_nothing_is_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in ["", "Upper", "1st", "has space", "dots.no", &"x".repeat(65)] {
        let err = create(bad, Language::Python, dir.path()).expect_err(bad);
        assert!(err.to_string().starts_with(&format!("invalid plugin name `{bad}`")), "{err}");
    }
    create("mine", Language::Js, dir.path()).expect("first time");
    let err = create("mine", Language::Rust, dir.path()).expect_err("exists");
    assert_eq!(err.to_string(), format!("{} already exists; choose another name or --dir", dir.path().join("mine").display()));
    assert_eq!(type_name("my-first_plugin2"), "MyFirstPlugin2");
}
