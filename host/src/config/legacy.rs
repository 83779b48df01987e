//! teleport-event-handler.toml, read as is: its `[teleport]` table, its
//! top-level ingestion keys and its `FDFWD_*` environment variables
//! (including the original's misspelled `FDWRD_*` ones) become ferry's
//! Teleport source. `[forward.fluentd]` is handled in `model`.

use super::{ConfigError, FerryConfig, SourceConfig};
use serde::{Deserialize, Deserializer};

/// A list written as a TOML array or as one comma-separated string (the
/// way the event handler's flags and environment variables take it).
pub fn optional_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<List>::deserialize(deserializer)?.map(|list| match list {
        List::One(text) => text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect(),
        List::Many(items) => items,
    }))
}

/// Like [`optional_list`], for a list with a default.
pub fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(optional_list(deserializer)?.unwrap_or_default())
}

impl FerryConfig {
    /// Turns `[teleport]` and the top-level keys into `[source.teleport]`.
    pub(super) fn apply_legacy_teleport(&mut self) -> Result<(), ConfigError> {
        let Some(mut teleport) = self.teleport.take() else {
            if let Some(first) = self.legacy_keys_set().first() {
                return Err(ConfigError::invalid(
                    &self.file,
                    *first,
                    "is a teleport-event-handler setting; it needs a [teleport] table (or use [source.teleport])",
                ));
            }
            return Ok(());
        };
        if self.source.is_some() {
            return Err(ConfigError::invalid(&self.file, "teleport", "[teleport] and [source] both define the source; keep one"));
        }
        set(&mut teleport.page_size, self.batch.take());
        set(&mut teleport.types, self.types.take());
        set(&mut teleport.skip_event_types, self.skip_event_types.take());
        set(&mut teleport.skip_session_types, self.skip_session_types.take());
        teleport.start_time = self.start_time.take().or(teleport.start_time);
        set(&mut teleport.timeout, self.timeout.take());
        set(&mut teleport.window_size, self.window_size.take());
        set(&mut teleport.concurrency, self.concurrency.take());
        set(&mut teleport.exit_on_last_event, self.exit_on_last_event.take());
        set(&mut teleport.lock, self.lock.take());
        set(&mut teleport.lock.enabled, self.lock_enabled.take());
        set(&mut teleport.lock.failed_attempts_count, self.lock_failed_attempts_count.take());
        set(&mut teleport.lock.period, self.lock_period.take());
        set(&mut teleport.lock.lock_for, self.lock_for.take());
        self.source = Some(SourceConfig::Teleport(Box::new(teleport)));
        self.legacy_teleport = true;
        Ok(())
    }

    fn legacy_keys_set(&self) -> Vec<&'static str> {
        let set = [
            ("batch", self.batch.is_some()),
            ("types", self.types.is_some()),
            ("skip-event-types", self.skip_event_types.is_some()),
            ("skip-session-types", self.skip_session_types.is_some()),
            ("start-time", self.start_time.is_some()),
            ("timeout", self.timeout.is_some()),
            ("window-size", self.window_size.is_some()),
            ("concurrency", self.concurrency.is_some()),
            ("exit-on-last-event", self.exit_on_last_event.is_some()),
            ("lock-enabled", self.lock_enabled.is_some()),
            ("lock-failed-attempts-count", self.lock_failed_attempts_count.is_some()),
            ("lock-period", self.lock_period.is_some()),
            ("lock-for", self.lock_for.is_some()),
            ("lock", self.lock.is_some()),
        ];
        set.into_iter().filter(|(_, present)| *present).map(|(name, _)| name).collect()
    }
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
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

/// Sets the keys named by the event handler's environment variables in
/// `table`. Returns whether any was set.
pub fn apply_environment(table: &mut toml::Table, env: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
    let mut any = false;
    for (suffix, path, kind) in VARIABLES {
        let Some((name, text)) = PREFIXES.iter().find_map(|prefix| {
            let name = format!("{prefix}{suffix}");
            env(&name).map(|value| (name, value))
        }) else {
            continue;
        };
        let value = match kind {
            Kind::Text => toml::Value::String(text),
            Kind::Integer => toml::Value::Integer(
                text.trim().parse().map_err(|_| format!("environment variable {name}: `{text}` is not a whole number"))?,
            ),
            Kind::Boolean => toml::Value::Boolean(match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" | "" => false,
                _ => return Err(format!("environment variable {name}: `{text}` is not true or false")),
            }),
        };
        insert(table, path, value).map_err(|key| format!("environment variable {name}: `{key}` in the config is not a table"))?;
        any = true;
    }
    Ok(any)
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
    fn an_event_handler_config_becomes_a_teleport_source() {
        let config = FerryConfig::parse(EVENT_HANDLER_TOML, Path::new("/etc/teleport-event-handler.toml")).expect("loads");
        let source = teleport(&config);
        assert_eq!(source.addr, "teleport.example.com:443");
        assert_eq!(source.page_size, 20);
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
        let both = FerryConfig::parse("[teleport]\nidentity = \"i\"\n[source.file]\npath = \"x\"\n", Path::new("/f.toml")).expect_err("two sources");
        assert!(both.to_string().contains("[teleport] and [source] both define the source"), "{both}");
    }

    use super::super::SinkConfig;
}
