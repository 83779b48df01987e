//! Which plugin files make up the chain, and each one's settings; and the
//! rule that keeps a reload from shrinking the chain behind the operator's
//! back.

use super::FerryConfig;
use crate::config::ConfigError;
use crate::plugin::PluginSpec;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The plugin chain the config asks for, in order, with each file's path
/// made absolute: either the `[[plugins]]` list, or every `*.wasm` of the
/// plugins folder in name order, each with the settings of the `NAME.toml`
/// beside it. Plugins named in `removed-plugins` are left out.
pub fn discover_plugins(config: &FerryConfig) -> Result<Vec<PluginSpec>, ConfigError> {
    discover_chain(config).map(|chain| chain.specs)
}

/// [`discover_plugins`] with what a reload needs to compare the chain with
/// the running one.
pub fn discover_chain(config: &FerryConfig) -> Result<PluginChain, ConfigError> {
    let listed = !config.plugins.is_empty();
    let removed: BTreeSet<String> = config.removed_plugins.iter().cloned().collect();
    let found = if listed {
        if config.plugins_dir.is_some() {
            return Err(ConfigError::invalid(&config.file, "plugins-dir", "set either `plugins-dir` or [[plugins]], not both"));
        }
        listed_plugins(config)?
    } else {
        let folder = match &config.plugins_dir {
            Some(dir) => folder_plugins(&config.resolve(dir), true).map_err(|error| match error {
                // The key, not only the folder, so the operator knows which line to fix.
                ConfigError::Read { path, source } if path == config.resolve(dir) => ConfigError::invalid(
                    &config.file,
                    "plugins-dir",
                    format!(
                        "cannot read the plugins folder {}: {source}; create it, or remove the key to run without plugins",
                        path.display()
                    ),
                ),
                other => other,
            })?,
            None => folder_plugins(&config.resolve(Path::new("plugins")), false)?,
        };
        if let Some(settings) = folder.lone_settings.iter().find(|settings| !removed.contains(&lone_plugin_name(settings))) {
            return Err(lone_settings_error(config, settings));
        }
        folder.plugins
    };
    let (specs, members): (Vec<PluginSpec>, Vec<Member>) = found
        .into_iter()
        .map(|(spec, settings)| {
            let resolved = spec.settings();
            let member = Member { name: resolved.name, wasm: resolved.path, settings };
            (spec, member)
        })
        .filter(|(_, member)| !removed.contains(&member.name))
        .unzip();
    Ok(PluginChain { specs, members, listed, removed })
}

/// The name the plugin of a settings file without its component would have
/// had: its `name`, else the file's stem (the rule of [`PluginSpec::settings`]).
fn lone_plugin_name(settings: &Path) -> String {
    let named = std::fs::read_to_string(settings).ok().and_then(|text| toml::from_str::<PluginSpec>(&text).ok()).and_then(|spec| spec.name);
    named.unwrap_or_else(|| PluginSpec { path: Some(settings.to_owned()), ..PluginSpec::default() }.settings().name)
}

/// A `NAME.toml` with no `NAME.wasm` beside it: the plugin it configures
/// would silently not run (its component deleted, or not yet copied).
fn lone_settings_error(config: &FerryConfig, settings: &Path) -> ConfigError {
    let name = lone_plugin_name(settings);
    ConfigError::invalid(
        &config.file,
        "plugins-dir",
        format!(
            "plugin `{name}` has its settings file {} but no component {}; put the component back, or take the plugin out on purpose with `removed-plugins = [{name:?}]`",
            settings.display(),
            settings.with_extension("wasm").display()
        ),
    )
}

/// A plugin chain as discovered, before anything is loaded.
#[derive(Debug, Clone)]
pub struct PluginChain {
    /// The plugins to load, in order.
    pub specs: Vec<PluginSpec>,
    /// The same plugins by name and files, in the same order.
    pub members: Vec<Member>,
    /// Whether the chain is the `[[plugins]]` list of ferry.toml: then a
    /// plugin missing from it was taken out by editing ferry.toml.
    pub listed: bool,
    /// `removed-plugins`: names taken out of the chain on purpose.
    pub removed: BTreeSet<String>,
}

/// One plugin of a chain: what it is called and which files it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name in logs, metrics and dead letters.
    pub name: String,
    /// Its component file.
    pub wasm: PathBuf,
    /// The `NAME.toml` beside it its settings came from, in a plugins folder.
    pub settings: Option<PathBuf>,
}

/// A reload that would lose a plugin of the running chain although the
/// config does not take it out: its file vanished (a deploy that deletes,
/// then copies), or its settings file did (it would run unconfigured: a
/// redact plugin without its fields masks nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}; {} (to take it out on purpose, name it in `removed-plugins` of ferry.toml: removed-plugins = [{name:?}])", kept_by.describe())]
pub struct Lost {
    /// The plugin's name.
    pub name: String,
    /// The file that is gone (the component, or its settings).
    pub file: PathBuf,
    /// What happened, on one line.
    pub what: String,
    /// Which chain had the plugin.
    pub kept_by: KeptBy,
}

