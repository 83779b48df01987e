//! Builds the plugins in `plugins/` for `wasm32-wasip2` so that tests,
//! `ferry demo` and `ferry bench` always run the plugins of this checkout,
//! with no manual step. The plugins form their own cargo workspace; one
//! build of it serves every profile of the host (debug tests, release demo).
//! The Python and JavaScript plugins are built into the same folder
//! (`build/script_plugins.rs`).
//!
//! It also compiles ferry's copy of Teleport's gRPC protocol (`proto/`) into
//! Rust client and server code, with protox so that no system `protoc` is
//! needed.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "build/script_plugins.rs"]
mod script_plugins;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    compile_teleport_protocol(&manifest_dir.join("proto"));
    // sqlx::migrate! embeds these; a new migration must rebuild the crate.
    println!("cargo:rerun-if-changed={}", manifest_dir.join("migrations").display());
    let root = manifest_dir.parent().expect("host/ sits inside the workspace").to_owned();
    for watched in ["plugins/Cargo.toml", "plugins/Cargo.lock", "plugins/redact", "plugins/hostile", "plugins/rules", "plugins/filter", "plugins/route", "plugins/ecs", "plugins/enrich", "event", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = plugin_target_dir(Path::new(&env("OUT_DIR")));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(root.join("plugins/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // WebAssembly SIMD (wasmtime runs it on the CPU's vector unit): the
        // byte scans a plugin does most — line breaks, quotes, keys — go 16
        // bytes at a time instead of 4.
        .args(["--config", r#"target.wasm32-wasip2.rustflags=["-C", "target-feature=+simd128"]"#]);
    // The outer build's settings are for the host, not for wasm32.
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS" || key.starts_with("RUSTC_") || key == "RUSTFLAGS" {
            command.env_remove(key);
        }
    }
    let status = command.status().expect("cannot run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed ({status}); see the cargo output above. \
             Is the target installed? `rustup target add wasm32-wasip2` (rust-toolchain.toml lists it)"
        );
    }
    let wasm_dir = target_dir.join("wasm32-wasip2/release");
    let tools_dir = target_dir.with_file_name("plugin-tools");
    if let Err(reason) = script_plugins::build(&root, &wasm_dir, &tools_dir) {
        println!("cargo::error={reason}");
        return;
    }
    println!("cargo:rustc-env=FERRY_PLUGIN_BUILD_DIR={}", wasm_dir.display());
    // Tests share one compile cache, so each Python or JavaScript plugin is
    // compiled by Cranelift once (seconds each), not once per test.
    println!("cargo:rustc-env=FERRY_TEST_PLUGIN_CACHE={}", target_dir.join("compiled").display());
    // The scaffold tests build plugins with the same tools, offline.
    println!("cargo:rustc-env=FERRY_PLUGIN_TOOLS={}", tools_dir.display());
}

/// Teleport's audit log and Auth Service protocol, client and server code,
/// into OUT_DIR (one `.rs` file per protobuf package).
fn compile_teleport_protocol(proto_dir: &Path) {
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    let files = [
        "teleport/auditlog/v1/auditlog.proto",
        "teleport/legacy/types/types.proto",
        "teleport/legacy/client/proto/authservice.proto",
    ];
    let descriptors = protox::compile(files, [proto_dir]).unwrap_or_else(|err| panic!("the Teleport protocol in {} does not compile: {err}", proto_dir.display()));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)
        .unwrap_or_else(|err| panic!("cannot generate Rust code for the Teleport protocol: {err}"));
}

/// `target/wasm-plugins`, found from `target/<profile>/build/<crate>/out`.
fn plugin_target_dir(out_dir: &Path) -> PathBuf {
    let profile_dir = out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(Path::parent)
        .expect("OUT_DIR lies under target/<profile>/build");
    profile_dir.parent().unwrap_or(profile_dir).join("wasm-plugins")
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}
