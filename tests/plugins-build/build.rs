//! Builds every plugin in `plugins/` for ferry's tests and benches: the Rust
//! workspace (the test-only `hostile` and the examples beside `redact`) and
//! the Python and JavaScript plugins, which need componentize-py and
//! componentize-js, installed on first use under `target/plugin-tools` —
//! with the `ferry-plugin-build` library that `ferry plugin build` uses.
//! Only `ferry`'s dev-dependency on this crate runs it, so a release build
//! or `cargo install` never does.

use ferry_plugin_build::{rust, script};
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.ancestors().nth(2).expect("tests/plugins-build sits inside the workspace").to_owned();
    for watched in rust::watched(&root, &[]).into_iter().chain(script::watched(&root)) {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    let target_dir = rust::target_dir(Path::new(&env("OUT_DIR")));
    let wasm_dir = match rust::build_workspace(&root, &target_dir, &[], &|line| println!("cargo:warning={line}")) {
        Ok(wasm_dir) => wasm_dir,
        Err(reason) => {
            println!("cargo::error={reason}");
            return;
        }
    };
    let tools_dir = target_dir.with_file_name("plugin-tools");
    if let Err(reason) = script::build_examples(&root, &wasm_dir, &tools_dir) {
        println!("cargo::error={reason}");
        return;
    }
    println!("cargo:rustc-env=FERRY_PLUGIN_BUILD_DIR={}", wasm_dir.display());
    println!("cargo:rustc-env=FERRY_TEST_PLUGIN_CACHE={}", target_dir.join("compiled").display());
    println!("cargo:rustc-env=FERRY_PLUGIN_TOOLS={}", tools_dir.display());
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}
