//! Teleport's events arrive as `google.protobuf.Struct`; these functions turn
//! them back into the JSON they were made from, and JSON into a Struct for
//! the stand-in Auth server.
//!
//! A Struct holds numbers only as doubles. Teleport made them from JSON
//! integers (`ei`, `bytes`, `ms`, status codes), so a double that is integral
//! and exactly representable (|x| ≤ 2^53) is written as an integer (`5`, not
//! `5.0`), as Go's `encoding/json` would have written the original. Other
//! doubles are written as JSON floats. Strings pass through untouched, which
//! keeps the base64 `data` of `print` events as Teleport sent it. NaN and
//! infinities cannot come from JSON; they are written as `null`.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Number, Value as Json};

/// The largest magnitude below which every integer is exactly a double.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0; // 2^53

/// JSON that cannot become a Struct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a protobuf Struct must be a JSON object, not {found}")]
pub struct NotAnObject {
    /// The JSON type found instead (`array`, `string`, …).
    pub found: &'static str,
}

/// The JSON object a Struct holds.
pub fn struct_to_json(fields: &Struct) -> Json {
    Json::Object(struct_to_map(fields))
}

/// The JSON text (compact) of a Struct.
pub fn struct_to_json_bytes(fields: &Struct) -> Vec<u8> {
    // Serialising a `serde_json::Value` cannot fail: every key is a string.
    serde_json::to_vec(&struct_to_json(fields)).unwrap_or_default()
}

/// The JSON of one Struct value.
pub fn value_to_json(value: &Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(list)) => Json::Array(list.values.iter().map(value_to_json).collect()),
    }
}

/// A JSON object as a Struct; anything else is refused.
pub fn json_to_struct(json: &Json) -> Result<Struct, NotAnObject> {
    match json {
        Json::Object(map) => Ok(map_to_struct(map)),
        other => Err(NotAnObject { found: json_type(other) }),
    }
}

/// Any JSON value as a Struct value. Numbers become doubles, as in Teleport
/// (integers beyond 2^53 lose precision there too).
pub fn json_to_value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue { values: items.iter().map(json_to_value).collect() }),
        Json::Object(map) => Kind::StructValue(map_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

fn struct_to_map(fields: &Struct) -> Map<String, Json> {
    fields.fields.iter().map(|(key, value)| (key.clone(), value_to_json(value))).collect()
}

fn map_to_struct(map: &Map<String, Json>) -> Struct {
    Struct { fields: map.iter().map(|(key, value)| (key.clone(), json_to_value(value))).collect() }
}

fn number_to_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INTEGER {
        // Integral and within ±2^53, so the conversion is exact.
        return Json::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Json::Null, Json::Number)
}

fn json_type(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The fixtures the demo and the stand-in Teleport serve.
    const EVENTS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../host/demo/teleport-events.jsonl"));
    const SESSION: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../host/demo/teleport-session-events.jsonl"));

    fn round_trip(line: &str) -> (Json, Json) {
        let original: Json = serde_json::from_str(line).expect("fixture line is JSON");
        let fields = json_to_struct(&original).expect("fixture line is an object");
        // Through the wire, as the client will see it.
        let bytes = prost::Message::encode_to_vec(&fields);
        let decoded: Struct = prost::Message::decode(bytes.as_slice()).expect("decodes");
        let text = struct_to_json_bytes(&decoded);
        (original, serde_json::from_slice(&text).expect("our output is JSON"))
    }

    #[test]
    fn every_audit_fixture_survives_the_round_trip() {
        let mut count = 0;
        for (number, line) in EVENTS.lines().enumerate() {
            let (original, back) = round_trip(line);
            assert_eq!(original, back, "line {}", number + 1);
            count += 1;
        }
        assert_eq!(count, 183);
    }

    #[test]
    fn every_session_fixture_survives_the_round_trip() {
        let mut count = 0;
        for (number, line) in SESSION.lines().enumerate() {
            let (original, back) = round_trip(line);
            assert_eq!(original, back, "line {}", number + 1);
            count += 1;
        }
        assert_eq!(count, 160);
    }

    #[test]
    fn integral_doubles_are_written_as_integers() {
        let fields = json_to_struct(&json!({"ei": 5, "big": 9007199254740992_u64, "neg": -3})).expect("object");
        let text = String::from_utf8(struct_to_json_bytes(&fields)).expect("utf-8");
        assert_eq!(text, r#"{"big":9007199254740992,"ei":5,"neg":-3}"#);
    }

    #[test]
    fn fractions_beyond_exact_integers_and_non_finite_numbers() {
        assert_eq!(number_to_json(1.5), json!(1.5));
        assert_eq!(number_to_json(-0.0), json!(0));
        assert_eq!(number_to_json(1e300), json!(1e300));
        assert_eq!(number_to_json(f64::NAN), Json::Null);
        assert_eq!(number_to_json(f64::INFINITY), Json::Null);
    }

    #[test]
    fn nesting_lists_nulls_and_base64_data_pass_through() {
        let original = json!({
            "event": "print",
            "data": "G1s/MTA0OWgbWzIyOzA7MHQ=",
            "attributes": {"groups": ["a", {"b": null}], "ok": true, "list": []},
            "empty": {}
        });
        let fields = json_to_struct(&original).expect("object");
        assert_eq!(struct_to_json(&fields), original);
    }

    #[test]
    fn only_objects_become_structs() {
        assert_eq!(json_to_struct(&json!([1])), Err(NotAnObject { found: "an array" }));
        assert_eq!(json_to_struct(&json!("x")).expect_err("string").to_string(), "a protobuf Struct must be a JSON object, not a string");
    }
}