/// The chain a [`Lost`] plugin belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptBy {
    /// The chain running now, which a reload would replace.
    Running,
    /// The chain ferry last ran, as the state remembers it.
    LastRun,
}

impl KeptBy {
    fn describe(self) -> &'static str {
        match self {
            KeptBy::Running => "the running chain keeps it",
            KeptBy::LastRun => "ferry last ran with it and does not run without it",
        }
    }
}

impl From<Member> for crate::state::ChainPlugin {
    fn from(member: Member) -> Self {
        crate::state::ChainPlugin { name: member.name, wasm: member.wasm, settings: member.settings }
    }
}

impl From<crate::state::ChainPlugin> for Member {
    fn from(plugin: crate::state::ChainPlugin) -> Self {
        Member { name: plugin.name, wasm: plugin.wasm, settings: plugin.settings }
    }
}

impl PluginChain {
    /// The plugins' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|member| member.name.clone()).collect()
    }

    /// The running plugins this chain leaves out on purpose: named in
    /// `removed-plugins`, or no longer in the `[[plugins]]` list.
    pub fn taken_out<'a>(&self, running: &'a [Member]) -> Vec<&'a Member> {
        running.iter().filter(|old| !self.members.iter().any(|new| new.name == old.name)).collect()
    }

    /// Checks that this chain, about to replace `running`, keeps every
    /// running plugin the config does not take out on purpose, with the
    /// settings file it had. The first one lost is the error.
    pub fn check_keeps(&self, running: &[Member]) -> Result<(), Lost> {
        for old in running {
            if self.removed.contains(&old.name) {
                continue;
            }
            match self.members.iter().find(|new| new.name == old.name) {
                // Settings inline in [[plugins]] are an edit of ferry.toml.
                Some(new) if !self.listed && new.settings.is_none() => {
                    if let Some(settings) = &old.settings {
                        return Err(Lost {
                            name: old.name.clone(),
                            file: settings.clone(),
                            kept_by: KeptBy::Running,
                            what: format!(
                                "plugin `{}` lost its settings file {}; it would run with default settings",
                                old.name,
                                settings.display()
                            ),
                        });
                    }
                }
                Some(_) => {}
                None if self.listed => {}
                None => {
                    let what = if old.wasm.exists() {
                        format!("plugin `{}` ({}) is no longer in the chain under that name", old.name, old.wasm.display())
                    } else {
                        format!("plugin `{}` is gone: {} no longer exists", old.name, old.wasm.display())
                    };
                    return Err(Lost { name: old.name.clone(), file: old.wasm.clone(), what, kept_by: KeptBy::Running });
                }
            }
        }
        Ok(())
    }

    /// Checks this chain, about to run after a stop (`start`, `check`,
    /// `dead-letters replay`), against `last`, the chain ferry last ran:
    /// the rule of a reload ([`PluginChain::check_keeps`]), since a plugin
    /// file that went missing while ferry was stopped is lost just as one
    /// deleted while it runs.
    pub fn check_remembered(&self, last: &[Member]) -> Result<(), Lost> {
        self.check_keeps(last).map_err(|lost| Lost { kept_by: KeptBy::LastRun, ..lost })
    }
}

fn listed_plugins(config: &FerryConfig) -> Result<Vec<(PluginSpec, Option<PathBuf>)>, ConfigError> {
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
            Ok((spec, None))
        })
        .collect()
}

/// What a plugins folder holds.
struct Folder {
    /// Each `NAME.wasm` in name order, with the settings of its `NAME.toml`.
    plugins: Vec<(PluginSpec, Option<PathBuf>)>,
    /// Each `NAME.toml` without a `NAME.wasm` beside it.
    lone_settings: Vec<PathBuf>,
}

fn folder_plugins(dir: &Path, required: bool) -> Result<Folder, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Folder { plugins: Vec::new(), lone_settings: Vec::new() });
        }
        Err(source) => return Err(ConfigError::Read { path: dir.to_owned(), source }),
    };
    let (mut files, mut settings): (Vec<PathBuf>, Vec<PathBuf>) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read { path: dir.to_owned(), source })?;
        let path = entry.path();
        match path.extension() {
            Some(ext) if ext == "wasm" => files.push(path),
            Some(ext) if ext == "toml" => settings.push(path),
            _ => {}
        }
    }
    files.sort();
    settings.sort();
    settings.retain(|toml| !files.contains(&toml.with_extension("wasm")));
    let plugins = files.into_iter().map(|wasm| spec_beside(&wasm)).collect::<Result<_, _>>()?;
    Ok(Folder { plugins, lone_settings: settings })
}

