//! enrich: a ferry plugin that adds fields to audit events: static ones
//! from its config (environment, cluster tags) and a `severity` derived from
//! the event's type, code and success.
//!
//! # Config
//!
//! ```toml
//! [[plugins]]
//! path = "enrich.wasm"
//! [plugins.config]
//! overwrite = false
//! fields = { "labels.environment" = "prod", "labels.region" = "eu-west-1", tags = ["teleport"] }
//! [plugins.config.severity]
//! field = "severity"
//! default = "low"
//! rules = [
//!   { when = { type = "session.start", user = "root" }, level = "medium" },
//!   { when = { type = "exec", match = [{ pointer = "/command", glob = "*sudo*" }] }, level = "high" },
//! ]
//! ```
//!
//! - `fields` (default none): a JSON object of fields to add to every
//!   event. A key with dots is a path into nested objects
//!   (`"labels.environment" = "prod"` writes `{"labels":{"environment":"prod"}}`),
//!   and an object value is merged key by key into what the event has, so
//!   `labels = { team = "sec" }` adds `labels.team` and keeps the event's
//!   other labels.
//! - `overwrite` (default `false`): whether a field the event already has
//!   is replaced. By default it is kept, and so is a value that is not an
//!   object where a path needs one (`labels.x` when `labels` is a string).
//! - `severity.enabled` (default `true`): whether to write a severity.
//! - `severity.field` (default `"severity"`): the path to write it to.
//! - `severity.rules` (default none): `{ when = <condition>, level = "…" }`
//!   checked in order before the built-in ones; the first match decides.
//!   Conditions are those of the filter plugin (`type`, `user`, `cluster`,
//!   `code`, `success`, `match`).
//! - `severity.builtin` (default `true`): whether the built-in table below
//!   follows the configured rules.
//! - `severity.default` (default `"low"`): the level when no rule matches.
//!
//! Built-in table, in order: a failed `user.login`, a failed `auth` (access
//! denied: a principal not allowed) and `session.rejected` are `high`;
//! changes to users, roles, locks, SSO connectors, MFA devices and recovery
//! codes are `medium`; any other code ending in `W` (warning) or `E`
//! (error) is `medium`.
//!
//! The conditions read Teleport's fields, or for an event the ecs plugin
//! mapped, the original under `teleport`, so enrich may run before or
//! after ecs. An event that gains nothing (every field already there) passes
//! unchanged; one that is not a JSON object fails.

#![deny(missing_docs)]

mod path;

#[cfg(target_arch = "wasm32")]
mod guest;

#[cfg(test)]
mod tests;

use ferry_rules::config::key_error;
use ferry_rules::{Condition, Subject};
use path::FieldPath;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Adds the configured fields to events.
#[derive(Debug)]
pub struct Enricher {
    fields: Vec<(FieldPath, Value)>,
    overwrite: bool,
    severity: Option<Severity>,
}

#[derive(Debug)]
struct Severity {
    field: FieldPath,
    rules: Vec<SeverityRule>,
    default: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    fields: Map<String, Value>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    severity: SeverityConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SeverityConfig {
    enabled: bool,
    field: String,
    rules: Vec<SeverityRule>,
    builtin: bool,
    default: String,
}

impl Default for SeverityConfig {
    fn default() -> SeverityConfig {
        SeverityConfig { enabled: true, field: "severity".into(), rules: Vec::new(), builtin: true, default: "low".into() }
    }
}

/// One row of the severity table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeverityRule {
    when: Condition,
    level: String,
}

/// The built-in severity table, written in the config's own syntax so that
/// it is read by the same code as a user's rules.
const BUILTIN_SEVERITY: &str = r#"[
    {"when": {"type": "user.login", "success": false}, "level": "high"},
    {"when": {"type": "auth", "success": false}, "level": "high"},
    {"when": {"type": "session.rejected"}, "level": "high"},
    {"when": {"type": ["user.create", "user.update", "user.delete", "user.password_change",
                       "role.*", "lock.*", "github.*", "oidc.*", "saml.*",
                       "mfa.add", "mfa.delete", "recovery_code.*"]}, "level": "medium"},
    {"when": {"code": ["*W", "*E"]}, "level": "medium"}
]"#;

