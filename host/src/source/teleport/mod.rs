//! The Teleport source's building blocks: the identity file, the mutual-TLS
//! connection to the Auth Service (direct, or through a Proxy with TLS
//! routing), the audit log and session readers, the cursor and locking.
//!
//! The gRPC protocol and the conversion of Teleport's
//! `google.protobuf.Struct` events to and from JSON are the `ferry-proto`
//! crate (`proto/`), generated from Teleport's own protobuf definitions
//! (package, service, method and message names and field numbers kept).

pub mod audit;
pub mod config;
pub mod connect;
pub mod cursor;
pub mod handover;
pub mod identity;
pub mod lock;
mod merge;
pub mod position;
pub mod sessions;
pub mod status;
pub mod upgrade;

pub use config::TeleportSourceConfig;
pub use merge::TeleportSource;

use crate::event::Event;
use crate::source::Invalid;
use base64::Engine as _;
use ferry_proto::auditlog::EventUnstructured;

/// The event Teleport sent, its JSON written and its header read in one
/// pass. An event whose Struct is malformed is input that cannot be read:
/// named by its id, type and index (and its recording's `session`, if
/// any), its protobuf bytes kept as base64 for the dead letter, and the
/// events around it go on. (The name is made only then: this runs per event.)
fn read_event(event: EventUnstructured, buffer: &mut Vec<u8>, session: Option<&str>) -> Result<Event, Invalid> {
    let fields = event.unstructured.unwrap_or_default();
    Event::from_struct(&fields, buffer).map_err(|error| {
        let what = session.map_or_else(|| "audit".to_owned(), |sid| format!("session {sid}"));
        let position = format!("{what} event {} ({}, index {})", event.id, event.r#type, event.index);
        let struct_base64 = base64::engine::general_purpose::STANDARD.encode(fields.wire());
        let raw = serde_json::json!({ "id": event.id, "type": event.r#type, "index": event.index, "struct_base64": struct_base64 });
        Invalid { reason: format!("{position}: {error}"), position, raw: raw.to_string().into_bytes() }
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod read_event_tests {
    use super::*;
    use ferry_proto::rawstruct::RawStruct;
    use prost::Message as _;

    fn event_with(fields: RawStruct) -> EventUnstructured {
        EventUnstructured { r#type: "user.login".into(), id: "u-7".into(), time: None, index: 3, unstructured: Some(fields) }
    }

    #[test]
    fn a_well_formed_struct_is_an_event_with_its_header() {
        let json = serde_json::json!({"event": "user.login", "uid": "u-7", "time": "2024-05-01T00:00:00Z", "ei": 3, "user": "alice"});
        let fields = RawStruct::from_struct(&ferry_proto::structjson::json_to_struct(&json).expect("an object"));
        let event = read_event(event_with(fields), &mut Vec::new(), None).expect("well formed");
        assert_eq!((event.id.as_str(), event.event_type.as_str(), event.index), ("u-7", "user.login", 3));
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&event.json).expect("JSON"), json);
    }

    #[test]
    fn a_malformed_struct_is_named_and_kept_whole_for_its_dead_letter() {
        // One entry, key "user", whose string value is not UTF-8.
        let wire = [0x0a, 0x0c, 0x0a, 0x04, b'u', b's', b'e', b'r', 0x12, 0x04, 0x1a, 0x02, 0xff, 0xfe];
        let fields = RawStruct::decode(&wire[..]).expect("the entries are kept as bytes");
        let invalid = read_event(event_with(fields), &mut Vec::new(), Some("s-1")).expect_err("not UTF-8");
        assert_eq!(invalid.position, "session s-1 event u-7 (user.login, index 3)");
        assert!(
            invalid.reason.starts_with(
                "session s-1 event u-7 (user.login, index 3): the event's protobuf Struct is malformed: a string is not UTF-8"
            ),
            "{}",
            invalid.reason
        );
        assert!(!invalid.reason.contains('\n'));
        let raw: serde_json::Value = serde_json::from_slice(&invalid.raw).expect("a JSON record");
        let kept = base64::engine::general_purpose::STANDARD.decode(raw["struct_base64"].as_str().expect("base64")).expect("decodes");
        assert_eq!(
            (raw["id"].as_str(), raw["type"].as_str(), raw["index"].as_i64(), kept.as_slice()),
            (Some("u-7"), Some("user.login"), Some(3), &wire[..])
        );
    }
}
