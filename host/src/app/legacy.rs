//! teleport-event-handler.toml, read as is: its `[teleport]` table, its
//! top-level keys ([`KEYS`], the one list of them), `[forward.fluentd]` and
//! its `FDFWD_*` environment variables (including the original's misspelled
//! `FDWRD_*` ones) become ferry's Teleport source and sinks.
//!
//! The top-level keys are moved into `[teleport]` in the parsed document,
//! before it is read into ferry's types, keeping their places in the file:
//! a bad value is reported at its own line, and ferry's model has no second
//! copy of the Teleport source's settings.

use super::FerryConfig;
use crate::config::ConfigError;
use crate::sink::SinkConfig;
use crate::sink::http::{BodyFormat, HttpSinkConfig};
use crate::source::SourceConfig;
use crate::units::ByteSize;
use serde::Deserialize;
use std::borrow::Cow;
use std::path::PathBuf;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One top-level key of teleport-event-handler.toml.
#[derive(Debug, Clone, Copy)]
pub struct LegacyKey {
    /// The key, as the event handler spells it at the top of its file.
    pub key: &'static str,
    /// Where it goes in `[teleport]` (ferry's `[source.teleport]`), as a
    /// path of keys; `None` for a key ferry reads at the top level itself.
    pub into: Option<&'static [&'static str]>,
    /// What it sets.
    pub note: &'static str,
}

/// The event handler's top-level keys. A key here wins over the same
/// setting in `[teleport]`, as in the event handler, where the top-level
/// keys are the only spelling; the `lock-*` keys win over a `lock` table.
pub const KEYS: &[LegacyKey] = &[
    LegacyKey { key: "storage", into: None, note: "ferry's own key: the folder of the state database" },
    LegacyKey { key: "batch", into: Some(&["page-size"]), note: "events per page of the audit log search, and per batch" },
    LegacyKey { key: "types", into: Some(&["types"]), note: "only these event types (array or comma-separated)" },
    LegacyKey { key: "skip-event-types", into: Some(&["skip-event-types"]), note: "never these event types" },
    LegacyKey { key: "skip-session-types", into: Some(&["skip-session-types"]), note: "never these session recording event types" },
    LegacyKey { key: "start-time", into: Some(&["start-time"]), note: "where the first run starts (RFC 3339)" },
    LegacyKey { key: "timeout", into: Some(&["timeout"]), note: "pause between searches once caught up" },
    LegacyKey { key: "window-size", into: Some(&["window-size"]), note: "span of one audit log search" },
    LegacyKey {
        key: "concurrency",
        into: Some(&["concurrency"]),
        note: "session recordings streamed at once, and export chunks of a date",
    },
    LegacyKey { key: "exit-on-last-event", into: Some(&["exit-on-last-event"]), note: "stop once caught up" },
    LegacyKey { key: "lock-enabled", into: Some(&["lock", "enabled"]), note: "lock users after failed logins" },
    LegacyKey {
        key: "lock-failed-attempts-count",
        into: Some(&["lock", "failed-attempts-count"]),
        note: "failed logins allowed within the period",
    },
    LegacyKey { key: "lock-period", into: Some(&["lock", "period"]), note: "span failed logins are counted over" },
    LegacyKey { key: "lock-for", into: Some(&["lock", "for"]), note: "how long a lock lasts (0: until removed)" },
    LegacyKey { key: "lock", into: Some(&["lock"]), note: "the four `lock-*` keys as one table" },
    LegacyKey { key: "dry-run", into: None, note: "ferry's own key: read and process, send nothing" },
    LegacyKey { key: "debug", into: None, note: "ferry's own key: the same as `ferry -d`" },
];

