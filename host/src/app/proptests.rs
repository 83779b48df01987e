//! Property tests: no config text, however broken, panics ferry while it is
//! loaded and checked, and every error it gives is one line that says where
//! (`file:line:col: what`, or `file: key: what`). Three sources of text:
//! arbitrary TOML documents over ferry's own key names, and random edits of
//! a valid ferry.toml and of a teleport-event-handler.toml (with the event
//! handler's environment variables set to odd values now and then).

use super::{FerryConfig, discover_chain};
use crate::config::ConfigError;
use crate::metrics::Metrics;
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// Cases per property: enough to reach every table and key a few times,
/// few enough for CI.
const CASES: u32 = 256;

const FERRY_TOML: &str = r#"
storage = "state"
plugins-dir = "plugins"
removed-plugins = ["old"]

[pipeline]
batch-size = 256
linger = "200ms"
batches-in-flight = 4
shutdown-timeout = "30s"

[source.file]
path = "in.jsonl"
follow = true

[sinks.default]
type = "logstash"
url = "https://logstash.example.com:9601/"
ca = "ca.crt"
format = "json-array"
gzip = false
max-connections = 10
timeout = "60s"
max-batch-bytes = "10MiB"

[sinks.security]
type = "file"
path = "security.jsonl"
"#;

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
dry-run = false
debug = false
namespace = "default"

[forward.fluentd]
ca = "ca.crt"
cert = "client.crt"
key = "client.key"
url = "https://localhost:8888/test.log"
session-url = "https://localhost:8888/session"

[teleport]
addr = "example.teleport.sh:443"
identity = "identity"
refresh.enabled = true
"#;

/// Key names ferry knows (so that generated documents reach past the
/// unknown-key check), and a few it does not; with the event handler's
/// top-level keys ([`super::legacy::KEYS`]), in [`keys`].
const KEYS: &[&str] = &[
    "storage",
    "plugins-dir",
    "plugins",
    "removed-plugins",
    "pipeline",
    "batch-size",
    "linger",
    "batches-in-flight",
    "shutdown-timeout",
    "source",
    "file",
    "path",
    "follow",
    "poll-interval",
    "max-line-bytes",
    "rotate-wait",
    "chunk-retry-attempts",
    "chunk-retry-time",
    "teleport",
    "addr",
    "identity",
    "refresh",
    "enabled",
    "interval",
    "sinks",
    "default",
    "type",
    "url",
    "ca",
    "cert",
    "key",
    "format",
    "gzip",
    "max-connections",
    "timeout",
    "max-batch-bytes",
    "success-statuses",
    "retry-statuses",
    "dead-letter-statuses",
    "headers",
    "retry-initial",
    "retry-max",
    "forward",
    "fluentd",
    "session-url",
    "failed-attempts-count",
    "period",
    "for",
    "on-error",
    "deadline",
    "max-memory",
    "max-output",
    "config",
    "name",
    "engine",
    "cluster",
    "fsync",
    "per-session",
    "unknown",
    "x",
    // The other spellings the event handler's config reader takes
    // (`teleport-addr`, `[lock.failed.attempts] count`, `session.url`, …).
    "namespace",
    "teleport-addr",
    "teleport-identity",
    "teleport-refresh-enabled",
    "lock",
    "failed",
    "attempts",
    "count",
    "session",
    "max",
    "connections",
    "debug",
    "skip",
    "start",
    "time",
    "dry",
    "run",
    "window",
    "size",
];

/// [`KEYS`] and the event handler's top-level keys.
fn keys() -> Vec<&'static str> {
    KEYS.iter().copied().chain(super::legacy::KEYS.iter().map(|entry| entry.key)).collect()
}

/// Values that mean something to some key, and odd ones.
const TEXTS: &[&str] = &[
    "",
    "logstash",
    "http",
    "file",
    "stdout",
    "kafka",
    "10s",
    "0s",
    "1ms",
    "200ms",
    "99999999h",
    "-1s",
    "1MiB",
    "0B",
    "18446744073709551615B",
    "in.jsonl",
    "/",
    "..",
    "plugins",
    "https://localhost:1/",
    "http://x/",
    "not a url",
    "dead-letter",
    "pass",
    "halt",
    "json-array",
    "ndjson",
    "single",
    "auto",
    "legacy",
    "export",
    "2024-05-01T00:00:00Z",
    "yesterday",
    "user.login,session.upload",
    "é\u{0}\u{7f}\n",
];

