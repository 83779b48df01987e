//! ferry.toml: what the user writes, and how it becomes a runnable setup.
//!
//! Parsing is strict on ferry's own tables (`deny_unknown_fields`), so a typo
//! is an error naming the key and the line rather than a silently ignored
//! setting. Every error prints on one line as `file:line:col: what`, or
//! `file: key: what` for problems found after parsing. Relative paths in the
//! file are taken relative to the file's own folder, so a service started
//! from any working directory reads the same files.
//!
//! The dependency goes one way: each component (source, sink, pipeline,
//! plugin) owns the type of its own table and builds from it and a
//! [`Context`]; this module composes those types into [`FerryConfig`], and
//! the checks that span parts (a session sink that does not exist, the
//! event handler's sections against `[sinks.*]`, `plugins-dir` against
//! `[[plugins]]`) live here, once.

mod context;
mod error;
pub mod legacy;
mod model;
mod plugins;
#[cfg(test)]
mod proptests;

pub use context::Context;
pub use error::ConfigError;
pub use model::{FerryConfig, PipelineConfig, PluginSpec, SinkConfig, SourceConfig};
pub use plugins::{Lost, Member, PluginChain, discover_chain, discover_plugins};
