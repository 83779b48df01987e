//! Builds every plugin in `plugins/` for ferry's tests and benches: the Rust
//! workspace (the test-only `hostile` and the examples beside `redact`) and
//! the Python and JavaScript plugins (`build/script_plugins.rs`), which need
//! componentize-py and componentize-js, installed on first use under
//! `target/plugin-tools`. Only `ferry`'s dev-dependency on this crate runs
//! it, so a release build or `cargo install` never does.

use std::path::{Path, PathBuf};

#[path = "../../host/build/rust_plugins.rs"]
mod rust_plugins;
#[path = "build/script_plugins.rs"]
mod script_plugins;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.ancestors().nth(2).expect("tests/plugins-build sits inside the workspace").to_owned();
    let target_dir = rust_plugins::target_dir(Path::new(&env("OUT_DIR")));
    let wasm_dir = match rust_plugins::build(&root, &target_dir, &[]) {
        Ok(wasm_dir) => wasm_dir,
        Err(reason) => {
            println!("cargo::error={reason}");
            return;
        }
    };
    let tools_dir = target_dir.with_file_name("plugin-tools");
    if let Err(reason) = script_plugins::build(&root, &wasm_dir, &tools_dir) {
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
