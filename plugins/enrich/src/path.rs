//! Dotted paths (`labels.environment`) and setting the value one names.

use serde_json::{Map, Value};

/// A path into nested objects, one `.`-separated key per level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    parts: Vec<String>,
}

impl FieldPath {
    /// Parses a path; the error reads after the key's name.
    pub(crate) fn parse(path: &str) -> Result<FieldPath, String> {
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!("({path:?}) has an empty part: dots must separate key names"));
        }
        Ok(FieldPath { parts })
    }

    /// This path with one more key (which may itself hold dots).
    pub(crate) fn join(&self, child: &str) -> Result<FieldPath, String> {
        let mut joined = self.clone();
        joined.parts.extend(FieldPath::parse(child)?.parts);
        Ok(joined)
    }

    /// Sets the value at this path, creating objects on the way. Without
    /// `overwrite`, an existing value is kept, and so is a non-object where
    /// the path needs an object. Returns whether the event changed.
    pub(crate) fn set(&self, event: &mut Map<String, Value>, value: Value, overwrite: bool) -> bool {
        let Some((last, parents)) = self.parts.split_last() else { return false };
        let mut object = event;
        for part in parents {
            let slot = object.entry(part.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                if !overwrite {
                    return false;
                }
                *slot = Value::Object(Map::new());
            }
            let Value::Object(next) = slot else { unreachable!("made an object just above") };
            object = next;
        }
        match object.get_mut(last) {
            Some(existing) if !overwrite || *existing == value => false,
            Some(existing) => {
                *existing = value;
                true
            }
            None => {
                object.insert(last.clone(), value);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(event: Value, path: &str, value: Value, overwrite: bool) -> (Value, bool) {
        let Value::Object(mut event) = event else { panic!("test events are objects") };
        let changed = FieldPath::parse(path).expect("valid path").set(&mut event, value, overwrite);
        (Value::Object(event), changed)
    }

    #[test]
    fn creates_nested_objects_and_keeps_what_is_there() {
        assert_eq!(set(json!({"a": 1}), "labels.env", json!("prod"), false), (json!({"a": 1, "labels": {"env": "prod"}}), true));
        assert_eq!(
            set(json!({"labels": {"x": 1}}), "labels.env", json!("prod"), false),
            (json!({"labels": {"x": 1, "env": "prod"}}), true)
        );
        assert_eq!(set(json!({"labels": {"env": "dev"}}), "labels.env", json!("prod"), false), (json!({"labels": {"env": "dev"}}), false));
        assert_eq!(set(json!({"labels": "flat"}), "labels.env", json!("prod"), false), (json!({"labels": "flat"}), false));
    }

    #[test]
    fn overwrite_replaces_values_and_non_objects() {
        assert_eq!(set(json!({"labels": {"env": "dev"}}), "labels.env", json!("prod"), true), (json!({"labels": {"env": "prod"}}), true));
        assert_eq!(set(json!({"labels": "flat"}), "labels.env", json!("prod"), true), (json!({"labels": {"env": "prod"}}), true));
        assert_eq!(set(json!({"s": "high"}), "s", json!("high"), true), (json!({"s": "high"}), false), "same value: no change");
    }

    #[test]
    fn empty_parts_are_refused() {
        assert!(FieldPath::parse("a..b").is_err() && FieldPath::parse("").is_err() && FieldPath::parse(".a").is_err());
    }
}
