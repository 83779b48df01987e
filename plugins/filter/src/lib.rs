//! filter: a ferry plugin that keeps or drops audit events by rules.
//!
//! # Config
//!
//! ```toml
//! [[plugins]]
//! path = "filter.wasm"
//! [plugins.config]
//! # keep only these (when absent: keep everything not excluded) ...
//! include = [{ type = ["user.*", "session.*", "exec"] }]
//! # ... and of those, drop these
//! exclude = [
//!   { type = "session.data" },
//!   { user = "bot-*" },
//!   { match = [{ pointer = "/login", equals = "healthcheck" }] },
//! ]
//! ```
//!
//! Each rule is a condition (see the `ferry-rules` crate): every test in it
//! must hold; `type`, `user`, `cluster`, `code` take a glob or a list of
//! globs; `success` a boolean; `match` a list of JSON-pointer predicates
//! (`equals`, `in`, `exists`, `glob`).
//!
//! An event is kept when `include` is empty or one of its rules matches,
//! and no `exclude` rule matches; otherwise it is dropped (`Outcome::Drop`,
//! counted by ferry and in the plugin's counter `dropped`). At least one
//! rule must be given. Kept events pass unchanged; nothing is re-serialised.

#![deny(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod guest;

#[cfg(test)]
mod tests;

use ferry_rules::{Condition, Subject};
use serde::Deserialize;

/// Decides which events to keep.
#[derive(Debug)]
pub struct Filter {
    include: Vec<Condition>,
    exclude: Vec<Condition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Keep only events matching one of these; empty: keep all.
    #[serde(default)]
    include: Vec<Condition>,
    /// Drop events matching one of these.
    #[serde(default)]
    exclude: Vec<Condition>,
}

impl Filter {
    /// Builds the filter from the plugin's config as JSON text; the error is
    /// one line naming the key at fault.
    pub fn from_config(config_json: &str) -> Result<Filter, String> {
        let config: Config = ferry_rules::config::parse(config_json)?;
        if config.include.is_empty() && config.exclude.is_empty() {
            return Err(
                "config: no rules; give `include` or `exclude` (or both), each a list of conditions such as { type = \"session.*\" }"
                    .to_owned(),
            );
        }
        Ok(Filter { include: config.include, exclude: config.exclude })
    }

    /// Whether to keep the event with this JSON. `event_type` is its type
    /// when the caller has already read it, or empty to read it from `json`.
    pub fn keeps(&self, event_type: &str, json: &[u8]) -> bool {
        let subject = Subject::new(event_type, json);
        let included = self.include.is_empty() || self.include.iter().any(|rule| rule.matches(&subject));
        included && !self.exclude.iter().any(|rule| rule.matches(&subject))
    }
}
