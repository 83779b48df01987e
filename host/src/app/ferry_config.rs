use super::legacy::{self, LegacyForward};
use crate::config::{ConfigError, Context};
use crate::state::{Location, PostgresLocation};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::pipeline::PipelineConfig;
use crate::plugin::PluginSpec;
use crate::sink::SinkConfig;
use crate::source::SourceConfig;
use crate::source::teleport::TeleportSourceConfig;

/// The whole of ferry.toml: each component's own part, as that component
/// defines it, and the few keys that belong to ferry as a whole. Only this
/// module and the code that assembles the parts (`app`, reload, the
/// commands) know the whole; a component builds from its part and a
/// [`Context`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FerryConfig {
    /// Folder for ferry's state database (`ferry.db`: cursors, session
    /// progress, dead letters) and its cache of compiled plugins.
    /// Default `./storage`, the same key and default as teleport-event-handler.
    /// Or a `postgres://` URL: the state lives in that PostgreSQL database,
    /// shared by several instances that take turns (see `[leadership]`).
    #[serde(default = "default_storage")]
    pub storage: PathBuf,

    /// Folder to load the plugin chain from: every `*.wasm` in it, in name
    /// order, each with an optional `NAME.toml` beside it. Default `./plugins`
    /// (a missing default folder means no plugins). Not allowed together
    /// with `[[plugins]]`.
    pub plugins_dir: Option<PathBuf>,

    /// An explicit plugin chain, in order. Replaces `plugins-dir`.
    #[serde(default)]
    pub plugins: Vec<PluginSpec>,

    /// Plugins, by name, that are taken out of the chain on purpose: not
    /// loaded even when their file is there. Default none. A running
    /// plugin whose file disappears from the plugins folder is a reload
    /// error, not a smaller chain (a deploy that deletes, then copies, must
    /// not let one batch out unredacted); naming it here is how an operator
    /// says that the chain is meant to lose it.
    #[serde(default)]
    pub removed_plugins: Vec<String>,

    /// Batching and flow control.
    #[serde(default)]
    pub pipeline: PipelineConfig,

    /// Where events come from.
    pub source: Option<SourceConfig>,

    /// Where events go, by name. Events a plugin does not route go to the
    /// sink named `default` (or to the only sink, when there is one).
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,

    /// teleport-event-handler's `[forward.fluentd]`, kept so that its config
    /// files load unchanged: it becomes the sinks `default` (audit events,
    /// to `url`) and `sessions` (session recordings, to
    /// `<session-url>.<session id>.log`), one event per request as before.
    pub forward: Option<LegacyForward>,

    /// teleport-event-handler's `[teleport]`, with the event handler's
    /// top-level keys (`legacy::KEYS`) moved into it before it is read: it
    /// becomes `[source.teleport]`.
    pub teleport: Option<TeleportSourceConfig>,

    /// Read and process events but deliver nothing, keep no cursor and lock
    /// no one: the state goes to a fresh temporary database.
    #[serde(default)]
    pub dry_run: bool,

    /// The event handler's `debug`: the same as `ferry -d`.
    #[serde(default)]
    pub debug: bool,

    /// `HOST:PORT` where `ferry start` serves `/metrics`, `/healthz` and
    /// `/readyz`; `--http-addr` wins. Default none: no endpoint.
    pub http_addr: Option<String>,

    /// How log lines look: `text` (default) or `json`; `--log-format` wins.
    pub log_format: Option<crate::observe::LogFormat>,

    /// A file holding the password for a `postgres://` storage (its first
    /// line). Default: the environment variable FERRY_STORAGE_PASSWORD, if
    /// set. The URL itself must hold none: it is shown in logs.
    pub storage_password_file: Option<PathBuf>,

    /// Folder for compiled plugins. Default `plugin-cache` in the storage
    /// folder; with PostgreSQL storage, none (plugins are compiled at every
    /// start): a shared temporary folder is no place for machine code ferry
    /// would load.
    pub plugin_cache: Option<PathBuf>,

    /// How instances sharing a PostgreSQL state take turns.
    #[serde(default)]
    pub leadership: crate::state::LeadershipConfig,

    /// Whether the source came from `[teleport]` (errors then name its keys).
    #[serde(skip)]
    pub legacy_teleport: bool,

    /// What the config says that ferry takes but does not act on (a key
    /// the event handler no longer reads, a spelling overridden by
    /// another), one line each, for `start` and `check` to log once at
    /// WARN; a reload does not repeat them.
    #[serde(skip)]
    pub notices: Vec<String>,

    /// The folder of the config file; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,

    /// The config file itself, for error messages.
    #[serde(skip)]
    pub file: PathBuf,
}

