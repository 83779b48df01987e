//! Builds ferry plugins into WebAssembly components, one entry per language:
//! [`rust`] (cargo for `wasm32-wasip2`, adding that target with rustup when
//! it is missing), [`script`] (Python with componentize-py, JavaScript
//! with componentize-js, each installed on first use into a tools folder)
//! and, with the features `c` and `go`, `c` (clang for WASI) and `go` (the
//! standard Go toolchain for wasip1), each then made a component in process
//! by `component` (only `ferry plugin new/build` need them, so ferry's build
//! script does not compile wit-component).
//!
//! One library for every builder of plugins, so that they all build alike:
//! ferry's build script (the `redact` plugin the binary embeds), the
//! test-plugins crate's (every plugin in `plugins/`, for tests and benches)
//! and `ferry plugin build` (a plugin author's folder). Plain std: it is a
//! build-dependency of ferry.
//!
//! Nothing here prints: a failure is returned as the one line to show, and
//! progress goes to the caller's [`Progress`]. Build scripts name the files
//! cargo must watch themselves (see [`rust::watched`]).

#[cfg(feature = "c")]
pub mod c;
#[cfg(feature = "component")]
pub mod component;
#[cfg(feature = "go")]
pub mod go;
pub mod rust;
pub mod script;

/// What went wrong, as one line to show (cargo shows it for a build
/// script; `ferry plugin build` after the plugin's folder).
pub type Failure = String;

/// Told what a long step is about to do ("Installing componentize-py
/// 0.25.1 into …"), so that a person waiting knows; build scripts ignore it.
pub type Progress<'a> = &'a dyn Fn(&str);

/// Ignores progress (build scripts: cargo shows nothing of it anyway).
pub fn quiet(_: &str) {}
