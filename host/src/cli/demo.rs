//! `ferry demo`: the whole job on built-in sample events, with no set-up.
//!
//! It starts the stand-in Teleport Auth Service (real gRPC over mutual TLS,
//! serving Teleport's sample audit events and a recorded session) and
//! writes an identity file for it in Teleport's format, starts the stand-in
//! Logstash (mutual TLS with a CA of its own), puts the redact plugin (built
//! from `plugins/redact` with this binary) in a plugins folder, and runs the
//! real pipeline: Teleport source → plugin chain → Logstash sinks (audit
//! events and session recordings), with the cursor and dead letters in a
//! real SQLite file. `ferry bench` uses the file-source half of this module.

use super::out::say;
use crate::app::FerryConfig;
use crate::metrics::Metrics;
use anyhow::Context;
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::teleport::{StandInOptions, TeleportStandIn};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Sample Teleport audit events, one JSON object per line.
pub const SAMPLE_EVENTS: &str = include_str!("../../../fixtures/teleport-events.jsonl");

/// The redact plugin, built for wasm32-wasip2 by the build script.
pub const REDACT_PLUGIN: &[u8] = include_bytes!(concat!(env!("FERRY_PLUGIN_BUILD_DIR"), "/redact.wasm"));

/// The fields the demo masks.
pub const DEMO_REDACT_CONFIG: &str = "[config]\nfields = [\"login\", \"addr.remote\", \"addr.local\"]\nreplacement = \"***\"\n";

/// Options of `ferry demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the demo's files (config, input, output, state) in this folder
    /// instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Send the sample events this many times (each copy with its own ids).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

/// The sample events repeated `repeat` times; copies after the first get
/// `-N` appended to their `uid` so that every event keeps its own id.
pub fn sample_events(repeat: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(SAMPLE_EVENTS.len() * repeat);
    for copy in 0..repeat {
        for line in SAMPLE_EVENTS.lines() {
            if copy == 0 {
                out.extend_from_slice(line.as_bytes());
            } else {
                out.extend_from_slice(with_uid_suffix(line, copy).as_bytes());
            }
            out.push(b'\n');
        }
    }
    out
}

fn with_uid_suffix(line: &str, copy: usize) -> String {
    match line.find("\"uid\":\"") {
        Some(at) => {
            let value_start = at + "\"uid\":\"".len();
            let value_end = line[value_start..].find('"').map_or(line.len(), |i| value_start + i);
            format!("{}-{copy}{}", &line[..value_end], &line[value_end..])
        }
        None => line.replacen('{', &format!("{{\"copy\":{copy},"), 1),
    }
}

/// The sink of a demo setup: `[sinks.default]` settings as TOML lines.
pub fn file_sink(path: &str) -> String {
    format!("type = \"file\"\npath = \"{path}\"\n")
}

/// Writes a demo setup into `dir`: input, plugin, config with `sink` as the
/// default sink's settings. Returns the config path.
pub fn write_setup(dir: &Path, repeat: usize, sink: &str) -> anyhow::Result<PathBuf> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).with_context(|| format!("cannot create {}", plugins.display()))?;
    std::fs::write(dir.join("events.jsonl"), sample_events(repeat)).context("cannot write the sample events")?;
    std::fs::write(plugins.join("10-redact.wasm"), REDACT_PLUGIN).context("cannot write the redact plugin")?;
    std::fs::write(plugins.join("10-redact.toml"), DEMO_REDACT_CONFIG).context("cannot write the plugin settings")?;
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!("storage = \"storage\"\nplugins-dir = \"plugins\"\n\n[source.file]\npath = \"events.jsonl\"\nfollow = false\n\n[sinks.default]\n{sink}"),
    )
    .context("cannot write the demo config")?;
    Ok(config)
}

/// The audit log the demo's Teleport serves: the samples `repeat` times,
/// less their `session.upload` that names no session. Teleport names the
/// session of every upload; that sample (from Teleport's own test data)
/// only made ferry warn about the demo's own data, and the stand-in
/// announces the demo's recorded session with a proper upload event.
fn demo_audit_log(repeat: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let events = sample_events(repeat);
    let text = std::str::from_utf8(&events).context("the sample events are UTF-8")?;
    let events: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).context("a sample event is not JSON")).collect::<anyhow::Result<_>>()?;
    Ok(events.into_iter().filter(|event| event["event"] != "session.upload" || event.get("sid").is_some()).collect())
}

/// The file that marks a folder as the demo's: a folder `--dir` names must
/// be new, empty, or hold this and only what the demo writes.
const DEMO_MARK: &str = "ferry-demo.txt";

/// What the demo writes at the top of its folder.
const DEMO_FILES: [&str; 7] = [DEMO_MARK, "ferry.toml", "identity", "pki", "plugins", "storage", "logstash-received.jsonl"];

/// Refuses a `--dir` that holds anything the demo did not write (a folder
/// `ferry configure` wrote, say: the demo would replace its ferry.toml), as
/// `configure` refuses to overwrite; a folder of an earlier demo is fine,
/// and is where a second run resumes. Names the first foreign entry.
fn check_demo_folder(dir: &Path) -> anyhow::Result<()> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|entry| entry.file_name().to_string_lossy().into_owned()).collect(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => anyhow::bail!("cannot list {}: {err}", dir.display()),
    };
    names.sort();
    let marked = names.iter().any(|name| name == DEMO_MARK);
    let foreign = names.iter().find(|name| !marked || !DEMO_FILES.contains(&name.as_str()));
    match foreign {
        None => Ok(()),
        Some(name) => anyhow::bail!(
            "{} holds {name}, which the demo did not write; nothing was written (give --dir a new or empty folder, or one an earlier `ferry demo` wrote)",
            dir.display()
        ),
    }
}