/// The environment variable that holds the password for PostgreSQL
/// storage when `storage-password-file` is not set.
pub const STORAGE_PASSWORD_VARIABLE: &str = "FERRY_STORAGE_PASSWORD";

fn default_storage() -> PathBuf {
    PathBuf::from("./storage")
}

/// A config file as `ferry start` and `ferry check` read it, again at every
/// reload: the file, and the event handler's `start` flags given on the
/// command line, which win over the `FDFWD_*` variables they stand for.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The file.
    pub path: PathBuf,
    /// (variable after `FDFWD_`, value), in the order given.
    pub flags: Vec<(&'static str, String)>,
}

impl ConfigFile {
    /// Reads and parses the file with the flags and the environment applied.
    pub fn load(&self) -> Result<FerryConfig, ConfigError> {
        let text = crate::access::read_to_string(&self.path).map_err(|source| ConfigError::Read { path: self.path.clone(), source })?;
        FerryConfig::parse_with(&text, &self.path, &self.flags, &|name| std::env::var(name).ok())
    }
}

impl FerryConfig {
    /// Reads and parses a config file; relative paths are made absolute
    /// against the file's folder. Values are checked later, by the parts
    /// that use them, so `ferry check` and `ferry start` share one path.
    pub fn load(path: &Path) -> Result<FerryConfig, ConfigError> {
        ConfigFile { path: path.to_owned(), flags: Vec::new() }.load()
    }

    /// Parses config text that came from `path`, with the event handler's
    /// `FDFWD_*` environment variables applied.
    pub fn parse(text: &str, path: &Path) -> Result<FerryConfig, ConfigError> {
        Self::parse_with_env(text, path, &|name| std::env::var(name).ok())
    }

