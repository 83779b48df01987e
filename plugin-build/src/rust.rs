//! Rust plugins: cargo builds them for `wasm32-wasip2`, after the target is
//! added to the toolchain when it is missing. [`build_workspace`] builds
//! packages of ferry's own `plugins/` workspace (for ferry's build script and
//! the test-plugins crate's); [`build_crate`] one plugin author's crate (for
//! `ferry plugin build`). Both build with the same settings.

use crate::{Failure, Progress};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target the plugins build for (rust-toolchain.toml lists it).
pub const TARGET: &str = "wasm32-wasip2";

/// `target/wasm-plugins`, found from a build script's
/// `target/<profile>/build/<crate>/out`: one folder that every profile and
/// both build scripts share.
pub fn target_dir(out_dir: &Path) -> PathBuf {
    let profile_dir = out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(Path::parent)
        .expect("OUT_DIR lies under target/<profile>/build");
    profile_dir.parent().unwrap_or(profile_dir).join("wasm-plugins")
}

/// What a build script that builds `packages` of `root/plugins` (every
/// member when empty) must watch: their sources and everything they build
/// from (a listed package must not use a path dependency in `plugins/`
/// besides itself).
pub fn watched(root: &Path, packages: &[&str]) -> Vec<PathBuf> {
    let mut watched: Vec<PathBuf> =
        ["plugins/Cargo.toml", "plugins/Cargo.lock", "event", "guest-sdk", "wit"].iter().map(|path| root.join(path)).collect();
    if packages.is_empty() {
        watched.push(root.join("plugins"));
    }
    watched.extend(packages.iter().map(|package| root.join("plugins").join(package)));
    watched
}

/// Builds `packages` of `root/plugins` (every member when empty) into
/// `target_dir`; the components land in `target_dir/wasm32-wasip2/release`,
/// which is returned. Meant for build scripts: the outer build's settings
/// are for the host, not for wasm32, so they are not passed on.
/// `progress` hears of a target being installed (a build script shows it as
/// a cargo warning).
pub fn build_workspace(root: &Path, target_dir: &Path, packages: &[&str], progress: Progress) -> Result<PathBuf, Failure> {
    ensure_target(target_dir, progress)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = cargo_build(&cargo, &root.join("plugins/Cargo.toml"), target_dir);
    command.arg("--locked");
    for package in packages {
        command.args(["--package", package]);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS" || key.starts_with("RUSTC_") || key == "RUSTFLAGS" {
            command.env_remove(key);
        }
    }
    let status = command.status().map_err(|err| format!("cannot run cargo to build the plugins: {err}"))?;
    if !status.success() {
        return Err(format!(
            "building the plugins in {} for {TARGET} failed ({status}); see the cargo output above",
            root.join("plugins").display()
        ));
    }
    Ok(target_dir.join(TARGET).join("release"))
}

