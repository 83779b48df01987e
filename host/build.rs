//! Builds the plugins the binary embeds from `plugins/` for `wasm32-wasip2`,
//! adding that target to the toolchain when it is missing (with
//! `ferry-plugin-build`, the builder `ferry plugin build` uses), so that the
//! README's first command needs no set-up: `redact`, which `ferry demo`
//! runs (`src/cli/demo.rs`), and the example plugins `filter`, `route`,
//! `ecs` and `enrich`, which `ferry plugin new --example NAME` writes out
//! (`src/cli/plugin/examples.rs`), so that a user of the binary gets them
//! without Rust. On the project's 2-core machine the four add 2–9 s to a
//! fresh build of `redact` alone (49 → 52 s, and 99 → 108 s with the cores
//! shared), as they share its dependencies, and 8–22 s when added to a built
//! `redact`. Nothing else: the test-only, Python and
//! JavaScript plugins are built for tests by the `ferry-test-plugins` crate
//! (`tests/plugins-build`), so that `cargo build --release` and `cargo
//! install` need no Python, Node.js or network beyond crates.
//!
//! Teleport's gRPC protocol is compiled by the `ferry-proto` crate
//! (`proto/`).

use std::path::{Path, PathBuf};

use ferry_plugin_build::rust;

/// The plugins of `plugins/` the binary embeds.
const EMBEDDED: &[&str] = &["redact", "filter", "route", "ecs", "enrich"];

/// What the embedded plugins build from besides themselves: the conditions
/// `filter`, `route` and `enrich` share.
const SHARED: &[&str] = &["rules"];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    // sqlx::migrate! embeds these; a new migration must rebuild the crate.
    for backend in ["sqlite", "postgres"] {
        println!("cargo:rerun-if-changed={}", manifest_dir.join("migrations").join(backend).display());
    }
    let root = manifest_dir.parent().expect("host/ sits inside the workspace").to_owned();
    let watched_packages: Vec<&str> = EMBEDDED.iter().chain(SHARED).copied().collect();
    for watched in rust::watched(&root, &watched_packages) {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    let target_dir = rust::target_dir(Path::new(&env("OUT_DIR")));
    match rust::build_workspace(&root, &target_dir, EMBEDDED, &|line| println!("cargo:warning={line}")) {
        Ok(wasm_dir) => println!("cargo:rustc-env=FERRY_PLUGIN_BUILD_DIR={}", wasm_dir.display()),
        Err(reason) => println!("cargo::error={reason}"),
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}
