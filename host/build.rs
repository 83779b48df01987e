//! Builds the one plugin the binary embeds — `redact`, for `ferry demo`
//! (`src/demo.rs`) — from `plugins/` for `wasm32-wasip2`, adding that target
//! to the toolchain when it is missing (with `ferry-plugin-build`, the
//! builder `ferry plugin build` uses), so that the README's first command
//! needs no set-up. Nothing else: the test-only, example, Python and
//! JavaScript plugins are built for tests by the `ferry-test-plugins` crate
//! (`tests/plugins-build`), so that `cargo build --release` and `cargo
//! install` need no Python, Node.js or network beyond crates.
//!
//! Teleport's gRPC protocol is compiled by the `ferry-proto` crate
//! (`proto/`).

use std::path::{Path, PathBuf};

use ferry_plugin_build::rust;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    // sqlx::migrate! embeds these; a new migration must rebuild the crate.
    println!("cargo:rerun-if-changed={}", manifest_dir.join("migrations").display());
    let root = manifest_dir.parent().expect("host/ sits inside the workspace").to_owned();
    for watched in rust::watched(&root, &["redact"]) {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    let target_dir = rust::target_dir(Path::new(&env("OUT_DIR")));
    match rust::build_workspace(&root, &target_dir, &["redact"], &|line| println!("cargo:warning={line}")) {
        Ok(wasm_dir) => println!("cargo:rustc-env=FERRY_PLUGIN_BUILD_DIR={}", wasm_dir.display()),
        Err(reason) => println!("cargo::error={reason}"),
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}
