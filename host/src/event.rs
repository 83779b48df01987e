//! The audit event as it travels through ferry.
//!
//! An event is its JSON text plus the header fields ferry copies out of it
//! once, when it enters ferry, so that routing, dead letters and logs can
//! name it without parsing it again. Plugins get only the JSON (the contract
//! sends a batch as one JSON Lines buffer); what they decide comes back as an
//! [`Outcome`] per event.
//!
//! How the header is read, what an id is and what an outcome means is the
//! event contract, `ferry-event`, which the plugins' SDK reads the same way.

use ferry_event::Header;
use ferry_proto::rawstruct::{Field, MalformedStruct, RawStruct};
use serde::de::IgnoredAny;

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Teleport's `uid`, or the SHA-256 of the JSON for an event without one.
    pub id: String,
    /// Teleport's `event` field; empty when the event has none.
    pub event_type: String,
    /// Teleport's `time` field as sent; empty when the event has none.
    pub time: String,
    /// Teleport's `ei` field; 0 when the event has none.
    pub index: i64,
    /// Teleport's `sid` field; empty for events outside a session.
    pub session_id: String,
    /// The session recording this event was streamed from, set by the
    /// source, not read from the JSON: a recording goes to
    /// `<session-url>.<this>.log` as the event handler sends it, although its
    /// `print` events have no `sid`, and a plugin that replaces the JSON
    /// cannot move it. `None` for audit events.
    pub stream_session: Option<std::sync::Arc<str>>,
    /// The sink this event goes to unless a plugin routes it, set by the
    /// source (session recordings go to their own); `None` for the default
    /// sink. It travels with the event, so a plugin that replaces the JSON
    /// keeps it.
    pub sink: Option<std::sync::Arc<str>>,
    /// The whole event: one JSON object, UTF-8.
    pub json: Vec<u8>,
}

/// What one plugin decided for one event (the contract's [`ferry_event::Outcome`]),
/// with each route's sink list shared between the verdicts that name it.
pub type Outcome = ferry_event::Outcome<SinkList>;

/// Where a plugin routed an event (the contract's [`ferry_event::Route`]).
pub type Route = ferry_event::Route<SinkList>;

/// Sink names from ferry.toml; never empty when a plugin set it. Shared: the
/// verdicts of one result that name the same sink list hold one copy of it,
/// so a plugin cannot multiply a long list per event.
pub type SinkList = std::sync::Arc<[String]>;

/// Input that is not an audit event, handed back with its bytes so that
/// nothing is lost: they go to the dead-letter table.
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct EventError {
    problem: Problem,
    json: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
enum Problem {
    /// JSON must be UTF-8; sinks would otherwise write invalid JSON.
    #[error("not UTF-8 text (invalid byte at offset {0})")]
    NotUtf8(usize),
    /// An event is one JSON object; arrays, strings and numbers are not.
    #[error("not a JSON object (it starts with {0})")]
    NotObject(String),
    #[error("invalid JSON: {0}")]
    Invalid(serde_json::Error),
}

impl EventError {
    /// The bytes that were refused.
    pub fn into_json(self) -> Vec<u8> {
        self.json
    }
}

impl Event {
    /// Builds an event from one JSON object, filling the header fields as
    /// [`Header::read`] reads them (an ECS-mapped event keeps its Teleport
    /// header).
    ///
    /// The id is Teleport's `uid`; an event without one gets the SHA-256 of
    /// its JSON text ([`ferry_event::content_id`]), as Teleport itself
    /// identifies such events, so that the id is stable across retries and
    /// restarts.
    pub fn from_json(json: Vec<u8>) -> Result<Event, EventError> {
        if let Err(problem) = check_object_text(&json) {
            return Err(EventError { problem, json });
        }
        Event::with_header(json)
    }

    /// Builds an event from a Teleport `Struct` as it came off the wire, in
    /// one pass: its JSON is written from the protobuf bytes straight into
    /// `buffer` (reused from event to event, so the event's own copy is the
    /// one allocation) and the header is read from the top-level fields on
    /// the way, so the text is never parsed. The same event as
    /// `Event::from_json` of the Struct's JSON; bytes that are not a valid
    /// Struct fail with the reason.
    pub fn from_struct(fields: &RawStruct, buffer: &mut Vec<u8>) -> Result<Event, MalformedStruct> {
        buffer.clear();
        let mut header = StructHeader::default();
        fields.write_json(buffer, |key, field| header.note(key, field))?;
        let json = buffer.clone();
        let (Some(uid), Some(event_type), Some(time), Some(session_id)) = (header.uid, header.event_type, header.time, header.session_id)
        else {
            // Text written from a Struct is valid JSON, so this reads it;
            // were it not, the event keeps its bytes under its content id.
            return Ok(Event::with_header(json).unwrap_or_else(|err| {
                let json = err.into_json();
                Event {
                    id: ferry_event::content_id(&json),
                    event_type: String::new(),
                    time: String::new(),
                    index: 0,
                    session_id: String::new(),
                    stream_session: None,
                    sink: None,
                    json,
                }
            }));
        };
        Ok(Event {
            id: if uid.is_empty() { ferry_event::content_id(&json) } else { uid.to_owned() },
            event_type: event_type.to_owned(),
            time: time.to_owned(),
            index: header.index,
            session_id: session_id.to_owned(),
            stream_session: None,
            sink: None,
            json,
        })
    }

    /// The event with the header [`Header::read`] reads from its JSON.
    fn with_header(json: Vec<u8>) -> Result<Event, EventError> {
        let (id, event_type, time, index, session_id) = match Header::read(&json) {
            Ok(header) => (
                header.id(&json).into_owned(),
                header.event_type().to_owned(),
                header.time().to_owned(),
                header.index(),
                header.session_id().to_owned(),
            ),
            Err(error) => return Err(EventError { problem: Problem::Invalid(error), json }),
        };
        Ok(Event { id, event_type, time, index, session_id, stream_session: None, sink: None, json })
    }
}

/// The header fields of a Struct, noted as its top level is written.
///
/// A header field absent, null or a string is what `Header::read`'s quick
/// way accepts; another type (`None` here) sends the event its slower way
/// (an ECS-mapped event, say), so the text is read after all.
struct StructHeader<'a> {
    uid: Option<&'a str>,
    event_type: Option<&'a str>,
    time: Option<&'a str>,
    session_id: Option<&'a str>,
    /// `ei` as the JSON has it: an integer when the double is integral
    /// within ±2^53 (see `ferry_proto::structjson`), else 0.
    index: i64,
}

