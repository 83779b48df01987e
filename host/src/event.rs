//! The audit event as it travels through ferry.
//!
//! An event is its JSON text plus the header fields ferry copies out of it
//! once, when it enters ferry, so that routing, dead letters and logs can
//! name it without parsing it again. Plugins get only the JSON (the contract
//! sends a batch as one JSON Lines buffer); what they decide comes back as an
//! [`Outcome`] per event.

use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

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
    /// The whole event: one JSON object, UTF-8.
    pub json: Vec<u8>,
}

/// What one plugin decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Pass the event on unchanged.
    Keep,
    /// Pass on this JSON instead.
    Replace(Vec<u8>),
    /// Drop the event on purpose.
    Drop,
    /// Send the event to these sinks, with new JSON or unchanged.
    Route(Route),
    /// Dead-letter the event with this reason.
    Fail(String),
}

/// Where a plugin routed an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Sink names from ferry.toml; never empty when a plugin set it.
    /// Shared: the verdicts of one result that name the same sink list hold
    /// one copy of it, so a plugin cannot multiply a long list per event.
    pub sinks: std::sync::Arc<[String]>,
    /// New JSON for the event, or `None` to route it unchanged.
    pub json: Option<Vec<u8>>,
}

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

/// The header fields ferry copies out of an event. Unknown fields are skipped
/// by serde without being built, which keeps the parse cheap; the whole text
/// is still checked to be valid JSON.
#[derive(Deserialize)]
struct Headers<'a> {
    #[serde(borrow, default)]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(default)]
    ei: Option<Index>,
    #[serde(borrow, default)]
    sid: Option<Cow<'a, str>>,
}

/// Teleport's `ei` is a number; anything else is kept in the JSON but read
/// as 0 rather than refusing an otherwise good event.
#[derive(Deserialize)]
#[serde(untagged)]
enum Index {
    Number(i64),
    Other(IgnoredAny),
}

impl Event {
    /// Builds an event from one JSON object, filling the header fields.
    ///
    /// The id is Teleport's `uid`; an event without one gets the SHA-256 of
    /// its JSON text, as Teleport itself identifies such events, so that the
    /// id is stable across retries and restarts.
    pub fn from_json(json: Vec<u8>) -> Result<Event, EventError> {
        if let Err(problem) = check_object_text(&json) {
            return Err(EventError { problem, json });
        }
        let headers: Headers<'_> = match serde_json::from_slice(&json) {
            Ok(headers) => headers,
            Err(error) => match lenient_headers(&json) {
                Some(headers) => headers,
                None => return Err(EventError { problem: Problem::Invalid(error), json }),
            },
        };
        let id = match headers.uid.as_deref() {
            Some(uid) if !uid.is_empty() => uid.to_owned(),
            _ => hex_sha256(&json),
        };
        let index = match headers.ei {
            Some(Index::Number(n)) => n,
            Some(Index::Other(_)) | None => 0,
        };
        Ok(Event {
            id,
            event_type: headers.event.map(Cow::into_owned).unwrap_or_default(),
            time: headers.time.map(Cow::into_owned).unwrap_or_default(),
            index,
            session_id: headers.sid.map(Cow::into_owned).unwrap_or_default(),
            stream_session: None,
            json,
        })
    }
}

/// The headers of a valid JSON object whose header fields do not have
/// Teleport's types, read the slow way; `None` when the JSON is not valid.
///
/// The common case is an event the `ecs` plugin mapped to the Elastic Common
/// Schema: its `event` is an object, and it keeps Teleport's original under
/// `teleport` and its id in `event.id`. Reading the headers from there keeps
/// the event's id, type, time, index and session the same through the
/// mapping, so later plugins, dead letters and per-session sinks still know
/// it. A header of any other odd type is read as absent.
fn lenient_headers(json: &[u8]) -> Option<Headers<'static>> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(json).ok()?;
    let teleport = value.get("teleport");
    let text = |key: &str| {
        let found = value.get(key).and_then(Value::as_str).or_else(|| teleport?.get(key)?.as_str());
        found.map(|text| Cow::Owned(text.to_owned()))
    };
    let ecs_text = |object: &str, key: &str| value.get(object)?.get(key)?.as_str().map(|text| Cow::Owned(text.to_owned()));
    let index = value.get("ei").and_then(Value::as_i64).or_else(|| teleport?.get("ei")?.as_i64());
    Some(Headers {
        uid: text("uid").or_else(|| ecs_text("event", "id")),
        event: text("event"),
        time: text("time").or_else(|| value.get("@timestamp")?.as_str().map(|text| Cow::Owned(text.to_owned()))),
        ei: index.map(Index::Number),
        sid: text("sid"),
    })
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

