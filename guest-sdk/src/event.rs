//! The event a plugin sees and the outcome it gives back.
//!
//! ferry sends a batch as one JSON Lines buffer and takes the answer back as
//! verdicts plus one buffer of new JSON (the WIT says why). These types are
//! the per-event view of that exchange that a Rust plugin works with; the
//! SDK converts between the two (`wire`), so a plugin never sees the buffers.

use ferry_event::{Header, content_id};
use std::cell::OnceCell;

/// One audit event of a batch.
///
/// The JSON is borrowed from the batch buffer: nothing is copied to hand it
/// to a plugin. Teleport's header fields (`event`, `uid`, `time`, `ei`,
/// `sid`) are read from it the first time one of them is asked for, once
/// per event, skipping everything else; a plugin that never asks never pays.
/// They are read by ferry's event contract (`ferry-event`), as ferry reads
/// them, so also after the `ecs` plugin mapped the event: a plugin sees the
/// id and type that ferry's logs and dead letters name.
#[derive(Debug)]
pub struct Event<'a> {
    /// The event's JSON text: one JSON object, UTF-8, on one line.
    pub json: &'a [u8],
    header: OnceCell<Header<'a>>,
    /// The id of an event without a `uid`, worked out when first asked for.
    content_id: OnceCell<String>,
}

impl<'a> Event<'a> {
    /// An event for this JSON text; for tests, and for plugins that build
    /// events of their own to hand to a helper.
    pub fn new(json: &'a [u8]) -> Event<'a> {
        Event { json, header: OnceCell::new(), content_id: OnceCell::new() }
    }

    /// The event type, Teleport's `event` field (`user.login`,
    /// `session.start`, …), also after the `ecs` plugin moved it to
    /// `teleport.event`; empty when the event has none.
    pub fn event_type(&self) -> &str {
        self.header().event_type()
    }

    /// ferry's id for the event, the one its logs and dead letters name:
    /// Teleport's `uid` (after the `ecs` mapping, the one it kept), or for an
    /// event without one the hex SHA-256 of its JSON text (as Teleport
    /// identifies such events). Never empty; the same for the same event
    /// across retries and restarts.
    pub fn id(&self) -> &str {
        match self.header().uid() {
            Some(uid) => uid,
            None => self.content_id.get_or_init(|| content_id(self.json)),
        }
    }

    /// The event time, Teleport's `time` field, as sent (RFC 3339); empty
    /// when the event has none.
    pub fn time(&self) -> &str {
        self.header().time()
    }

    /// The event index, Teleport's `ei` field; 0 when the event has none.
    pub fn index(&self) -> i64 {
        self.header().index()
    }

    /// The session the event belongs to, Teleport's `sid` field; empty for
    /// events outside a session.
    pub fn session_id(&self) -> &str {
        self.header().session_id()
    }

    /// The header fields, read at the first call. JSON that cannot be read
    /// gives empty fields here: the plugin finds out, with the reason, when
    /// it parses the event itself.
    fn header(&self) -> &Header<'a> {
        self.header.get_or_init(|| Header::read(self.json).unwrap_or_default())
    }
}

/// What a plugin decided for one event (ferry's event contract,
/// `ferry-event`, with the sink names as a plain list).
///
/// `process` returns exactly one per input event, in input order.
pub type Outcome = ferry_event::Outcome<Vec<String>>;

/// Where an event should go next, with optional new content: the sinks of
/// [`Outcome::Route`] (see [`ferry_event::Route`]).
pub type Route = ferry_event::Route<Vec<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_read_from_the_json() {
        let event =
            Event::new(br#"{"ei":7,"event":"session.start","uid":"u-1","time":"2024-01-01T00:00:00Z","sid":"s-1","x":[1,{"y":2}]}"#);
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
        assert_eq!((broken.event_type(), broken.id().len()), ("", 64));
    }

    #[test]
    fn an_event_the_ecs_plugin_mapped_keeps_its_type_and_id() {
        let event = Event::new(br#"{"@timestamp":"2024-01-01T00:00:00Z","event":{"id":"u-1","action":"session.start"},"teleport":{"event":"session.start","uid":"u-1","ei":7,"sid":"s-1"}}"#);
        assert_eq!(
            (event.event_type(), event.id(), event.time(), event.index(), event.session_id()),
            ("session.start", "u-1", "2024-01-01T00:00:00Z", 7, "s-1")
        );
    }
}