/// Marks `dir` as the demo's (see [`check_demo_folder`]).
fn mark_demo_folder(dir: &Path) -> anyhow::Result<()> {
    let text =
        "This folder was written by `ferry demo --dir`. Running that command again here resumes from the cursor in storage/ferry.db.\n";
    std::fs::write(dir.join(DEMO_MARK), text).with_context(|| format!("cannot write {}", dir.join(DEMO_MARK).display()))
}

/// The demo's config: the stand-in Teleport as source, the stand-in
/// Logstash as both sinks, the redact plugin in the plugins folder.
fn write_teleport_setup(dir: &Path, teleport: &TeleportStandIn, logstash_sink: &dyn Fn(&str) -> String) -> anyhow::Result<PathBuf> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).with_context(|| format!("cannot create {}", plugins.display()))?;
    std::fs::write(plugins.join("10-redact.wasm"), REDACT_PLUGIN).context("cannot write the redact plugin")?;
    std::fs::write(plugins.join("10-redact.toml"), DEMO_REDACT_CONFIG).context("cannot write the plugin settings")?;
    teleport.write_identity(&dir.join("identity")).context("cannot write the demo identity file")?;
    let config = dir.join("ferry.toml");
    let text = format!(
        "storage = \"storage\"\nplugins-dir = \"plugins\"\n\n\
         [source.teleport]\naddr = \"{}\"\nidentity = \"identity\"\n\
         start-time = \"2019-01-01T00:00:00Z\"\nwindow-size = \"8760h\"\nengine = \"legacy\"\nexit-on-last-event = true\n\n\
         [sinks.default]\n{}\n[sinks.sessions]\n{}",
        teleport.address(),
        logstash_sink("audit"),
        logstash_sink("sessions"),
    );
    std::fs::write(&config, text).context("cannot write the demo config")?;
    Ok(config)
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temp;
    let dir = match &args.dir {
        // Absolute, because the config written into it names the
        // certificates by path and relative paths are taken from its folder.
        Some(dir) => std::path::absolute(dir).with_context(|| format!("cannot find {}", dir.display()))?,
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary folder")?;
            temp.path().to_owned()
        }
    };
    check_demo_folder(&dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    mark_demo_folder(&dir)?;
    let database = dir.join("storage").join("ferry.db");
    let resumed = database.exists();
    let received = dir.join("logstash-received.jsonl");
    let _ = std::fs::remove_file(&received);
    let options = StandInOptions { events: demo_audit_log(args.repeat.max(1))?, announce_sessions: true, ..StandInOptions::default() };
    let teleport = TeleportStandIn::start(options).await.context("cannot start the stand-in Teleport Auth Service")?;
    let logstash = LogstashStandIn::start(Some(received.clone())).await.context("cannot start the stand-in Logstash")?;
    let pki = logstash.pki.write(&dir.join("pki")).context("cannot write the demo certificates")?;
    let sink = |path: &str| {
        format!(
            "type = \"logstash\"\nurl = \"{}{path}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            logstash.url(),
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        )
    };
    let config_path = write_teleport_setup(&dir, &teleport, &sink)?;
    let config = FerryConfig::load(&config_path)?;
    let metrics = Arc::new(Metrics::default());
    let (pipeline, _runtime, _plugins) = crate::app::build_pipeline(&config, metrics).await?;
    let (trigger, shutdown) = crate::shutdown::channel();
    crate::shutdown::fire_on_signals(trigger);
    let summary = pipeline.run(shutdown).await?;
    say!(
        "ferry demo: Teleport (stand-in Auth Service, gRPC over mutual TLS at {}) → redact plugin (WebAssembly) → Logstash (stand-in, mutual TLS at {})",
        teleport.address(),
        logstash.url()
    )?;
    say!("  {summary}")?;
    let requests = logstash.requests();
    let sessions = requests.iter().filter(|request| request.path.contains("sessions")).count();
    say!(
        "  the stand-in Logstash recorded {} events in {} requests ({} of them session recording batches)",
        logstash.event_count(),
        requests.len(),
        sessions
    )?;
    if let Some(example) = logstash.events().into_iter().find(|e| e.get("addr.remote").is_some_and(|v| v == "***")) {
        say!("  a redacted event as Logstash got it: {example}")?;
    }
    match &args.dir {
        Some(_) if resumed => {
            say!("  resumed from the cursor in {}: {} event(s) sent this time, only those after it", database.display(), summary.delivered)?
        }
        Some(given) => say!(
            "  files kept in {} (config: ferry.toml, identity, received: logstash-received.jsonl, state: storage/ferry.db); run the same command again: it resumes from the cursor and sends nothing twice",
            given.display()
        )?,
        None => say!("  (run with --dir DIR to keep the config, identity, certificates, received events and state)")?,
    }
    anyhow::ensure!(summary.dead_lettered == 0, "the demo dead-lettered {} events", summary.dead_lettered);
    anyhow::ensure!(
        logstash.event_count() as u64 == summary.delivered,
        "the stand-in recorded {} events but ferry delivered {}",
        logstash.event_count(),
        summary.delivered
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_samples_keep_ids_unique() {
        let text = String::from_utf8(sample_events(3)).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3 * SAMPLE_EVENTS.lines().count());
        let ids: std::collections::HashSet<String> =
            lines.iter().map(|line| crate::event::Event::from_json(line.as_bytes().to_vec()).expect("valid").id).collect();
        assert_eq!(ids.len(), lines.len());
    }
}
