//! The split this crate exists for: the tests get every plugin, while the
//! `ferry` binary's build (normal and build dependencies) never reaches this
//! crate, so a release build or `cargo install` builds no test-only plugin
//! and installs no Python or JavaScript tools.

use std::process::Command;

#[test]
fn tests_get_every_plugin() {
    for name in ferry_test_plugins::PLUGINS {
        let path = ferry_test_plugins::plugin(name);
        assert!(path.is_file(), "{} was not built", path.display());
    }
    assert!(std::path::Path::new(ferry_test_plugins::TOOLS_DIR).join("python/bin/componentize-py").is_file(), "componentize-py is installed for the tests");
}

#[test]
fn the_binary_does_not_depend_on_the_test_plugins() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--package", "ferry", "--edges", "normal,build", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cargo tree failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    assert!(stdout.lines().any(|line| line.starts_with("ferry v")), "cargo tree lists ferry itself:\n{stdout}");
    assert!(stdout.lines().any(|line| line.starts_with("redact v")), "ferry links the redact plugin's code:\n{stdout}");
    assert!(!stdout.contains("ferry-test-plugins"), "ferry's normal or build dependencies reach ferry-test-plugins:\n{stdout}");
}
