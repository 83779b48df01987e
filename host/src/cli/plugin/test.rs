//! `ferry plugin test`: the plugin on real events, with what became of each
//! one — what a plugin author runs before deploying a plugin.
//!
//! It loads the plugin exactly as `ferry start` does (same runtime, same
//! limits, same contract checks) and settles each outcome with the chain's
//! own code: a replacement that is not one JSON object, or a route to no
//! sink or to a sink not named with `--sink`, is reported as the failure it
//! would be.

use super::{ToolError, compile_cache};
use crate::event::{Event, Outcome, Route};
use crate::metrics::Metrics;
use crate::pipeline::{EventFate, settle};
use crate::plugin::{Runtime, Transform, WasmPlugin};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `ferry plugin test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The plugin's component file (`.wasm`).
    pub plugin: PathBuf,
    /// The plugin's config as its `init` receives it: a JSON object. Over
    /// the `[config]` of the `NAME.toml` beside the plugin, whose settings
    /// (name, limits) apply as under `ferry start`; without either, `{}`.
    #[arg(long)]
    pub config: Option<String>,
    /// Events per `process` call, as `batch-size` in ferry.toml.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Where compiled plugins are kept between runs, so that a Python or
    /// JavaScript plugin is compiled once, not at every try. Default:
    /// `$XDG_CACHE_HOME/ferry/plugin-cache` (or `~/.cache/…`); `none`
    /// compiles in memory every time.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// A sink of the ferry.toml the plugin will run in, which it may route
    /// to (repeat for each); a route to any other is a failed event, as in
    /// the pipeline.
    #[arg(long = "sink", value_name = "NAME", default_value = "default")]
    pub sinks: Vec<String>,
}

/// What `ferry plugin test` counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Input events (valid JSON objects).
    pub events: u64,
    /// Events kept unchanged.
    pub kept: u64,
    /// Events replaced (not routed).
    pub replaced: u64,
    /// Events routed to named sinks, changed or not.
    pub routed: u64,
    /// Events dropped on purpose.
    pub dropped: u64,
    /// Events failed, by the plugin or by a failed call.
    pub failed: u64,
    /// Input lines that are not events.
    pub invalid: u64,
    /// `process` calls made.
    pub calls: u64,
    /// Calls that failed as a whole (trap, deadline, memory, malformed result).
    pub failed_calls: u64,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "summary: {} events in {} calls: {} kept, {} replaced, {} routed, {} dropped, {} failed ({} failed calls); {} invalid lines",
            self.events, self.calls, self.kept, self.replaced, self.routed, self.dropped, self.failed, self.failed_calls, self.invalid
        )
    }
}

/// `ferry plugin test`: loads the plugin, runs the JSON Lines of `input`
/// through it `--batch` events at a time, and writes one line per input line
/// to `out`, then a summary line. Fails only when the plugin cannot be loaded
/// or the input or output fails; what the plugin does to events is reported.
pub fn test(args: &TestArgs, input: impl BufRead, mut out: impl Write) -> Result<Tally, ToolError> {
    if args.batch == 0 {
        return Err(ToolError::Batch);
    }
    // The plugin as `ferry start` would load it from a plugins folder: with
    // its `NAME.toml` (a plugin that needs its settings works here too).
    let (spec, _) = crate::app::spec_beside(&args.plugin)?;
    let mut settings = spec.settings();
    if let Some(config) = &args.config {
        let config: Value = serde_json::from_str(config).map_err(|err| ToolError::Config(format!("not JSON: {err}")))?;
        if !config.is_object() {
            return Err(ToolError::Config("must be a JSON object, such as '{\"fields\": [\"login\"]}'".to_owned()));
        }
        settings.config_json = config.to_string();
    }
    let runtime = Runtime::new(compile_cache(args.cache.as_deref()), Arc::new(Metrics::default()))?;
    let (mut plugin, _) = runtime.load(settings)?;
    let sinks: BTreeSet<String> = args.sinks.iter().cloned().collect();

    let mut tally = Tally::default();
    let mut pending = Pending::default();
    let mut number = 0;
    for line in split_lines(input) {
        let line = line.map_err(ToolError::Input)?;
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        pending.push(number, Event::from_json(line).map_err(|err| err.to_string()));
        if pending.events.len() == args.batch {
            pending.run(&mut plugin, &sinks, &mut out, &mut tally).map_err(ToolError::Output)?;
        }
    }
    pending.run(&mut plugin, &sinks, &mut out, &mut tally).map_err(ToolError::Output)?;
    writeln!(out, "{tally}").and_then(|()| out.flush()).map_err(ToolError::Output)?;
    Ok(tally)
}

/// The lines of `input` as bytes, without their line ending: events need
/// not be UTF-8 to be reported (the event parser says why they are refused).
fn split_lines(input: impl BufRead) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    input.split(b'\n').map(|line| {
        line.map(|mut line| {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            line
        })
    })
}

/// Input lines waiting for the next call, in input order.
#[derive(Default)]
struct Pending {
    /// Line number, and the index into `events` or why the line is no event.
    lines: Vec<(usize, Result<usize, String>)>,
    events: Vec<Event>,
}

impl Pending {
    fn push(&mut self, number: usize, event: Result<Event, String>) {
        let slot = event.map(|event| {
            self.events.push(event);
            self.events.len() - 1
        });
        self.lines.push((number, slot));
    }

    /// Runs the waiting events through `plugin` in one call and reports every
    /// waiting line in order.
    fn run(&mut self, plugin: &mut WasmPlugin, sinks: &BTreeSet<String>, out: &mut impl Write, tally: &mut Tally) -> std::io::Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.events);
        let lines = std::mem::take(&mut self.lines);
        let result = if events.is_empty() {
            Ok(Vec::new())
        } else {
            tally.calls += 1;
            plugin.process(&events)
        };
        if result.is_err() {
            tally.failed_calls += 1;
        }
        let mut outcomes = result.as_ref().ok().map(|outcomes| outcomes.iter());
        for (number, slot) in lines {
            let index = match slot {
                Ok(index) => index,
                Err(reason) => {
                    tally.invalid += 1;
                    writeln!(out, "#{number} invalid input: {reason}")?;
                    continue;
                }
            };
            let event = &events[index];
            tally.events += 1;
            let verdict = match (&result, outcomes.as_mut().and_then(Iterator::next)) {
                (Err(error), _) => {
                    tally.failed += 1;
                    format!("failed (the whole call): {error}")
                }
                (Ok(_), Some(outcome)) => judge(event, outcome, sinks, tally),
                // The plugin checks the count; this is only for the type system.
                (Ok(_), None) => "failed: no outcome".to_owned(),
            };
            writeln!(out, "#{number} {} {verdict}", event.id)?;
        }
        Ok(())
    }
}

/// What the pipeline would make of `outcome` for `event`, in words: the
/// chain's own [`settle`] decides, with `sinks` as the configured sinks.
fn judge(event: &Event, outcome: &Outcome, sinks: &BTreeSet<String>, tally: &mut Tally) -> String {
    let replaced = matches!(outcome, Outcome::Replace(_) | Outcome::Route(Route { json: Some(_), .. }));
    match settle(event.clone(), outcome.clone(), sinks) {
        EventFate::Dropped => {
            tally.dropped += 1;
            "dropped".to_owned()
        }
        EventFate::Failed { reason, .. } => {
            tally.failed += 1;
            format!("failed: {reason}")
        }
        EventFate::Next { event: next, routes } => {
            let changes = replaced.then(|| changes(event, &next));
            match (routes, changes) {
                (None, None) => {
                    tally.kept += 1;
                    "kept".to_owned()
                }
                (None, Some(changes)) => {
                    tally.replaced += 1;
                    format!("replaced: {changes}")
                }
                (Some(routes), changes) => {
                    tally.routed += 1;
                    let mut verdict = format!("routed to {}", routes.join(", "));
                    if let Some(changes) = changes {
                        let _ = write!(verdict, ", replaced: {changes}");
                    }
                    verdict
                }
            }
        }
    }
}

/// The fields that differ between `event` and its replacement `next`.
fn changes(event: &Event, next: &Event) -> String {
    let old: Value = serde_json::from_slice(&event.json).unwrap_or(Value::Null);
    let new: Value = serde_json::from_slice(&next.json).unwrap_or(Value::Null);
    let mut found = Vec::new();
    diff("", &old, &new, &mut found);
    if found.is_empty() {
        return "no field changed".to_owned();
    }
    found.join(", ")
}

/// Adds the differences between `old` and `new`, both at JSON pointer
/// `pointer`, to `found`: `+/p value` added, `-/p value` removed,
/// `~/p old → new` changed, in the order of the keys in `old` (then of those
/// new in `new`). Objects are compared key by key and arrays of equal length
/// element by element; anything else is changed as a whole.
fn diff(pointer: &str, old: &Value, new: &Value, found: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, before) in old {
                let at = format!("{pointer}/{}", escape_pointer(key));
                match new.get(key) {
                    Some(after) => diff(&at, before, after, found),
                    None => found.push(format!("-{at} {}", shown(before))),
                }
            }
            for (key, after) in new.iter().filter(|(key, _)| !old.contains_key(*key)) {
                found.push(format!("+{pointer}/{} {}", escape_pointer(key), shown(after)));
            }
        }
        (Value::Array(old), Value::Array(new)) if old.len() == new.len() => {
            for (index, (before, after)) in old.iter().zip(new).enumerate() {
                diff(&format!("{pointer}/{index}"), before, after, found);
            }
        }
        _ if old != new => found.push(format!("~{pointer} {} → {}", shown(old), shown(new))),
        _ => {}
    }
}

/// A key as one JSON pointer token (RFC 6901).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A value as compact JSON, cut to keep a report line readable.
fn shown(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diffed(old: &str, new: &str) -> Vec<String> {
        let mut found = Vec::new();
        diff("", &serde_json::from_str(old).expect("old"), &serde_json::from_str(new).expect("new"), &mut found);
        found
    }

    #[test]
    fn a_diff_names_each_changed_field_by_json_pointer() {
        assert_eq!(
            diffed(
                r#"{"login":"root","addr.remote":"1.2.3.4","a/b":1,"tags":["x","y"],"user":{"name":"al","id":3}}"#,
                r#"{"login":"***","a/b":1,"tags":["x","z"],"user":{"name":"al"},"severity":"high"}"#
            ),
            ["~/login \"root\" → \"***\"", "-/addr.remote \"1.2.3.4\"", "~/tags/1 \"y\" → \"z\"", "-/user/id 3", "+/severity \"high\""]
        );
        assert_eq!(diffed(r#"{"a":[1]}"#, r#"{"a":[1,2]}"#), ["~/a [1] → [1,2]"]);
        assert_eq!(diffed(r#"{"m~n":1}"#, r#"{"m~n":2}"#), ["~/m~0n 1 → 2"]);
        assert!(diffed(r#"{"a":{"b":[1,{"c":null}]}}"#, r#"{"a":{"b":[1,{"c":null}]}}"#).is_empty());
    }

    #[test]
    fn outcomes_are_judged_as_the_pipeline_would() {
        let event = Event::from_json(br#"{"uid":"u1","event":"user.login","login":"root"}"#.to_vec()).expect("event");
        let mut tally = Tally::default();
        let sinks = ["default", "security"].map(String::from).into();
        let route = |sinks: &[&str], json: Option<&[u8]>| {
            Outcome::Route(Route { sinks: sinks.iter().map(|s| s.to_string()).collect(), json: json.map(<[u8]>::to_vec) })
        };
        let verdicts: Vec<String> = [
            Outcome::Keep,
            Outcome::Drop,
            Outcome::Fail("no\nway".into()),
            Outcome::Replace(br#"{"uid":"u1","event":"user.login"}"#.to_vec()),
            Outcome::Replace(b"[1]".to_vec()),
            Outcome::Replace(event.json.clone()),
            route(&["security", "default"], None),
            route(&["security"], Some(br#"{"uid":"u1","event":"user.login","login":"root","severity":3}"#)),
            route(&[], None),
            route(&["security", "nowhere"], None),
        ]
        .iter()
        .map(|outcome| judge(&event, outcome, &sinks, &mut tally))
        .collect();
        assert_eq!(
            verdicts,
            [
                "kept",
                "dropped",
                "failed: no way",
                "replaced: -/login \"root\"",
                "failed: returned not a JSON object (it starts with `[`)",
                "replaced: no field changed",
                "routed to security, default",
                "routed to security, replaced: +/severity 3",
                "failed: routed to no sink (use drop to drop an event)",
                "failed: routed to unknown sink `nowhere`",
            ]
        );
        let expected = Tally { events: 0, kept: 1, replaced: 2, routed: 2, dropped: 1, failed: 4, ..Tally::default() };
        assert_eq!(tally, expected);
    }

    #[test]
    fn long_values_are_cut() {
        let long = Value::from("x".repeat(100));
        let text = shown(&long);
        assert_eq!(text.chars().count(), 61);
        assert!(text.ends_with('…'));
    }
}