impl Default for StructHeader<'_> {
    fn default() -> Self {
        StructHeader { uid: Some(""), event_type: Some(""), time: Some(""), session_id: Some(""), index: 0 }
    }
}

impl<'a> StructHeader<'a> {
    fn note(&mut self, key: &'a str, field: Field<'a>) {
        let slot = match key {
            "uid" => &mut self.uid,
            "event" => &mut self.event_type,
            "time" => &mut self.time,
            "sid" => &mut self.session_id,
            "ei" => {
                self.index = match field {
                    Field::Number(n) if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 => n as i64,
                    _ => 0,
                };
                return;
            }
            _ => return,
        };
        *slot = match field {
            Field::Null => Some(""),
            Field::Text(text) => Some(text),
            _ => None,
        };
    }
}

/// serde_json checks UTF-8 only inside the strings it decodes, and a struct
/// also deserializes from an array; both are ruled out here first.
fn check_object_text(json: &[u8]) -> Result<(), Problem> {
    if let Err(err) = std::str::from_utf8(json) {
        return Err(Problem::NotUtf8(err.valid_up_to()));
    }
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        None => Err(Problem::NotObject("nothing".into())),
        // Valid JSON of another kind, or not JSON at all: say which.
        Some(&other) => match serde_json::from_slice::<IgnoredAny>(json) {
            Ok(_) => Err(Problem::NotObject(format!("`{}`", char::from(other).escape_default()))),
            Err(error) => Err(Problem::Invalid(error)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_read_by_the_contract() {
        let json = br#"{"@timestamp":"2020-01-01T00:00:00Z","event":{"id":"u-1","action":"session.start"},"teleport":{"event":"session.start","uid":"u-1","time":"2020-01-01T00:00:00Z","ei":3,"sid":"s-9"}}"#;
        let event = Event::from_json(json.to_vec()).expect("valid event");
        assert_eq!((event.id.as_str(), event.event_type.as_str(), event.time.as_str()), ("u-1", "session.start", "2020-01-01T00:00:00Z"));
        assert_eq!((event.index, event.session_id.as_str(), event.stream_session.as_deref()), (3, "s-9", None));
        assert_eq!(event.json, json.to_vec());
        let no_uid = Event::from_json(br#"{"event":"x"}"#.to_vec()).expect("valid");
        assert_eq!(no_uid.id, ferry_event::content_id(br#"{"event":"x"}"#));
    }

    #[test]
    fn non_objects_and_broken_json_are_refused() {
        for (bad, says) in [
            (&b"[1,2]"[..], "not a JSON object (it starts with `[`)"),
            (b"[]", "not a JSON object (it starts with `[`)"),
            (br#"["u-1","user.login"]"#, "not a JSON object (it starts with `[`)"),
            (b"\"text\"", "not a JSON object (it starts with `\\\"`)"),
            (b"", "not a JSON object (it starts with nothing)"),
            (b"{\"a\":", "invalid JSON: EOF while parsing"),
            (b"oops", "invalid JSON: expected value"),
            (b"{\"uid\":\"x\",\"user\":\"\xff\xfe\"}", "not UTF-8 text (invalid byte at offset 19)"),
        ] {
            let err = Event::from_json(bad.to_vec()).expect_err("must refuse");
            assert!(err.to_string().starts_with(says), "{err} does not start with {says}");
            assert_eq!(err.into_json(), bad.to_vec(), "the bytes come back unchanged");
        }
    }
}

/// Property tests: whatever arrives (a file source's line, a plugin's
/// replacement) is an event or refused with its bytes, never a panic. How
/// the header is read is tested in `ferry-event`.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use prost_types::Struct;
    use prost_types::value::Kind;
    use serde_json::Value;

    /// JSON values that are not objects.
    fn not_object() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            prop::collection::vec(".{0,6}".prop_map(Value::from), 0..6).prop_map(Value::Array),
        ]
    }

    /// Struct values of every kind, header-like ones most often.
    fn struct_value() -> impl Strategy<Value = prost_types::Value> {
        use prost_types::{ListValue, Value};
        let leaf = prop_oneof![
            Just(Value { kind: None }),
            Just(Value { kind: Some(Kind::NullValue(0)) }),
            any::<bool>().prop_map(|b| Value { kind: Some(Kind::BoolValue(b)) }),
            prop_oneof![Just(String::new()), "[a-z.-]{1,8}".prop_map(String::from)]
                .prop_map(|s| Value { kind: Some(Kind::StringValue(s)) }),
            number(),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(|values| Value { kind: Some(Kind::ListValue(ListValue { values })) }),
                prop::collection::btree_map(header_key(), inner, 0..5)
                    .prop_map(|fields| Value { kind: Some(Kind::StructValue(Struct { fields })) }),
            ]
        })
    }

    /// Teleport's header keys, the ECS ones, and others.
    fn header_key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("uid"),
            Just("event"),
            Just("time"),
            Just("ei"),
            Just("sid"),
            Just("teleport"),
            Just("id"),
            Just("@timestamp"),
            Just("user"),
        ]
        .prop_map(String::from)
    }

    /// Numbers around the edges of what reads as an integer `ei`.
    fn number() -> impl Strategy<Value = prost_types::Value> {
        prop_oneof![
            (-5i64..5).prop_map(|n| n as f64),
            any::<f64>(),
            Just(0.5),
            Just(-0.0),
            Just(1e300),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(9_007_199_254_740_992.0),
            Just(-9_007_199_254_740_992.0),
            Just(9_007_199_254_740_994.0),
        ]
        .prop_map(|n| prost_types::Value { kind: Some(Kind::NumberValue(n)) })
    }

    /// Random fields, and half the time an `ei` that is a number.
    fn teleport_struct() -> impl Strategy<Value = Struct> {
        (prop::collection::btree_map(header_key(), struct_value(), 0..9), prop::option::of(number())).prop_map(|(mut fields, ei)| {
            if let Some(ei) = ei {
                fields.insert("ei".to_owned(), ei);
            }
            Struct { fields }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic_and_come_back_whole(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            match Event::from_json(bytes.clone()) {
                Ok(event) => {
                    prop_assert_eq!(&event.json, &bytes);
                    prop_assert!(!event.id.is_empty());
                }
                Err(err) => {
                    let text = err.to_string();
                    prop_assert!(!text.contains('\n'), "one line: {}", text);
                    prop_assert_eq!(err.into_json(), bytes);
                }
            }
        }

        #[test]
        fn an_event_from_a_struct_is_the_event_from_its_json(fields in teleport_struct()) {
            let through_json = Event::from_json(ferry_proto::structjson::struct_to_json_bytes(&fields)).expect("a Struct's JSON is an event");
            let mut buffer = b"left from the last event".to_vec();
            let raw = RawStruct::from_struct(&fields);
            prop_assert_eq!(Event::from_struct(&raw, &mut buffer).expect("a well-formed Struct"), through_json);
        }

        #[test]
        fn other_json_values_are_refused_with_their_bytes(value in not_object()) {
            let text = serde_json::to_vec(&value).expect("a JSON value serialises");
            let err = Event::from_json(text.clone()).expect_err("only objects are events");
            prop_assert!(err.to_string().starts_with("not a JSON object"), "{}", err);
            prop_assert_eq!(err.into_json(), text);
        }
    }
}
