//! The plugin's config: its table in ferry.toml, which ferry hands to `init`
//! as JSON text.

use crate::path::FieldPath;
use serde::Deserialize;
use serde_json::error::Category;

/// What to mask and what to mask it with.
///
/// ```toml
/// [[plugins]]
/// path = "redact.wasm"
/// config = { fields = ["login", "addr.remote", "user.traits.logins"], replacement = "***" }
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Paths of the fields to mask; required, at least one. A path first
    /// names a top-level key as written (Teleport's keys may contain dots,
    /// such as `addr.remote`); when the event has no such key, the path is
    /// split on `.` into nested object keys (`user.traits.logins`).
    fields: Vec<String>,
    /// What a masked value becomes, whatever its JSON type was: this string.
    /// Default `[REDACTED]`.
    #[serde(default = "default_replacement")]
    replacement: String,
}

/// The replacement used when the config names none.
pub(crate) const DEFAULT_REPLACEMENT: &str = "[REDACTED]";

fn default_replacement() -> String {
    DEFAULT_REPLACEMENT.to_owned()
}

/// A config that passed every check: the paths to mask, parsed, and the
/// replacement.
#[derive(Debug)]
pub(crate) struct Validated {
    pub(crate) fields: Vec<FieldPath>,
    pub(crate) replacement: String,
}

/// Parses and checks the config, so that nothing fails later for a config
/// reason.
///
/// Messages start with `config:` and name the key at fault; ferry prints
/// them next to the plugin's name.
pub(crate) fn parse(config_json: &str) -> Result<Validated, String> {
    let config: Config = serde_json::from_str(config_json).map_err(describe)?;
    if config.fields.is_empty() {
        return Err("config: `fields` is empty; list at least one field path to mask, such as \"login\"".to_owned());
    }
    let fields = config
        .fields
        .iter()
        .enumerate()
        .map(|(index, path)| FieldPath::parse(path).map_err(|why| format!("config: `fields[{index}]` {why}")))
        .collect::<Result<_, _>>()?;
    Ok(Validated { fields, replacement: config.replacement })
}

/// Words a config error for the person who wrote ferry.toml.
///
/// ferry generated the JSON from TOML, so for a wrong key or value the
/// position in that JSON means nothing to them and is left out; for JSON
/// that does not parse at all, it is kept.
fn describe(error: serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match error.classify() {
        Category::Data => {
            let message = message.strip_suffix(&position).unwrap_or(&message);
            format!("config: {message}")
        }
        Category::Syntax | Category::Eof | Category::Io => {
            format!("config is not valid JSON: {message}")
        }
    }
}
