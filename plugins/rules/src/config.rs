//! Reading a plugin's config: the plugin's table in ferry.toml, which ferry
//! hands to `init` as JSON text.

use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// Parses `config_json` into `T`, with errors worded for the person who
/// wrote ferry.toml: one line, starting `config`, naming the key at fault.
///
/// `T` should use `#[serde(deny_unknown_fields)]`, so that a misspelt key is
/// refused rather than silently doing nothing.
pub fn parse<T: DeserializeOwned>(config_json: &str) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_str(config_json);
    let config = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        describe(&path, error.into_inner())
    })?;
    deserializer.end().map_err(|error| format!("config is not valid JSON: {error}"))?;
    Ok(config)
}

/// An error about one key, in the same words as [`parse`]'s.
pub fn key_error(key: &str, message: impl std::fmt::Display) -> String {
    format!("config: `{key}` {message}")
}

/// ferry generated the JSON from TOML, so for a wrong key or value the
/// position in that JSON means nothing to the reader and is left out; for
/// JSON that does not parse at all, it is kept.
fn describe(path: &str, error: serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match error.classify() {
        Category::Data => {
            let message = message.strip_suffix(&position).unwrap_or(&message);
            if path == "." || path.is_empty() { format!("config: {message}") } else { format!("config: `{path}`: {message}") }
        }
        Category::Syntax | Category::Eof | Category::Io => {
            format!("config is not valid JSON: {message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        rules: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        level: String,
    }

    #[test]
    fn errors_name_the_key_without_a_json_position() {
        let error = parse::<Outer>(r#"{"rules":[{"level":"x"},{"levl":"y"}]}"#).expect_err("typo");
        assert_eq!(error, "config: `rules[1].levl`: unknown field `levl`, expected `level`");
        let error = parse::<Outer>(r#"{"rules":[{"level":1}]}"#).expect_err("wrong type");
        assert_eq!(error, "config: `rules[0].level`: invalid type: integer `1`, expected a string");
        let error = parse::<Outer>("{}").expect_err("missing");
        assert_eq!(error, "config: missing field `rules`");
    }

    #[test]
    fn broken_json_keeps_its_position() {
        let error = parse::<Outer>("{\"rules\":").expect_err("truncated");
        assert_eq!(error, "config is not valid JSON: EOF while parsing a value at line 1 column 9");
    }
}
