//! JSON helpers on [`Event`] and [`Outcome`], as extension traits (both are
//! in the prelude), so that a plugin that parses no JSON need not see them.

use crate::{Event, Outcome, Route};
use serde_json::{Map, Value};

/// Reads an event's JSON.
///
/// Errors say what is wrong, so a plugin can return them as
/// [`Outcome::Fail`] as they are: ferry writes the dead letter with the
/// event's id beside the reason.
///
/// ```
/// use ferry_guest::prelude::*;
/// use ferry_guest::serde_json::Value;
///
/// /// Adds `"site": "eu-1"` to an event.
/// fn tag(event: &Event) -> Outcome {
///     match event.parse_object() {
///         Ok(mut fields) => {
///             fields.insert("site".to_owned(), Value::from("eu-1"));
///             Outcome::replace_json(&Value::Object(fields))
///         }
///         Err(reason) => Outcome::Fail(reason),
///     }
/// }
/// # assert!(matches!(tag(&Event::new(br#"{"uid":"ev-1"}"#)),
/// #     Outcome::Replace(json) if json == br#"{"uid":"ev-1","site":"eu-1"}"#));
/// # assert!(matches!(tag(&Event::new(b"{")),
/// #     Outcome::Fail(reason) if reason.starts_with("event JSON is not valid")));
/// ```
pub trait EventExt {
    /// Parses the event's JSON into a [`Value`], keeping its key order.
    fn parse_json(&self) -> Result<Value, String>;

    /// Parses the event's JSON and checks that it is an object, as ferry
    /// promises every event is; returns the object's fields in their order.
    fn parse_object(&self) -> Result<Map<String, Value>, String>;
}

impl EventExt for Event<'_> {
    fn parse_json(&self) -> Result<Value, String> {
        serde_json::from_slice(self.json).map_err(|error| format!("event JSON is not valid: {error}"))
    }

    fn parse_object(&self) -> Result<Map<String, Value>, String> {
        match self.parse_json()? {
            Value::Object(fields) => Ok(fields),
            other => Err(format!("event JSON is {}, not an object", kind(&other))),
        }
    }
}

/// Builds outcomes from JSON values.
pub trait OutcomeExt {
    /// [`Outcome::Replace`] with `json` serialised, keys in their order.
    ///
    /// ferry accepts only a JSON object as an event; for any other value this
    /// returns [`Outcome::Fail`] saying so, rather than leaving ferry to
    /// refuse it with a less specific reason.
    fn replace_json(json: &Value) -> Outcome;

    /// [`Outcome::Route`] to the named sinks, with the event unchanged.
    ///
    /// The names are those of ferry.toml's sinks; ferry fails the event if
    /// the list is empty or names an unknown sink.
    fn route_to<I, S>(sinks: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: Into<String>;
}

impl OutcomeExt for Outcome {
    fn replace_json(json: &Value) -> Outcome {
        match json {
            Value::Object(_) => {
                Outcome::Replace(serde_json::to_vec(json).expect("a serde_json::Value always serialises: its keys are strings"))
            }
            other => Outcome::Fail(format!("plugin replaced the event with {}, but an event must be a JSON object", kind(other))),
        }
    }

    fn route_to<I, S>(sinks: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Outcome::Route(Route { sinks: sinks.into_iter().map(Into::into).collect(), json: None })
    }
}

/// The JSON type of a value, with its article, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(json: &[u8]) -> Event<'_> {
        Event::new(json)
    }

    #[test]
    fn parse_json_keeps_key_order() {
        let value = event(br#"{"z":1,"a":2,"m":3}"#).parse_json().expect("valid JSON");
        let keys: Vec<&String> = value.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn parse_json_error_names_the_event_and_the_place() {
        let error = event(b"{\"user\":").parse_json().expect_err("truncated");
        assert_eq!(error, "event JSON is not valid: EOF while parsing a value at line 1 column 8");
    }

    #[test]
    fn parse_object_refuses_other_json() {
        let error = event(b"[1,2]").parse_object().expect_err("an array");
        assert_eq!(error, "event JSON is an array, not an object");
    }

    #[test]
    fn replace_json_writes_keys_in_order() {
        let outcome = Outcome::replace_json(&json!({"z": 1, "a": [true, null]}));
        match outcome {
            Outcome::Replace(bytes) => assert_eq!(bytes, br#"{"z":1,"a":[true,null]}"#),
            other => panic!("expected a replacement, got {other:?}"),
        }
    }

    #[test]
    fn replace_json_fails_for_anything_but_an_object() {
        match Outcome::replace_json(&json!("text")) {
            Outcome::Fail(reason) => assert_eq!(reason, "plugin replaced the event with a string, but an event must be a JSON object"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn route_to_names_the_sinks_and_keeps_the_event() {
        match Outcome::route_to(["archive", "default"]) {
            Outcome::Route(route) => {
                assert_eq!(route.sinks, ["archive", "default"]);
                assert!(route.json.is_none());
            }
            other => panic!("expected a route, got {other:?}"),
        }
    }
}