/// Moves the event handler's top-level keys of `document` into its
/// `[teleport]` table, each keeping its place in the file. Without a
/// `[teleport]` table they are taken out, and the first is returned: the
/// caller refuses it once the rest of the file has been read (so that a
/// plain mistake elsewhere is still reported first).
pub fn lift_teleport_keys(document: &mut DeTable<'_>) -> Option<&'static str> {
    let lifted = || KEYS.iter().filter_map(|entry| Some((entry.key, entry.into?)));
    if !document.contains_key("teleport") {
        let orphan = lifted().map(|(key, _)| key).find(|key| document.contains_key(*key));
        for (key, _) in lifted() {
            document.remove(key);
        }
        return orphan;
    }
    // Backwards: a `lock` table first, then the `lock-*` keys into it.
    for (name, into) in lifted().rev() {
        let Some((key, value)) = document.remove_entry(name) else { continue };
        // (`[teleport]` not being a table is reported when it is read.)
        let Some(DeValue::Table(teleport)) = document.get_mut("teleport").map(Spanned::get_mut) else { continue };
        place(teleport, name, into, key.span(), value);
    }
    None
}

/// Puts `value` at `path` in `table`, creating the tables on the way.
fn place<'i>(table: &mut DeTable<'i>, key: &str, path: &[&'static str], span: std::ops::Range<usize>, value: Spanned<DeValue<'i>>) {
    let (last, parents) = path.split_last().unwrap_or_else(|| unreachable!("paths in KEYS are not empty"));
    let mut table = table;
    for parent in parents {
        let entry = table
            .entry(Spanned::new(span.clone(), Cow::Borrowed(*parent)))
            .or_insert_with(|| Spanned::new(span.clone(), DeValue::Table(DeTable::new())));
        // (Not a table: the mistake in `[teleport]` is reported when it is read.)
        let DeValue::Table(inner) = entry.get_mut() else { return };
        table = inner;
    }
    if parents.is_empty() {
        // `[teleport]` takes the event handler's own spelling too (`batch`).
        table.remove(key);
    }
    table.insert(Spanned::new(span, Cow::Borrowed(*last)), value);
}

/// `error` with the event handler's top-level keys named among those an
/// unknown top-level key could have meant: they were taken out of the
/// document before ferry's types read it, so serde's list lacks them.
pub fn expecting_keys(error: ConfigError) -> ConfigError {
    const TOP_LEVEL: &str = "expected one of `storage`, `plugins-dir`, ";
    match error {
        ConfigError::Parse { path, line, column, message } if message.starts_with("unknown field") && message.contains(TOP_LEVEL) => {
            // (In the order of the table, which is that of the fields they once were.)
            let lifted: Vec<String> = KEYS.iter().filter(|entry| entry.into.is_some()).map(|entry| format!("`{}`", entry.key)).collect();
            // (After the list's start: the unknown key itself is quoted text.)
            let at = message.rfind(TOP_LEVEL).unwrap_or_default();
            let (head, expected) = message.split_at(at);
            let message = format!("{head}{}", expected.replacen("`teleport`", &format!("`teleport`, {}", lifted.join(", ")), 1));
            ConfigError::Parse { path, line, column, message }
        }
        other => other,
    }
}

impl FerryConfig {
    /// Turns `[teleport]` (with the top-level keys already moved into it)
    /// into `[source.teleport]`; `orphan` is a top-level key found without
    /// a `[teleport]` table.
    pub(super) fn apply_legacy_teleport(&mut self, orphan: Option<&'static str>) -> Result<(), ConfigError> {
        let Some(teleport) = self.teleport.take() else {
            if let Some(key) = orphan {
                return Err(ConfigError::invalid(
                    &self.file,
                    key,
                    "is a teleport-event-handler setting; it needs a [teleport] table (or use [source.teleport])",
                ));
            }
            return Ok(());
        };
        if self.source.is_some() {
            return Err(ConfigError::invalid(&self.file, "teleport", "[teleport] and [source] both define the source; keep one"));
        }
        // The event handler's `batch` is the size of its pages; as ferry
        // sends a batch per request, it is that too, unless `[pipeline]`
        // says otherwise.
        if self.pipeline.batch_size.is_none() {
            self.pipeline.batch_size = Some((teleport.page_size as usize).clamp(1, crate::pipeline::MAX_BATCH_SIZE));
        }
        self.source = Some(SourceConfig::Teleport(Box::new(teleport)));
        self.legacy_teleport = true;
        Ok(())
    }

    /// Turns `[forward.fluentd]` into the sinks it stands for.
    pub(super) fn apply_legacy_forward(&mut self) -> Result<(), ConfigError> {
        let Some(fluentd) = self.forward.as_ref().and_then(|forward| forward.fluentd.clone()) else { return Ok(()) };
        for name in ["default", "sessions"] {
            if self.sinks.contains_key(name) {
                return Err(ConfigError::invalid(
                    &self.file,
                    format!("sinks.{name}"),
                    "[forward.fluentd] already defines this sink; keep one of the two",
                ));
            }
        }
        self.sinks.insert("default".to_owned(), fluentd.sink(&fluentd.url, false));
        if let Some(session_url) = &fluentd.session_url {
            self.sinks.insert("sessions".to_owned(), fluentd.sink(session_url, true));
        }
        Ok(())
    }
}

/// `[forward]` of teleport-event-handler.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LegacyForward {
    /// `[forward.fluentd]`.
    pub fluentd: Option<LegacyFluentd>,
}

