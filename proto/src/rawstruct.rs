//! An event's `google.protobuf.Struct` kept as the bytes it arrived in, and
//! written as JSON straight from them.
//!
//! Every Teleport event is a Struct, and decoding one into
//! `prost_types::Struct` builds a tree — a `BTreeMap` per object, a
//! `String` per key and per text value — only to walk it once into JSON and
//! drop it. That tree was the largest share of ferry's CPU on the Teleport
//! path (allocation, varint decoding and freeing it again). So the generated
//! code holds a [`RawStruct`] instead (`build.rs` maps the protobuf type to
//! it), which keeps the message's entries as one byte buffer, and
//! [`RawStruct::write_json`] reads the wire format once, writing the same
//! JSON [`crate::structjson::write_struct_json`] writes from the tree: keys
//! in byte order, a key given twice taking its last value (as a protobuf map
//! does), numbers and strings as that module writes them.
//!
//! A malformed Struct no longer fails the whole page or stream it came in
//! (as decoding the tree did): the event's own conversion fails, with a
//! reason, and the caller keeps it as a dead letter.

use crate::structjson::{write_number, write_str};
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

/// How deep objects and lists may nest, as prost's own decoder allows.
const MAX_DEPTH: usize = 100;

/// A `google.protobuf.Struct`, its entries as they came off the wire.
#[derive(Clone, PartialEq, Default)]
pub struct RawStruct {
    /// Field 1 (the map's entries), each with its key and length, as
    /// encoded: what `encode_raw` writes back unchanged.
    wire: Vec<u8>,
}

impl std::fmt::Debug for RawStruct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawStruct").field("bytes", &self.wire.len()).finish()
    }
}

/// A Struct whose bytes are not a valid Struct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event's protobuf Struct is malformed: {0}")]
pub struct MalformedStruct(String);

impl From<DecodeError> for MalformedStruct {
    fn from(error: DecodeError) -> Self {
        MalformedStruct(error.to_string())
    }
}

/// A top-level value of a Struct, as [`RawStruct::write_json`] found it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// `null`, or a value with no kind set.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    Text(&'a str),
    /// An object or a list.
    Nested,
}

/// One value's kind, pointing into the wire bytes.
#[derive(Clone, Copy)]
enum Kind<'a> {
    Null,
    Number(f64),
    Text(&'a [u8]),
    Bool(bool),
    Object(&'a [u8]),
    List(&'a [u8]),
}

impl RawStruct {
    /// The wire form of a decoded Struct (for the stand-in Teleport, which
    /// builds its events from JSON).
    pub fn from_struct(fields: &prost_types::Struct) -> RawStruct {
        RawStruct { wire: fields.encode_to_vec() }
    }

    /// A Struct's encoded bytes (its message body), taken as they are: they
    /// are read only when written as JSON, so malformed ones fail then.
    pub fn from_wire(wire: Vec<u8>) -> RawStruct {
        RawStruct { wire }
    }

    /// The Struct decoded into prost's tree.
    pub fn to_struct(&self) -> Result<prost_types::Struct, MalformedStruct> {
        Ok(prost_types::Struct::decode(self.wire.as_slice())?)
    }

    /// The Struct's encoded bytes (its message body, without a length).
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Appends the Struct's compact JSON to `out`, calling `visit` with
    /// each top-level key and value (after duplicates are settled), so
    /// that a caller reads an event's headers in the same pass. On an error
    /// `out` holds a partial object; the caller discards it.
    pub fn write_json<'a>(&'a self, out: &mut Vec<u8>, mut visit: impl FnMut(&'a str, Field<'a>)) -> Result<(), MalformedStruct> {
        let mut entries = Vec::new();
        write_object(&self.wire, &mut entries, 0, out, &mut visit)
    }

    /// The Struct as a JSON value (for tests and tools; the hot path writes
    /// bytes with [`RawStruct::write_json`]).
    pub fn to_json_value(&self) -> Result<serde_json::Value, MalformedStruct> {
        Ok(crate::structjson::struct_to_json(&self.to_struct()?))
    }

    /// The Struct's compact JSON.
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, MalformedStruct> {
        let mut out = Vec::with_capacity(self.wire.len() + self.wire.len() / 4);
        self.write_json(&mut out, |_, _| {})?;
        Ok(out)
    }
}

impl Message for RawStruct {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.wire);
    }

    fn merge_field(&mut self, tag: u32, wire_type: WireType, buf: &mut impl Buf, ctx: DecodeContext) -> Result<(), DecodeError> {
        if tag != 1 {
            return encoding::skip_field(wire_type, tag, buf, ctx);
        }
        encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len = encoding::decode_varint(buf)?;
        if len > buf.remaining() as u64 {
            // (prost offers no other way to make this error outside itself.)
            #[allow(deprecated)]
            return Err(DecodeError::new("buffer underflow"));
        }
        encoding::encode_key(1, WireType::LengthDelimited, &mut self.wire);
        encoding::encode_varint(len, &mut self.wire);
        let mut left = len as usize;
        while left > 0 {
            let chunk = buf.chunk();
            let take = chunk.len().min(left);
            self.wire.extend_from_slice(&chunk[..take]);
            buf.advance(take);
            left -= take;
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.wire.len()
    }

    fn clear(&mut self) {
        self.wire.clear();
    }
}

