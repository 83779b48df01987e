//! ferry's state in SQLite: source cursors, session progress, dead letters.
//!
//! The database runs in WAL mode with `synchronous = NORMAL`: a crash of
//! ferry loses nothing that was committed, and a power cut can at worst take
//! back the last commits, which moves a cursor back and re-sends events
//! (duplicates, which the id makes harmless) but never skips one.

mod dead_letter;
mod store;

pub use dead_letter::{DeadLetter, Stage, StoredDeadLetter};
pub use store::{State, StateError};