/// `[forward.fluentd]` of teleport-event-handler.toml, same keys and meaning.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LegacyFluentd {
    /// Where audit events are POSTed.
    pub url: String,
    /// Base of the URLs session events are POSTed to.
    pub session_url: Option<String>,
    /// CA that verifies the receiver.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// Most requests in flight; 0 means the original's default, 10.
    pub max_connections: Option<usize>,
    /// Request body. ferry's own addition: the original POSTs one event per
    /// request, but Logstash's http input, Fluentd's in_http and Fluent
    /// Bit's http input each take a JSON array as that many events, so the
    /// default is `json-array`, one request per batch — several times the
    /// throughput. `single` restores one event per request for a receiver
    /// that needs it.
    pub format: Option<BodyFormat>,
    /// Largest request body; a batch is split to stay under it. Default
    /// `"10MiB"`.
    pub max_batch_bytes: Option<ByteSize>,
}

impl LegacyFluentd {
    fn sink(&self, url: &str, per_session: bool) -> SinkConfig {
        SinkConfig::Http(HttpSinkConfig {
            url: url.to_owned(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            max_connections: self.max_connections.filter(|&n| n > 0),
            format: Some(self.format.unwrap_or(BodyFormat::JsonArray)),
            max_batch_bytes: self.max_batch_bytes,
            per_session,
            ..HttpSinkConfig::default()
        })
    }
}

// === Environment variables ===

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
}

/// The event handler's environment variables (after `FDFWD_`), the config
/// key each sets, and its type. Variables override the file, as they do
/// for the event handler.
const VARIABLES: &[(&str, &[&str], Kind)] = &[
    ("STORAGE", &["storage"], Kind::Text),
    ("BATCH", &["batch"], Kind::Integer),
    ("TYPES", &["types"], Kind::Text),
    ("SKIP_EVENT_TYPES", &["skip-event-types"], Kind::Text),
    ("SKIP_SESSION_TYPES", &["skip-session-types"], Kind::Text),
    ("START_TIME", &["start-time"], Kind::Text),
    ("TIMEOUT", &["timeout"], Kind::Text),
    ("WINDOW_SIZE", &["window-size"], Kind::Text),
    ("CONCURRENCY", &["concurrency"], Kind::Integer),
    ("DRY_RUN", &["dry-run"], Kind::Boolean),
    ("EXIT_ON_LAST_EVENT", &["exit-on-last-event"], Kind::Boolean),
    ("LOCKING_ENABLED", &["lock-enabled"], Kind::Boolean),
    ("LOCKING_FAILED_ATTEMPTS", &["lock-failed-attempts-count"], Kind::Integer),
    ("LOCKING_PERIOD", &["lock-period"], Kind::Text),
    ("LOCKING_FOR", &["lock-for"], Kind::Text),
    ("TELEPORT_ADDR", &["teleport", "addr"], Kind::Text),
    ("TELEPORT_IDENTITY", &["teleport", "identity"], Kind::Text),
    ("TELEPORT_REFRESH_ENABLED", &["teleport", "refresh", "enabled"], Kind::Boolean),
    ("TELEPORT_REFRESH_INTERVAL", &["teleport", "refresh", "interval"], Kind::Text),
    ("TELEPORT_CA", &["teleport", "ca"], Kind::Text),
    ("TELEPORT_CERT", &["teleport", "cert"], Kind::Text),
    ("TELEPORT_KEY", &["teleport", "key"], Kind::Text),
    ("FLUENTD_URL", &["forward", "fluentd", "url"], Kind::Text),
    ("FLUENTD_SESSION_URL", &["forward", "fluentd", "session-url"], Kind::Text),
    ("FLUENTD_CA", &["forward", "fluentd", "ca"], Kind::Text),
    ("FLUENTD_CERT", &["forward", "fluentd", "cert"], Kind::Text),
    ("FLUENTD_KEY", &["forward", "fluentd", "key"], Kind::Text),
    ("MAX_CONNECTIONS", &["forward", "fluentd", "max-connections"], Kind::Integer),
];

