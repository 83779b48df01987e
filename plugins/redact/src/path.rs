//! Field paths (`login`, `addr.remote`, `user.traits.logins`) and finding
//! the values one names in an event's text.

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// One configured field path.
///
/// Teleport writes some keys with dots in them (`addr.remote`), and nests
/// others (`user.traits.logins` is `{"user":{"traits":{"logins":…}}}`). So a
/// path first names a top-level key as written, and only when the event has
/// no such key is it followed through nested objects, one `.`-separated part
/// per level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    /// The path as configured: the top-level key it names literally.
    literal: String,
    /// The path split on `.`; used only when it has more than one part.
    parts: Vec<String>,
}

impl FieldPath {
    /// Parses a configured path; the error says what is wrong with it,
    /// worded to follow the key's name (`fields[2]`).
    pub(crate) fn parse(path: &str) -> Result<FieldPath, String> {
        if path.is_empty() {
            return Err("is empty; give the name of a field".to_owned());
        }
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!("(\"{path}\") has an empty part: dots must separate key names"));
        }
        Ok(FieldPath { literal: path.to_owned(), parts })
    }

    /// The keys an event must contain, quoted, for this path to name a
    /// value in it: the literal key, and for a nested path its last part.
    /// `None` when a key holds a character JSON may write escaped (a quote,
    /// a backslash, a control or non-ASCII character), which a plain byte
    /// search could miss.
    pub(crate) fn keys(&self) -> Option<Vec<Vec<u8>>> {
        let plain = |key: &str| key.bytes().all(|byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\');
        let quoted = |key: &str| format!("\"{key}\"").into_bytes();
        let mut keys = vec![quoted(&self.literal)];
        if let Some(last) = self.parts.last().filter(|_| self.parts.len() > 1) {
            keys.push(quoted(last));
        }
        (plain(&self.literal)).then_some(keys)
    }

    /// Adds to `found` the span in `json` of every value this path names in
    /// `event` (the members of the event object `json` holds): the top-level
    /// key as written, else the nested one. A key given more than once has
    /// each of its values found, so that none escapes the mask.
    pub(crate) fn find(&self, json: &[u8], event: &Members<'_>, found: &mut Vec<Range<usize>>) {
        if event.has(&self.literal) {
            found.extend(event.values(&self.literal).map(|value| span(json, value)));
            return;
        }
        let Some((last, parents)) = self.parts.split_last().filter(|(_, parents)| !parents.is_empty()) else {
            // A single part is the literal key, already looked up.
            return;
        };
        find_nested(json, event, parents, last, found);
    }
}

/// Follows `parents` through nested objects, then finds `last`.
fn find_nested(json: &[u8], object: &Members<'_>, parents: &[String], last: &str, found: &mut Vec<Range<usize>>) {
    let Some((part, rest)) = parents.split_first() else {
        found.extend(object.values(last).map(|value| span(json, value)));
        return;
    };
    for value in object.values(part) {
        // A value that is not an object has no fields to follow.
        if let Ok(inner) = Members::parse(value.get().as_bytes()) {
            find_nested(json, &inner, rest, last, found);
        }
    }
}

/// Where `value`, borrowed from `json`, sits in it.
fn span(json: &[u8], value: &RawValue) -> Range<usize> {
    let start = value.get().as_ptr() as usize - json.as_ptr() as usize;
    start..start + value.get().len()
}

/// The members of one JSON object, each value left as its text.
///
/// Nothing is built but this list: keys are borrowed from the text unless
/// they hold escapes, and values are not parsed into anything, only checked
/// to be valid JSON.
pub(crate) struct Members<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Members<'a> {
    /// The members of the object `json` holds; an error when it does not
    /// hold exactly one valid JSON object.
    pub(crate) fn parse(json: &'a [u8]) -> Result<Members<'a>, serde_json::Error> {
        serde_json::from_slice(json)
    }

    fn has(&self, key: &str) -> bool {
        self.members.iter().any(|(name, _)| name == key)
    }

    fn values<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'a RawValue> + 's {
        self.members.iter().filter(move |(name, _)| name == key).map(|(_, value)| *value)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(32));
        while let Some(Key(name)) = map.next_key()? {
            members.push((name, map.next_value()?));
        }
        Ok(Members { members })
    }
}

/// An object key, borrowed from the text when it holds no escape.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(key)))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(key.to_owned())))
    }
}
