//! ferry's state in SQLite: source cursors, session progress, dead letters,
//! and the plugin chain that last ran.
//!
//! The database runs in WAL mode with `synchronous = NORMAL`: a crash of
//! ferry loses nothing that was committed, and a power cut can at worst take
//! back the last commits, which moves a cursor back and re-sends events
//! (duplicates, which the id makes harmless) but never skips one.
//!
//! A marker file beside the database remembers which database ferry ran
//! with, so that one deleted or replaced while ferry was stopped is an error
//! rather than a silent fresh start (see [`marker`]). A lock file beside it
//! keeps a second ferry off it while one runs (see [`lock`]). The database,
//! its WAL and shared-memory files, the marker and the lock file are created
//! 0600: they hold events.

pub mod backend;
pub mod copy;
mod dead_letter;
pub mod lease;
pub mod lock;
pub mod marker;
mod origins;
mod plugin_chain;
mod store;

pub use backend::{Location, PostgresLocation};
pub use dead_letter::{DeadLetter, Filter, Stage, StoredCursor, StoredDeadLetter};
pub use lease::LeadershipConfig;
pub use lock::StorageLock;
pub use marker::reset;
pub use origins::{Origin, PositionOrigin, TakeOver};
pub use plugin_chain::{ChainPlugin, last_plugin_chain};
pub use store::{State, StateError};

#[cfg(test)]
mod postgres_tests;
