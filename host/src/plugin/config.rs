use crate::units::{ByteSize, ConfigDuration};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// One plugin as written in ferry.toml (`[[plugins]]`) or in the `NAME.toml`
/// beside a plugin in the plugins folder.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginSpec {
    /// The plugin's `.wasm` file. Required in `[[plugins]]`; not allowed in
    /// `NAME.toml`, where the plugin is the `.wasm` file beside it.
    pub path: Option<PathBuf>,
    /// The name used in logs, metrics and dead letters. Default: the file
    /// name without `.wasm`.
    pub name: Option<String>,
    /// What happens when a call fails (trap, timeout, memory cap, malformed
    /// result): `dead-letter` (default), `pass` or `halt`. Except with
    /// `halt`, the batch is first run again by halves, so that only the
    /// events that fail on their own are dead-lettered or passed.
    pub on_error: Option<OnError>,
    /// The longest one call may run, the host calls it makes (WASI clock
    /// waits, polls) included; `init` gets the same. Default `"2s"`.
    pub deadline: Option<ConfigDuration>,
    /// The most linear memory the plugin may use, in bytes or with a unit.
    /// Default `"128MiB"`. Python and JavaScript guests need about 16 MiB
    /// just to start.
    pub max_memory: Option<ByteSize>,
    /// The most bytes one call may hand ferry: new JSON, failure reasons and
    /// sink names, each counted as copied into ferry (a result over it is
    /// refused before it is copied). Default `"64MiB"`.
    pub max_output: Option<ByteSize>,
    /// The plugin's own settings, handed to its `init` as JSON text.
    #[serde(default)]
    pub config: toml::Table,
}

/// What to do with a batch whose plugin call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Write the batch's events to the dead-letter table with the reason and
    /// go on. Nothing is lost; the events wait there for an operator.
    DeadLetter,
    /// Hand the batch on unchanged, as if the plugin were not there. For
    /// plugins that only enrich: better an unenriched event than none.
    Pass,
    /// Stop ferry without moving the cursor; the batch is retried at the next
    /// start. For plugins whose output must never be skipped (redaction).
    Halt,
}

/// A plugin's settings with every default filled in.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Name in logs, metrics and dead letters.
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// Failure policy.
    pub on_error: OnError,
    /// Deadline per call.
    pub deadline: Duration,
    /// Linear memory cap in bytes.
    pub max_memory: u64,
    /// Cap on the JSON bytes returned by one call.
    pub max_output: u64,
    /// The plugin's own config as JSON text.
    pub config_json: String,
}

impl PluginSpec {
    /// Fills in defaults. `path` must have been set by the caller.
    pub fn settings(&self) -> PluginSettings {
        let path = self.path.clone().unwrap_or_default();
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| path.file_stem().map_or_else(|| "plugin".to_owned(), |stem| stem.to_string_lossy().into_owned()));
        PluginSettings {
            name,
            path,
            on_error: self.on_error.unwrap_or(OnError::DeadLetter),
            deadline: self.deadline.map_or(Duration::from_secs(2), |d| d.0),
            max_memory: self.max_memory.map_or(128 << 20, |b| b.0),
            max_output: self.max_output.map_or(64 << 20, |b| b.0),
            // A TOML table always has a JSON form.
            config_json: serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".to_owned()),
        }
    }
}

impl std::fmt::Display for OnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnError::DeadLetter => "dead-letter",
            OnError::Pass => "pass",
            OnError::Halt => "halt",
        })
    }
}
