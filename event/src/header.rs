//! The header fields ferry names an event by, read from its JSON.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Teleport's header fields of one event: `uid`, `event`, `time`, `ei` and
/// `sid`, as far as the event has them.
///
/// Read the same way by the host (when an event enters ferry, and again for
/// each JSON a plugin hands back) and by the Rust SDK (for a plugin that
/// asks), so a plugin sees the id and type that ferry's logs, dead letters
/// and sinks use. An event the `ecs` plugin mapped to the Elastic Common
/// Schema keeps these fields: see [`Header::read`].
#[derive(Debug, Default, Deserialize)]
pub struct Header<'a> {
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
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Index {
    Number(i64),
    Other(IgnoredAny),
}

impl<'a> Header<'a> {
    /// Reads the header of one event's JSON, borrowing what it can from it.
    ///
    /// The usual way is quick: serde skips every other field without
    /// building it (the whole text is still checked to be valid JSON). When
    /// a header field has another type than Teleport's, the JSON is read a
    /// second, slower way. The common case is an event the `ecs` plugin
    /// mapped: its `event` is an object, and it keeps Teleport's original
    /// under `teleport` (see [`teleport_field`]) and the id in `event.id`, the
    /// time in `@timestamp`. Reading from there keeps the event's id, type,
    /// time, index and session the same through the mapping, so later
    /// plugins, dead letters and per-session sinks still know it. A header
    /// of any other odd type reads as absent.
    ///
    /// Fails only when the text is not valid JSON. It does not check that
    /// the JSON is an object: `[]` has an empty header here, and the host
    /// refuses it before it asks.
    pub fn read(json: &'a [u8]) -> Result<Header<'a>, serde_json::Error> {
        match serde_json::from_slice(json) {
            Ok(header) => Ok(header),
            Err(error) => lenient(json).ok_or(error),
        }
    }

    /// Teleport's `uid`; `None` when the event has none (or an empty one).
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref().filter(|uid| !uid.is_empty())
    }

    /// ferry's id for the event whose JSON is `json`: Teleport's `uid`, or
    /// for an event without one its [`content_id`]. Never empty; the same
    /// for the same event across retries and restarts.
    pub fn id(&self, json: &[u8]) -> Cow<'_, str> {
        match self.uid() {
            Some(uid) => Cow::Borrowed(uid),
            None => Cow::Owned(content_id(json)),
        }
    }

    /// Teleport's `event` (`user.login`, `session.start`, …); empty when the
    /// event has none.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or_default()
    }

    /// Teleport's `time`, as sent (RFC 3339); empty when the event has none.
    pub fn time(&self) -> &str {
        self.time.as_deref().unwrap_or_default()
    }

    /// Teleport's `ei`; 0 when the event has none, or not as a number.
    pub fn index(&self) -> i64 {
        match self.ei {
            Some(Index::Number(n)) => n,
            Some(Index::Other(_)) | None => 0,
        }
    }

    /// Teleport's `sid`; empty for events outside a session.
    pub fn session_id(&self) -> &str {
        self.sid.as_deref().unwrap_or_default()
    }
}

/// The header of a valid JSON value whose header fields do not have
/// Teleport's types; `None` when the JSON is not valid.
fn lenient(json: &[u8]) -> Option<Header<'static>> {
    let value: Value = serde_json::from_slice(json).ok()?;
    let owned = |text: &str| Cow::Owned(text.to_owned());
    let text = |key: &str| teleport_field(&value, key).and_then(Value::as_str).map(owned);
    let ecs_text = |object: &str, key: &str| value.get(object)?.get(key)?.as_str().map(owned);
    Some(Header {
        uid: text("uid").or_else(|| ecs_text("event", "id")),
        event: text("event"),
        time: text("time").or_else(|| value.get("@timestamp")?.as_str().map(owned)),
        ei: teleport_field(&value, "ei").and_then(Value::as_i64).map(Index::Number),
        sid: text("sid"),
    })
}

