//! Fault injection stays out of ferry's own build: ferry depends on the
//! stand-ins for `ferry demo`, but only its dev-dependency turns on the
//! `faults` feature, and resolver 3 keeps dev features out of `cargo build`
//! and `cargo install`.

use std::process::Command;

/// The features cargo resolves for ferry's dependencies along `edges`.
fn features(edges: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--package", "ferry", "--edges", edges, "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_binary_gets_the_stand_ins_without_their_faults() {
    let built = features("features,normal");
    assert!(built.contains("ferry-standin feature \"default\""), "ferry's demo uses the stand-ins:\n{built}");
    assert!(!built.contains("ferry-standin feature \"faults\""), "ferry's own build turns on the stand-ins' fault injection:\n{built}");
    // The same question, asked of ferry's tests, finds the feature: the
    // check above looks for the right words.
    let tested = features("features,normal,dev");
    assert!(tested.contains("ferry-standin feature \"faults\""), "ferry's tests get the stand-ins' faults:\n{tested}");
}
