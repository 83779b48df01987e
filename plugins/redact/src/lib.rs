//! redact: a ferry plugin that masks configured fields of audit events.
//!
//! It is also ferry's example plugin, so it is written to be read. The
//! masking is plain Rust ([`Redactor`]) that knows nothing of WebAssembly;
//! the glue that makes it a plugin is the small `guest` module, built only
//! for `wasm32`. The host compiles this crate natively too, to compare the
//! plugin with the same code run without a sandbox.
//!
//! # Config
//!
//! The plugin's table in ferry.toml, which ferry hands to `init` as JSON:
//!
//! ```json
//! {"fields": ["login", "addr.remote", "user.traits.logins"], "replacement": "***"}
//! ```
//!
//! - `fields` (required, not empty): paths of the fields to mask. A path
//!   first names a top-level key as written, because Teleport writes some
//!   keys with dots in them (`addr.remote`); when the event has no such key,
//!   the path is split on `.` into nested object keys
//!   (`user.traits.logins` is `{"user":{"traits":{"logins":…}}}`).
//! - `replacement` (default `"[REDACTED]"`): the string a masked value
//!   becomes, whatever its JSON type was (string, number, array, object…).
//!
//! Unknown keys are refused, so a misspelt key cannot silently mask nothing.
//!
//! # What it does to each event
//!
//! - No configured field present: the event passes unchanged
//!   (`Outcome::Keep`, nothing copied). An event in which no configured key
//!   appears at all (as a quoted string, with no escapes in the event) is
//!   passed without being parsed, and so without being checked to be JSON:
//!   ferry hands plugins only JSON objects.
//! - Some present: the event is replaced by the same JSON text with those
//!   values masked (`Outcome::Replace`), and the number of masked fields is
//!   added to the counter `redacted_fields`. A key given more than once has
//!   each of its values masked.
//! - Not a JSON object: the event fails (`Outcome::Fail`) with the parse
//!   error, and ferry dead-letters it; the rest of the batch goes on.
//!
//! Only the masked values change: every other byte of the event — key order,
//! spacing, escapes such as `\u00e9`, numbers such as `1.0e3` — is copied as
//! it came. The event is read once to find where the values are (each value
//! checked to be valid JSON, none built), and written as slices of its text
//! with the replacement between them.

#![deny(missing_docs)]

mod config;
mod path;

#[cfg(target_arch = "wasm32")]
mod guest;

#[cfg(test)]
mod tests;

use memchr::memmem::Finder;
use path::{FieldPath, Members};
use serde_json::Value;
use std::cmp::Reverse;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// Masks the configured fields of JSON events.
///
/// Built once from the plugin's config, then used for any number of events;
/// it is `Sync`, so one `Redactor` can serve several threads.
#[derive(Debug)]
pub struct Redactor {
    /// The configured paths, in config order.
    fields: Vec<FieldPath>,
    /// What masked values become.
    replacement: String,
    /// The replacement as JSON text, as it is written into events.
    replacement_json: Vec<u8>,
    /// Fields masked so far, over every call.
    masked: AtomicU64,
    /// The keys, quoted, whose plain appearance in an event's bytes is the
    /// condition for parsing it; `None` when a configured key could be
    /// written in more than one way and every event must be parsed.
    needles: Option<Vec<Finder<'static>>>,
}

impl Redactor {
    /// Builds a redactor from the plugin's config, given as JSON text.
    ///
    /// Checks all of it: `fields` present, not empty, each path well formed
    /// (no empty part between dots), `replacement` a string, no other key.
    /// The error says which key is wrong and how, prefixed with `config`.
    pub fn from_config(config_json: &str) -> Result<Redactor, String> {
        let config = config::parse(config_json)?;
        let needles = config
            .fields
            .iter()
            .map(FieldPath::keys)
            .collect::<Option<Vec<_>>>()
            .map(|keys| keys.concat().iter().map(|key| Finder::new(key).into_owned()).collect());
        let replacement_json = serde_json::to_vec(&config.replacement).expect("a string always serialises");
        Ok(Redactor { fields: config.fields, replacement: config.replacement, replacement_json, masked: AtomicU64::new(0), needles })
    }

    /// Masks the configured fields of one event.
    ///
    /// `json` must be one JSON object. Returns `Ok(None)` when there is
    /// nothing to mask (no configured field present, or already masked),
    /// `Ok(Some(json))` with the new JSON otherwise, and `Err` saying why
    /// when `json` is not a JSON object.
    pub fn redact(&self, json: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if !self.may_hold_a_field(json) {
            return Ok(None);
        }
        let event = Members::parse(json).map_err(|error| not_an_object(json, error))?;
        let mut spans = Vec::new();
        for field in &self.fields {
            field.find(json, &event, &mut spans);
        }
        spans.retain(|span| !self.is_replacement(&json[span.clone()]));
        if spans.is_empty() {
            return Ok(None);
        }
        let (masked, json) = self.write_masked(json, spans);
        self.masked.fetch_add(masked, Ordering::Relaxed);
        Ok(Some(json))
    }

    /// `json` with the value at each span replaced; returns how many values
    /// it masked. A span inside another (`user` and `user.name` both
    /// configured) or named twice is masked once.
    fn write_masked(&self, json: &[u8], mut spans: Vec<Range<usize>>) -> (u64, Vec<u8>) {
        spans.sort_by_key(|span| (span.start, Reverse(span.end)));
        let mut out = Vec::with_capacity(json.len());
        let (mut done, mut masked) = (0, 0);
        for span in spans {
            if span.start < done {
                continue;
            }
            out.extend_from_slice(&json[done..span.start]);
            out.extend_from_slice(&self.replacement_json);
            done = span.end;
            masked += 1;
        }
        out.extend_from_slice(&json[done..]);
        (masked, out)
    }

    /// Whether a value's text already is the replacement, so that redacting
    /// twice changes nothing the second time.
    fn is_replacement(&self, value: &[u8]) -> bool {
        value == self.replacement_json.as_slice()
            || (value.first() == Some(&b'"')
                && value.contains(&b'\\')
                && serde_json::from_slice::<String>(value).is_ok_and(|text| text == self.replacement))
    }

    /// How many fields this redactor has masked since it was built, over all
    /// calls to [`redact`](Redactor::redact); a caller that reports counts per
    /// batch takes the difference.
    pub fn masked_count(&self) -> u64 {
        self.masked.load(Ordering::Relaxed)
    }

    /// Whether `json` may hold a configured field: false only when none of
    /// the configured keys appears in it, quoted, and it has no escape (a
    /// key could be written with escapes, `"log\u0069n"`). Most events have
    /// nothing to mask, and this scan is much cheaper than parsing them:
    /// each search runs a vector's width of bytes at a time.
    fn may_hold_a_field(&self, json: &[u8]) -> bool {
        let Some(needles) = &self.needles else { return true };
        memchr::memchr(b'\\', json).is_some() || needles.iter().any(|needle| needle.find(json).is_some())
    }
}

/// Why an event that is not one JSON object cannot be redacted: it is JSON
/// of another type, or not JSON at all (parsed again only to tell which).
fn not_an_object(json: &[u8], error: serde_json::Error) -> String {
    match serde_json::from_slice::<Value>(json) {
        Ok(other) => format!("event is not a JSON object but {}", json_kind(&other)),
        Err(_) => format!("event is not valid JSON: {error}"),
    }
}

/// The JSON type of a value, with its article, for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
