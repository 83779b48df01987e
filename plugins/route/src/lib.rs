//! route: a ferry plugin that sends each audit event to sinks by rules.
//!
//! # Config
//!
//! ```toml
//! [[plugins]]
//! path = "route.wasm"
//! [plugins.config]
//! default = "default"
//! [[plugins.config.rules]]
//! when = { type = "session.*" }
//! sinks = "sessions"
//! [[plugins.config.rules]]
//! when = { type = "user.login", success = false }
//! sinks = ["security", "default"]
//! continue = true
//! [[plugins.config.rules]]
//! when = { code = "*W" }
//! sinks = "security"
//! ```
//!
//! - `rules`: checked in order. A rule whose `when` condition matches (a
//!   rule without `when` matches every event) adds its `sinks` (one name or
//!   a list) to the event's sinks. Then, if the rule has `continue = true`,
//!   the next rules are checked too (fan-out); otherwise (the default) the
//!   first matching rule is the last one checked.
//! - `default` (optional, one name or a list): the sinks of an event no rule
//!   matched. Without it such an event is passed on unrouted and ferry
//!   delivers it to its own default sink.
//!
//! An event goes to every sink collected, each once, in the order first
//! named (`Outcome::Route`). Sink names must be sinks of ferry.toml; ferry
//! refuses an event routed elsewhere. `route` should be the last plugin of
//! the chain that routes: when several route, the last one wins.

#![deny(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod guest;

#[cfg(test)]
mod tests;

use ferry_rules::config::key_error;
use ferry_rules::{Condition, Strings, Subject};
use serde::Deserialize;

/// Decides where events go.
#[derive(Debug)]
pub struct Router {
    rules: Vec<Rule>,
    default: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    default: Strings,
}

/// One routing rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// Which events it applies to; absent: all.
    when: Option<Condition>,
    /// Where they go.
    sinks: Strings,
    /// Whether later rules are checked after this one matched.
    #[serde(rename = "continue", default)]
    go_on: bool,
}

impl Router {
    /// Builds the router from the plugin's config as JSON text; the error is
    /// one line naming the key at fault.
    pub fn from_config(config_json: &str) -> Result<Router, String> {
        let config: Config = ferry_rules::config::parse(config_json)?;
        if config.rules.is_empty() && config.default.0.is_empty() {
            return Err("config: no `rules` and no `default`; give at least one rule such as { when = { type = \"session.*\" }, sinks = \"sessions\" }".to_owned());
        }
        for (index, rule) in config.rules.iter().enumerate() {
            check_sinks(&format!("rules[{index}].sinks"), &rule.sinks.0, false)?;
        }
        check_sinks("default", &config.default.0, true)?;
        Ok(Router { rules: config.rules, default: config.default.0 })
    }

    /// The sinks of the event with this JSON (`event_type` as for
    /// `Filter::keeps`: empty to read it from `json`), each once, in
    /// the order first named; `None` when no rule matched and there is no
    /// `default`.
    pub fn sinks(&self, event_type: &str, json: &[u8]) -> Option<Vec<String>> {
        let subject = Subject::new(event_type, json);
        let mut sinks: Vec<String> = Vec::new();
        let mut matched = false;
        for rule in &self.rules {
            if rule.when.as_ref().is_some_and(|when| !when.matches(&subject)) {
                continue;
            }
            matched = true;
            for sink in &rule.sinks.0 {
                if !sinks.contains(sink) {
                    sinks.push(sink.clone());
                }
            }
            if !rule.go_on {
                break;
            }
        }
        if !matched {
            sinks = self.default.clone();
        }
        (!sinks.is_empty()).then_some(sinks)
    }
}

/// Sink names must be given (unless `may_be_empty`) and not blank.
fn check_sinks(key: &str, sinks: &[String], may_be_empty: bool) -> Result<(), String> {
    if sinks.is_empty() && !may_be_empty {
        return Err(key_error(key, "is empty; name at least one sink of ferry.toml"));
    }
    match sinks.iter().position(|sink| sink.trim().is_empty()) {
        Some(at) => Err(key_error(&format!("{key}[{at}]"), "is blank; give the name of a sink of ferry.toml")),
        None => Ok(()),
    }
}
