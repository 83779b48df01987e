//! One way for every scenario to write its ferry.toml: from parts, as a TOML
//! table the `toml` crate prints, so that a path with quotes or spaces is
//! quoted right and no scenario edits another's config text.
//!
//! The parts are the ones ferry reads: storage, `[pipeline]`, a source (the
//! file source, or `[teleport]` with the event handler's top-level keys),
//! sinks (file, Logstash with its certificates), `[[plugins]]` entries with
//! their config tables and `[forward.fluentd]`. Anything else is a key path
//! given to [`Config::set`]. A test that must write a broken or odd file on
//! purpose keeps its literal text, given to `Sandbox::new` or
//! `Sandbox::set_config` as it is: that text is its point.

use std::path::Path;
use toml::{Table, Value};

/// A ferry.toml under construction. Every method returns the config, so a
/// scenario reads as the list of what it sets.
#[derive(Debug, Clone, Default)]
pub struct Config {
    table: Table,
}

impl Config {
    /// An empty file.
    pub fn empty() -> Config {
        Config::default()
    }

    /// `storage = "storage"` and nothing else.
    pub fn new() -> Config {
        Config::empty().set("storage", "storage")
    }

    /// The usual job of a scenario: storage, the file source on `in.jsonl`
    /// (read to its end unless `follow`), and the file sink `default` on
    /// `out.jsonl`.
    pub fn file_job(follow: bool) -> Config {
        Config::new().file_source(super::IN, follow).file_sink("default", super::OUT)
    }

    /// Storage, the file source on `in.jsonl` (read to its end unless
    /// `follow`), and the Logstash sink `default` at `url` with the CA `ca`
    /// and the client certificate `cert` and key `key`.
    pub fn logstash_job(follow: bool, url: &str, ca: &Path, cert: &Path, key: &Path) -> Config {
        Config::new().file_source(super::IN, follow).logstash_sink("default", url, ca, cert, key)
    }

    /// An event handler style job reading from the Teleport at `addr` with
    /// the identity file `identity`: the event handler's top-level keys as
    /// the fixtures need them (`start-time` in 2019, a year a window, pages
    /// of 20, a 100 ms poll timeout), and `[pipeline]` in batches of 10 with
    /// one in flight.
    pub fn teleport_job(addr: &str) -> Config {
        Config::new()
            .set("start-time", "2019-01-01T00:00:00Z")
            .set("window-size", "8760h")
            .set("timeout", "100ms")
            .set("batch", 20)
            .set("teleport.addr", addr)
            .set("teleport.identity", "identity")
            .pipeline(10, "20ms")
            .set("pipeline.batches-in-flight", 1)
    }

    /// Sets the value at a dotted key path (`pipeline.linger`,
    /// `sinks.default.retry-max`), creating the tables on the way.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Config {
        insert(&mut self.table, path, value.into());
        self
    }

    /// Sets a path value (`storage`, a sink's `path`, a certificate).
    pub fn set_path(self, key: &str, path: &Path) -> Config {
        self.set(key, path_text(path))
    }

    /// Removes the value at a dotted key path, if any.
    pub fn unset(mut self, path: &str) -> Config {
        let (parents, last) = split(path);
        let mut table = &mut self.table;
        for key in parents {
            match table.get_mut(key) {
                Some(Value::Table(inner)) => table = inner,
                _ => return self,
            }
        }
        table.remove(last);
        self
    }

    /// `[pipeline]` `batch-size` and `linger`.
    pub fn pipeline(self, batch_size: usize, linger: &str) -> Config {
        self.set("pipeline.batch-size", count(batch_size)).set("pipeline.linger", linger)
    }

    /// `[source.file]` on `path`, followed or read to its end.
    pub fn file_source(self, path: &str, follow: bool) -> Config {
        self.set("source.file.path", path).set("source.file.follow", follow)
    }

    /// The file sink `name` writing `path`.
    pub fn file_sink(self, name: &str, path: &str) -> Config {
        self.set(&format!("sinks.{name}.type"), "file").set(&format!("sinks.{name}.path"), path)
    }

    /// The Logstash sink `name` at `url`, over mutual TLS with the CA `ca`
    /// and the client certificate `cert` and key `key`.
    pub fn logstash_sink(self, name: &str, url: &str, ca: &Path, cert: &Path, key: &Path) -> Config {
        let sink = format!("sinks.{name}");
        self.set(&format!("{sink}.type"), "logstash")
            .set(&format!("{sink}.url"), url)
            .set_path(&format!("{sink}.ca"), ca)
            .set_path(&format!("{sink}.cert"), cert)
            .set_path(&format!("{sink}.key"), key)
    }

    /// The drop-in `[forward.fluentd]` of teleport-event-handler.toml: audit
    /// events to `url`, recordings to `session_url`, mutual TLS as
    /// [`Config::logstash_sink`].
    pub fn fluentd(self, url: &str, session_url: &str, ca: &Path, cert: &Path, key: &Path) -> Config {
        self.set("forward.fluentd.url", url)
            .set("forward.fluentd.session-url", session_url)
            .set_path("forward.fluentd.ca", ca)
            .set_path("forward.fluentd.cert", cert)
            .set_path("forward.fluentd.key", key)
    }

    /// Appends a `[[plugins]]` entry.
    pub fn plugin(mut self, plugin: Plugin) -> Config {
        let plugins = self.table.entry("plugins").or_insert_with(|| Value::Array(Vec::new()));
        match plugins {
            Value::Array(entries) => entries.push(Value::Table(plugin.table)),
            other => panic!("`plugins` is not an array of tables: {other}"),
        }
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        toml::to_string(&self.table).unwrap_or_else(|err| panic!("cannot print the config as TOML ({err}): {:?}", self.table))
    }
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// One `[[plugins]]` entry: the component's path, and the keys of its table
/// (`name`, `on-error`, limits, and its `config` table as `config.KEY`).
#[derive(Debug, Clone)]
pub struct Plugin {
    table: Table,
}

