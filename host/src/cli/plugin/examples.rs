//! `ferry plugin new --example NAME`: the example plugins of `plugins/`,
//! built into the binary by `build.rs`, written out as `NAME.wasm` with a
//! `NAME.toml` of settings to edit beside it. A user of the binary gets the
//! plugins the README offers (`redact`, `filter`, `route`, `ecs`, `enrich`)
//! without Rust or a checkout.

use super::scaffold::ScaffoldError;
use std::path::{Path, PathBuf};

/// The component `build.rs` built for the plugin `$name`.
macro_rules! embedded {
    ($name:literal) => {
        include_bytes!(concat!(env!("FERRY_PLUGIN_BUILD_DIR"), "/", $name, ".wasm"))
    };
}

/// The example plugins this binary carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Example {
    /// Masks configured fields.
    Redact,
    /// Keeps or drops events by type, user, cluster, code or any field.
    Filter,
    /// Sends events to sinks by ordered rules, with fan-out and a default.
    Route,
    /// Maps Teleport events to the Elastic Common Schema for Kibana.
    Ecs,
    /// Adds static fields and a severity derived from type and code.
    Enrich,
}

impl Example {
    /// Every example, in the order of plugins/README.md.
    pub const ALL: [Example; 5] = [Example::Redact, Example::Filter, Example::Route, Example::Ecs, Example::Enrich];

    /// The plugin's name: its folder in `plugins/` and the files written.
    pub fn name(self) -> &'static str {
        match self {
            Example::Redact => "redact",
            Example::Filter => "filter",
            Example::Route => "route",
            Example::Ecs => "ecs",
            Example::Enrich => "enrich",
        }
    }

    /// The built component.
    pub fn component(self) -> &'static [u8] {
        match self {
            // The demo's copy: one copy of the bytes in the binary.
            Example::Redact => crate::cli::demo::REDACT_PLUGIN,
            Example::Filter => embedded!("filter"),
            Example::Route => embedded!("route"),
            Example::Ecs => embedded!("ecs"),
            Example::Enrich => embedded!("enrich"),
        }
    }

    /// `NAME.toml`: settings the plugin loads with as written (a chain
    /// with only the sink `default` included), to be edited.
    pub fn settings(self) -> &'static str {
        match self {
            Example::Redact => {
                "# Masks these fields (a top-level key as written, else a path through nested objects).\n\
                 [config]\n\
                 fields = [\"login\", \"addr.remote\"]\n\
                 replacement = \"[REDACTED]\"\n"
            }
            Example::Filter => {
                "# Keeps an event when `include` is empty or one of its conditions holds, and no `exclude` condition holds.\n\
                 [config]\n\
                 include = []\n\
                 exclude = [{ type = \"session.data\" }]\n"
            }
            Example::Route => {
                "# Rules in order; the first match ends the search unless it says `continue = true`.\n\
                 # Every sink named must be a [sinks.NAME] of ferry.toml.\n\
                 [config]\n\
                 default = \"default\"\n\
                 rules = [{ when = { type = \"session.*\" }, sinks = \"default\" }]\n"
            }
            Example::Ecs => {
                "# Maps Teleport events to the Elastic Common Schema; the original follows under `teleport`.\n\
                 [config]\n\
                 dataset = \"teleport.audit\"\n"
            }
            Example::Enrich => {
                "# Adds these fields (dotted paths into nested objects) and a `severity`.\n\
                 [config]\n\
                 overwrite = false\n\
                 fields = { \"labels.environment\" = \"prod\" }\n"
            }
        }
    }
}

/// Writes `example` into `dir` (made when missing) as `NAME.wasm` and
/// `NAME.toml`; refuses, writing nothing, when either exists. Returns the
/// two paths.
pub fn write(example: Example, dir: &Path) -> Result<[PathBuf; 2], ScaffoldError> {
    let wasm = dir.join(format!("{}.wasm", example.name()));
    let settings = dir.join(format!("{}.toml", example.name()));
    if let Some(existing) = [&wasm, &settings].into_iter().find(|path| path.exists()) {
        return Err(ScaffoldError::Exists { path: existing.clone() });
    }
    std::fs::create_dir_all(dir).map_err(|source| ScaffoldError::Write { path: dir.to_owned(), source })?;
    std::fs::write(&wasm, example.component()).map_err(|source| ScaffoldError::Write { path: wasm.clone(), source })?;
    std::fs::write(&settings, example.settings()).map_err(|source| ScaffoldError::Write { path: settings.clone(), source })?;
    Ok([wasm, settings])
}
