//! What ferry's filter, route, ecs and enrich plugins share.
//!
//! - [`Condition`]: a test on one Teleport event (event type, user, cluster,
//!   code and success shortcuts, plus JSON-pointer predicates), written the
//!   same way in every plugin's config;
//! - [`Glob`] and [`Strings`]: `session.*` patterns, and config values that
//!   may be one string or a list;
//! - [`Subject`]: one event as conditions see it, parsed at most once;
//! - [`config::parse`]: reads a plugin's config and words its errors as one
//!   line naming the key, such as ``config: `rules[1].when.tpye`: unknown field``.
//!
//! It is plain Rust with no WebAssembly in it, so the plugins' logic is
//! tested natively with `cargo test`.

#![deny(missing_docs)]

mod condition;
pub mod config;
mod glob;
mod subject;

pub use condition::{Condition, Predicate};
/// Teleport's fields are read by ferry's event contract, so conditions read
/// an event as ferry and the SDK do.
pub use ferry_event::teleport_field;
pub use glob::{Glob, Globs, Strings};
pub use subject::Subject;

/// The project's fixture events, for the plugins' tests.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing {
    /// The repository's `fixtures/teleport-events.jsonl`: 183
    /// Teleport audit events, one per line.
    pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/teleport-events.jsonl");

    /// The fixture lines.
    pub fn fixture_lines() -> Vec<String> {
        let text = std::fs::read_to_string(FIXTURE).unwrap_or_else(|error| panic!("cannot read the fixture {FIXTURE}: {error}"));
        text.lines().map(str::to_owned).collect()
    }

    /// The fixture event with this `uid`, by id rather than line number so
    /// that adding fixtures does not break tests.
    pub fn fixture(uid: &str) -> String {
        let needle = format!("\"uid\":\"{uid}\"");
        fixture_lines().into_iter().find(|line| line.contains(&needle)).unwrap_or_else(|| panic!("no event with uid {uid} in {FIXTURE}"))
    }

    /// ferry's header type of a fixture line, as the SDK hands it to a plugin.
    pub fn event_type(line: &str) -> String {
        let header = ferry_event::Header::read(line.as_bytes()).unwrap_or_else(|error| panic!("fixture is not JSON ({error}): {line}"));
        header.event_type().to_owned()
    }
}