    /// Parses config text with `env` as the environment.
    pub fn parse_with_env(text: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<FerryConfig, ConfigError> {
        Self::parse_with(text, path, &[], env)
    }

    /// Parses config text with the event handler's `start` flags (see
    /// [`ConfigFile`]) and `env` as the environment.
    pub fn parse_with(
        text: &str,
        path: &Path,
        flags: &[(&'static str, String)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FerryConfig, ConfigError> {
        let from_text = |text: &str| -> Result<(FerryConfig, Option<&'static str>), ConfigError> {
            let toml_error = |err: &toml::de::Error| ConfigError::from_toml(path.to_owned(), text, err);
            let mut document = toml::de::DeTable::parse(text).map_err(|err| toml_error(&err))?;
            let mut notices = Vec::new();
            legacy::drop_retired_keys(document.get_mut(), path, &mut notices);
            legacy::read_every_spelling(document.get_mut(), path, &mut notices);
            let orphan = legacy::lift_teleport_keys(document.get_mut());
            let mut config =
                FerryConfig::deserialize(toml::de::Deserializer::from(document)).map_err(|err| legacy::expecting_keys(toml_error(&err)))?;
            config.notices = notices;
            Ok((config, orphan))
        };
        let mut table: toml::Table = text.parse().map_err(|err| ConfigError::from_toml(path.to_owned(), text, &err))?;
        let mut notices = Vec::new();
        let (mut config, orphan) = if super::legacy::apply_environment(&mut table, flags, env, &mut notices).map_err(|message| {
            let name = message
                .split(':')
                .next()
                .unwrap_or_default()
                .trim_start_matches("environment variable ")
                .trim_start_matches("flag ")
                .to_owned();
            ConfigError::invalid(path, name, message)
        })? {
            // The merged text is not the file: its lines are not the file's.
            // A mistake in the file itself is shown at its own line; only one
            // the variables bring in is shown without a line.
            let merged = toml::to_string(&table).map_err(|err| ConfigError::invalid(path, "FDFWD_*", err.to_string()))?;
            match from_text(&merged) {
                Ok(parsed) => parsed,
                Err(merged_error) => {
                    // (A key the file lacks may be one a variable supplies.)
                    match from_text(text) {
                        Err(ConfigError::Parse { message, .. }) if message.starts_with("missing field") => {}
                        Err(own) => return Err(own),
                        Ok(_) => {}
                    }
                    let message = match merged_error {
                        ConfigError::Parse { message, .. } => message,
                        other => other.to_string(),
                    };
                    return Err(ConfigError::invalid(
                        path,
                        "FDFWD_*",
                        format!("with the event handler's environment variables applied: {message}"),
                    ));
                }
            }
        } else {
            from_text(text)?
        };
        let context = Context::for_file(path, false);
        config.file = context.file;
        config.base_dir = context.base_dir;
        config.notices.extend(notices);
        config.apply_legacy_forward()?;
        config.apply_legacy_teleport(orphan)?;
        if let Some(SourceConfig::Teleport(teleport)) = &config.source {
            config.debug |= teleport.debug;
        }
        Ok(config)
    }

    /// Logs [`FerryConfig::notices`] at WARN, each once.
    pub fn warn_notices(&self) {
        for notice in &self.notices {
            tracing::warn!("{notice}");
        }
    }

    /// What every component's build gets besides its own table.
    pub fn context(&self) -> Context {
        Context { file: self.file.clone(), base_dir: self.base_dir.clone(), dry_run: self.dry_run }
    }

    /// A path from the config, made absolute against the config's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The PostgreSQL URL `storage` names, if it names one.
    fn storage_url(&self) -> Option<&str> {
        self.storage.to_str().filter(|storage| PostgresLocation::is_url(storage))
    }

    /// The storage folder: the state's, or, with PostgreSQL storage, a
    /// folder of this host's for what stays local (a dry run's state).
    pub fn storage_dir(&self) -> Option<PathBuf> {
        self.storage_url().is_none().then(|| self.resolve(&self.storage))
    }

    /// Where the state lives; a dry run has a SQLite database of its own.
    pub fn state_location(&self) -> Result<Location, ConfigError> {
        match self.storage_url() {
            Some(url) if !self.dry_run => {
                let password = self.storage_password()?;
                PostgresLocation::new(url, password)
                    .map(Location::Postgres)
                    .map_err(|message| ConfigError::invalid(&self.file, "storage", message))
            }
            _ => Ok(Location::Sqlite(self.database_path())),
        }
    }

    /// The password for PostgreSQL storage: `storage-password-file`'s
    /// first line, else FERRY_STORAGE_PASSWORD.
    fn storage_password(&self) -> Result<Option<String>, ConfigError> {
        let Some(file) = &self.storage_password_file else { return Ok(std::env::var(STORAGE_PASSWORD_VARIABLE).ok()) };
        let file = self.resolve(file);
        let text = crate::access::read_to_string(&file)
            .map_err(|err| ConfigError::invalid(&self.file, "storage-password-file", format!("cannot read {}: {err}", file.display())))?;
        Ok(Some(text.lines().next().unwrap_or_default().to_owned()))
    }

    /// The SQLite state database file; a dry run has one of its own. With
    /// PostgreSQL storage, only a dry run uses one, in a temporary folder of
    /// this process (a dry run's state is thrown away anyway).
    pub fn database_path(&self) -> PathBuf {
        let storage = self.storage_dir().unwrap_or_else(|| std::env::temp_dir().join(format!("ferry-dry-run-{}", std::process::id())));
        if self.dry_run { storage.join("dry-run").join("ferry.db") } else { storage.join("ferry.db") }
    }

    /// Refuses `[leadership] slots` above 1 where instances cannot share
    /// the input: without PostgreSQL there is one instance; only the export
    /// engine's chunks can be shared (a file, or pages of the legacy engine,
    /// are read by one reader in order).
    pub fn check_slots(&self) -> Result<(), ConfigError> {
        let slots = self.leadership.slots;
        let refuse = |why: &str| Err(ConfigError::invalid(&self.file, "leadership.slots", format!("slots = {slots}: {why}")));
        if slots == 0 || slots > crate::state::lease::MOST_SLOTS {
            return refuse(&format!("must be between 1 and {}", crate::state::lease::MOST_SLOTS));
        }
        if slots == 1 {
            return Ok(());
        }
        if self.storage_url().is_none() {
            return refuse("several instances at once need a shared state: set storage to a postgres:// URL");
        }
        match &self.source {
            Some(SourceConfig::Teleport(teleport)) if teleport.engine == crate::source::teleport::config::Engine::Export => Ok(()),
            Some(SourceConfig::Teleport(_)) => refuse(&format!(
                "only the export engine's chunks can be shared between instances: set {}.engine = \"export\" (Teleport 15.2 or later)",
                self.source_key()
            )),
            _ => refuse("only a Teleport source on the export engine can be shared between instances"),
        }
    }

    /// The folder of compiled plugins: `plugin-cache`, else beside the
    /// state in its folder; none with PostgreSQL storage unless set.
    pub fn plugin_cache_dir(&self) -> Option<PathBuf> {
        match (&self.plugin_cache, self.storage_dir()) {
            (Some(cache), _) => Some(self.resolve(cache)),
            (None, storage) => storage.map(|storage| storage.join("plugin-cache")),
        }
    }

    /// The name of the sink that receives events no plugin routed.
    pub fn default_sink(&self) -> Result<String, ConfigError> {
        if self.sinks.contains_key("default") {
            return Ok("default".to_owned());
        }
        let mut names = self.sinks.keys();
        match (names.next(), names.next()) {
            (Some(only), None) => Ok(only.clone()),
            (None, _) => {
                Err(ConfigError::invalid(&self.file, "sinks", "no sink is configured; add e.g. [sinks.default] with type = \"file\""))
            }
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                &self.file,
                "sinks",
                "several sinks but none is named `default`; name the one that gets unrouted events `default`",
            )),
        }
    }

    /// The source, or an error saying how to add one.
    pub fn source(&self) -> Result<&SourceConfig, ConfigError> {
        self.source
            .as_ref()
            .ok_or_else(|| ConfigError::invalid(&self.file, "source", "no source is configured; add [source.file] with a path"))
    }

    /// The dotted key of the source's table, from which its errors name
    /// its keys: `teleport` for an event handler's file.
    pub fn source_key(&self) -> &'static str {
        match &self.source {
            Some(SourceConfig::File(_)) | None => "source.file",
            Some(SourceConfig::Teleport(_)) if self.legacy_teleport => "teleport",
            Some(SourceConfig::Teleport(_)) => "source.teleport",
        }
    }

