//! Where ferry's tests and benches find the plugins this crate's build
//! script built (see `build.rs`). A dev-dependency of `ferry` only.

use std::path::{Path, PathBuf};

/// The folder of built components: `<name>.wasm` for every Rust, Python and
/// JavaScript plugin in `plugins/` (`redact`, `hostile`, `filter`, `tag`, …).
pub const PLUGIN_DIR: &str = env!("FERRY_PLUGIN_BUILD_DIR");

/// The compile cache the tests share, so that each Python or JavaScript
/// plugin is compiled by Cranelift once (seconds each), not once per test.
pub const COMPILE_CACHE: &str = env!("FERRY_TEST_PLUGIN_CACHE");

/// The installed componentize-py (`python/`) and componentize-js (`js/`);
/// the scaffold tests build plugins with them, offline.
pub const TOOLS_DIR: &str = env!("FERRY_PLUGIN_TOOLS");

/// Every plugin this crate builds: the Rust workspace's and the Python and
/// JavaScript examples. Tests that go through all plugins use this list
/// rather than the folder, where a test may be building a plugin of its own.
pub const PLUGINS: &[&str] = &["redact", "hostile", "filter", "route", "ecs", "enrich", "tag", "reshape", "probe-py", "probe-js"];

/// The built plugin `name` (`redact`, `hostile`, `tag`, …).
pub fn plugin(name: &str) -> PathBuf {
    Path::new(PLUGIN_DIR).join(format!("{name}.wasm"))
}
