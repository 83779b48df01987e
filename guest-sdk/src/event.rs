//! The event a plugin sees and the outcome it gives back.
//!
//! ferry sends a batch as one JSON Lines buffer and takes the answer back as
//! verdicts plus one buffer of new JSON (the WIT says why). These types are
//! the per-event view of that exchange that a Rust plugin works with; the
//! SDK converts between the two (`wire`), so a plugin never sees the buffers.

use serde::Deserialize;
use std::borrow::Cow;
use std::cell::OnceCell;

/// One audit event of a batch.
///
/// The JSON is borrowed from the batch buffer: nothing is copied to hand it
/// to a plugin. Teleport's header fields (`event`, `uid`, `time`, `ei`,
/// `sid`) are read from it the first time one of them is asked for, once
/// per event, skipping everything else; a plugin that never asks never pays.
#[derive(Debug)]
pub struct Event<'a> {
    /// The event's JSON text: one JSON object, UTF-8, on one line.
    pub json: &'a [u8],
    header: OnceCell<Header<'a>>,
}

/// Teleport's header fields of an event, as far as it has them.
#[derive(Debug, Default, Deserialize)]
struct Header<'a> {
    #[serde(borrow, default)]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_index")]
    ei: i64,
    #[serde(borrow, default)]
    sid: Option<Cow<'a, str>>,
    /// The id of an event without a `uid`, worked out when first asked for.
    #[serde(skip)]
    hashed_id: OnceCell<String>,
}

fn hex_sha256(json: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(json).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Teleport's `ei` is a number; anything else reads as 0.
fn lenient_index<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Ok(serde_json::Value::deserialize(deserializer)?.as_i64().unwrap_or(0))
}

impl<'a> Event<'a> {
    /// An event for this JSON text; for tests, and for plugins that build
    /// events of their own to hand to a helper.
    pub fn new(json: &'a [u8]) -> Event<'a> {
        Event { json, header: OnceCell::new() }
    }

    /// The event type, Teleport's `event` field (`user.login`,
    /// `session.start`, …); empty when the event has none.
    pub fn event_type(&self) -> &str {
        text(&self.header().event)
    }

    /// ferry's id for the event: Teleport's `uid`, or for an event without
    /// one the hex SHA-256 of its JSON text, as ferry names such events in
    /// its logs and dead letters (and as Teleport identifies them). Never
    /// empty; the same for the same event across retries and restarts.
    pub fn id(&self) -> &str {
        let header = self.header();
        match &header.uid {
            Some(uid) if !uid.is_empty() => uid,
            _ => header.hashed_id.get_or_init(|| hex_sha256(self.json)),
        }
    }

    /// The event time, Teleport's `time` field, as sent (RFC 3339); empty
    /// when the event has none.
    pub fn time(&self) -> &str {
        text(&self.header().time)
    }

    /// The event index, Teleport's `ei` field; 0 when the event has none.
    pub fn index(&self) -> i64 {
        self.header().ei
    }

    /// The session the event belongs to, Teleport's `sid` field; empty for
    /// events outside a session.
    pub fn session_id(&self) -> &str {
        text(&self.header().sid)
    }

    /// The header fields, read at the first call. JSON that cannot be read
    /// gives empty fields here: the plugin finds out, with the reason, when
    /// it parses the event itself.
    fn header(&self) -> &Header<'a> {
        self.header.get_or_init(|| serde_json::from_slice(self.json).unwrap_or_default())
    }
}

fn text<'s>(field: &'s Option<Cow<'_, str>>) -> &'s str {
    field.as_deref().unwrap_or_default()
}

/// What a plugin decided for one event.
///
/// `process` returns exactly one per input event, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Pass the event on unchanged (to the next plugin, then its sinks).
    Keep,
    /// Pass on this JSON object instead of the event. It must be one valid
    /// JSON object; anything else fails the event.
    Replace(Vec<u8>),
    /// Drop the event on purpose. ferry counts drops per plugin; the event
    /// is not delivered and its position counts as done.
    Drop,
    /// Send the event to the named sinks. Later plugins in the chain still
    /// see it; the route of the last plugin that routed wins.
    Route(Route),
    /// This event cannot be handled: ferry writes it to the dead-letter
    /// table with this reason and goes on with the rest of the batch.
    Fail(String),
}

/// Where an event should go next, with optional new content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Names of the sinks that should receive the event, as configured in
    /// ferry.toml (`default` is the sink used when no plugin routes). Must
    /// not be empty; an unknown name fails the event.
    pub sinks: Vec<String>,
    /// New JSON for the event, or `None` to route it unchanged.
    pub json: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_read_from_the_json() {
        let event = Event::new(br#"{"ei":7,"event":"session.start","uid":"u-1","time":"2024-01-01T00:00:00Z","sid":"s-1","x":[1,{"y":2}]}"#);
        assert_eq!(
            (event.event_type(), event.id(), event.time(), event.index(), event.session_id()),
            ("session.start", "u-1", "2024-01-01T00:00:00Z", 7, "s-1")
        );
    }

    #[test]
    fn missing_or_odd_header_fields_read_as_empty() {
        let event = Event::new(br#"{"ei":"seven","event":"user.login"}"#);
        assert_eq!((event.event_type(), event.index(), event.session_id()), ("user.login", 0, ""));
        let broken = Event::new(b"{\"event\":");
        assert_eq!(broken.event_type(), "");
    }

    #[test]
    fn an_event_without_a_uid_gets_the_sha256_of_its_json_as_id() {
        let event = Event::new(br#"{"event":"user.login"}"#);
        // `printf '%s' '{"event":"user.login"}' | sha256sum`
        assert_eq!(event.id(), "4eacfd0e4be7deeddfc5958366b93c2ffe933a8be557ed2e9bffe57aa88a8f31");
        assert_eq!(Event::new(br#"{"uid":"","ei":1}"#).id().len(), 64, "an empty uid counts as none");
    }

    #[test]
    fn escaped_header_fields_are_unescaped() {
        assert_eq!(Event::new(br#"{"event":"user.log\u0069n"}"#).event_type(), "user.login");
    }
}