/// The next field of `bytes`: its tag and, for a length-delimited one, its
/// contents; other wire types are read past and given as `None`.
fn next_field<'a>(bytes: &mut &'a [u8]) -> Result<(u32, WireType, Option<&'a [u8]>), MalformedStruct> {
    let (tag, wire_type) = encoding::decode_key(bytes)?;
    if wire_type != WireType::LengthDelimited {
        return Ok((tag, wire_type, None));
    }
    let len = encoding::decode_varint(bytes)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= bytes.len())
        .ok_or_else(|| MalformedStruct(format!("a field of {len} bytes where {} are left", bytes.len())))?;
    let (contents, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok((tag, wire_type, Some(contents)))
}

/// Reads past a field that is not length-delimited (those are read by
/// [`next_field`] already).
fn skip(tag: u32, wire_type: WireType, bytes: &mut &[u8]) -> Result<(), MalformedStruct> {
    Ok(encoding::skip_field(wire_type, tag, bytes, DecodeContext::default())?)
}

fn wrong_type(what: &str, tag: u32) -> MalformedStruct {
    MalformedStruct(format!("field {tag} of a {what} has the wrong wire type"))
}

fn text(bytes: &[u8]) -> Result<&str, MalformedStruct> {
    std::str::from_utf8(bytes).map_err(|err| MalformedStruct(format!("a string is not UTF-8 ({err})")))
}

/// One map entry: its key and its value's bytes (empty: a value with no
/// kind, `null`).
fn entry(mut bytes: &[u8]) -> Result<(&[u8], &[u8]), MalformedStruct> {
    let (mut key, mut value): (&[u8], &[u8]) = (b"", b"");
    while !bytes.is_empty() {
        match next_field(&mut bytes)? {
            (1, _, Some(contents)) => key = contents,
            (2, _, Some(contents)) => value = contents,
            (tag @ (1 | 2), _, None) => return Err(wrong_type("Struct entry", tag)),
            (tag, wire_type, None) => skip(tag, wire_type, &mut bytes)?,
            (_, _, Some(_)) => {}
        }
    }
    Ok((key, value))
}

/// A `Value`'s kind; the last one given wins, as for a protobuf oneof.
fn kind(mut bytes: &[u8]) -> Result<Kind<'_>, MalformedStruct> {
    let mut kind = Kind::Null;
    while !bytes.is_empty() {
        let (tag, wire_type, contents) = next_field(&mut bytes)?;
        kind = match (tag, wire_type, contents) {
            (1, WireType::Varint, None) => {
                encoding::decode_varint(&mut bytes)?;
                Kind::Null
            }
            (2, WireType::SixtyFourBit, None) => {
                let Some((number, rest)) = bytes.split_first_chunk::<8>() else {
                    return Err(MalformedStruct("a number is cut short".into()));
                };
                bytes = rest;
                Kind::Number(f64::from_le_bytes(*number))
            }
            (3, _, Some(contents)) => Kind::Text(contents),
            (4, WireType::Varint, None) => Kind::Bool(encoding::decode_varint(&mut bytes)? != 0),
            (5, _, Some(contents)) => Kind::Object(contents),
            (6, _, Some(contents)) => Kind::List(contents),
            (tag @ 1..=6, _, _) => return Err(wrong_type("Value", tag)),
            (tag, wire_type, None) => {
                skip(tag, wire_type, &mut bytes)?;
                continue;
            }
            (_, _, Some(_)) => continue,
        };
    }
    Ok(kind)
}