/// Builds the plugin crate in `dir` (its `Cargo.toml` names one package
/// with a `cdylib`, as `ferry plugin new` writes it) into `target_dir`, in
/// the user's environment; returns the component's path. cargo's own output
/// goes to stderr; `progress` hears of a target being installed.
pub fn build_crate(dir: &Path, target_dir: &Path, progress: Progress) -> Result<PathBuf, Failure> {
    let manifest = dir.join("Cargo.toml");
    let name = package_name(&manifest)?;
    ensure_target(target_dir, progress)?;
    let mut command = cargo_build("cargo", &manifest, target_dir);
    let status = command.status().map_err(|err| format!("cannot run cargo (is Rust installed? https://rustup.rs): {err}"))?;
    if !status.success() {
        return Err(format!("cargo build --target {TARGET} failed ({status}); see its output above"));
    }
    let wasm = target_dir.join(TARGET).join("release").join(format!("{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        return Err(format!("cargo built no {}: is the package a `cdylib` (crate-type = [\"cdylib\"] under [lib])?", wasm.display()));
    }
    Ok(wasm)
}

/// `cargo build --release --target wasm32-wasip2` of `manifest` into
/// `target_dir`, with the settings every ferry plugin is built with.
fn cargo_build(cargo: &str, manifest: &Path, target_dir: &Path) -> Command {
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // WebAssembly SIMD (wasmtime runs it on the CPU's vector unit): the
        // byte scans a plugin does most — line breaks, quotes, keys — go 16
        // bytes at a time instead of 4.
        .args(["--config", r#"target.wasm32-wasip2.rustflags=["-C", "target-feature=+simd128"]"#])
        // Whatever cargo prints goes with its progress to stderr: stdout
        // carries cargo's directives in a build script and the component's
        // path in `ferry plugin build`.
        .stdout(std::io::stderr());
    command
}

/// The `name` of `[package]` in `manifest`: enough TOML reading for the
/// manifests `ferry plugin new` writes, with no TOML parser in ferry's build.
fn package_name(manifest: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(manifest).map_err(|err| format!("cannot read {}: {err}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(value) = line.strip_prefix("name").map(str::trim_start).and_then(|rest| rest.strip_prefix('=')) {
            let value = value.trim();
            if let Some(name) = value.strip_prefix('"').and_then(|value| value.split('"').next()) {
                return Ok(name.to_owned());
            }
        }
    }
    Err(format!("{} has no `name = \"…\"` under [package]", manifest.display()))
}
/// Adds the wasm32-wasip2 standard library to the toolchain this build runs
/// on when it is missing. rustup installs a toolchain file's `targets` only
/// with the toolchain itself, so a machine that already had `stable` lacks
/// it, and the README's first command would stop at "can't find crate for
/// `core`". Two build scripts may get here at once: a lock file beside the
/// plugins' target folder lets one install while the other waits.
fn ensure_target(target_dir: &Path, progress: Progress) -> Result<(), Failure> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = || -> Result<PathBuf, String> {
        let output = Command::new(&rustc)
            .args(["--print", "sysroot"])
            .output()
            .map_err(|err| format!("cannot run {rustc} --print sysroot: {err}"))?;
        if !output.status.success() {
            return Err(format!("`{rustc} --print sysroot` failed ({})", output.status));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
    };
    let installed = || -> Result<bool, String> { Ok(sysroot()?.join("lib/rustlib").join(TARGET).join("lib").is_dir()) };
    if installed()? {
        return Ok(());
    }
    let has_rustup = Command::new("rustup").arg("--version").output().is_ok_and(|output| output.status.success());
    if !has_rustup {
        return Err(format!(
            "ferry's plugins build for {TARGET}, but the Rust toolchain at {} has no {TARGET} standard library and rustup was not found to add it; install the {TARGET} standard library (rust-std) for that toolchain, e.g. with rustup: `rustup target add {TARGET}`",
            sysroot()?.display()
        ));
    }
    std::fs::create_dir_all(target_dir).map_err(|err| format!("cannot create {}: {err}", target_dir.display()))?;
    let lock_path = target_dir.join(".target-install.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|err| format!("cannot create {}: {err}", lock_path.display()))?;
    lock.lock().map_err(|err| format!("cannot lock {}: {err}", lock_path.display()))?;
    if installed()? {
        return Ok(());
    }
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Some(toolchain) = &toolchain {
        rustup.args(["--toolchain", toolchain]);
    }
    let shown = match &toolchain {
        Some(toolchain) => format!("rustup target add {TARGET} --toolchain {toolchain}"),
        None => format!("rustup target add {TARGET}"),
    };
    progress(&format!("The {TARGET} target (ferry's plugins build for it) is not installed; running `{shown}`."));
    match rustup.status() {
        Ok(status) if status.success() && installed()? => Ok(()),
        Ok(status) if status.success() => Err(format!(
            "`{shown}` succeeded but the toolchain at {} still has no {TARGET} standard library; install that target for it",
            sysroot()?.display()
        )),
        Ok(status) => Err(format!(
            "`{shown}` failed ({status}); ferry's plugins build for {TARGET}: install that target for the Rust toolchain in use"
        )),
        Err(err) => Err(format!(
            "cannot run `{shown}`: {err}; ferry's plugins build for {TARGET}: install that target for the Rust toolchain in use"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_name_is_read_from_the_package_table_only() {
        let dir = std::env::temp_dir().join(format!("ferry-plugin-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp folder");
        let manifest = dir.join("Cargo.toml");
        std::fs::write(&manifest, "[lib]\nname = \"not_this\"\n\n[package]\nversion = \"0.1.0\"\nname    =   \"my-plugin\" # the crate\n[dependencies]\nname = \"nor_this\"\n").expect("write");
        assert_eq!(package_name(&manifest).as_deref(), Ok("my-plugin"));
        std::fs::write(&manifest, "[workspace]\n").expect("write");
        assert_eq!(package_name(&manifest), Err(format!("{} has no `name = \"…\"` under [package]", manifest.display())));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