fn hex_sha256(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_copied_out_of_the_json() {
        let json = br#"{"event":"session.start","uid":"u-1","time":"2020-01-01T00:00:00Z","ei":3,"sid":"s-9","x":{"y":[1,2]}}"#;
        let event = Event::from_json(json.to_vec()).expect("valid event");
        assert_eq!(event.id, "u-1");
        assert_eq!(event.event_type, "session.start");
        assert_eq!(event.time, "2020-01-01T00:00:00Z");
        assert_eq!(event.index, 3);
        assert_eq!(event.session_id, "s-9");
        assert_eq!(event.json, json.to_vec());
    }

    #[test]
    fn an_event_without_uid_gets_a_stable_content_id() {
        let a = Event::from_json(br#"{"event":"x"}"#.to_vec()).expect("valid");
        let b = Event::from_json(br#"{"event":"x"}"#.to_vec()).expect("valid");
        let c = Event::from_json(br#"{"event":"y"}"#.to_vec()).expect("valid");
        assert_eq!(a.id.len(), 64);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn an_ecs_mapped_event_keeps_its_teleport_headers() {
        let json = br#"{"@timestamp":"2020-01-01T00:00:00Z","event":{"id":"u-1","action":"session.start"},"user":{"name":"alice"},"teleport":{"event":"session.start","uid":"u-1","time":"2020-01-01T00:00:00Z","ei":3,"sid":"s-9"}}"#;
        let event = Event::from_json(json.to_vec()).expect("valid event");
        assert_eq!((event.id.as_str(), event.event_type.as_str(), event.time.as_str()), ("u-1", "session.start", "2020-01-01T00:00:00Z"));
        assert_eq!((event.index, event.session_id.as_str()), (3, "s-9"));
        // An event without a uid keeps the id the ecs plugin copied to `event.id`.
        let no_uid = br#"{"event":{"id":"abc","action":"exec"},"teleport":{"event":"exec"}}"#;
        assert_eq!(Event::from_json(no_uid.to_vec()).expect("valid").id, "abc");
    }

    #[test]
    fn odd_header_types_read_as_absent() {
        let event = Event::from_json(br#"{"uid":5,"event":["x"],"sid":null}"#.to_vec()).expect("valid");
        assert_eq!((event.id.len(), event.event_type.as_str(), event.session_id.as_str()), (64, "", ""));
    }

    #[test]
    fn odd_index_types_read_as_zero() {
        let event = Event::from_json(br#"{"ei":"seven"}"#.to_vec()).expect("valid");
        assert_eq!(event.index, 0);
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

    #[test]
    fn every_fixture_event_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/teleport-events.jsonl");
        let text = std::fs::read_to_string(path).expect("fixtures beside the repository");
        let mut ids = std::collections::HashSet::new();
        for line in text.lines() {
            let event = Event::from_json(line.as_bytes().to_vec()).expect("fixture parses");
            assert!(!event.id.is_empty());
            ids.insert(event.id);
        }
        assert_eq!(ids.len(), text.lines().count(), "every fixture event has its own id");
    }
}

/// Property tests: reading an event's headers from whatever arrives (a file
/// source's line, a plugin's replacement) never panics, and an event's id is
/// the same every time it is read.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    /// Keys that ferry reads, often, and others.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec!["uid", "event", "time", "ei", "sid", "teleport", "@timestamp", "id", "action"]).prop_map(str::to_owned),
            1 => ".{0,6}",
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6).prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::vec((key(), value()), 0..8).prop_map(|pairs| pairs.into_iter().collect())
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
        fn json_text_with_braces_never_panics(text in r#"[{}\[\]",:0-9a-z \\]{0,60}"#) {
            let first = Event::from_json(text.clone().into_bytes()).map(|event| event.id);
            let second = Event::from_json(text.into_bytes()).map(|event| event.id);
            prop_assert_eq!(first.ok(), second.ok(), "the same bytes give the same id");
        }

        #[test]
        fn every_object_is_an_event_with_a_stable_id(object in object()) {
            let text = serde_json::to_vec(&Value::Object(object.clone())).expect("a JSON value serialises");
            let event = Event::from_json(text.clone()).expect("a JSON object is an event");
            let again = Event::from_json(text.clone()).expect("a JSON object is an event");
            prop_assert_eq!(&event, &again);
            match object.get("uid") {
                Some(Value::String(uid)) if !uid.is_empty() => prop_assert_eq!(&event.id, uid),
                _ if event.id.len() == 64 && event.id.bytes().all(|b| b.is_ascii_hexdigit()) => prop_assert_eq!(&event.id, &hex_sha256(&text)),
                // No uid of its own: one from `teleport.uid` or `event.id` (ECS).
                _ => prop_assert!(!event.id.is_empty()),
            }
            if let Some(Value::String(sid)) = object.get("sid") {
                prop_assert_eq!(&event.session_id, sid);
            }
            if let (Some(Value::Number(ei)), Some(Value::String(_)) | None) = (object.get("ei"), object.get("event"))
                && let Some(ei) = ei.as_i64() {
                    prop_assert_eq!(event.index, ei);
                }
        }

        #[test]
        fn other_json_values_are_refused_with_their_bytes(value in value().prop_filter("not an object", |v| !v.is_object())) {
            let text = serde_json::to_vec(&value).expect("a JSON value serialises");
            let err = Event::from_json(text.clone()).expect_err("only objects are events");
            prop_assert!(err.to_string().starts_with("not a JSON object"), "{}", err);
            prop_assert_eq!(err.into_json(), text);
        }

        #[test]
        fn an_ecs_mapped_event_keeps_the_teleport_headers(
            uid in "[a-z0-9-]{1,20}",
            kind in "[a-z.]{1,16}",
            time in "[0-9TZ:-]{1,24}",
            ei in any::<i64>(),
            sid in "[a-z0-9-]{0,20}",
            extra in object(),
        ) {
            let mut mapped = json!({
                "@timestamp": time,
                "event": {"id": uid, "action": kind},
                "teleport": {"event": kind, "uid": uid, "time": time, "ei": ei, "sid": sid},
            });
            let teleport_headers = ["uid", "event", "time", "ei", "sid", "teleport", "@timestamp"];
            for (key, value) in extra.into_iter().filter(|(key, _)| !teleport_headers.contains(&key.as_str())) {
                mapped[key] = value;
            }
            let event = Event::from_json(serde_json::to_vec(&mapped).expect("serialises")).expect("an object");
            prop_assert_eq!((&event.id, &event.event_type, &event.time), (&uid, &kind, &time));
            prop_assert_eq!((event.index, &event.session_id), (ei, &sid));
        }
    }
}
