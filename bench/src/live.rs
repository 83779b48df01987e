//! What the long runs by hand (`ferry-soak`, `ferry-failover`) share: a
//! Teleport audit log that grows with the clock, ferry processes started
//! and signalled, and the events a Logstash stand-in received, counted.

use anyhow::Context;
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::pki::PkiFiles;
use ferry_standin::teleport::{IdentitySpec, StandInOptions, TeleportStandIn, Validity};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

/// A session recording announced every `RECORDING_EVERY`, of `RECORDING_EVENTS` events.
pub const RECORDING_EVERY: Duration = Duration::from_secs(20);
pub const RECORDING_EVENTS: usize = 30;

/// The audit log to come: `rate` events a second for the run, and a
/// recording every [`RECORDING_EVERY`], timed from `start`.
pub fn teleport_log(start: SystemTime, run: Duration, rate: u64) -> (Vec<Value>, BTreeMap<String, Vec<Value>>) {
    let time = |at: Duration| humantime::format_rfc3339_millis(start + at).to_string();
    let kinds = ["user.login", "session.start", "session.end", "exec", "db.session.query", "app.session.request"];
    let total = run.as_secs() * rate;
    let events = (0..total)
        .map(|n| {
            let at = Duration::from_millis(n * 1000 / rate.max(1));
            let kind = kinds[(n % kinds.len() as u64) as usize];
            json!({ "event": kind, "uid": format!("soak-a-{n}"), "time": time(at), "user": "alice", "login": "root", "code": "T0000I", "success": true })
        })
        .collect();
    let recordings = (0..run.as_secs() / RECORDING_EVERY.as_secs())
        .map(|m| {
            let sid = format!("soak-rec-{m:04}");
            let base = RECORDING_EVERY * u32::try_from(m).unwrap_or(u32::MAX);
            let events = (0..RECORDING_EVENTS)
                .map(|ei| {
                    let kind = match ei {
                        0 => "session.start",
                        n if n + 1 == RECORDING_EVENTS => "session.end",
                        _ => "print",
                    };
                    let at = base + Duration::from_millis(ei as u64 * 10);
                    json!({ "event": kind, "ei": ei, "sid": sid, "uid": format!("soak-r-{m}-{ei}"), "time": time(at), "data": "bHMgLWxhCg==" })
                })
                .collect();
            (sid, events)
        })
        .collect();
    (events, recordings)
}

/// `ferry start --config NAME.toml` in `dir` with `env`, logging JSON to `LOG.log`.
pub fn spawn_with_env(ferry: &Path, dir: &Path, name: &str, log: &str, env: &[(&str, String)]) -> anyhow::Result<Child> {
    spawn_ferry(Command::new(ferry), dir, name, log, env).with_context(|| format!("cannot start {}", ferry.display()))
}

/// As [`spawn_with_env`], `ferry` the command that runs ferry's command line
/// (a binary, or a bench binary's own `ferry` subcommand).
pub fn spawn_ferry(mut ferry: Command, dir: &Path, name: &str, log: &str, env: &[(&str, String)]) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join(format!("{log}.log")))?;
    ferry
        .args(["start", "--config", &format!("{name}.toml"), "--log-format", "json"])
        .current_dir(dir)
        .envs(env.iter().map(|(key, value)| (*key, value)))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start ferry")
}

pub fn signal(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Events received, by uid.
pub struct Counts(HashMap<String, usize>);

impl Counts {
    pub fn of(events: &[Value]) -> Counts {
        let mut counts = HashMap::new();
        for event in events {
            if let Some(uid) = event.get("uid").and_then(Value::as_str) {
                *counts.entry(uid.to_owned()).or_default() += 1;
            }
        }
        Counts(counts)
    }

    pub fn distinct(&self, prefix: &str) -> usize {
        self.0.keys().filter(|uid| uid.starts_with(prefix)).count()
    }

    pub fn total(&self, prefix: &str) -> usize {
        self.0.iter().filter(|(uid, _)| uid.starts_with(prefix)).map(|(_, n)| n).sum()
    }
}

/// What a long run sets up first: its folder (emptied), a Teleport stand-in
/// whose log grows for `run` at `rate` events a second (legacy engine, with
/// recordings), its identity in `identity`, and a Logstash stand-in.
pub struct Live {
    pub dir: PathBuf,
    pub start: SystemTime,
    pub audit_total: usize,
    pub teleport: TeleportStandIn,
    pub logstash: LogstashStandIn,
    pub pki: PkiFiles,
}

impl Live {
    pub async fn set_up(dir: &Path, run: Duration, rate: u64) -> anyhow::Result<Live> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let dir = std::fs::canonicalize(dir)?;
        let start = SystemTime::now();
        let (events, sessions) = teleport_log(start, run, rate);
        let audit_total = events.len();
        let options =
            StandInOptions { events, sessions, announce_sessions: true, export_api: false, live: true, ..StandInOptions::default() };
        let teleport = TeleportStandIn::start(options).await?;
        let logstash = LogstashStandIn::start(None).await?;
        let pki = logstash.pki.write(&dir.join("pki"))?;
        teleport.write_identity_with(&dir.join("identity"), &IdentitySpec { validity: long_validity(), ..IdentitySpec::default() })?;
        Ok(Live { dir, start, audit_total, teleport, logstash, pki })
    }

    /// A `[sinks.NAME]` table sending to the Logstash stand-in's `path`.
    pub fn sink(&self, name: &str, path: &str, retry_max: &str) -> String {
        logstash_sink(&self.logstash, &self.pki, name, path, retry_max)
    }
}

/// A `[sinks.NAME]` table sending to `logstash`'s `path` with the client
/// certificate of `pki`.
pub fn logstash_sink(logstash: &LogstashStandIn, pki: &PkiFiles, name: &str, path: &str, retry_max: &str) -> String {
    format!(
        "[sinks.{name}]\ntype = \"logstash\"\nurl = \"{}{path}\"\nca = {:?}\ncert = {:?}\nkey = {:?}\nretry-max = \"{retry_max}\"\n",
        logstash.url(),
        pki.ca,
        pki.client_cert,
        pki.client_key
    )
}

/// An identity that outlives any run.
pub fn long_validity() -> Validity {
    Validity::For(Duration::from_secs(24 * 3600))
}