impl Plugin {
    /// The plugin at `path`.
    pub fn new(path: &Path) -> Plugin {
        Plugin { table: Table::new() }.set("path", path_text(path))
    }

    /// A plugin this checkout builds (see [`super::plugin`]), by file path.
    pub fn built(name: &str) -> Plugin {
        Plugin::new(&super::plugin(name))
    }

    /// Sets the value at a dotted key path of the entry (`name`,
    /// `config.mode`, `config.fields`).
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Plugin {
        insert(&mut self.table, path, value.into());
        self
    }
}

/// A TOML value written in TOML (an inline table, an array of tables), for
/// the plugin configs that are clearer so than key by key.
pub fn toml_value(text: &str) -> Value {
    let table: Table = toml::from_str(&format!("value = {text}")).unwrap_or_else(|err| panic!("not a TOML value ({err}): {text}"));
    table.get("value").cloned().unwrap_or_else(|| panic!("not a TOML value: {text}"))
}

/// A count as a TOML integer.
pub fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or_else(|_| panic!("{n} does not fit a TOML integer"))
}

fn path_text(path: &Path) -> String {
    path.to_str().unwrap_or_else(|| panic!("the test path {} is not UTF-8", path.display())).to_owned()
}

fn split(path: &str) -> (Vec<&str>, &str) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().unwrap_or_else(|| panic!("an empty key path"));
    (keys, last)
}

fn insert(table: &mut Table, path: &str, value: Value) {
    let (parents, last) = split(path);
    let mut table = table;
    for key in parents {
        let entry = table.entry(key).or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(inner) => inner,
            other => panic!("`{key}` of `{path}` is already a value, not a table: {other}"),
        };
    }
    table.insert(last.to_owned(), value);
}

#[test]
fn paths_with_quotes_and_spaces_come_back_as_written() {
    let odd = Path::new("/tmp/a dir/it's \"quoted\"\\x.wasm");
    let text = Config::file_job(false)
        .plugin(Plugin::new(odd).set("name", "odd").set("config.fields", vec!["login", "a b"]))
        .set_path("sinks.default.path", odd)
        .text();
    let parsed: Table = toml::from_str(&text).unwrap_or_else(|err| panic!("the builder wrote bad TOML ({err}):\n{text}"));
    assert_eq!(parsed["sinks"]["default"]["path"].as_str(), Some(odd.to_str().expect("UTF-8")), "{text}");
    assert_eq!(parsed["plugins"][0]["path"].as_str(), odd.to_str(), "{text}");
    assert_eq!(parsed["plugins"][0]["config"]["fields"][1].as_str(), Some("a b"), "{text}");
    assert_eq!(parsed["source"]["file"]["follow"].as_bool(), Some(false), "{text}");
}
