//! `[source.teleport]`, and the same settings as teleport-event-handler
//! spells them (`[teleport]` plus top-level keys, which ferry.toml's legacy
//! module moves into it).

use super::identity::{Credentials, Route};
use crate::config::ConfigError;
use crate::units::ConfigDuration;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where and how to read Teleport's audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TeleportSourceConfig {
    /// The Auth Service (`host:3025`) or a Proxy (`host:443`). Default
    /// `localhost:3025`, as the event handler.
    #[serde(default = "default_addr")]
    pub addr: String,
    /// An identity file (`tctl auth sign --format=file`, or Machine ID's).
    pub identity: Option<PathBuf>,
    /// Re-reading the credentials when they change on disk.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// The cluster's TLS CA (with `cert` and `key`, instead of `identity`).
    pub ca: Option<PathBuf>,
    /// A TLS client certificate.
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// Ask a Proxy with TLS routing for the Auth Service of this cluster
    /// (ALPN `teleport-auth@…`), for example a leaf cluster. Unset: the
    /// cluster of the identity, and `addr` may be the Auth Service or a
    /// Proxy, as with Teleport's own client.
    pub cluster: Option<String>,
    /// Events per page of the audit log search (the event handler's `batch`).
    /// ferry's default is 500, the event handler's 20: a page is also a
    /// request to the sinks, and fewer, larger requests carry more events
    /// per second (docs/benchmarks.md).
    #[serde(default = "default_page_size", alias = "batch")]
    pub page_size: u32,
    /// Only these event types (exact names); empty means all. A TOML array
    /// or one comma-separated string.
    #[serde(default, deserialize_with = "list")]
    pub types: Vec<String>,
    /// Event types never forwarded.
    #[serde(default, deserialize_with = "list")]
    pub skip_event_types: Vec<String>,
    /// Session-recording event types never forwarded.
    #[serde(default = "default_skip_session_types", deserialize_with = "list")]
    pub skip_session_types: Vec<String>,
    /// Where ingestion starts on the first run (RFC 3339); default: now.
    /// Stored at the first run and fixed from then on.
    pub start_time: Option<String>,
    /// Pause between searches once the audit log is caught up.
    #[serde(default = "default_timeout")]
    pub timeout: ConfigDuration,
    /// Span of one audit log search.
    #[serde(default = "default_window_size")]
    pub window_size: ConfigDuration,
    /// Session recordings streamed at once, and export chunks of a date
    /// read at once (one setting for both, as in Teleport's event handler).
    /// Default 5.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Stop once the audit log and the session recordings are caught up.
    #[serde(default)]
    pub exit_on_last_event: bool,
    /// Which API reads the audit log.
    #[serde(default)]
    pub engine: Engine,
    /// The sink that session recordings go to unless a plugin routes them.
    /// Default: `sessions` when such a sink exists, else the default sink.
    pub session_sink: Option<String>,
    /// How long to wait before asking again for a session recording that
    /// Teleport does not have yet (uploads can lag the `session.upload`
    /// event), or that failed three tries in a row for a reason of its own
    /// (INTERNAL, PERMISSION_DENIED, a stream silent for 2 minutes); the
    /// n-th retry waits n times as long, and after 3 rounds (or, when it is
    /// missing, 48 hours after the upload) the recording is dead-lettered:
    /// `ferry dead-letters replay` streams it again. Teleport unreachable or
    /// the identity refused is waited out instead, however long.
    /// Default 1 minute.
    #[serde(default = "default_missing_recording_retry")]
    pub missing_recording_retry: ConfigDuration,
    /// How often an export chunk Teleport will not serve (NOT_FOUND, or
    /// another permanent refusal with nothing of it read) is asked for, its
    /// date listed again each time, before it is given up with a dead letter
    /// naming its date, chunk and cursor. The event handler asks for ever;
    /// ferry bounds it so that one lost chunk does not hold its date.
    /// Default 5.
    #[serde(default = "default_chunk_retry_attempts")]
    pub chunk_retry_attempts: u32,
    /// The least time between a chunk's first refusal and its giving up
    /// (both bounds must be reached): retention that races a listing, or a
    /// backend that lists a chunk before it can be read, has this long to
    /// settle. Default 10 minutes.
    #[serde(default = "default_chunk_retry_time")]
    pub chunk_retry_time: ConfigDuration,
    /// Locking users after failed logins.
    #[serde(default)]
    pub lock: LockConfig,
    /// Debug logging, as the top-level `debug`: the event handler's older
    /// charts wrote `debug` under `[teleport]` (its `--teleport-debug`).
    #[serde(default)]
    pub debug: bool,
}

