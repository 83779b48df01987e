//! `[source.file]`: the settings, as the user writes them.

use crate::units::{ByteSize, ConfigDuration};
use serde::Deserialize;
use std::path::PathBuf;

/// `[source.file]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The JSON Lines file to read, relative to the config file's folder.
    pub path: PathBuf,
    /// Keep reading lines appended to the file (default `true`). When
    /// `false`, ferry stops once it has delivered the whole file.
    #[serde(default = "default_follow")]
    pub follow: bool,
    /// How often to look for new lines when following. Default `"200ms"`.
    pub poll_interval: Option<ConfigDuration>,
    /// Longest line accepted; a longer one is dead-lettered (cut to this
    /// length) instead of filling memory. Default `"16MiB"`.
    pub max_line_bytes: Option<ByteSize>,
    /// How long a rotated file (renamed, the path naming a new one) is
    /// still read after it last grew: a writer keeps its old descriptor
    /// until it reopens. The new file is read once the old one has been
    /// quiet this long. Default `"5s"` (Fluent Bit's `rotate_wait`).
    pub rotate_wait: Option<ConfigDuration>,
}

fn default_follow() -> bool {
    true
}
