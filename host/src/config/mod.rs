//! ferry.toml: what the user writes, and how it becomes a runnable setup.
//!
//! Parsing is strict on ferry's own tables (`deny_unknown_fields`), so a typo
//! is an error naming the key and the line rather than a silently ignored
//! setting. Every error prints on one line as `file:line:col: what`, or
//! `file: key: what` for problems found after parsing. Relative paths in the
//! file are taken relative to the file's own folder, so a service started
//! from any working directory reads the same files.

mod error;
pub mod legacy;
mod model;
mod plugins;
#[cfg(test)]
mod proptests;

pub use error::ConfigError;
pub use model::{FerryConfig, PipelineConfig, PluginSpec, SinkConfig, SourceConfig};
pub use plugins::{Lost, Member, PluginChain, discover_chain, discover_plugins};