/// The settings for `dir/NAME.wasm`, from `dir/NAME.toml` when it exists
/// (returned too, so that a reload notices it vanishing).
pub fn spec_beside(wasm: &Path) -> Result<(PluginSpec, Option<PathBuf>), ConfigError> {
    let settings = wasm.with_extension("toml");
    let (mut spec, found) = match std::fs::read_to_string(&settings) {
        Ok(text) => {
            let spec: PluginSpec = toml::from_str(&text).map_err(|err| ConfigError::from_toml(settings.clone(), &text, &err))?;
            if spec.path.is_some() {
                return Err(ConfigError::invalid(&settings, "path", "not allowed here: the plugin is the .wasm file beside this one"));
            }
            (spec, Some(settings))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => (PluginSpec::default(), None),
        Err(source) => return Err(ConfigError::Read { path: settings, source }),
    };
    spec.path = Some(wasm.to_owned());
    Ok((spec, found))
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
        let names: Vec<_> =
            specs.iter().map(|s| s.path.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned())).collect();
        assert_eq!(names, [Some("10-a.wasm".to_owned()), Some("20-b.wasm".to_owned())]);
        assert_eq!(specs[1].on_error, Some(crate::plugin::OnError::Pass));
        assert_eq!(specs[1].config.get("x").and_then(|v| v.as_integer()), Some(1));
    }

    #[test]
    fn a_missing_default_folder_means_no_plugins_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(discover_plugins(&config_in(dir.path(), "")).expect("no plugins").is_empty());
        let err = discover_plugins(&config_in(dir.path(), "plugins-dir = \"gone\"\n")).expect_err("missing folder");
        let text = err.to_string();
        assert!(text.contains("ferry.toml: `plugins-dir`: cannot read the plugins folder ") && text.contains("gone"), "{text}");
        assert!(!text.contains('\n'), "{text}");
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

    /// A folder of `a.wasm` (with `a.toml`) and `b.wasm`, discovered.
    fn folder_chain(dir: &Path, config: &str) -> PluginChain {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).expect("mkdir");
        discover_chain(&config_in(dir, config)).expect("discovered")
    }

    fn two_plugins(dir: &Path) -> PluginChain {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).expect("mkdir");
        std::fs::write(plugins.join("a.wasm"), b"").expect("write");
        std::fs::write(plugins.join("a.toml"), "[config]\nfields = [\"login\"]\n").expect("write");
        std::fs::write(plugins.join("b.wasm"), b"").expect("write");
        folder_chain(dir, "")
    }

    #[test]
    fn a_deleted_plugin_file_is_lost_not_a_smaller_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = two_plugins(dir.path());
        assert_eq!(running.names(), ["a", "b"]);
        assert!(running.members[0].settings.is_some() && running.members[1].settings.is_none());
        std::fs::remove_file(dir.path().join("plugins/a.wasm")).expect("rm");
        std::fs::remove_file(dir.path().join("plugins/a.toml")).expect("rm");
        let after = folder_chain(dir.path(), "");
        assert_eq!(after.names(), ["b"]);
        let lost = after.check_keeps(&running.members).expect_err("a is gone");
        assert_eq!(lost.name, "a");
        assert_eq!(lost.file, dir.path().join("plugins/a.wasm"));
        let text = lost.to_string();
        assert!(
            text.starts_with("plugin `a` is gone: ") && text.contains("a.wasm no longer exists") && text.contains("`removed-plugins`"),
            "{text}"
        );
        assert!(!text.contains('\n'));
        // A new plugin beside the running ones is no loss.
        std::fs::write(dir.path().join("plugins/a.wasm"), b"").expect("write");
        std::fs::write(dir.path().join("plugins/a.toml"), "").expect("write");
        std::fs::write(dir.path().join("plugins/c.wasm"), b"").expect("write");
        folder_chain(dir.path(), "").check_keeps(&running.members).expect("a is back, c is new");
    }

    #[test]
    fn a_vanished_settings_file_is_lost_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = two_plugins(dir.path());
        std::fs::remove_file(dir.path().join("plugins/a.toml")).expect("rm");
        let lost = folder_chain(dir.path(), "").check_keeps(&running.members).expect_err("a would run unconfigured");
        assert_eq!(lost.file, dir.path().join("plugins/a.toml"));
        assert!(lost.to_string().contains("plugin `a` lost its settings file"), "{lost}");
    }

    #[test]
    fn a_renamed_plugin_is_lost_under_its_old_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = two_plugins(dir.path());
        std::fs::write(dir.path().join("plugins/b.toml"), "name = \"bee\"\n").expect("write");
        let lost = folder_chain(dir.path(), "").check_keeps(&running.members).expect_err("b is now bee");
        assert!(lost.to_string().contains("plugin `b` (") && lost.to_string().contains("no longer in the chain under that name"), "{lost}");
    }

    #[test]
    fn removed_plugins_takes_a_plugin_out_on_purpose() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = two_plugins(dir.path());
        // Named while its file is still there: not loaded.
        let after = folder_chain(dir.path(), "removed-plugins = [\"a\"]\n");
        assert_eq!(after.names(), ["b"]);
        assert_eq!(after.specs.len(), 1);
        after.check_keeps(&running.members).expect("removed on purpose");
        assert_eq!(after.taken_out(&running.members), [&running.members[0]]);
        // And once its files are gone.
        std::fs::remove_file(dir.path().join("plugins/a.wasm")).expect("rm");
        folder_chain(dir.path(), "removed-plugins = [\"a\"]\n").check_keeps(&running.members).expect("removed on purpose");
    }

    #[test]
    fn a_settings_file_without_its_component_is_an_error_naming_both() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).expect("mkdir");
        std::fs::write(plugins.join("b.wasm"), b"").expect("write");
        std::fs::write(plugins.join("b.toml"), "").expect("write");
        std::fs::write(plugins.join("redact.toml"), "[config]\nfields = [\"login\"]\n").expect("write");
        let err = discover_chain(&config_in(dir.path(), "")).expect_err("a lone settings file");
        let text = err.to_string();
        assert!(text.contains("plugin `redact` has its settings file "), "{text}");
        assert!(text.contains(&plugins.join("redact.toml").display().to_string()), "{text}");
        assert!(text.contains(&format!("no component {}", plugins.join("redact.wasm").display())), "{text}");
        assert!(text.ends_with("`removed-plugins = [\"redact\"]`"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        // Under another name, by its `name`.
        std::fs::write(plugins.join("redact.toml"), "name = \"mask\"\n").expect("write");
        let text = discover_chain(&config_in(dir.path(), "")).expect_err("a lone settings file").to_string();
        assert!(text.contains("plugin `mask`"), "{text}");
        // A plugin taken out on purpose may leave its settings behind.
        let chain = discover_chain(&config_in(dir.path(), "removed-plugins = [\"mask\"]\n")).expect("taken out");
        assert_eq!(chain.names(), ["b"]);
    }

    #[test]
    fn a_chain_without_a_plugin_that_last_ran_is_refused_as_a_reload_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let last = two_plugins(dir.path());
        folder_chain(dir.path(), "").check_remembered(&last.members).expect("the same chain");
        // The folder emptied (a fresh volume): a is the first one lost.
        for file in ["a.wasm", "a.toml", "b.wasm"] {
            std::fs::remove_file(dir.path().join("plugins").join(file)).expect("rm");
        }
        let lost = folder_chain(dir.path(), "").check_remembered(&last.members).expect_err("a and b are gone");
        assert_eq!((lost.name.as_str(), lost.kept_by), ("a", KeptBy::LastRun));
        let text = lost.to_string();
        assert!(
            text.starts_with(&format!(
                "plugin `a` is gone: {} no longer exists; ferry last ran with it",
                dir.path().join("plugins/a.wasm").display()
            )),
            "{text}"
        );
        assert!(text.ends_with("removed-plugins = [\"a\"])"), "{text}");
        // The default folder gone altogether: the same.
        std::fs::remove_dir(dir.path().join("plugins")).expect("rmdir");
        let missing = discover_chain(&config_in(dir.path(), "")).expect("no folder, no plugins");
        assert_eq!(missing.check_remembered(&last.members).expect_err("gone").name, "a");
        // Both taken out on purpose; and a first start remembers nothing.
        discover_chain(&config_in(dir.path(), "removed-plugins = [\"a\", \"b\"]\n"))
            .expect("ok")
            .check_remembered(&last.members)
            .expect("on purpose");
        missing.check_remembered(&[]).expect("nothing ran before");
    }

    #[test]
    fn a_plugin_left_out_of_the_plugins_list_is_taken_out_on_purpose() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running =
            discover_chain(&config_in(dir.path(), "[[plugins]]\npath = \"a.wasm\"\n[[plugins]]\npath = \"b.wasm\"\n")).expect("listed");
        assert!(running.listed);
        let after = discover_chain(&config_in(dir.path(), "[[plugins]]\npath = \"b.wasm\"\n")).expect("listed");
        after.check_keeps(&running.members).expect("the list is ferry.toml's own");
        assert_eq!(after.taken_out(&running.members).len(), 1);
        // From a folder to a list that leaves one out: an edit of ferry.toml too.
        let folder = two_plugins(dir.path());
        after.check_keeps(&folder.members).expect("edited ferry.toml");
    }
}
