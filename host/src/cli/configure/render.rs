//! The text files of `ferry configure`, filled from the templates under
//! `templates/`. A template's `{{name}}` is replaced by a value this module
//! has already quoted for that file's language; nothing else is changed.

use super::ConfigureError;
use std::path::Path;

const ROLE: &str = include_str!("templates/role.yaml");
const IMPERSONATOR: &str = include_str!("templates/impersonator.yaml");
const FERRY_TOML: &str = include_str!("templates/ferry.toml");
const LOGSTASH_PIPELINE: &str = include_str!("templates/logstash-ferry.conf");
const LOGSTASH_PIPELINES_YML: &str = include_str!("templates/logstash-pipelines.yml");
const INDEX_TEMPLATE: &str = include_str!("templates/index-template.json");
const FLUENT_CONF: &str = include_str!("templates/fluent.conf");
const CHART_VALUES: &str = include_str!("templates/chart-values.yaml");
/// The unit the project ships, as it is: one file to keep right.
const SYSTEMD_UNIT: &str = include_str!("../../../../packaging/systemd/ferry.service");

/// The rule that lets ferry lock a user after failed logins (`--lock`).
const LOCK_RULE: &str = "      # Lock users after failed logins (ferry.toml `lock.enabled`).\n      - resources: ['lock']\n        verbs: ['list', 'read', 'create', 'update']\n";

fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_owned(), |text, (name, value)| text.replace(&format!("{{{{{name}}}}}"), value))
}

/// `teleport-event-handler-role.yaml`: the role and the user, with the
/// lock rule when locking is on.
pub(super) fn role(lock: bool) -> String {
    fill(ROLE, &[("lock_rule", if lock { LOCK_RULE } else { "" })])
}

/// `teleport-event-handler-impersonator.yaml`.
pub(super) fn impersonator() -> String {
    IMPERSONATOR.to_owned()
}

/// `ferry.toml` reading from `addr`, sending to Logstash at `host`.
pub(super) fn ferry_toml(addr: &str, host: &str, lock: bool) -> String {
    let addr = toml::Value::String(addr.to_owned()).to_string();
    fill(FERRY_TOML, &[("addr", &addr), ("host", host), ("lock", if lock { "true" } else { "false" })])
}

/// The values file of the Helm chart, reading from `addr`, sending to
/// Logstash at `host`, with the secrets to make from the files in `dir`.
pub(super) fn chart_values(addr: &str, host: &str, lock: bool, dir: &str) -> String {
    // A JSON string is a YAML string, with every character escaped as YAML reads it.
    let addr = serde_json::Value::String(addr.to_owned()).to_string();
    fill(CHART_VALUES, &[("addr", &addr), ("host", host), ("lock", if lock { "true" } else { "false" }), ("dir", dir)])
}

/// The folder as Logstash and Fluentd configs quote it, or why it cannot be.
pub(super) fn quoted_folder(dir: &Path) -> Result<String, ConfigureError> {
    let text = dir.to_str().ok_or_else(|| ConfigureError::Folder {
        path: dir.to_owned(),
        source: std::io::Error::other("not UTF-8, which Logstash and Fluentd configs cannot name"),
    })?;
    // Logstash reads no escapes in strings by default and Fluentd's quoted
    // path is also Ruby: refuse what neither can hold rather than write a
    // config that names another file.
    if text.contains(['"', '\'', '\\', '\n', '#', '$', '{', '}']) {
        return Err(ConfigureError::Folder {
            path: dir.to_owned(),
            source: std::io::Error::other(
                "its path has a quote, backslash, `#`, `$` or brace, which Logstash and Fluentd configs cannot name",
            ),
        });
    }
    Ok(text.to_owned())
}

/// The Logstash pipeline, naming the files in `dir`.
pub(super) fn logstash_pipeline(dir: &str) -> String {
    fill(LOGSTASH_PIPELINE, &[("dir", dir)])
}

/// The pipeline's entry for `pipelines.yml`.
pub(super) fn logstash_pipelines_yml(dir: &str) -> String {
    fill(LOGSTASH_PIPELINES_YML, &[("dir", dir)])
}

/// The Elasticsearch index template.
pub(super) fn index_template() -> String {
    INDEX_TEMPLATE.to_owned()
}

/// `fluent.conf`, naming the files in `dir`.
pub(super) fn fluent_conf(dir: &str) -> String {
    fill(FLUENT_CONF, &[("dir", dir)])
}

/// `ferry.service`.
pub(super) fn systemd_unit() -> String {
    SYSTEMD_UNIT.to_owned()
}