/// Some of the event handler's environment variables.
const VARIABLES: &[&str] = &[
    "FDFWD_BATCH",
    "FDFWD_STORAGE",
    "FDFWD_DRY_RUN",
    "FDWRD_CONCURRENCY",
    "FDFWD_TELEPORT_ADDR",
    "FDFWD_TELEPORT_REFRESH_ENABLED",
    "FDFWD_FLUENTD_URL",
    "FDFWD_MAX_CONNECTIONS",
    "FDFWD_TIMEOUT",
    "FDFWD_LOCKING_FOR",
    "FDFWD_NAMESPACE",
    "FDFWD_DEBUG",
    "FDWRD_MAX_CONNECTIONS",
    "FDFWD_LOCKING_PERIOD",
];

/// Text edits applied to a valid file.
const SNIPPETS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "\"\"\"",
    "\n",
    "#",
    "{",
    "}",
    ",",
    ".",
    "0",
    "-1",
    "1e999",
    "99999999999999999999",
    "18446744073709551616",
    "true",
    "\u{0}",
    "é",
    "\t",
    "[[plugins]]\npath = \"a.wasm\"\n",
    "[sinks.x]\ntype = \"file\"\n",
    "[pipeline]\n",
    "batch-size = 0\n",
    "batches-in-flight = 9223372036854775807\n",
    "max-connections = 9223372036854775807\n",
    "removed-plugins = 3\n",
    "[teleport]\n",
    "[source.file]\npath = \"\"\n",
    "inf",
    "nan",
    "namespace = 3\n",
    "teleport-addr = \"a:1\"\n",
    "[lock.failed.attempts]\ncount = 1\n",
    "[lock]\nperiod = \"1s\"\n",
    "session.url = 5\n",
    "lock.failed = 2\n",
];