/// Teleport's top-level field `key`, or, when the event was mapped to ECS,
/// the same field in the original kept under `teleport`.
///
/// The top-level value is taken only when it has a type Teleport writes
/// there (a string, a number, or a boolean for `success`): after the
/// mapping, `user` and `event` are ECS objects and the Teleport values live
/// in `teleport`. The header is read by this rule, and so are the fields
/// the example plugins' conditions test, so a chain tests the same fields
/// before and after the mapping.
pub fn teleport_field<'v>(event: &'v Value, key: &str) -> Option<&'v Value> {
    let teleport_kind = |value: &&Value| value.is_string() || value.is_boolean() || value.is_number();
    event.get(key).filter(teleport_kind).or_else(|| event.get("teleport")?.get(key))
}

/// The id of an event without a `uid`: the hex SHA-256 of its JSON text, as
/// Teleport itself identifies such events, so that it is stable across
/// retries and restarts.
pub fn content_id(json: &[u8]) -> String {
    hex_sha256(json)
}

/// The SHA-256 of `bytes` in lowercase hex (64 characters): event ids here,
/// and in the host the compile cache's keys and a file source's fingerprint
/// of its file's first bytes, so that every digest ferry prints or stores
/// is spelt the same way.
pub fn hex_sha256(bytes: &[u8]) -> String {
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
    use serde_json::json;

    fn fields<'h>(header: &'h Header<'_>, json: &[u8]) -> (String, &'h str, &'h str, i64, &'h str) {
        (header.id(json).into_owned(), header.event_type(), header.time(), header.index(), header.session_id())
    }

    #[test]
    fn header_fields_are_read_from_the_json() {
        let json = br#"{"event":"session.start","uid":"u-1","time":"2020-01-01T00:00:00Z","ei":3,"sid":"s-9","x":{"y":[1,2]}}"#;
        let header = Header::read(json).expect("valid JSON");
        assert_eq!(fields(&header, json), ("u-1".into(), "session.start", "2020-01-01T00:00:00Z", 3, "s-9"));
    }

    #[test]
    fn escaped_header_fields_are_unescaped() {
        assert_eq!(Header::read(br#"{"event":"user.log\u0069n"}"#).expect("valid").event_type(), "user.login");
    }

    #[test]
    fn an_event_without_a_uid_gets_the_sha256_of_its_json_as_id() {
        let json = br#"{"event":"user.login"}"#;
        // `printf '%s' '{"event":"user.login"}' | sha256sum`
        assert_eq!(Header::read(json).expect("valid").id(json), "4eacfd0e4be7deeddfc5958366b93c2ffe933a8be557ed2e9bffe57aa88a8f31");
        let empty_uid = br#"{"uid":"","ei":1}"#;
        assert_eq!(Header::read(empty_uid).expect("valid").id(empty_uid), content_id(empty_uid), "an empty uid counts as none");
    }

    #[test]
    fn an_ecs_mapped_event_keeps_its_teleport_headers() {
        let json = br#"{"@timestamp":"2020-01-01T00:00:00Z","event":{"id":"u-1","action":"session.start"},"user":{"name":"alice"},"teleport":{"event":"session.start","uid":"u-1","time":"2020-01-01T00:00:00Z","ei":3,"sid":"s-9"}}"#;
        let header = Header::read(json).expect("valid JSON");
        assert_eq!(fields(&header, json), ("u-1".into(), "session.start", "2020-01-01T00:00:00Z", 3, "s-9"));
        // An event without a uid keeps the id the ecs plugin copied to `event.id`.
        let no_uid = br#"{"event":{"id":"abc","action":"exec"},"teleport":{"event":"exec"}}"#;
        let header = Header::read(no_uid).expect("valid JSON");
        assert_eq!((header.id(no_uid).as_ref(), header.event_type()), ("abc", "exec"));
    }

    #[test]
    fn odd_header_types_read_as_absent() {
        let json = br#"{"uid":5,"event":["x"],"sid":null}"#;
        let header = Header::read(json).expect("valid JSON");
        assert_eq!((header.id(json).len(), header.event_type(), header.session_id()), (64, "", ""));
        assert_eq!(Header::read(br#"{"ei":"seven","event":"user.login"}"#).expect("valid").index(), 0);
        assert_eq!(Header::read(b"[1,2]").expect("valid JSON").event_type(), "");
    }

    #[test]
    fn broken_json_is_an_error() {
        for bad in [&b"{\"event\":"[..], b"oops", b""] {
            assert!(Header::read(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn fields_come_from_the_top_level_or_the_kept_original() {
        let teleport = json!({"event": "user.login", "user": "alice"});
        assert_eq!(teleport_field(&teleport, "user"), Some(&json!("alice")));
        let ecs =
            json!({"event": {"action": "user.login"}, "user": {"name": "alice"}, "teleport": {"event": "user.login", "user": "alice"}});
        assert_eq!(teleport_field(&ecs, "user"), Some(&json!("alice")));
        assert_eq!(teleport_field(&ecs, "event"), Some(&json!("user.login")));
        assert_eq!(teleport_field(&ecs, "code"), None);
        assert_eq!(teleport_field(&json!({"teleport": 3}), "user"), None);
    }

    #[test]
    fn every_fixture_event_has_its_own_id_and_a_type() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-events.jsonl");
        let text = std::fs::read_to_string(path).expect("the repository's fixtures");
        let mut ids = std::collections::HashSet::new();
        for line in text.lines() {
            let header = Header::read(line.as_bytes()).expect("fixture parses");
            assert!(!header.event_type().is_empty(), "{line}");
            ids.insert(header.id(line.as_bytes()).into_owned());
        }
        assert_eq!(ids.len(), text.lines().count(), "every fixture event has its own id");
    }
}

/// Property tests: reading a header from whatever JSON arrives never panics,
/// the id is the same every time, and the ECS mapping keeps the header.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, json};

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
        fn json_text_with_braces_never_panics(text in r#"[{}\[\]",:0-9a-z \\]{0,60}"#) {
            let first = Header::read(text.as_bytes()).map(|header| header.id(text.as_bytes()).into_owned());
            let second = Header::read(text.as_bytes()).map(|header| header.id(text.as_bytes()).into_owned());
            prop_assert_eq!(first.ok(), second.ok(), "the same bytes give the same id");
        }

        #[test]
        fn every_object_has_a_header_and_a_stable_id(object in object()) {
            let text = serde_json::to_vec(&Value::Object(object.clone())).expect("a JSON value serialises");
            let header = Header::read(&text).expect("a JSON object has a header");
            let id = header.id(&text);
            let again = Header::read(&text).expect("again").id(&text).into_owned();
            prop_assert_eq!(id.as_ref(), again);
            match object.get("uid") {
                Some(Value::String(uid)) if !uid.is_empty() => prop_assert_eq!(id.as_ref(), uid),
                _ if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => prop_assert_eq!(id.as_ref(), content_id(&text)),
                // No uid of its own: one from `teleport.uid` or `event.id` (ECS).
                _ => prop_assert!(!id.is_empty()),
            }
            if let Some(Value::String(sid)) = object.get("sid") {
                prop_assert_eq!(header.session_id(), sid);
            }
            if let (Some(Value::Number(ei)), Some(Value::String(_)) | None) = (object.get("ei"), object.get("event"))
                && let Some(ei) = ei.as_i64() {
                    prop_assert_eq!(header.index(), ei);
                }
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
            let text = serde_json::to_vec(&mapped).expect("serialises");
            let header = Header::read(&text).expect("an object");
            let id = header.id(&text);
            prop_assert_eq!((id.as_ref(), header.event_type(), header.time()), (uid.as_str(), kind.as_str(), time.as_str()));
            prop_assert_eq!((header.index(), header.session_id()), (ei, sid.as_str()));
        }
    }
}