/// Writes the object whose entries are `bytes`. `entries` is a stack shared
/// by every level: each object sorts its own entries on top of it and
/// takes them off when done, so that nesting costs no allocation.
fn write_object<'a>(
    mut bytes: &'a [u8],
    entries: &mut Vec<(&'a [u8], &'a [u8])>,
    depth: usize,
    out: &mut Vec<u8>,
    visit: &mut dyn FnMut(&'a str, Field<'a>),
) -> Result<(), MalformedStruct> {
    check_depth(depth)?;
    let start = entries.len();
    while !bytes.is_empty() {
        match next_field(&mut bytes)? {
            (1, _, Some(contents)) => entries.push(entry(contents)?),
            (1, _, None) => return Err(wrong_type("Struct", 1)),
            (tag, wire_type, None) => skip(tag, wire_type, &mut bytes)?,
            (_, _, Some(_)) => {}
        }
    }
    // Stable, so that among equal keys the last given stays last.
    entries[start..].sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    let mut first = true;
    for at in start..entries.len() {
        let (key, value) = entries[at];
        if entries.get(at + 1).is_some_and(|next| next.0 == key) {
            continue; // A later value of the same key wins.
        }
        if !first {
            out.push(b',');
        }
        first = false;
        let key = text(key)?;
        write_str(key, out);
        out.push(b':');
        let kind = kind(value)?;
        if depth == 0 {
            visit(key, field(kind)?);
        }
        write_kind(kind, entries, depth, out)?;
    }
    out.push(b'}');
    entries.truncate(start);
    Ok(())
}

fn check_depth(depth: usize) -> Result<(), MalformedStruct> {
    if depth > MAX_DEPTH {
        return Err(MalformedStruct(format!("objects and lists nest deeper than {MAX_DEPTH}")));
    }
    Ok(())
}

fn field(kind: Kind<'_>) -> Result<Field<'_>, MalformedStruct> {
    Ok(match kind {
        Kind::Null => Field::Null,
        Kind::Bool(b) => Field::Bool(b),
        Kind::Number(n) => Field::Number(n),
        Kind::Text(bytes) => Field::Text(text(bytes)?),
        Kind::Object(_) | Kind::List(_) => Field::Nested,
    })
}

fn write_kind<'a>(kind: Kind<'a>, entries: &mut Vec<(&'a [u8], &'a [u8])>, depth: usize, out: &mut Vec<u8>) -> Result<(), MalformedStruct> {
    match kind {
        Kind::Null => out.extend_from_slice(b"null"),
        Kind::Bool(true) => out.extend_from_slice(b"true"),
        Kind::Bool(false) => out.extend_from_slice(b"false"),
        Kind::Number(n) => write_number(n, out),
        Kind::Text(bytes) => write_str(text(bytes)?, out),
        Kind::Object(bytes) => write_object(bytes, entries, depth + 1, out, &mut |_, _| {})?,
        Kind::List(bytes) => write_list(bytes, entries, depth + 1, out)?,
    }
    Ok(())
}

