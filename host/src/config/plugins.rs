//! Which plugin files make up the chain, and each one's settings.

use super::{ConfigError, FerryConfig, PluginSpec};
use std::path::{Path, PathBuf};

/// The plugin chain the config asks for, in order, with each file's path
/// made absolute: either the `[[plugins]]` list, or every `*.wasm` of the
/// plugins folder in name order, each with the settings of the `NAME.toml`
/// beside it.
pub fn discover_plugins(config: &FerryConfig) -> Result<Vec<PluginSpec>, ConfigError> {
    if !config.plugins.is_empty() {
        if config.plugins_dir.is_some() {
            return Err(ConfigError::invalid(
                &config.file,
                "plugins-dir",
                "set either `plugins-dir` or [[plugins]], not both",
            ));
        }
        return listed_plugins(config);
    }
    match &config.plugins_dir {
        Some(dir) => folder_plugins(&config.resolve(dir), true),
        None => folder_plugins(&config.resolve(Path::new("./plugins")), false),
    }
}

fn listed_plugins(config: &FerryConfig) -> Result<Vec<PluginSpec>, ConfigError> {
    config
        .plugins
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let Some(path) = &spec.path else {
                return Err(ConfigError::invalid(&config.file, format!("plugins[{index}].path"), "missing; name the plugin's .wasm file"));
            };
            let mut spec = spec.clone();
            spec.path = Some(config.resolve(path));
            Ok(spec)
        })
        .collect()
}

fn folder_plugins(dir: &Path, required: bool) -> Result<Vec<PluginSpec>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir.to_owned(), source }),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read { path: dir.to_owned(), source })?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "wasm") {
            files.push(path);
        }
    }
    files.sort();
    files.into_iter().map(|wasm| spec_beside(&wasm)).collect()
}

/// The settings for `dir/NAME.wasm`, from `dir/NAME.toml` when it exists.
fn spec_beside(wasm: &Path) -> Result<PluginSpec, ConfigError> {
    let settings = wasm.with_extension("toml");
    let mut spec = match std::fs::read_to_string(&settings) {
        Ok(text) => {
            let spec: PluginSpec =
                toml::from_str(&text).map_err(|err| ConfigError::from_toml(settings.clone(), &text, &err))?;
            if spec.path.is_some() {
                return Err(ConfigError::invalid(&settings, "path", "not allowed here: the plugin is the .wasm file beside this one"));
            }
            spec
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => PluginSpec::default(),
        Err(source) => return Err(ConfigError::Read { path: settings, source }),
    };
    spec.path = Some(wasm.to_owned());
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path, text: &str) -> FerryConfig {
        let file = dir.join("ferry.toml");
        std::fs::write(&file, text).expect("write config");
        FerryConfig::load(&file).expect("valid config")
    }

    #[test]
    fn a_folder_gives_its_wasm_files_in_name_order_with_their_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).expect("mkdir");
        for name in ["20-b.wasm", "10-a.wasm", "notes.txt"] {
            std::fs::write(plugins.join(name), b"").expect("write");
        }
        std::fs::write(plugins.join("20-b.toml"), "on-error = \"pass\"\n[config]\nx = 1\n").expect("write");
        let config = config_in(dir.path(), "");
        let specs = discover_plugins(&config).expect("discovered");
        let names: Vec<_> = specs.iter().map(|s| s.path.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned())).collect();
        assert_eq!(names, [Some("10-a.wasm".to_owned()), Some("20-b.wasm".to_owned())]);
        assert_eq!(specs[1].on_error, Some(crate::plugin::OnError::Pass));
        assert_eq!(specs[1].config.get("x").and_then(|v| v.as_integer()), Some(1));
    }

    #[test]
    fn a_missing_default_folder_means_no_plugins_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(discover_plugins(&config_in(dir.path(), "")).expect("no plugins").is_empty());
        let err = discover_plugins(&config_in(dir.path(), "plugins-dir = \"gone\"\n")).expect_err("missing folder");
        assert!(err.to_string().starts_with("cannot read ") && err.to_string().contains("gone"), "{err}");
    }

    #[test]
    fn a_bad_settings_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).expect("mkdir");
        std::fs::write(plugins.join("a.wasm"), b"").expect("write");
        std::fs::write(plugins.join("a.toml"), "on-eror = \"pass\"\n").expect("write");
        let err = discover_plugins(&config_in(dir.path(), "")).expect_err("typo");
        assert!(err.to_string().contains("a.toml:1:1: unknown field `on-eror`"), "{err}");
    }

    #[test]
    fn list_and_folder_together_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_in(dir.path(), "plugins-dir = \"p\"\n[[plugins]]\npath = \"a.wasm\"\n");
        assert!(discover_plugins(&config).expect_err("both").to_string().contains("not both"));
    }
}