/// `refresh.enabled`, `refresh.interval`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RefreshConfig {
    /// Re-read the credentials when their files change. Default off, as the
    /// event handler; turn it on with Machine ID.
    #[serde(default)]
    pub enabled: bool,
    /// How often to look at the files. Default 1 minute.
    #[serde(default = "default_refresh_interval")]
    pub interval: ConfigDuration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig { enabled: false, interval: default_refresh_interval() }
    }
}

/// Which audit log API to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// The bulk export API where the cluster implements it, else paging.
    #[default]
    Auto,
    /// Always page through `GetUnstructuredEvents`.
    Legacy,
    /// Always use the bulk export API.
    Export,
}

/// `lock-enabled`, `lock-failed-attempts-count`, `lock-period`, `lock-for`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LockConfig {
    /// Lock a user after too many failed logins. Default off.
    #[serde(default)]
    pub enabled: bool,
    /// Failed logins allowed within `period`; the next one locks. Default 3.
    #[serde(default = "default_failed_attempts")]
    pub failed_attempts_count: u32,
    /// The span failed logins are counted over. Default 1 minute.
    #[serde(default = "default_lock_period")]
    pub period: ConfigDuration,
    /// How long the lock lasts; 0 (the default) means until removed.
    #[serde(default = "zero", rename = "for")]
    pub lock_for: ConfigDuration,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig { enabled: false, failed_attempts_count: default_failed_attempts(), period: default_lock_period(), lock_for: zero() }
    }
}

/// A list written as a TOML array or as one comma-separated string (the
/// way the event handler's flags and environment variables take it).
fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        One(String),
        Many(Vec<String>),
    }
    Ok(match List::deserialize(deserializer)? {
        List::One(text) => text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect(),
        List::Many(items) => items,
    })
}

fn default_addr() -> String {
    "localhost:3025".into()
}
fn default_page_size() -> u32 {
    500
}
fn default_skip_session_types() -> Vec<String> {
    vec!["print".into(), "desktop.recording".into()]
}
fn default_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(5))
}
fn default_window_size() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(24 * 3600))
}
/// `concurrency` unless set, as in the event handler.
pub const DEFAULT_CONCURRENCY: usize = 5;

fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}
fn default_missing_recording_retry() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_chunk_retry_attempts() -> u32 {
    5
}
fn default_chunk_retry_time() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(600))
}
fn default_refresh_interval() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_failed_attempts() -> u32 {
    3
}
fn default_lock_period() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn zero() -> ConfigDuration {
    ConfigDuration(Duration::ZERO)
}

impl TeleportSourceConfig {
    /// Checks the values and resolves the credentials against `base_dir`.
    /// Errors name the key, as `source.teleport.KEY` (`prefix`).
    pub fn check(&self, file: &Path, base_dir: &Path, prefix: &str) -> Result<Checked, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::invalid(file, format!("{prefix}{key}"), message);
        super::connect::check_addr(&self.addr).map_err(|reason| invalid("addr", format!("`{}` {reason}", self.addr)))?;
        let credentials = self.credentials(base_dir).map_err(|message| invalid("identity", message))?;
        if self.page_size == 0 {
            return Err(invalid("batch", "must be at least 1".into()));
        }
        if self.concurrency == 0 {
            return Err(invalid("concurrency", "must be at least 1".into()));
        }
        if self.chunk_retry_attempts == 0 {
            return Err(invalid("chunk-retry-attempts", "must be at least 1".into()));
        }
        if self.window_size.0 < Duration::from_secs(1) {
            return Err(invalid("window-size", "must be at least 1s".into()));
        }
        if self.lock.enabled && self.lock.period.0.is_zero() {
            return Err(invalid("lock-period", "must be more than 0 when locking is enabled".into()));
        }
        let start_time = match &self.start_time {
            None => None,
            Some(text) => Some(parse_start_time(text).map_err(|message| invalid("start-time", message))?),
        };
        let route = match &self.cluster {
            Some(cluster) if cluster.trim().is_empty() => return Err(invalid("cluster", "must not be empty".into())),
            Some(cluster) => Route::TlsRouting { cluster: cluster.clone() },
            None => Route::Auto,
        };
        Ok(Checked { credentials, route, start_time })
    }

    fn credentials(&self, base_dir: &Path) -> Result<Credentials, String> {
        let resolve = |path: &PathBuf| base_dir.join(path);
        let triple = [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)];
        let given: Vec<&str> = triple.iter().filter(|(_, value)| value.is_some()).map(|(name, _)| *name).collect();
        match (&self.identity, &self.ca, &self.cert, &self.key) {
            (Some(identity), None, None, None) => Ok(Credentials::IdentityFile(resolve(identity))),
            (Some(_), ..) => {
                Err(format!("give either `identity` or `ca`, `cert` and `key`, not both (found `identity` and `{}`)", given.join("`, `")))
            }
            (None, Some(ca), Some(cert), Some(key)) => Ok(Credentials::KeyPair { cert: resolve(cert), key: resolve(key), ca: resolve(ca) }),
            (None, None, None, None) => Err("no Teleport credentials: set `identity` (an identity file) or `ca`, `cert` and `key`".into()),
            (None, ..) => {
                let missing: Vec<&str> = triple.iter().filter(|(_, value)| value.is_none()).map(|(name, _)| *name).collect();
                Err(format!("`{}` given but `{}` missing: `ca`, `cert` and `key` go together", given.join("`, `"), missing.join("`, `")))
            }
        }
    }
}

