//! What every component builds from: the [`Context`] of the config file
//! (its folder, for relative paths) and the one-line [`ConfigError`].
//!
//! Parsing is strict on ferry's own tables (`deny_unknown_fields`), so a typo
//! is an error naming the key and the line rather than a silently ignored
//! setting. Every error prints on one line as `file:line:col: what`, or
//! `file: key: what` for problems found after parsing. Relative paths in the
//! file are taken relative to the file's own folder, so a service started
//! from any working directory reads the same files.
//!
//! The dependency goes one way: each component (source, sink, pipeline,
//! plugin) owns the type of its own table and builds from it and a
//! [`Context`]; `app` above them composes those types into the whole of
//! ferry.toml, and the checks that span parts (a
//! session sink that does not exist, the event handler's sections against
//! `[sinks.*]`, `plugins-dir` against `[[plugins]]`) live there, once.

mod context;
mod error;

pub use context::Context;
pub use error::ConfigError;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read the source folder") {
            let path = entry.expect("read the source folder").path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }

    /// The components build from their own table and a `Context`: none of
    /// them reaches for the whole config or for `app`, so `app` composes
    /// them and not the other way round. (Their tests may set up a whole
    /// ferry.)
    #[test]
    fn components_never_read_the_whole_config() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        for component in ["source", "sink", "pipeline", "plugin"] {
            rust_files(&src.join(component), &mut files);
        }
        for lower in ["state", "config", "observe"] {
            rust_files(&src.join(lower), &mut files);
        }
        let mut offenders = Vec::new();
        for file in files {
            let name = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            if name == "tests.rs" || name.ends_with("_tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for word in ["FerryConfig", "crate::app", "app::legacy"] {
                if code.contains(word) {
                    offenders.push(format!("{} uses {word}", file.strip_prefix(&src).unwrap_or(&file).display()));
                }
            }
        }
        assert!(offenders.is_empty(), "components must build from their own table and a config::Context: {offenders:?}");
    }
}
