//! One event as conditions see it: its type from ferry's header, its JSON
//! parsed at most once, and only when a condition needs a field.

use ferry_event::teleport_field;
use serde_json::Value;
use std::cell::OnceCell;

/// An event under test.
///
/// Teleport's fields are read where Teleport writes them, or, for an event
/// the ecs plugin already mapped to the Elastic Common Schema, from the
/// copy of the original it keeps under `teleport` (see [`teleport_field`]),
/// so a chain can test the same fields before and after the mapping.
pub struct Subject<'a> {
    event_type: &'a str,
    json: &'a [u8],
    parsed: OnceCell<Option<Value>>,
}

impl<'a> Subject<'a> {
    /// An event with ferry's header type (empty when ferry found none) and
    /// its JSON text.
    pub fn new(event_type: &'a str, json: &'a [u8]) -> Subject<'a> {
        Subject { event_type, json, parsed: OnceCell::new() }
    }

    /// An event whose JSON the caller already parsed; [`Subject::into_json`]
    /// gives it back, so a plugin that changes events parses each only once.
    pub fn from_value(event_type: &'a str, json: Value) -> Subject<'a> {
        let parsed = OnceCell::from(Some(json).filter(Value::is_object));
        Subject { event_type, json: b"", parsed }
    }

    /// The parsed JSON, if it was parsed (or given) and is an object.
    pub fn into_json(self) -> Option<Value> {
        self.parsed.into_inner().flatten()
    }

    /// The parsed JSON, or `None` when it is not a JSON object (ferry hands
    /// plugins only objects, so this is for robustness, not a case to handle).
    pub fn json(&self) -> Option<&Value> {
        self.parsed.get_or_init(|| serde_json::from_slice::<Value>(self.json).ok().filter(Value::is_object)).as_ref()
    }

    /// The event type: ferry's header, else Teleport's `event` read from the
    /// JSON as ferry reads it (the same rule, [`teleport_field`], as for any
    /// other field); empty when there is none.
    pub fn event_type(&self) -> &str {
        if !self.event_type.is_empty() {
            return self.event_type;
        }
        self.json().and_then(|json| teleport_field(json, "event")).and_then(Value::as_str).unwrap_or("")
    }

    /// A Teleport field of the event (see [`teleport_field`]).
    pub fn field(&self, key: &str) -> Option<&Value> {
        teleport_field(self.json()?, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_falls_back_to_the_json() {
        let json = br#"{"teleport":{"event":"session.start"}}"#;
        assert_eq!(Subject::new("", json).event_type(), "session.start");
        assert_eq!(Subject::new("exec", json).event_type(), "exec");
        assert_eq!(Subject::new("", b"[1]").event_type(), "");
        assert_eq!(Subject::new("", b"{").event_type(), "");
    }
}