/// The parts of the config that needed checking.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Where the credentials are.
    pub credentials: Credentials,
    /// Direct or through a proxy.
    pub route: Route,
    /// `start-time`, if set, truncated to the second.
    pub start_time: Option<SystemTime>,
}

/// RFC 3339, truncated to whole seconds as the event handler does.
pub fn parse_start_time(text: &str) -> Result<SystemTime, String> {
    let time =
        crate::units::parse_time(text).map_err(|err| format!("`{text}` is not an RFC 3339 time such as 2024-05-01T00:00:00Z ({err})"))?;
    Ok(truncate_to_second(time))
}

/// `time` without its fraction of a second.
pub fn truncate_to_second(time: SystemTime) -> SystemTime {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TeleportSourceConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn defaults_follow_the_event_handler() {
        let config = parse("identity = \"auth.pem\"");
        assert_eq!(config.addr, "localhost:3025");
        assert_eq!(config.skip_session_types, ["print", "desktop.recording"]);
        assert_eq!(config.concurrency, 5);
        assert_eq!(config.window_size.0, Duration::from_secs(86_400));
        assert_eq!(config.lock.failed_attempts_count, 3);
        let checked = config.check(Path::new("f.toml"), Path::new("/etc/ferry"), "source.teleport.").expect("valid");
        assert_eq!(checked.credentials, Credentials::IdentityFile(PathBuf::from("/etc/ferry/auth.pem")));
        assert_eq!(checked.route, Route::Auto);
    }

    #[test]
    fn credentials_are_an_identity_or_a_whole_triple() {
        let check = |text: &str| parse(text).check(Path::new("f.toml"), Path::new("/"), "teleport.").map(|c| c.credentials);
        let half = check("ca = \"ca.pem\"\ncert = \"c.pem\"").expect_err("key missing").to_string();
        assert!(half.contains("`teleport.identity`: `ca`, `cert` given but `key` missing"), "{half}");
        let both = check("identity = \"i\"\ncert = \"c.pem\"").expect_err("both").to_string();
        assert!(both.contains("not both (found `identity` and `cert`)"), "{both}");
        assert!(check("").expect_err("none").to_string().contains("no Teleport credentials"));
        let triple = check("ca = \"a\"\ncert = \"b\"\nkey = \"c\"").expect("triple");
        assert!(matches!(triple, Credentials::KeyPair { .. }));
    }

    #[test]
    fn start_time_is_rfc3339_truncated_to_the_second() {
        let time = parse_start_time("2024-05-01T10:00:00.750Z").expect("valid");
        assert_eq!(crate::units::format_time(time), "2024-05-01T10:00:00Z");
        let err = parse("identity = \"i\"\nstart-time = \"yesterday\"").check(Path::new("f.toml"), Path::new("/"), "").expect_err("bad");
        assert!(err.to_string().contains("`start-time`: `yesterday` is not an RFC 3339 time"), "{err}");
    }
}
