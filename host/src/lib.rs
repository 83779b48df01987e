//! ferry carries Teleport audit events to Logstash through a chain of
//! sandboxed WebAssembly plugins.
//!
//! Data flows one way through the modules, each named for its role:
//! [`source`] reads events and their cursor positions, [`pipeline`] batches
//! them, runs the [`plugin`] chain, routes the results to [`sink`]s and moves
//! the cursor in [`state`] only after every sink has acknowledged (or the
//! event was dead-lettered). Each component builds from its own table of
//! ferry.toml and a [`config::Context`]; [`app`] composes the whole file
//! and the parts, and reloads the chain; [`cli`] is the command line on top.
#![deny(missing_docs)]

pub mod access;
pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod event;
pub mod metrics;
pub mod observe;
pub mod pipeline;
pub mod plugin;
pub mod retry;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
pub mod tls;
pub mod units;
pub mod watch;
