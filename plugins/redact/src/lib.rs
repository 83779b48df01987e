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
//! - Some present: the event is replaced by the same JSON with those values
//!   masked, keys in their original order (`Outcome::Replace`), and the
//!   number of masked fields is added to the counter `redacted_fields`.
//! - Not a JSON object: the event fails (`Outcome::Fail`) with the parse
//!   error, and ferry dead-letters it; the rest of the batch goes on.
//!
//! A changed event is written back by `serde_json`: compact, strings and
//! numbers re-encoded. The values are the same, but an input written with
//! escapes such as `\u00e9` or numbers such as `1.0e3` comes out as `é` and
//! `1000.0`.

#![deny(missing_docs)]

mod config;
mod path;

#[cfg(target_arch = "wasm32")]
mod guest;

#[cfg(test)]
mod tests;

use path::FieldPath;
use serde_json::{Map, Value};
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
    /// Fields masked so far, over every call.
    masked: AtomicU64,
    /// The keys, quoted, whose plain appearance in an event's bytes is the
    /// condition for parsing it; `None` when a configured key could be
    /// written in more than one way and every event must be parsed.
    needles: Option<Vec<Vec<u8>>>,
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
            .map(|keys| keys.concat());
        Ok(Redactor {
            fields: config.fields,
            replacement: config.replacement,
            masked: AtomicU64::new(0),
            needles,
        })
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
        let mut event = parse_object(json)?;
        let masked = self.mask(&mut event);
        if masked == 0 {
            return Ok(None);
        }
        self.masked.fetch_add(masked, Ordering::Relaxed);
        let json = serde_json::to_vec(&event)
            .expect("a JSON object read by serde_json always serialises: its keys are strings");
        Ok(Some(json))
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
    /// nothing to mask, and this scan is much cheaper than parsing them.
    fn may_hold_a_field(&self, json: &[u8]) -> bool {
        let Some(needles) = &self.needles else { return true };
        let mut from = 0;
        while let Some(offset) = json[from..].iter().position(|&byte| byte == b'"' || byte == b'\\') {
            let at = from + offset;
            if json[at] == b'\\' || needles.iter().any(|needle| json[at..].starts_with(needle)) {
                return true;
            }
            from = at + 1;
        }
        false
    }

    /// Masks every configured path in `event`; returns how many it changed.
    fn mask(&self, event: &mut Map<String, Value>) -> u64 {
        let mut masked = 0;
        for field in &self.fields {
            if field.mask(event, &self.replacement) {
                masked += 1;
            }
        }
        masked
    }
}

/// Parses an event, which must be one JSON object.
fn parse_object(json: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(json) {
        Ok(Value::Object(event)) => Ok(event),
        Ok(other) => Err(format!(
            "event is not a JSON object but {}",
            json_kind(&other)
        )),
        Err(error) => Err(format!("event is not valid JSON: {error}")),
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
