//! Field paths (`login`, `addr.remote`, `user.traits.logins`) and masking
//! the value one names.

use serde_json::{Map, Value};

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
            return Err(format!(
                "(\"{path}\") has an empty part: dots must separate key names"
            ));
        }
        Ok(FieldPath {
            literal: path.to_owned(),
            parts,
        })
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

    /// Replaces the value this path names in `event` by `replacement`.
    ///
    /// Returns whether it changed anything: false when the event has no such
    /// field, or when the value already is the replacement (so redacting
    /// twice changes nothing the second time).
    pub(crate) fn mask(&self, event: &mut Map<String, Value>, replacement: &str) -> bool {
        match self.find(event) {
            Some(value) => mask_value(value, replacement),
            None => false,
        }
    }

    /// The value the path names: the top-level key as written, else the
    /// nested one.
    fn find<'a>(&self, event: &'a mut Map<String, Value>) -> Option<&'a mut Value> {
        // Looked up twice because returning the first borrow from inside a
        // conditional is not yet accepted by the borrow checker.
        if event.contains_key(&self.literal) {
            return event.get_mut(&self.literal);
        }
        match self.parts.split_last() {
            Some((last, parents)) if !parents.is_empty() => {
                let mut object = event;
                for part in parents {
                    object = object.get_mut(part)?.as_object_mut()?;
                }
                object.get_mut(last)
            }
            // A single part is the literal key, already looked up.
            _ => None,
        }
    }
}

/// Sets `value` to the replacement string; returns whether it changed.
fn mask_value(value: &mut Value, replacement: &str) -> bool {
    if value.as_str() == Some(replacement) {
        return false;
    }
    *value = Value::String(replacement.to_owned());
    true
}