    /// The sink the source's session recordings go to unless a plugin
    /// routes them: the Teleport source's `session-sink`, which must name
    /// a sink, else `sessions` when there is such a sink; none means the
    /// default sink.
    pub fn session_sink(&self) -> Result<Option<Arc<str>>, ConfigError> {
        let Some(SourceConfig::Teleport(teleport)) = &self.source else { return Ok(None) };
        match &teleport.session_sink {
            Some(name) if !self.sinks.contains_key(name) => {
                Err(ConfigError::invalid(&self.file, format!("{}.session-sink", self.source_key()), format!("no sink is named `{name}`")))
            }
            Some(name) => Ok(Some(Arc::from(name.as_str()))),
            None => Ok(self.sinks.contains_key("sessions").then(|| Arc::from("sessions"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FerryConfig, ConfigError> {
        FerryConfig::parse(text, Path::new("/etc/ferry/ferry.toml"))
    }

    #[test]
    fn a_full_config_parses_and_paths_resolve_against_its_folder() {
        let config = parse(
            r#"
            storage = "state"
            [pipeline]
            batch-size = 10
            linger = "50ms"
            [source.file]
            path = "in.jsonl"
            [[plugins]]
            path = "redact.wasm"
            on-error = "pass"
            config = { fields = ["login"] }
            [sinks.default]
            type = "file"
            path = "/var/out.jsonl"
            [sinks.debug]
            type = "stdout"
            "#,
        )
        .expect("valid config");
        assert_eq!(config.database_path(), Path::new("/etc/ferry/state/ferry.db"));
        assert_eq!(config.pipeline.batch_size(), 10);
        assert_eq!(config.plugins.len(), 1);
        assert_eq!(config.default_sink().expect("has default"), "default");
        let Some(SourceConfig::File(file)) = &config.source else { panic!("a file source") };
        assert_eq!(config.resolve(&file.path), Path::new("/etc/ferry/in.jsonl"));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = parse("storage = \"s\"\n\n[pipeline]\nbatch-sise = 3\n").expect_err("typo");
        let text = err.to_string();
        assert!(text.starts_with("/etc/ferry/ferry.toml:4:1: unknown field `batch-sise`"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let err = parse("[pipeline]\nbatch-size = \"many\"\n").expect_err("wrong type");
        let text = err.to_string();
        assert!(text.starts_with("/etc/ferry/ferry.toml:2:"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    #[test]
    fn the_event_handlers_forward_table_becomes_two_sinks() {
        let config = parse(
            "[forward.fluentd]\nca = \"ca.crt\"\ncert = \"client.crt\"\nkey = \"client.key\"\n\
             url = \"https://localhost:8888/test.log\"\nsession-url = \"https://localhost:8888/session\"\n",
        )
        .expect("legacy config");
        let Some(SinkConfig::Http(audit)) = config.sinks.get("default") else { panic!("no default sink") };
        assert_eq!(audit.url, "https://localhost:8888/test.log");
        assert_eq!(audit.format, Some(crate::sink::http::BodyFormat::JsonArray), "the drop-in config sends JSON arrays");
        assert!(!audit.per_session);
        let Some(SinkConfig::Http(sessions)) = config.sinks.get("sessions") else { panic!("no sessions sink") };
        assert_eq!(sessions.url, "https://localhost:8888/session");
        assert!(sessions.per_session);
        assert_eq!(config.default_sink().expect("default"), "default");

        let Some(SinkConfig::Http(sessions)) = config.sinks.get("sessions") else { panic!("no sessions sink") };
        assert_eq!(sessions.format, Some(crate::sink::http::BodyFormat::JsonArray));

        let single = parse(
            "[forward.fluentd]\nurl = \"https://x/\"\nsession-url = \"https://x/s\"\nformat = \"single\"\nmax-batch-bytes = \"1MiB\"\n",
        )
        .expect("single");
        for name in ["default", "sessions"] {
            let Some(SinkConfig::Http(sink)) = single.sinks.get(name) else { panic!("no {name} sink") };
            assert_eq!(sink.format, Some(crate::sink::http::BodyFormat::Single), "`format = \"single\"` restores one event per request");
            assert_eq!(sink.max_batch_bytes.map(|b| b.0), Some(1 << 20));
        }

        let clash = parse("[forward.fluentd]\nurl = \"https://x/\"\n[sinks.default]\ntype = \"stdout\"\n").expect_err("two defaults");
        assert!(clash.to_string().contains("`sinks.default`: [forward.fluentd] already defines"), "{clash}");
    }

    #[test]
    fn an_unknown_sink_type_is_refused() {
        let err = parse("[sinks.default]\ntype = \"kafka\"\n").expect_err("unknown type");
        assert!(err.to_string().contains("unknown variant `kafka`"), "{err}");
    }

    #[test]
    fn the_only_sink_is_the_default_and_two_unnamed_ones_are_an_error() {
        let one = parse("[sinks.out]\ntype = \"stdout\"\n").expect("valid");
        assert_eq!(one.default_sink().expect("only sink"), "out");
        let two = parse("[sinks.a]\ntype = \"stdout\"\n[sinks.b]\ntype = \"stdout\"\n").expect("valid");
        assert!(two.default_sink().expect_err("ambiguous").to_string().contains("none is named `default`"));
    }

    #[test]
    fn the_session_sink_must_exist_and_defaults_to_sessions() {
        let teleport = "[source.teleport]\nidentity = \"i\"\n";
        let sinks = "[sinks.default]\ntype = \"stdout\"\n[sinks.sessions]\ntype = \"stdout\"\n";
        let found = parse(&format!("{teleport}{sinks}")).expect("valid").session_sink().expect("sessions exists");
        assert_eq!(found.as_deref(), Some("sessions"));
        let none =
            parse(&format!("{teleport}[sinks.default]\ntype = \"stdout\"\n")).expect("valid").session_sink().expect("no sessions sink");
        assert_eq!(none, None);
        let named =
            parse(&format!("{teleport}session-sink = \"default\"\n{sinks}")).expect("valid").session_sink().expect("default exists");
        assert_eq!(named.as_deref(), Some("default"));
        let err =
            parse(&format!("{teleport}session-sink = \"recordings\"\n{sinks}")).expect("valid").session_sink().expect_err("no such sink");
        assert_eq!(err.to_string(), "/etc/ferry/ferry.toml: `source.teleport.session-sink`: no sink is named `recordings`");
        let legacy = parse(&format!("[teleport]\nidentity = \"i\"\nsession-sink = \"recordings\"\n{sinks}"))
            .expect("valid")
            .session_sink()
            .expect_err("no such sink");
        assert!(legacy.to_string().contains("`teleport.session-sink`"), "{legacy}");
        let file = parse("[source.file]\npath = \"in.jsonl\"\n[sinks.sessions]\ntype = \"stdout\"\n").expect("valid");
        assert_eq!(file.session_sink().expect("no Teleport source"), None);
    }

    #[test]
    fn slots_above_one_need_postgres_and_the_export_engine() {
        let with = |storage: &str, source: &str, slots: u32| {
            let text = format!("storage = \"{storage}\"\n[leadership]\nslots = {slots}\n{source}[sinks.default]\ntype = \"stdout\"\n");
            parse(&text).expect("valid").check_slots().map_err(|err| err.to_string())
        };
        let (pg, export) = ("postgres://ferry@db/ferry", "[source.teleport]\naddr = \"t:443\"\nidentity = \"i\"\nengine = \"export\"\n");
        with(pg, export, 3).expect("PostgreSQL and the export engine");
        with("state", "[source.file]\npath = \"in.jsonl\"\n", 1).expect("one slot is every deployment");
        let refusals = [
            (with("state", export, 2), "storage to a postgres:// URL"),
            (with(pg, &export.replace("export", "legacy"), 2), "set source.teleport.engine = \"export\""),
            (with(pg, &export.replace("engine = \"export\"\n", ""), 2), "only the export engine"),
            (with(pg, "[source.file]\npath = \"in.jsonl\"\n", 2), "only a Teleport source"),
            (with(pg, export, 0), "between 1 and 64"),
        ];
        for (refused, why) in refusals {
            let text = refused.expect_err("refused");
            assert!(text.starts_with("/etc/ferry/ferry.toml: `leadership.slots`: slots = "), "{text}");
            assert!(text.contains(why) && !text.contains('\n'), "{text}");
        }
    }
}