impl Enricher {
    /// Builds the enricher from the plugin's config as JSON text; the error
    /// is one line naming the key at fault.
    pub fn from_config(config_json: &str) -> Result<Enricher, String> {
        let config: Config = ferry_rules::config::parse(config_json)?;
        let mut fields = Vec::new();
        for (key, value) in config.fields {
            flatten(
                &format!("fields.{key}"),
                FieldPath::parse(&key).map_err(|why| key_error(&format!("fields.{key}"), why))?,
                value,
                &mut fields,
            )?;
        }
        let severity = match config.severity {
            SeverityConfig { enabled: false, .. } => None,
            SeverityConfig { field, mut rules, builtin, default, .. } => {
                let field = FieldPath::parse(&field).map_err(|why| key_error("severity.field", why))?;
                if default.trim().is_empty() {
                    return Err(key_error("severity.default", "is blank; give a level such as \"low\""));
                }
                if let Some(at) = rules.iter().position(|rule| rule.level.trim().is_empty()) {
                    return Err(key_error(&format!("severity.rules[{at}].level"), "is blank; give a level such as \"high\""));
                }
                if builtin {
                    rules.extend(builtin_rules()?);
                }
                Some(Severity { field, rules, default })
            }
        };
        if fields.is_empty() && severity.is_none() {
            return Err("config: nothing to add; give `fields`, or leave `severity` enabled".to_owned());
        }
        Ok(Enricher { fields, overwrite: config.overwrite, severity })
    }

    /// Adds the fields to one event (`event_type` is its type when the caller
    /// has already read it, or empty to read it from `json`). Returns `Ok(None)` when nothing was
    /// added, the new JSON otherwise, and `Err` when `json` is not a JSON
    /// object.
    pub fn enrich(&self, event_type: &str, json: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let event: Value = match serde_json::from_slice(json) {
            Ok(event @ Value::Object(_)) => event,
            Ok(_) => return Err("event is not a JSON object".to_owned()),
            Err(error) => return Err(format!("event is not valid JSON: {error}")),
        };
        let subject = Subject::from_value(event_type, event);
        let level = self.severity.as_ref().map(|severity| severity.level(&subject));
        let Some(Value::Object(mut event)) = subject.into_json() else {
            return Err("event is not a JSON object".to_owned());
        };
        let mut changed = false;
        for (path, value) in &self.fields {
            changed |= path.set(&mut event, value.clone(), self.overwrite);
        }
        if let (Some(severity), Some(level)) = (&self.severity, level) {
            changed |= severity.field.set(&mut event, Value::from(level), self.overwrite);
        }
        if !changed {
            return Ok(None);
        }
        Ok(Some(serde_json::to_vec(&event).map_err(|error| format!("cannot write the event: {error}"))?))
    }
}

impl Severity {
    fn level(&self, subject: &Subject<'_>) -> &str {
        self.rules.iter().find(|rule| rule.when.matches(subject)).map_or(self.default.as_str(), |rule| rule.level.as_str())
    }
}

fn builtin_rules() -> Result<Vec<SeverityRule>, String> {
    serde_json::from_str(BUILTIN_SEVERITY).map_err(|error| format!("built-in severity table: {error}"))
}

/// Turns one `fields` entry into leaf assignments: an object value is
/// merged key by key, anything else is set as a whole.
fn flatten(key: &str, path: FieldPath, value: Value, out: &mut Vec<(FieldPath, Value)>) -> Result<(), String> {
    match value {
        Value::Object(object) if !object.is_empty() => {
            for (child, value) in object {
                let child_key = format!("{key}.{child}");
                let child_path = path.join(&child).map_err(|why| key_error(&child_key, why))?;
                flatten(&child_key, child_path, value, out)?;
            }
            Ok(())
        }
        value => {
            out.push((path, value));
            Ok(())
        }
    }
}
