//! `ferry plugin build`: builds a plugin folder into a component with the
//! same builders (`ferry-plugin-build`) that build ferry's own plugins for
//! its tests, so an author's plugin is built exactly as those are.

use ferry_plugin_build::{c, go, rust, script};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `ferry plugin build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The plugin's folder, as `ferry plugin new` wrote it.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where componentize-py and componentize-js are installed on first use
    /// (Python and JavaScript plugins). Default:
    /// `$XDG_CACHE_HOME/ferry/plugin-tools` (or `~/.cache/…`).
    #[arg(long)]
    pub tools: Option<PathBuf>,
}

/// The languages `ferry plugin build` knows, by what the folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A `Cargo.toml`: a crate built by cargo (into `CARGO_TARGET_DIR`, else
    /// the folder's `target/`).
    Rust,
    /// An `app.py` or `app.js`.
    Script(script::Language),
    /// A `NAME.c` named after the folder: compiled by clang for WASI, made a
    /// component in process.
    C,
    /// A `go.mod`: built by the Go toolchain for wasip1, made a component in
    /// process.
    Go,
}

impl Kind {
    fn of_folder(dir: &Path) -> Option<Kind> {
        if dir.join("Cargo.toml").is_file() {
            return Some(Kind::Rust);
        }
        if c::is_plugin_folder(dir) {
            return Some(Kind::C);
        }
        if go::is_plugin_folder(dir) {
            return Some(Kind::Go);
        }
        script::Language::of_folder(dir).map(Kind::Script)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Rust => "Rust",
            Kind::Script(language) => language.name(),
            Kind::C => "C",
            Kind::Go => "Go",
        }
    }
}

/// Why a plugin folder could not be built: one line, naming the folder.
#[derive(Debug, thiserror::Error)]
#[error("plugin folder {}: {reason}", dir.display())]
pub struct PluginBuildError {
    dir: PathBuf,
    reason: String,
}

/// Builds the plugin in `args.dir`, with progress on stderr, and writes the
/// component's path to `out`.
pub fn run(args: &BuildArgs, mut out: impl Write) -> Result<PathBuf, PluginBuildError> {
    let dir = &args.dir;
    let failed = |reason: String| PluginBuildError { dir: dir.clone(), reason };
    if !dir.is_dir() {
        return Err(failed("no such folder".to_owned()));
    }
    let kind = Kind::of_folder(dir).ok_or_else(|| {
        failed(
            "holds no Cargo.toml, app.py, app.js, go.mod or NAME.c (NAME: the folder's): not a plugin folder (`ferry plugin new` writes one)"
                .to_owned(),
        )
    })?;
    let progress = |line: &str| eprintln!("{line}");
    eprintln!("Building the {} plugin in {}", kind.name(), dir.display());
    let wasm = match kind {
        Kind::Rust => {
            let target_dir =
                std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()).map_or_else(|| dir.join("target"), PathBuf::from);
            rust::build_crate(dir, &target_dir, &progress)
        }
        Kind::Script(language) => {
            let tools = match &args.tools {
                Some(tools) => tools.clone(),
                None => super::user_cache("plugin-tools")
                    .ok_or_else(|| failed("no home folder to install the build tools in; give --tools DIR".to_owned()))?,
            };
            script::build_plugin(language, dir, &tools, &progress)
        }
        Kind::C => c::build_plugin(dir, &progress),
        Kind::Go => go::build_plugin(dir, &progress),
    }
    .map_err(failed)?;
    let size = std::fs::metadata(&wasm).map_or(0, |meta| meta.len());
    eprintln!("Built {} ({} KiB)", wasm.display(), size.div_ceil(1024));
    writeln!(out, "{}", wasm.display())
        .and_then(|()| out.flush())
        .map_err(|err| failed(format!("cannot write the component's path: {err}")))?;
    Ok(wasm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_that_is_no_plugin_is_one_line_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = BuildArgs { dir: dir.path().join("missing"), tools: None };
        let err = run(&args, Vec::new()).expect_err("no folder");
        assert_eq!(err.to_string(), format!("plugin folder {}: no such folder", args.dir.display()));
        let args = BuildArgs { dir: dir.path().to_owned(), tools: None };
        let err = run(&args, Vec::new()).expect_err("empty folder");
        assert!(
            err.to_string()
                .starts_with(&format!("plugin folder {}: holds no Cargo.toml, app.py, app.js, go.mod or NAME.c", dir.path().display())),
            "{err}"
        );
        std::fs::write(dir.path().join("app.py"), "").expect("write");
        let err = run(&args, Vec::new()).expect_err("no wit");
        assert!(err.to_string().contains(": no wit/ folder"), "{err}");
        assert_eq!(Kind::of_folder(dir.path()), Some(Kind::Script(script::Language::Python)));
    }
}
