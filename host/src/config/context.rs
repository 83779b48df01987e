//! What every component's build gets besides its own part of the config.

use super::ConfigError;
use std::path::{Path, PathBuf};

/// The little a component needs beyond its own table to build itself: where
/// the config file is (for errors and relative paths) and whether this is a
/// dry run. Components take this rather than the whole config, so that each
/// owns its part and `config` alone knows how the parts fit together.
#[derive(Debug, Clone)]
pub struct Context {
    /// The config file, for error messages.
    pub file: PathBuf,
    /// Its folder, absolute: relative paths in the file are taken from here.
    pub base_dir: PathBuf,
    /// Read and process but change nothing outside ferry's own (temporary)
    /// state: no deliveries, no locks.
    pub dry_run: bool,
}

impl Context {
    /// The context of a config file at `file`.
    pub fn for_file(file: &Path, dry_run: bool) -> Context {
        let base_dir = file.parent().filter(|dir| !dir.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_owned);
        let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
        Context { file: file.to_owned(), base_dir, dry_run }
    }

    /// A path from the config, made absolute against the config's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// An invalid value under the dotted `key` of this config file.
    pub fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(&self.file, key, message)
    }
}
