//! The host's imports, `log` and `count`, with Rust-friendly signatures.
//!
//! On `wasm32` they call ferry. On other targets there is no ferry to call,
//! so they stand in for it (log to standard error, count nothing) so that a
//! plugin's logic can be unit-tested natively.

use crate::Level;
use std::fmt::Display;

/// Writes a structured log record through ferry's log, tagged by ferry with
/// the plugin's name.
///
/// `fields` are key/value pairs; values are anything [`Display`], so
/// `&[("events", &batch.len())]` works. Follow ferry's log style: a
/// capitalised message ending in a period, details in fields, and never a
/// secret (ferry writes what it is given). Logging crosses into the host, so
/// log per batch, not per event.
///
/// Natively (not `wasm32`), writes one line to standard error instead.
pub fn log(level: Level, message: &str, fields: &[(&str, &dyn Display)]) {
    let fields: Vec<(String, String)> = fields.iter().map(|(key, value)| ((*key).to_owned(), value.to_string())).collect();
    emit(level, message, &fields);
}

/// Adds `delta` to the plugin's counter `name`, which ferry reports with its
/// own metrics.
///
/// Keep names few and fixed (`redacted_fields`, not one per user). A zero
/// `delta` is not sent, so counting unconditionally costs nothing when there
/// is nothing to count.
///
/// Natively (not `wasm32`), does nothing.
pub fn count(name: &str, delta: u64) {
    if delta > 0 {
        add(name, delta);
    }
}

#[cfg(target_arch = "wasm32")]
fn emit(level: Level, message: &str, fields: &[(String, String)]) {
    crate::bindings::ferry::plugin::host::log(level, message, fields);
}

#[cfg(target_arch = "wasm32")]
fn add(name: &str, delta: u64) {
    crate::bindings::ferry::plugin::host::count(name, delta);
}

#[cfg(not(target_arch = "wasm32"))]
fn emit(level: Level, message: &str, fields: &[(String, String)]) {
    use std::fmt::Write;
    let mut line = format!("{} {message}", level_name(level));
    for (key, value) in fields {
        // Writing to a String cannot fail.
        let _ = write!(line, " {key}={value:?}");
    }
    eprintln!("{line}");
}

#[cfg(not(target_arch = "wasm32"))]
fn add(_name: &str, _delta: u64) {}

/// The level's name as ferry's log prints it.
#[cfg(not(target_arch = "wasm32"))]
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_stand_ins_do_not_panic() {
        log(Level::Info, "Batch done.", &[("events", &3), ("sink", &"default")]);
        crate::log::warn("No fields.", &[]);
        count("seen", 0);
        count("seen", 5);
    }

    #[test]
    fn level_names_match_ferrys_log() {
        assert_eq!(level_name(Level::Trace), "TRACE");
        assert_eq!(level_name(Level::Error), "ERROR");
    }
}
