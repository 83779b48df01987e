//! The split this crate exists for: the tests get every plugin, while the
//! `ferry` binary's build (normal and build dependencies) never reaches this
//! crate, so a release build or `cargo install` builds no test-only plugin
//! and installs no Python or JavaScript tools. Nor does it reach an example
//! plugin's code, the benchmarks, ferry's own test hooks or the stand-ins'
//! fault injection.

use std::process::Command;

#[test]
fn tests_get_every_plugin() {
    for name in ferry_test_plugins::PLUGINS {
        let path = ferry_test_plugins::plugin(name);
        assert!(path.is_file(), "{} was not built", path.display());
    }
    assert!(
        std::path::Path::new(ferry_test_plugins::TOOLS_DIR).join("python/bin/componentize-py").is_file(),
        "componentize-py is installed for the tests"
    );
}

#[test]
fn the_binary_does_not_depend_on_the_test_plugins() {
    let stdout = tree(&["normal,build"]);
    assert!(stdout.lines().any(|line| line.starts_with("ferry v")), "cargo tree lists ferry itself:\n{stdout}");
    for crate_name in ["ferry-test-plugins", "ferry-bench", "redact", "criterion", "proptest"] {
        assert!(
            !stdout.lines().any(|line| line.starts_with(&format!("{crate_name} v"))),
            "ferry's normal or build dependencies reach {crate_name}:\n{stdout}"
        );
    }
    // The same question with the dev-dependencies finds them: the check
    // above reads the right lines.
    let tested = tree(&["normal,build,dev"]);
    assert!(tested.lines().any(|line| line.starts_with("ferry-test-plugins v")), "ferry's tests build every plugin:\n{tested}");
}

/// `ferry`'s dependency tree along `edges`, one `name vX` a line.
fn tree(edges: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--package", "ferry", "--prefix", "none", "--edges"])
        .args(edges)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn only_ferrys_tests_build_it_with_its_test_hooks_and_the_stand_ins_faults() {
    let built = tree(&["features,normal"]);
    assert!(!built.contains("ferry feature \"test-hooks\""), "ferry's own build turns on its test hooks:\n{built}");
    let tested = tree(&["features,normal,dev"]);
    assert!(tested.contains("ferry feature \"test-hooks\""), "ferry's tests get its test hooks:\n{tested}");
    // The stand-ins serve `ferry demo`; their fault injection is for tests.
    assert!(built.contains("ferry-standin feature \"default\""), "ferry's demo uses the stand-ins:\n{built}");
    assert!(!built.contains("ferry-standin feature \"faults\""), "ferry's own build turns on the stand-ins' fault injection:\n{built}");
    assert!(tested.contains("ferry-standin feature \"faults\""), "ferry's tests get the stand-ins' faults:\n{tested}");
}
