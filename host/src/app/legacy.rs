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
use std::path::{Path, PathBuf};
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
/// keys are the only spelling; the `lock-*` keys win over a `lock` table
/// in `[teleport]`. (A top-level `[lock]` is the event handler's own
/// spelling, moved to the `lock-*` keys by [`read_every_spelling`] first.)
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

// === Every spelling the event handler's TOML resolver reads ===

/// Where the event handler's TOML resolver (Teleport's
/// `kong_toml_resolver.go`) looks for the value of the `start` flag `flag`,
/// in the order it prefers them: the name with each `-` made a `.` (a path
/// of tables: `[lock] period`, `[teleport] addr`), then the name as one key
/// (top-level `lock-period`, `teleport-addr`). A `fluentd-` flag is looked
/// for under `[forward.fluentd]` (`session-url`, or `session.url`).
fn spellings(flag: &'static str) -> [Vec<&'static str>; 2] {
    let as_key: Vec<&'static str> = match flag.strip_prefix("fluentd-") {
        Some(rest) => vec!["forward", "fluentd", rest],
        None => vec![flag],
    };
    let as_tables = as_key.iter().flat_map(|part| part.split('-')).collect();
    [as_tables, as_key]
}

/// The one of [`spellings`] ferry reads the setting of `flag` from:
/// `[teleport]` for the `teleport-*` flags, the key itself for the others.
fn ferry_spelling(flag: &'static str) -> Vec<&'static str> {
    let [as_tables, as_key] = spellings(flag);
    if flag.starts_with("teleport-") { as_tables } else { as_key }
}

/// Moves every setting of `document` written in another of the spellings
/// the event handler reads (top-level `teleport-addr`, `[lock] period`,
/// `[lock.failed.attempts] count`, `[forward.fluentd] session.url`, …) to
/// the one ferry reads, keeping its place in the file. Where a setting is
/// given in both of the event handler's spellings, the one it prefers wins
/// and the other is named in `notices`.
pub fn read_every_spelling(document: &mut DeTable<'_>, file: &Path, notices: &mut Vec<String>) {
    for flag in FLAGS {
        let ours = ferry_spelling(flag.name);
        let [preferred, other] = spellings(flag.name);
        let elsewhere = [&preferred, &other].into_iter().any(|path| *path != ours && find(document, path).is_some());
        if !elsewhere {
            continue;
        }
        let first = take(document, &preferred);
        let second = if other != preferred { take(document, &other) } else { None };
        let (key, value) = match (first, second) {
            (Some(first), Some(_)) => {
                notices.push(format!(
                    "`{}` in {} is ignored: `{}` is set too and wins, as in the event handler",
                    other.join("."),
                    file.display(),
                    preferred.join(".")
                ));
                first
            }
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => continue,
        };
        let last = ours.last().copied().unwrap_or_else(|| unreachable!("spellings are not empty"));
        place(document, last, &ours, key.span(), value);
    }
}

/// The value at `path` in `table`.
fn find<'a, 'i>(table: &'a DeTable<'i>, path: &[&str]) -> Option<&'a DeValue<'i>> {
    let (first, rest) = path.split_first()?;
    let value = table.get(*first)?.get_ref();
    match (rest.is_empty(), value) {
        (true, value) => Some(value),
        (false, DeValue::Table(inner)) => find(inner, rest),
        (false, _) => None,
    }
}

/// Takes the entry at `path` out of `table`, and the tables it leaves empty.
#[allow(clippy::type_complexity)]
fn take<'i>(table: &mut DeTable<'i>, path: &[&str]) -> Option<(Spanned<Cow<'i, str>>, Spanned<DeValue<'i>>)> {
    let (first, rest) = path.split_first()?;
    if rest.is_empty() {
        return table.remove_entry(*first);
    }
    let DeValue::Table(inner) = table.get_mut(*first)?.get_mut() else { return None };
    let taken = take(inner, rest);
    if taken.is_some() && inner.is_empty() {
        table.remove(*first);
    }
    taken
}

// === Keys that no longer mean anything ===