/// Both spellings the event handler reads; the correct one wins.
const PREFIXES: [&str; 2] = ["FDFWD_", "FDWRD_"];

// === Command-line flags ===

/// A flag of the event handler's `start` command: its name, the variable
/// (after `FDFWD_`) that sets the same key, and whether it is a switch
/// (`--dry-run`, taking no value).
#[derive(Debug, Clone, Copy)]
pub struct LegacyFlag {
    /// The flag without its `--`.
    pub name: &'static str,
    /// The variable it stands for, after `FDFWD_`.
    pub variable: &'static str,
    /// A switch: true when given without a value.
    pub switch: bool,
}

const fn flag(name: &'static str, variable: &'static str) -> LegacyFlag {
    LegacyFlag { name, variable, switch: false }
}

const fn switch(name: &'static str, variable: &'static str) -> LegacyFlag {
    LegacyFlag { name, variable, switch: true }
}

/// `teleport-event-handler start`'s flags. Each sets what its variable
/// sets, and wins over it, as in the event handler; so a unit file or a
/// chart's `extraArgs` written for the event handler runs ferry unchanged.
pub const FLAGS: &[LegacyFlag] = &[
    flag("storage", "STORAGE"),
    flag("batch", "BATCH"),
    flag("types", "TYPES"),
    flag("skip-event-types", "SKIP_EVENT_TYPES"),
    flag("skip-session-types", "SKIP_SESSION_TYPES"),
    flag("start-time", "START_TIME"),
    flag("timeout", "TIMEOUT"),
    flag("window-size", "WINDOW_SIZE"),
    flag("concurrency", "CONCURRENCY"),
    switch("dry-run", "DRY_RUN"),
    switch("exit-on-last-event", "EXIT_ON_LAST_EVENT"),
    switch("lock-enabled", "LOCKING_ENABLED"),
    flag("lock-failed-attempts-count", "LOCKING_FAILED_ATTEMPTS"),
    flag("lock-period", "LOCKING_PERIOD"),
    flag("lock-for", "LOCKING_FOR"),
    flag("teleport-addr", "TELEPORT_ADDR"),
    flag("teleport-identity", "TELEPORT_IDENTITY"),
    switch("teleport-refresh-enabled", "TELEPORT_REFRESH_ENABLED"),
    flag("teleport-refresh-interval", "TELEPORT_REFRESH_INTERVAL"),
    flag("teleport-ca", "TELEPORT_CA"),
    flag("teleport-cert", "TELEPORT_CERT"),
    flag("teleport-key", "TELEPORT_KEY"),
    flag("fluentd-url", "FLUENTD_URL"),
    flag("fluentd-session-url", "FLUENTD_SESSION_URL"),
    flag("fluentd-ca", "FLUENTD_CA"),
    flag("fluentd-cert", "FLUENTD_CERT"),
    flag("fluentd-key", "FLUENTD_KEY"),
];

