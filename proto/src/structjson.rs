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
    let mut out = Vec::new();
    write_struct_json(fields, &mut out);
    out
}

/// Appends the compact JSON text of a Struct to `out`: byte for byte what
/// `serde_json::to_vec(&struct_to_json(fields))` gives, without building
/// the `serde_json::Value` tree first. This runs once per Teleport event,
/// so it allocates nothing but `out`'s growth: a caller that reuses `out`
/// for every event pays for neither the tree nor a fresh buffer.
///
/// Strings and numbers are written by serde_json itself, so escaping and
/// float formatting are the same as before.
pub fn write_struct_json(fields: &Struct, out: &mut Vec<u8>) {
    out.push(b'{');
    for (at, (key, value)) in fields.fields.iter().enumerate() {
        if at > 0 {
            out.push(b',');
        }
        write_str(key, out);
        out.push(b':');
        write_value(value, out);
    }
    out.push(b'}');
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => out.extend_from_slice(b"null"),
        Some(Kind::BoolValue(true)) => out.extend_from_slice(b"true"),
        Some(Kind::BoolValue(false)) => out.extend_from_slice(b"false"),
        Some(Kind::StringValue(s)) => write_str(s, out),
        Some(Kind::NumberValue(n)) => write_number(*n, out),
        Some(Kind::StructValue(s)) => write_struct_json(s, out),
        Some(Kind::ListValue(list)) => {
            out.push(b'[');
            for (at, item) in list.values.iter().enumerate() {
                if at > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
    }
}

pub(crate) fn write_str(text: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// As [`number_to_json`] decides, written without a `Number`.
pub(crate) fn write_number(n: f64, out: &mut Vec<u8>) {
    // Writing a number into a Vec cannot fail.
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INTEGER {
        let _ = serde_json::to_writer(&mut *out, &(n as i64));
    } else if n.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &n);
    } else {
        out.extend_from_slice(b"null");
    }
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
    const EVENTS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-events.jsonl"));
    const SESSION: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-session-events.jsonl"));

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
    fn the_writer_appends_to_what_the_buffer_holds() {
        let fields = json_to_struct(&json!({"a": "é\n\u{1}", "n": [1.5, -0.0, null]})).expect("object");
        let mut out = b"kept".to_vec();
        write_struct_json(&fields, &mut out);
        assert_eq!(String::from_utf8(out).expect("utf-8"), r#"kept{"a":"é\n\u0001","n":[1.5,0,null]}"#);
    }

    #[test]
    fn only_objects_become_structs() {
        assert_eq!(json_to_struct(&json!([1])), Err(NotAnObject { found: "an array" }));
        assert_eq!(json_to_struct(&json!("x")).expect_err("string").to_string(), "a protobuf Struct must be a JSON object, not a string");
    }
}

/// Random Structs for the property tests here and in [`crate::rawstruct`].
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use proptest::prelude::*;

    /// Doubles of every kind a Struct can hold: integral ones inside and
    /// outside ±2^53, fractions, huge and tiny ones, -0, NaN and infinities.
    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<i64>().prop_map(|n| n as f64),
            (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
            any::<f64>(),
            Just(MAX_EXACT_INTEGER),
            Just(MAX_EXACT_INTEGER + 2.0),
            Just(-MAX_EXACT_INTEGER),
            Just(-0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MIN_POSITIVE),
            Just(1e-7),
            Just(0.1),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value { kind: None }),
            Just(Value { kind: Some(Kind::NullValue(0)) }),
            any::<bool>().prop_map(|b| Value { kind: Some(Kind::BoolValue(b)) }),
            // Any text: quotes, backslashes, control characters, non-ASCII.
            any::<String>().prop_map(|s| Value { kind: Some(Kind::StringValue(s)) }),
            number().prop_map(|n| Value { kind: Some(Kind::NumberValue(n)) }),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(|values| Value { kind: Some(Kind::ListValue(ListValue { values })) }),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|fields| Value { kind: Some(Kind::StructValue(Struct { fields })) }),
            ]
        })
    }

    /// A Struct of up to 8 fields, nested up to 3 deep.
    pub(crate) fn structs() -> impl Strategy<Value = Struct> {
        prop::collection::btree_map(any::<String>(), value(), 0..8).prop_map(|fields| Struct { fields })
    }
}

/// The direct writer against the `Value` path it replaces, on random Structs.
#[cfg(test)]
mod proptests {
    use super::tests_support::structs;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_writer_gives_the_bytes_of_the_value_path(fields in structs()) {
            let before = serde_json::to_vec(&struct_to_json(&fields)).expect("a Value serialises");
            let mut after = Vec::new();
            write_struct_json(&fields, &mut after);
            prop_assert_eq!(String::from_utf8_lossy(&after), String::from_utf8_lossy(&before));
            prop_assert_eq!(struct_to_json_bytes(&fields), before);
        }
    }
}