/// Takes out of `document` the keys a released event handler read that
/// mean nothing any more, each named in `notices` with why.
pub fn drop_retired_keys(document: &mut DeTable<'_>, file: &Path, notices: &mut Vec<String>) {
    if let Some((_, value)) = document.remove_entry("namespace") {
        let text = match value.get_ref() {
            DeValue::String(text) => Some(text.as_ref()),
            _ => None,
        };
        notices.push(namespace_notice(&format!("`namespace` in {}", file.display()), text));
    }
    // The event handler looks the `fluentd-*` flags up under
    // `[forward.fluentd]` only: at the top level they were read by no
    // release, so a file that has them there works without them.
    for flag in FLAGS.iter().filter(|flag| flag.name.starts_with("fluentd-")) {
        if document.remove_entry(flag.name).is_some() {
            let [_, under] = spellings(flag.name);
            notices.push(format!(
                "`{}` in {} is ignored: the event handler never read it at the top level, only as `{}` under [forward.fluentd], \
                 and ferry does the same",
                flag.name,
                file.display(),
                under.last().copied().unwrap_or_default()
            ));
        }
    }
}

/// One line on an ignored `namespace`, given as `given` (the key in a file,
/// a flag, a variable) with the value `value`.
fn namespace_notice(given: &str, value: Option<&str>) -> String {
    match value {
        Some(other) if other.trim() != "default" => format!(
            "{given} is ignored: it asks for the namespace {other:?}, but ferry reads the audit log's `default` namespace, \
             as the event handler has since it stopped reading `namespace` in 2023"
        ),
        _ => format!(
            "{given} is ignored: the event handler stopped reading it in 2023, and ferry, like it, reads the audit log's \
             `default` namespace"
        ),
    }
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
        let concurrency = match (&self.teleport, &self.source) {
            (Some(teleport), _) => teleport.concurrency,
            (None, Some(SourceConfig::Teleport(teleport))) => teleport.concurrency,
            (None, _) => crate::source::teleport::config::DEFAULT_CONCURRENCY,
        };
        self.sinks.insert("default".to_owned(), fluentd.sink(&fluentd.url, false, concurrency));
        if let Some(session_url) = &fluentd.session_url {
            self.sinks.insert("sessions".to_owned(), fluentd.sink(session_url, true, concurrency));
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
    /// Most requests in flight; unset or 0 means the event handler's
    /// default, twice the Teleport source's `concurrency`.
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
    /// A sink POSTing to `url`; `concurrency` is the Teleport source's.
    fn sink(&self, url: &str, per_session: bool, concurrency: usize) -> SinkConfig {
        SinkConfig::Http(HttpSinkConfig {
            url: url.to_owned(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            // As the event handler: below 1, twice `concurrency`.
            max_connections: Some(self.max_connections.filter(|&n| n > 0).unwrap_or_else(|| concurrency.saturating_mul(2))),
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
    /// Read by an older event handler, meaning nothing now (`namespace`):
    /// named at WARN.
    Retired,
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
    ("DEBUG", &["debug"], Kind::Boolean),
    ("NAMESPACE", &["namespace"], Kind::Retired),
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
    flag("fluentd-max-connections", "MAX_CONNECTIONS"),
    // Only in some releases: debug logging, as `-d` (`FDFWD_DEBUG`).
    switch("teleport-debug", "DEBUG"),
    // Removed from the event handler in 2023; named at WARN.
    flag("namespace", "NAMESPACE"),
];

/// Sets the keys named by the event handler's environment variables in
/// `table`: from the `start` flag that stands for a variable if one is in
/// `flags` ((variable after `FDFWD_`, value), as given), else from `env`.
/// Returns whether any was set; those that mean nothing any more are
/// named in `notices` instead.
pub fn apply_environment(
    table: &mut toml::Table,
    flags: &[(&'static str, String)],
    env: &dyn Fn(&str) -> Option<String>,
    notices: &mut Vec<String>,
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
            Kind::Retired => {
                notices.push(namespace_notice(&given_by, Some(&text)));
                continue;
            }
            Kind::Text => toml::Value::String(text),
            Kind::Integer => toml::Value::Integer(text.trim().parse().map_err(|_| format!("{given_by}: `{text}` is not a whole number"))?),
            Kind::Boolean => toml::Value::Boolean(match text.trim().to_ascii_lowercase().as_str() {
                // (Go's ParseBool, as the event handler reads them, and more.)
                "1" | "t" | "true" | "yes" | "on" => true,
                "0" | "f" | "false" | "no" | "off" | "" => false,
                _ => return Err(format!("{given_by}: `{text}` is not true or false")),
            }),
        };
        // It wins over the file in whichever spelling the file has it.
        if let Some(flag) = FLAGS.iter().find(|flag| flag.variable == *suffix) {
            for spelling in spellings(flag.name) {
                remove(table, &spelling);
            }
        }
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

/// Takes the value at `path` out of `table`, and the tables it leaves
/// empty; says whether there was one.
fn remove(table: &mut toml::Table, path: &[&str]) -> bool {
    let Some((first, rest)) = path.split_first() else { return false };
    if rest.is_empty() {
        return table.remove(*first).is_some();
    }
    let Some(inner) = table.get_mut(*first).and_then(toml::Value::as_table_mut) else { return false };
    let removed = remove(inner, rest);
    if removed && inner.is_empty() {
        table.remove(*first);
    }
    removed
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
        assert!(unflagged.is_empty(), "variables without a flag: {unflagged:?}");
    }

    #[test]
    fn the_event_handlers_batch_sizes_batches_unless_the_pipeline_says_otherwise() {
        let batch =
            |text: &str| FerryConfig::parse(text, Path::new("/etc/teleport-event-handler.toml")).expect("loads").pipeline.batch_size();
        assert_eq!(batch(EVENT_HANDLER_TOML), 20);
        assert_eq!(batch(&format!("{EVENT_HANDLER_TOML}[pipeline]\nbatch-size = 64\n")), 64, "[pipeline] wins");
        let without_batch = EVENT_HANDLER_TOML.replace("batch = 20\n", "");
        // ferry's default page; the event handler's is 20 (the docs say so).
        assert_eq!(batch(&without_batch), 500, "ferry's default page");
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
    fn the_migration_guide_documents_every_top_level_key() {
        let guide = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/migrating.md"));
        let missing: Vec<&str> = KEYS.iter().map(|entry| entry.key).filter(|key| !guide.contains(&format!("`{key}`"))).collect();
        assert!(missing.is_empty(), "docs/migrating.md does not name the event handler's keys {missing:?}");
        // The table of everything the event handler reads names each flag and variable.
        let table = guide.split("## What carries over").nth(1).expect("docs/migrating.md has the section on what carries over");
        let flags: Vec<&str> = FLAGS.iter().map(|flag| flag.name).filter(|name| !table.contains(&format!("`--{name}`"))).collect();
        assert!(flags.is_empty(), "docs/migrating.md's table lacks the flags {flags:?}");
        let variables: Vec<&str> = VARIABLES
            .iter()
            .map(|(suffix, _, _)| *suffix)
            .filter(|suffix| !PREFIXES.iter().any(|prefix| table.contains(&format!("{prefix}{suffix}`"))))
            .collect();
        assert!(variables.is_empty(), "docs/migrating.md's table lacks the variables {variables:?}");
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

    // === Every key, flag and variable of every release ===

    /// A config of dotted keys only (so that any spelling can be added to
    /// it without reopening a table), with `line` added (and, where it sets
    /// the identity or the URL, instead of the config's own).
    fn dotted(line: &str, flag: &'static str) -> String {
        let ours = format!("{} =", ferry_spelling(flag).join("."));
        let base = ["teleport.identity = \"i\"", "forward.fluentd.url = \"https://x/\""];
        let kept: Vec<&str> = base.into_iter().filter(|key| !key.starts_with(&ours)).collect();
        format!("{}\n{line}\n", kept.join("\n"))
    }

    /// A value for the setting of each flag that differs from its default.
    fn flag_sample(flag: &str) -> Option<&'static str> {
        Some(match flag {
            "storage" => "\"elsewhere\"",
            "batch" => "7",
            "types" => "\"user.login\"",
            "skip-event-types" => "[\"exec\"]",
            "skip-session-types" => "[\"resize\"]",
            "start-time" => "\"2024-05-01T00:00:00Z\"",
            "timeout" => "\"9s\"",
            "window-size" => "\"2h\"",
            "concurrency" => "2",
            "dry-run" | "exit-on-last-event" | "lock-enabled" | "teleport-refresh-enabled" | "teleport-debug" => "true",
            "lock-failed-attempts-count" => "9",
            "lock-period" => "\"4m\"",
            "lock-for" => "\"5m\"",
            "teleport-addr" => "\"proxy.example.com:443\"",
            "teleport-identity" => "\"other-identity\"",
            "teleport-refresh-interval" => "\"7m\"",
            "fluentd-url" => "\"https://y/\"",
            "fluentd-session-url" => "\"https://y/session\"",
            "fluentd-max-connections" => "3",
            // (The key-pair ones go together, and cannot join `identity`.)
            "teleport-ca" | "teleport-cert" | "teleport-key" | "fluentd-ca" | "fluentd-cert" | "fluentd-key" => "\"file.pem\"",
            // Retired: its own test below.
            "namespace" => return None,
            other => panic!("no sample value for --{other}: add one for the new flag of FLAGS"),
        })
    }

    #[test]
    fn every_spelling_the_event_handler_reads_for_every_flag_means_what_ferrys_own_spelling_means() {
        let load = |text: &str| {
            let config = FerryConfig::parse_with_env(text, Path::new("/f.toml"), &|_| None).unwrap_or_else(|err| panic!("{text}\n{err}"));
            assert!(config.notices.is_empty(), "{text}\n{:?}", config.notices);
            format!("{:?} {:?} {:?} {} {}", config.source, config.sinks, config.storage, config.dry_run, config.debug)
        };
        let plain = load(&dotted("", "storage"));
        for flag in FLAGS {
            let Some(value) = flag_sample(flag.name) else { continue };
            let ours = load(&dotted(&format!("{} = {value}", ferry_spelling(flag.name).join(".")), flag.name));
            assert_ne!(ours, plain, "--{} changed nothing", flag.name);
            for spelling in spellings(flag.name) {
                let theirs = load(&dotted(&format!("{} = {value}", spelling.join(".")), flag.name));
                assert_eq!(theirs, ours, "`{}` (--{}) is not read as ferry reads `{}`", spelling.join("."), flag.name, ours);
            }
        }
    }

    #[test]
    fn the_event_handlers_other_spellings_load_as_written() {
        let cases: &[(&str, &str)] = &[
            // The kong resolver's top-level spellings of `[teleport]`.
            ("teleport-addr = \"p:443\"\nteleport-identity = \"id\"\nteleport-refresh-enabled = true\n", "addr: \"p:443\""),
            ("teleport-addr = \"p:443\"\nteleport-identity = \"id\"\n", "identity: Some(\"id\")"),
            ("teleport-identity = \"id\"\nteleport-refresh-enabled = true\nteleport-refresh-interval = \"3m\"\n", "enabled: true"),
            // Nested lock tables, as the resolver reads them.
            ("lock.failed.attempts.count = 8\n[teleport]\nidentity = \"i\"\n", "failed_attempts_count: 8"),
            ("[lock.failed.attempts]\ncount = 8\n[teleport]\nidentity = \"i\"\n", "failed_attempts_count: 8"),
            ("[lock]\nenabled = true\nperiod = \"3m\"\nfor = \"1h\"\n[teleport]\nidentity = \"i\"\n", "lock_for: ConfigDuration(3600s)"),
            // The chart's older `[teleport] debug`.
            ("[teleport]\nidentity = \"i\"\ndebug = true\n", "debug: true"),
            // `types = ""` (the docs' include): every type.
            ("types = \"\"\n[teleport]\nidentity = \"i\"\n", "types: []"),
            (
                "window-size = \"24h\"\ndry-run = true\nexit-on-last-event = true\nconcurrency = 4\nstart-time = \"2024-05-01T00:00:00Z\"\n[teleport]\nidentity = \"i\"\n",
                "concurrency: 4",
            ),
        ];
        for (text, expected) in cases {
            let config = FerryConfig::parse_with_env(text, Path::new("/f.toml"), &|_| None).unwrap_or_else(|err| panic!("{text}\n{err}"));
            let source = format!("{:?}", teleport(&config));
            assert!(source.contains(expected), "{text}\n{source} lacks {expected}");
            assert!(config.notices.is_empty(), "{text}: {:?}", config.notices);
        }
        let debug =
            FerryConfig::parse_with_env("[teleport]\nidentity = \"i\"\ndebug = true\n", Path::new("/f.toml"), &|_| None).expect("loads");
        assert!(debug.debug, "`[teleport] debug` turns on debug logging");
        let top =
            FerryConfig::parse_with_env("debug = true\n[teleport]\nidentity = \"i\"\n", Path::new("/f.toml"), &|_| None).expect("loads");
        assert!(top.debug);
        let fluentd =
            "[teleport]\nidentity = \"i\"\n[forward.fluentd]\nurl = \"https://x/\"\nsession.url = \"https://x/s\"\nmax.connections = 3\n";
        let config = FerryConfig::parse_with_env(fluentd, Path::new("/f.toml"), &|_| None).expect("loads");
        let Some(SinkConfig::Http(sessions)) = config.sinks.get("sessions") else { panic!("a sessions sink") };
        assert_eq!((sessions.url.as_str(), sessions.max_connections), ("https://x/s", Some(3)));
    }

    #[test]
    fn where_two_spellings_are_given_the_event_handlers_preferred_one_wins_and_the_other_is_named() {
        let text =
            "lock-period = \"4m\"\nteleport-addr = \"a:3025\"\n[lock]\nperiod = \"2m\"\n[teleport]\nidentity = \"i\"\naddr = \"b:443\"\n";
        let config = FerryConfig::parse_with_env(text, Path::new("/f.toml"), &|_| None).expect("loads");
        let source = teleport(&config);
        assert_eq!((source.lock.period.0.as_secs(), source.addr.as_str()), (120, "b:443"));
        assert_eq!(
            config.notices,
            [
                "`lock-period` in /f.toml is ignored: `lock.period` is set too and wins, as in the event handler",
                "`teleport-addr` in /f.toml is ignored: `teleport.addr` is set too and wins, as in the event handler",
            ]
        );
        // A variable wins over the file in either of its spellings.
        let lookup = |name: &str| (name == "FDFWD_LOCKING_PERIOD").then(|| "6m".to_owned());
        let config = FerryConfig::parse_with_env(text, Path::new("/f.toml"), &lookup).expect("loads");
        assert_eq!(teleport(&config).lock.period.0.as_secs(), 360);
    }

    #[test]
    fn namespace_is_taken_and_named_once_with_why_it_is_ignored() {
        let text = "namespace = \"default\"\n[teleport]\nidentity = \"i\"\n";
        let config = FerryConfig::parse_with_env(text, Path::new("/etc/eh.toml"), &|_| None).expect("loads");
        assert_eq!(config.notices.len(), 1, "{:?}", config.notices);
        assert!(config.notices[0].starts_with("`namespace` in /etc/eh.toml is ignored: "), "{}", config.notices[0]);
        assert!(config.notices[0].contains("`default` namespace"), "{}", config.notices[0]);
        let plain = FerryConfig::parse_with_env("[teleport]\nidentity = \"i\"\n", Path::new("/etc/eh.toml"), &|_| None).expect("loads");
        assert_eq!(format!("{:?}", config.source), format!("{:?}", plain.source), "it changes nothing");

        let other =
            FerryConfig::parse_with_env(&text.replace("\"default\"", "\"prod\""), Path::new("/etc/eh.toml"), &|_| None).expect("loads");
        assert!(other.notices[0].contains("\"prod\"") && other.notices[0].contains("ferry reads the audit log's `default` namespace"));

        let lookup = |name: &str| (name == "FDFWD_NAMESPACE").then(|| "default".to_owned());
        let from_variable = FerryConfig::parse_with_env("[teleport]\nidentity = \"i\"\n", Path::new("/f.toml"), &lookup).expect("loads");
        assert_eq!(from_variable.notices.len(), 1);
        assert!(from_variable.notices[0].starts_with("environment variable FDFWD_NAMESPACE is ignored: "), "{:?}", from_variable.notices);
        let flags = [("NAMESPACE", "team".to_owned())];
        let from_flag = FerryConfig::parse_with("[teleport]\nidentity = \"i\"\n", Path::new("/f.toml"), &flags, &|_| None).expect("loads");
        assert!(
            from_flag.notices[0].starts_with("flag --namespace is ignored: it asks for the namespace \"team\""),
            "{:?}",
            from_flag.notices
        );
    }

    #[test]
    fn top_level_fluentd_keys_which_no_release_read_are_named_and_change_nothing() {
        let base = "[teleport]\nidentity = \"i\"\n[forward.fluentd]\nurl = \"https://x/\"\n";
        let plain = FerryConfig::parse_with_env(base, Path::new("/f.toml"), &|_| None).expect("loads");
        let text = format!("fluentd-url = \"https://y/\"\nfluentd-ca = \"ca.crt\"\nfluentd-max-connections = 3\n{base}");
        let config = FerryConfig::parse_with_env(&text, Path::new("/f.toml"), &|_| None).expect("loads");
        assert_eq!(format!("{:?}", config.sinks), format!("{:?}", plain.sinks), "as in the event handler, they change nothing");
        assert_eq!(config.notices.len(), 3, "{:?}", config.notices);
        assert_eq!(
            config.notices[0],
            "`fluentd-url` in /f.toml is ignored: the event handler never read it at the top level, only as `url` under \
             [forward.fluentd], and ferry does the same"
        );
    }

    #[test]
    fn max_connections_defaults_to_twice_concurrency_as_in_the_event_handler() {
        let max = |text: &str, flags: &[(&'static str, String)]| {
            let config = FerryConfig::parse_with(text, Path::new("/f.toml"), flags, &|_| None).expect("loads");
            let Some(SinkConfig::Http(sink)) = config.sinks.get("default") else { panic!("default sink") };
            sink.max_connections
        };
        let base = "[teleport]\nidentity = \"i\"\n[forward.fluentd]\nurl = \"https://x/\"\n";
        assert_eq!(max(base, &[]), Some(10), "2 × the default concurrency, 5");
        assert_eq!(max(&format!("concurrency = 3\n{base}"), &[]), Some(6));
        assert_eq!(max(&format!("concurrency = 3\n{base}max-connections = 0\n"), &[]), Some(6), "0 is unset");
        assert_eq!(max(&format!("concurrency = 3\n{base}max-connections = 4\n"), &[]), Some(4));
        assert_eq!(max(base, &[("MAX_CONNECTIONS", "7".to_owned())]), Some(7), "--fluentd-max-connections");
        assert_eq!(max(base, &[("CONCURRENCY", "8".to_owned())]), Some(16), "--concurrency");
    }

    #[test]
    fn teleport_debug_and_fdfwd_debug_turn_on_debug_logging() {
        let text = "[teleport]\nidentity = \"i\"\n";
        let flagged = FerryConfig::parse_with(text, Path::new("/f.toml"), &[("DEBUG", "true".to_owned())], &|_| None).expect("loads");
        assert!(flagged.debug, "--teleport-debug");
        let lookup = |name: &str| (name == "FDFWD_DEBUG").then(|| "true".to_owned());
        assert!(FerryConfig::parse_with_env(text, Path::new("/f.toml"), &lookup).expect("loads").debug, "FDFWD_DEBUG");
        assert!(!FerryConfig::parse_with_env(text, Path::new("/f.toml"), &|_| None).expect("loads").debug);
    }

    #[test]
    fn the_compatibility_doc_answers_every_flag_variable_and_spelling() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/event-handler-compatibility.md"));
        let table = doc.split("## Config keys, `start` flags and environment variables").nth(1).expect("the doc has its table");
        for flag in FLAGS {
            assert!(table.contains(&format!("`--{}`", flag.name)), "the doc's table lacks --{}", flag.name);
            for spelling in spellings(flag.name) {
                // (As the doc writes them: `[table] key`, a top-level key, or under `[forward.fluentd]`.)
                let (parents, last) = spelling.split_at(spelling.len() - 1);
                let mut shown = vec![format!("`{}`", spelling.join("."))];
                if !parents.is_empty() {
                    shown.push(format!("`[{}] {}`", parents.join("."), last[0]));
                    shown.push(format!("`[{}] {}`", parents[0], spelling[1..].join(".")));
                }
                if let ["forward", "fluentd", rest @ ..] = spelling.as_slice() {
                    shown.push(format!("`{}`", rest.join(".")));
                }
                assert!(
                    shown.iter().any(|text| table.contains(text.as_str())),
                    "the doc's table lacks `{}` (--{})",
                    spelling.join("."),
                    flag.name
                );
            }
        }
        for (suffix, _, _) in VARIABLES {
            assert!(PREFIXES.iter().any(|prefix| table.contains(&format!("`{prefix}{suffix}`"))), "the doc's table lacks FDFWD_{suffix}");
        }
    }
}