/// Sets the keys named by the event handler's environment variables in
/// `table`: from the `start` flag that stands for a variable if one is in
/// `flags` ((variable after `FDFWD_`, value), as given), else from `env`.
/// Returns whether any was set.
pub fn apply_environment(
    table: &mut toml::Table,
    flags: &[(&'static str, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<bool, String> {
    let mut any = false;
    for (suffix, path, kind) in VARIABLES {
        let flagged = flags.iter().rev().find(|(variable, _)| variable == suffix).map(|(_, value)| value.clone());
        let given = flagged.clone().map(|value| (format!("{}{suffix}", PREFIXES[0]), value));
        let Some((name, text)) = given.or_else(|| {
            PREFIXES.iter().find_map(|prefix| {
                let name = format!("{prefix}{suffix}");
                env(&name).map(|value| (name, value))
            })
        }) else {
            continue;
        };
        let given_by = given_by(suffix, &name, flagged.is_some());
        let value = match kind {
            Kind::Text => toml::Value::String(text),
            Kind::Integer => toml::Value::Integer(text.trim().parse().map_err(|_| format!("{given_by}: `{text}` is not a whole number"))?),
            Kind::Boolean => toml::Value::Boolean(match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" | "" => false,
                _ => return Err(format!("{given_by}: `{text}` is not true or false")),
            }),
        };
        insert(table, path, value).map_err(|key| format!("{given_by}: `{key}` in the config is not a table"))?;
        any = true;
    }
    Ok(any)
}

/// How the user gave the variable `name` (after `FDFWD_`: `suffix`), for
/// errors: the flag that stands for it, or the variable itself.
fn given_by(suffix: &str, name: &str, flagged: bool) -> String {
    match FLAGS.iter().find(|flag| flag.variable == suffix) {
        Some(flag) if flagged => format!("flag --{}", flag.name),
        _ => format!("environment variable {name}"),
    }
}

fn insert(table: &mut toml::Table, path: &[&str], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().unwrap_or_else(|| unreachable!("paths are not empty"));
    let mut table = table;
    for key in parents {
        let entry = table.entry(key.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| key.to_string())?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    const EVENT_HANDLER_TOML: &str = r#"
storage = "./storage"
timeout = "10s"
batch = 20
types = "user.login,session.upload"
skip-session-types = ["print"]
start-time = "2024-05-01T00:00:00Z"
window-size = "12h"
concurrency = 3
lock-enabled = true
lock-failed-attempts-count = 5
lock-period = "2m"
[forward.fluentd]
ca = "ca.crt"
cert = "client.crt"
key = "client.key"
url = "https://localhost:8888/test.log"
session-url = "https://localhost:8888/session"
[teleport]
addr = "teleport.example.com:443"
identity = "identity"
refresh.enabled = true
refresh.interval = "2m"
"#;

    fn teleport(config: &FerryConfig) -> &crate::source::teleport::TeleportSourceConfig {
        match config.source().expect("a source") {
            SourceConfig::Teleport(teleport) => teleport,
            other => panic!("not a Teleport source: {other:?}"),
        }
    }

    #[test]
    fn every_start_flag_stands_for_a_variable_and_every_variable_but_ferrys_own_has_a_flag() {
        for flag in FLAGS {
            assert!(
                VARIABLES.iter().any(|(suffix, _, _)| *suffix == flag.variable),
                "--{} stands for FDFWD_{}, which no entry reads",
                flag.name,
                flag.variable
            );
        }
        let unflagged: Vec<&str> =
            VARIABLES.iter().map(|(suffix, _, _)| *suffix).filter(|suffix| !FLAGS.iter().any(|flag| flag.variable == *suffix)).collect();
        // MAX_CONNECTIONS is ferry's own variable; the event handler has no flag for it.
        assert_eq!(unflagged, ["MAX_CONNECTIONS"]);
    }

    #[test]
    fn the_event_handlers_batch_sizes_batches_unless_the_pipeline_says_otherwise() {
        let batch =
            |text: &str| FerryConfig::parse(text, Path::new("/etc/teleport-event-handler.toml")).expect("loads").pipeline.batch_size();
        assert_eq!(batch(EVENT_HANDLER_TOML), 20);
        assert_eq!(batch(&format!("{EVENT_HANDLER_TOML}[pipeline]\nbatch-size = 64\n")), 64, "[pipeline] wins");
        let without_batch = EVENT_HANDLER_TOML.replace("batch = 20\n", "");
        assert_eq!(batch(&without_batch), 500, "the event handler's default page");
        let huge = EVENT_HANDLER_TOML.replace("batch = 20", "batch = 4000000000");
        assert_eq!(batch(&huge), crate::pipeline::MAX_BATCH_SIZE, "held to what a batch may be");
        let native = "[source.file]\npath = \"in.jsonl\"\n[sinks.default]\ntype = \"stdout\"\n";
        assert_eq!(
            FerryConfig::parse(native, Path::new("/etc/ferry.toml")).expect("loads").pipeline.batch_size(),
            256,
            "ferry's own default elsewhere"
        );
    }

    #[test]
    fn an_event_handler_config_becomes_a_teleport_source() {
        let config = FerryConfig::parse(EVENT_HANDLER_TOML, Path::new("/etc/teleport-event-handler.toml")).expect("loads");
        let source = teleport(&config);
        assert_eq!(source.addr, "teleport.example.com:443");
        assert_eq!(source.page_size, 20);
        assert_eq!(config.pipeline.batch_size(), 20, "a page is a batch, one request");
        assert_eq!(source.types, ["user.login", "session.upload"]);
        assert_eq!(source.skip_session_types, ["print"]);
        assert_eq!(source.timeout.0.as_secs(), 10);
        assert_eq!(source.window_size.0.as_secs(), 12 * 3600);
        assert_eq!(source.concurrency, 3);
        assert!(source.refresh.enabled);
        assert_eq!(source.refresh.interval.0.as_secs(), 120);
        assert!(source.lock.enabled);
        assert_eq!((source.lock.failed_attempts_count, source.lock.period.0.as_secs()), (5, 120));
        assert!(config.sinks.contains_key("sessions"));
    }

    #[test]
    fn environment_variables_override_the_file_in_both_spellings() {
        let env = HashMap::from([
            ("FDFWD_BATCH", "50"),
            ("FDWRD_TELEPORT_CERT", "tele.crt"),
            ("FDFWD_SKIP_EVENT_TYPES", "exec, scp"),
            ("FDFWD_LOCKING_ENABLED", "false"),
            ("FDWRD_MAX_CONNECTIONS", "4"),
        ]);
        let lookup = |name: &str| env.get(name).map(|value| value.to_string());
        let config = FerryConfig::parse_with_env(EVENT_HANDLER_TOML, Path::new("/etc/eh.toml"), &lookup).expect("loads");
        let source = teleport(&config);
        assert_eq!(source.page_size, 50);
        assert_eq!(source.cert.as_deref(), Some(Path::new("tele.crt")));
        assert_eq!(source.skip_event_types, ["exec", "scp"]);
        assert!(!source.lock.enabled);
        let Some(SinkConfig::Http(sink)) = config.sinks.get("default") else { panic!("default sink") };
        assert_eq!(sink.max_connections, Some(4));

        let bad = HashMap::from([("FDFWD_BATCH", "many")]);
        let lookup = |name: &str| bad.get(name).map(|value| value.to_string());
        let err = FerryConfig::parse_with_env(EVENT_HANDLER_TOML, Path::new("/etc/eh.toml"), &lookup).expect_err("not a number");
        assert_eq!(err.to_string(), "/etc/eh.toml: `FDFWD_BATCH`: environment variable FDFWD_BATCH: `many` is not a whole number");
    }

    #[test]
    fn with_variables_set_a_mistake_in_the_file_is_shown_at_its_own_line() {
        let lookup = |name: &str| (name == "FDFWD_BATCH").then(|| "50".to_owned());
        let text = format!("\n\n\n\n\nbogus = 1\n{EVENT_HANDLER_TOML}");
        let err = FerryConfig::parse_with_env(&text, Path::new("/etc/eh.toml"), &lookup).expect_err("unknown key");
        assert!(err.to_string().starts_with("/etc/eh.toml:6:1: unknown field `bogus`"), "{err}");

        // A problem only the variables bring in has no line in the file.
        let lookup = |name: &str| (name == "FDFWD_TIMEOUT").then(|| "soon".to_owned());
        let err = FerryConfig::parse_with_env(EVENT_HANDLER_TOML, Path::new("/etc/eh.toml"), &lookup).expect_err("not a duration");
        assert!(err.to_string().starts_with("/etc/eh.toml: `FDFWD_*`: with the event handler's environment variables applied: "), "{err}");
        assert!(err.to_string().contains("soon"), "{err}");
    }

    #[test]
    fn event_handler_keys_without_a_teleport_table_are_named() {
        let err = FerryConfig::parse("batch = 20\n[sinks.out]\ntype = \"stdout\"\n", Path::new("/f.toml")).expect_err("no [teleport]");
        assert!(err.to_string().starts_with("/f.toml: `batch`: is a teleport-event-handler setting"), "{err}");
        let both = FerryConfig::parse("[teleport]\nidentity = \"i\"\n[source.file]\npath = \"x\"\n", Path::new("/f.toml"))
            .expect_err("two sources");
        assert!(both.to_string().contains("[teleport] and [source] both define the source"), "{both}");
    }

    /// A value for each key of [`KEYS`] that differs from the default.
    fn sample(key: &str) -> &'static str {
        match key {
            "storage" => "\"elsewhere\"",
            "batch" => "7",
            "types" => "\"user.login, session.upload\"",
            "skip-event-types" => "[\"exec\"]",
            "skip-session-types" => "\"print\"",
            "start-time" => "\"2024-05-01T00:00:00Z\"",
            "timeout" => "\"9s\"",
            "window-size" => "\"2h\"",
            "concurrency" => "2",
            "exit-on-last-event" => "true",
            "lock" => "{ enabled = true, period = \"3m\" }",
            "lock-enabled" => "true",
            "lock-failed-attempts-count" => "9",
            "lock-period" => "\"4m\"",
            "lock-for" => "\"5m\"",
            "dry-run" | "debug" => "true",
            other => panic!("no sample value for `{other}`: add one for the new key of KEYS"),
        }
    }

    #[test]
    fn every_top_level_key_lands_where_the_table_says() {
        let teleport = |text: String| match FerryConfig::parse_with_env(&text, Path::new("/f.toml"), &|_| None).expect(&text).source {
            Some(SourceConfig::Teleport(teleport)) => format!("{teleport:?}"),
            other => panic!("not a Teleport source: {other:?}"),
        };
        let plain = teleport("[teleport]\nidentity = \"i\"\n".to_owned());
        for entry in KEYS {
            let value = sample(entry.key);
            let Some(into) = entry.into else {
                // Ferry's own keys stay where they are and touch no source.
                assert_eq!(teleport(format!("{} = {value}\n[teleport]\nidentity = \"i\"\n", entry.key)), plain, "{}", entry.key);
                continue;
            };
            let legacy = teleport(format!("{} = {value}\n[teleport]\nidentity = \"i\"\n", entry.key));
            let own = teleport(format!("[source.teleport]\nidentity = \"i\"\n{} = {value}\n", into.join(".")));
            assert_ne!(legacy, plain, "`{}` changed nothing", entry.key);
            assert_eq!(legacy, own, "`{}` is not `source.teleport.{}`", entry.key, into.join("."));
        }
    }

    #[test]
    fn a_top_level_key_wins_over_teleports_own_and_is_reported_at_its_line() {
        let config = FerryConfig::parse(
            "batch = 7\nlock-period = \"4m\"\n[teleport]\nidentity = \"i\"\nbatch = 5\nlock = { period = \"1m\", enabled = true }\n",
            Path::new("/f.toml"),
        )
        .expect("loads");
        let source = teleport(&config);
        assert_eq!((source.page_size, source.lock.period.0.as_secs(), source.lock.enabled), (7, 240, true));
        let err = FerryConfig::parse("storage = \"s\"\n\nbatch = \"many\"\n[teleport]\nidentity = \"i\"\n", Path::new("/f.toml"))
            .expect_err("not a number");
        assert!(err.to_string().starts_with("/f.toml:3:9: invalid type: string \"many\""), "{err}");
        let err = FerryConfig::parse("lock-for = 3\n[teleport]\nidentity = \"i\"\n", Path::new("/f.toml")).expect_err("not a duration");
        assert!(err.to_string().starts_with("/f.toml:1:12: "), "{err}");
    }

    #[test]
    fn the_readme_documents_every_top_level_key() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
        let missing: Vec<&str> = KEYS.iter().map(|entry| entry.key).filter(|key| !readme.contains(&format!("`{key}`"))).collect();
        assert!(missing.is_empty(), "README.md does not name the event handler's keys {missing:?}");
        // The table of everything the event handler reads names each flag and variable.
        let table =
            readme.split("## Coming from teleport-event-handler").nth(1).expect("README.md has the section for the event handler's users");
        let flags: Vec<&str> = FLAGS.iter().map(|flag| flag.name).filter(|name| !table.contains(&format!("`--{name}`"))).collect();
        assert!(flags.is_empty(), "README.md's table lacks the flags {flags:?}");
        let variables: Vec<&str> = VARIABLES
            .iter()
            .map(|(suffix, _, _)| *suffix)
            .filter(|suffix| !PREFIXES.iter().any(|prefix| table.contains(&format!("{prefix}{suffix}`"))))
            .collect();
        assert!(variables.is_empty(), "README.md's table lacks the variables {variables:?}");
    }

    #[test]
    fn an_unknown_top_level_key_lists_the_event_handlers_keys_among_those_expected() {
        let err = FerryConfig::parse("bacth = 20\n[teleport]\nidentity = \"i\"\n", Path::new("/f.toml")).expect_err("typo");
        let text = err.to_string();
        assert!(text.starts_with("/f.toml:1:1: unknown field `bacth`, expected one of `storage`, "), "{text}");
        for entry in KEYS {
            assert!(text.contains(&format!("`{}`", entry.key)), "{text} lacks `{}`", entry.key);
        }
        // Only at the top: a table's own list is its own.
        let err = FerryConfig::parse("[pipeline]\nbacth = 20\n", Path::new("/f.toml")).expect_err("typo");
        assert!(!err.to_string().contains("`lock-for`"), "{err}");
    }
}