fn write_list<'a>(
    mut bytes: &'a [u8],
    entries: &mut Vec<(&'a [u8], &'a [u8])>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), MalformedStruct> {
    check_depth(depth)?;
    out.push(b'[');
    let mut first = true;
    while !bytes.is_empty() {
        match next_field(&mut bytes)? {
            (1, _, Some(value)) => {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_kind(kind(value)?, entries, depth, out)?;
            }
            (1, _, None) => return Err(wrong_type("ListValue", 1)),
            (tag, wire_type, None) => skip(tag, wire_type, &mut bytes)?,
            (_, _, Some(_)) => {}
        }
    }
    out.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structjson::{json_to_struct, struct_to_json_bytes};
    use serde_json::json;

    const EVENTS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-events.jsonl"));
    const SESSION: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-session-events.jsonl"));

    fn raw(json: &serde_json::Value) -> RawStruct {
        RawStruct::from_struct(&json_to_struct(json).expect("an object"))
    }

    /// The bytes as the generated code's decoder keeps them, from a buffer
    /// holding the Struct as a field of a message.
    fn through_the_decoder(wire: &[u8]) -> Result<RawStruct, DecodeError> {
        RawStruct::decode(wire)
    }

    #[test]
    fn every_fixture_is_written_as_the_tree_writes_it() {
        for (number, line) in EVENTS.lines().chain(SESSION.lines()).enumerate() {
            let fields = json_to_struct(&serde_json::from_str(line).expect("JSON")).expect("an object");
            let decoded = through_the_decoder(&fields.encode_to_vec()).expect("decodes");
            assert_eq!(decoded.to_json_bytes().expect("well formed"), struct_to_json_bytes(&fields), "line {}", number + 1);
            assert_eq!(decoded.to_struct().expect("well formed"), fields);
        }
    }

    #[test]
    fn top_level_fields_are_visited_once_each_in_key_order() {
        let raw = raw(&json!({"uid": "u1", "ei": 5, "ok": true, "nested": {"uid": "inner"}, "list": [1], "none": null}));
        let mut seen = Vec::new();
        let mut out = Vec::new();
        raw.write_json(&mut out, |key, field| seen.push((key.to_owned(), field.to_owned_field()))).expect("well formed");
        assert_eq!(
            seen,
            [
                ("ei".into(), OwnedField::Number(5.0)),
                ("list".into(), OwnedField::Nested),
                ("nested".into(), OwnedField::Nested),
                ("none".into(), OwnedField::Null),
                ("ok".into(), OwnedField::Bool(true)),
                ("uid".into(), OwnedField::Text("u1".into())),
            ]
        );
    }

    #[derive(Debug, PartialEq)]
    enum OwnedField {
        Null,
        Bool(bool),
        Number(f64),
        Text(String),
        Nested,
    }

    impl Field<'_> {
        fn to_owned_field(self) -> OwnedField {
            match self {
                Field::Null => OwnedField::Null,
                Field::Bool(b) => OwnedField::Bool(b),
                Field::Number(n) => OwnedField::Number(n),
                Field::Text(t) => OwnedField::Text(t.to_owned()),
                Field::Nested => OwnedField::Nested,
            }
        }
    }

    /// A map entry with `key` and a string `value`, encoded by hand.
    fn string_entry(key: &str, value: &str) -> Vec<u8> {
        let mut value_message = Vec::new();
        encoding::string::encode(3, &value.to_owned(), &mut value_message);
        let mut entry = Vec::new();
        encoding::string::encode(1, &key.to_owned(), &mut entry);
        encoding::bytes::encode(2, &value_message, &mut entry);
        let mut wire = Vec::new();
        encoding::bytes::encode(1, &entry, &mut wire);
        wire
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value_as_a_protobuf_map_does() {
        let wire = [string_entry("b", "1"), string_entry("a", "x"), string_entry("b", "2")].concat();
        let decoded = through_the_decoder(&wire).expect("decodes");
        assert_eq!(String::from_utf8(decoded.to_json_bytes().expect("well formed")).expect("UTF-8"), r#"{"a":"x","b":"2"}"#);
        let tree: prost_types::Struct = Message::decode(wire.as_slice()).expect("prost decodes it too");
        assert_eq!(decoded.to_json_bytes().expect("well formed"), struct_to_json_bytes(&tree));
    }

    #[test]
    fn unknown_fields_are_read_past() {
        let mut wire = string_entry("a", "x");
        encoding::uint64::encode(9, &7, &mut wire);
        encoding::string::encode(8, &"ignored".to_owned(), &mut wire);
        let decoded = through_the_decoder(&wire).expect("decodes");
        assert_eq!(decoded.to_json_bytes().expect("well formed"), br#"{"a":"x"}"#);
    }

    #[test]
    fn malformed_structs_fail_their_own_conversion_with_a_reason() {
        let not_utf8 = {
            let mut value = Vec::new();
            encoding::bytes::encode(3, &vec![0xff, 0xfe], &mut value);
            let mut entry = Vec::new();
            encoding::string::encode(1, &"k".to_owned(), &mut entry);
            encoding::bytes::encode(2, &value, &mut entry);
            let mut wire = Vec::new();
            encoding::bytes::encode(1, &entry, &mut wire);
            wire
        };
        let error = through_the_decoder(&not_utf8).expect("the entry's bytes are kept").to_json_bytes().expect_err("not UTF-8");
        assert!(error.to_string().contains("not UTF-8"), "{error}");

        let cut = &string_entry("key", "value")[..6];
        assert!(through_the_decoder(cut).is_err(), "an entry cut short fails the decoder");
        let inside_cut = RawStruct { wire: [&[0x0a, 0x03][..], &[0x0a, 0x09, b'k']].concat() };
        assert!(inside_cut.to_json_bytes().expect_err("cut inside").to_string().contains("bytes where"));

        let mut deep = json!(1);
        for _ in 0..(MAX_DEPTH + 2) {
            deep = json!([deep]);
        }
        let deep = RawStruct::from_struct(&json_to_struct(&json!({ "deep": deep })).expect("object"));
        assert!(deep.to_json_bytes().expect_err("too deep").to_string().contains("nest deeper"));
    }

    #[test]
    fn the_bytes_encode_back_unchanged() {
        let fields = json_to_struct(&json!({"a": [1, "b", {"c": null}], "d": false})).expect("object");
        let decoded = through_the_decoder(&fields.encode_to_vec()).expect("decodes");
        assert_eq!(decoded.encode_to_vec(), fields.encode_to_vec());
        assert_eq!(decoded.encoded_len(), fields.encoded_len());
    }
}

/// The wire reader against prost's tree and the tree's writer, on random
/// Structs, and against arbitrary bytes (which must never panic).
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::structjson::{struct_to_json_bytes, tests_support::structs};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_wire_reader_writes_the_trees_json(fields in structs()) {
            let wire = fields.encode_to_vec();
            let decoded = RawStruct::decode(wire.as_slice()).expect("decodes");
            prop_assert_eq!(decoded.to_json_bytes().expect("well formed"), struct_to_json_bytes(&fields));
        }

        /// A real Struct as a backend with a bug, or a peer, might damage
        /// it (bytes changed, cut short, lengths and tags made up): every
        /// reader gives a value or an error, never a panic. Random bytes
        /// rarely get past the first tag; these reach the nested readers.
        #[test]
        fn a_damaged_struct_converts_or_fails_but_never_panics(
            fields in structs(),
            damages in prop::collection::vec((0.0..1.0f64, any::<u8>(), 0..3u8), 1..5),
        ) {
            let mut wire = fields.encode_to_vec();
            for (at, byte, how) in damages {
                let at = ((at * wire.len() as f64) as usize).min(wire.len());
                match how {
                    0 if at < wire.len() => wire[at] = byte,
                    1 => wire.truncate(at),
                    _ => wire.insert(at, byte),
                }
            }
            let raw = RawStruct::from_wire(wire.clone());
            let _ = raw.write_json(&mut Vec::new(), |_, _| {});
            let _ = raw.to_struct();
            if let Ok(value) = raw.to_json_value() {
                prop_assert!(value.is_object());
            }
            if let Ok(decoded) = RawStruct::decode(wire.as_slice()) {
                let _ = decoded.to_json_bytes();
            }
        }

        #[test]
        fn arbitrary_bytes_convert_or_fail_but_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(decoded) = RawStruct::decode(bytes.as_slice()) {
                let written = decoded.to_json_bytes();
                // Whatever prost's tree makes of the same bytes, ours agrees where both succeed.
                if let (Ok(json), Ok(tree)) = (&written, prost_types::Struct::decode(bytes.as_slice())) {
                    prop_assert_eq!(json, &struct_to_json_bytes(&tree));
                }
            }
        }
    }
}