fn leaf() -> impl Strategy<Value = toml::Value> {
    prop_oneof![
        any::<bool>().prop_map(toml::Value::Boolean),
        any::<i64>().prop_map(toml::Value::Integer),
        (-3i64..1000).prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        prop::sample::select(TEXTS).prop_map(|text| toml::Value::String(text.to_owned())),
        ".{0,12}".prop_map(toml::Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(keys()).prop_map(str::to_owned), 1 => "[a-z-]{1,8}"]
}

fn value() -> impl Strategy<Value = toml::Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|map| toml::Value::Table(map.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = toml::Table> {
    prop::collection::btree_map(key(), value(), 0..8).prop_map(|map| map.into_iter().collect())
}

/// One edit of a file's text, at a place given as a fraction of its length.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: f64, len: usize },
    Insert { at: f64, text: String },
    DuplicateLine { at: f64 },
    SwapLines { a: f64, b: f64 },
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = 0.0..1.0f64;
    prop_oneof![
        (at.clone(), 1..24usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (at.clone(), prop_oneof![3 => prop::sample::select(SNIPPETS).prop_map(str::to_owned), 1 => ".{1,6}"])
            .prop_map(|(at, text)| Edit::Insert { at, text }),
        at.clone().prop_map(|at| Edit::DuplicateLine { at }),
        (at.clone(), at).prop_map(|(a, b)| Edit::SwapLines { a, b }),
    ]
}

/// The char boundary nearest below `at` of the way through `text`.
fn place(text: &str, at: f64) -> usize {
    let mut index = ((text.len() as f64) * at) as usize;
    index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_owned();
    for edit in edits {
        match edit {
            Edit::Delete { at, len } => {
                let start = place(&text, *at);
                let mut end = (start + len).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(start..end, "");
            }
            Edit::Insert { at, text: inserted } => {
                let index = place(&text, *at);
                text.insert_str(index, inserted);
            }
            Edit::DuplicateLine { at } => {
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if !lines.is_empty() {
                    let index = (((lines.len() as f64) * at) as usize).min(lines.len() - 1);
                    lines.insert(index, lines[index].clone());
                }
                text = lines.join("\n");
            }
            Edit::SwapLines { a, b } => {
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if !lines.is_empty() {
                    let last = lines.len() - 1;
                    let index = |at: f64| (((lines.len() as f64) * at) as usize).min(last);
                    let (a, b) = (index(*a), index(*b));
                    lines.swap(a, b);
                }
                text = lines.join("\n");
            }
        }
    }
    text
}

/// The event handler's variables, set to odd values.
fn environment() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = prop::sample::select(VARIABLES);
    let values = prop_oneof![prop::sample::select(TEXTS).prop_map(str::to_owned), Just("-5".to_owned()), Just("yes".to_owned()), ".{0,6}"];
    prop::collection::vec((names.prop_map(str::to_owned), values), 0..3)
}

/// Fails unless `error` is one line naming the config file (or the other
/// file it could not read).
fn assert_one_line(error: &ConfigError, file: &Path, text: &str) {
    let shown = error.to_string();
    assert!(!shown.is_empty() && !shown.contains('\n') && !shown.contains('\r'), "not one line: {shown:?}");
    let named = shown.starts_with(&format!("{}:", file.display())) || shown.starts_with("cannot read ");
    assert!(named, "the error does not start with the file: {shown:?}");
    if let ConfigError::Parse { line, column, path, .. } = error
        && path == file
    {
        assert!(*line >= 1 && *column >= 1 && *line <= text.lines().count() + 1, "{shown:?} is past the end of the text");
    }
}

/// Loads `text` as `file` and runs every check `ferry check` runs short of
/// loading plugins: the pipeline's limits, the source, each sink, the
/// default sink, the plugin chain. Any error must be one line.
fn load_and_check(text: &str, file: &Path, env: &[(String, String)]) {
    let lookup = |name: &str| env.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let config = match FerryConfig::parse_with_env(text, file, &lookup) {
        Ok(config) => config,
        Err(error) => return assert_one_line(&error, file, text),
    };
    if let Err((key, message)) = config.pipeline.validate() {
        assert_one_line(&ConfigError::invalid(file, key, message), file, text);
    }
    if let Err(error) = config.default_sink() {
        assert_one_line(&error, file, text);
    }
    let context = config.context();
    if let Err(error) = config.source().and_then(|source| crate::source::Source::build(source, config.source_key(), &context)) {
        assert_one_line(&error, file, text);
    }
    if let Err(error) = config.session_sink() {
        assert_one_line(&error, file, text);
    }
    for (name, sink) in &config.sinks {
        if let Err(error) = crate::sink::build(name, sink, &context, Arc::new(Metrics::default())) {
            assert_one_line(&error, file, text);
        }
    }
    if let Err(error) = discover_chain(&config) {
        assert_one_line(&error, file, text);
    }
}

fn sandbox() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ferry.toml");
    (dir, file)
}

#[test]
fn the_valid_files_load() {
    let (_dir, file) = sandbox();
    FerryConfig::parse_with_env(FERRY_TOML, &file, &|_| None).expect("the ferry.toml the edits start from is valid");
    FerryConfig::parse_with_env(EVENT_HANDLER_TOML, &file, &|_| None).expect("the event handler's file the edits start from is valid");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_documents_never_panic_and_err_on_one_line(table in document()) {
        let (_dir, file) = sandbox();
        if let Ok(text) = toml::to_string(&table) {
            load_and_check(&text, &file, &[]);
        }
    }

    #[test]
    fn an_edited_ferry_toml_never_panics_and_errs_on_one_line(edits in prop::collection::vec(edit(), 1..6)) {
        let (_dir, file) = sandbox();
        load_and_check(&apply(FERRY_TOML, &edits), &file, &[]);
    }

    #[test]
    fn an_edited_event_handler_toml_never_panics_and_errs_on_one_line(edits in prop::collection::vec(edit(), 0..6), env in environment()) {
        let (_dir, file) = sandbox();
        load_and_check(&apply(EVENT_HANDLER_TOML, &edits), &file, &env);
    }
}
