//! The stand-ins of `ferry-bench --teleport`, each in a process of its own
//! (`ferry-bench --serve-standin SETTINGS`, hidden), so that each has its
//! own runtime and cores to compete for, as a real Teleport and a real
//! Logstash would, and the bench process only orchestrates.
//!
//! A stand-in process reads its settings from a JSON file, starts, prints
//! one JSON line saying where it listens, then answers one command per line
//! of its standard input with one JSON line on its standard output, and
//! exits when its standard input closes (the bench ended, or died).
//!
//! The Teleport stand-in serves the demo's audit events repeated with unique
//! ids; the Logstash stand-in counts events and distinct events instead of
//! keeping them ([`LogstashStandIn::start_counting`]), and can refuse or
//! leave unanswered every request, for the backlog mode.

use anyhow::Context;
use ferry_standin::logstash::{LogstashStandIn, Refusal};
use ferry_standin::teleport::{IdentitySpec, StandInOptions, TeleportStandIn, Validity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// What a stand-in process is to serve.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Serve {
    /// The Teleport Auth Service.
    Teleport {
        /// Audit events to serve.
        events: usize,
        /// Where to write a client identity file.
        identity: PathBuf,
    },
    /// The Logstash http input, counting.
    Logstash {
        /// The folder to write its PKI into.
        pki: PathBuf,
    },
}

/// What the Teleport stand-in says once it listens.
#[derive(Debug, Serialize, Deserialize)]
pub struct TeleportReady {
    /// `host:port`.
    pub addr: String,
    /// Audit events it serves.
    pub events: usize,
}

/// What the Logstash stand-in says once it listens: its URL and the files
/// a client needs.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogstashReady {
    /// Where to POST events to, with a path appended.
    pub url: String,
    /// The CA that signed its certificate.
    pub ca: PathBuf,
    /// A client certificate it accepts.
    pub cert: PathBuf,
    /// That certificate's key.
    pub key: PathBuf,
}

/// The requests to one path since the last tally, summed up by the
/// Logstash stand-in.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Requests seen.
    pub requests: usize,
    /// Requests answered with a status other than 200.
    pub refused: usize,
    /// Events recorded.
    pub events: usize,
    /// Distinct events, over every path.
    pub distinct: usize,
    /// From the first request's head arriving to the last one's events
    /// being recorded; zero without requests.
    pub span_seconds: f64,
    /// Per request, from its head arriving to its events recorded: the
    /// median, in milliseconds.
    pub latency_p50_ms: f64,
    /// The same, 99th percentile.
    pub latency_p99_ms: f64,
}

/// Runs as a stand-in process with the settings in `path`.
pub async fn serve(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let serve: Serve = serde_json::from_slice(&text).with_context(|| format!("{}: not stand-in settings", path.display()))?;
    match serve {
        Serve::Teleport { events, identity } => {
            let audit_log = audit_log(events.max(1))?;
            let events = audit_log.len();
            let options = StandInOptions { events: audit_log, sessions: BTreeMap::new(), export_api: false, ..StandInOptions::default() };
            let teleport = TeleportStandIn::start(options).await.context("cannot start the stand-in Teleport Auth Service")?;
            // Valid for a day: a long bench outlives the default hour.
            let spec = IdentitySpec { validity: Validity::For(Duration::from_secs(24 * 3600)), ..IdentitySpec::default() };
            teleport.write_identity_with(&identity, &spec).context("cannot write the identity file")?;
            say(&TeleportReady { addr: teleport.address(), events })?;
            commands(|command| match command {
                "served" => Ok(serde_json::json!({ "served": teleport.events_served() })),
                other => anyhow::bail!("unknown command `{other}`"),
            })
            .await
        }
        Serve::Logstash { pki } => {
            let logstash = LogstashStandIn::start_counting().await.context("cannot start the stand-in Logstash")?;
            let files = logstash.pki.write(&pki).context("cannot write the Logstash certificates")?;
            say(&LogstashReady { url: logstash.url(), ca: files.ca, cert: files.client_cert, key: files.client_key })?;
            commands(|command| {
                let (verb, argument) = command.split_once(' ').unwrap_or((command, ""));
                match verb {
                    "tally" => Ok(serde_json::to_value(tally(&logstash, argument))?),
                    "answer" | "refuse" | "no-answer" => {
                        logstash.set_refusal(match verb {
                            "answer" => Refusal::None,
                            "refuse" => Refusal::ServiceUnavailable,
                            _ => Refusal::NoAnswer,
                        });
                        Ok(serde_json::json!({ "ok": true }))
                    }
                    other => anyhow::bail!("unknown command `{other}`"),
                }
            })
            .await
        }
    }
}

/// Sums up the requests to `path` since the last tally, and starts afresh.
fn tally(logstash: &LogstashStandIn, path: &str) -> Tally {
    let taken = logstash.take_tally();
    let requests: Vec<_> = taken.requests.into_iter().filter(|request| request.path == path).collect();
    let first = requests.iter().map(|request| request.arrived).min();
    let last = requests.iter().map(|request| request.arrived + request.took).max();
    let mut took: Vec<f64> = requests.iter().map(|request| request.took.as_secs_f64() * 1000.0).collect();
    took.sort_by(f64::total_cmp);
    Tally {
        requests: requests.len(),
        refused: requests.iter().filter(|request| request.status != 200).count(),
        events: requests.iter().map(|request| request.events).sum(),
        distinct: taken.distinct,
        span_seconds: first.zip(last).map_or(0.0, |(first, last)| (last - first).as_secs_f64()),
        latency_p50_ms: super::teleport::percentile(&took, 0.50),
        latency_p99_ms: super::teleport::percentile(&took, 0.99),
    }
}

/// Prints one JSON line.
fn say(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Answers each line of standard input with `answer`'s JSON until it closes.
async fn commands(mut answer: impl FnMut(&str) -> anyhow::Result<serde_json::Value>) -> anyhow::Result<()> {
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(1);
    // Standard input blocks; a thread of its own keeps the runtime free.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let reply = answer(line.trim()).unwrap_or_else(|error| serde_json::json!({ "error": format!("{error:#}") }));
        say(&reply)?;
    }
    Ok(())
}

/// The demo's audit events repeated with unique ids, up to `count`, without
/// `session.upload`: its recording would be streamed again for every copy,
/// and the reference client does not stream recordings.
pub fn audit_log(count: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let per_copy = ferry::cli::demo::SAMPLE_EVENTS.lines().filter(|line| !line.contains("\"session.upload\"")).count().max(1);
    let text = ferry::cli::demo::sample_events(count.div_ceil(per_copy));
    let text = std::str::from_utf8(&text).context("the sample events are UTF-8")?;
    text.lines()
        .filter(|line| !line.contains("\"session.upload\""))
        .take(count)
        .map(|line| serde_json::from_str(line).context("a sample event is not JSON"))
        .collect()
}

/// A running stand-in process, from the bench's side. Killed when dropped.
pub struct StandIn {
    name: &'static str,
    child: Child,
    input: ChildStdin,
    output: std::io::BufReader<ChildStdout>,
    log: PathBuf,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandIn {
    /// Starts `exe` as the stand-in `serve` says, with its settings and log
    /// in `dir`, and returns it with what it said once it listened.
    pub fn spawn<T: serde::de::DeserializeOwned>(
        exe: &Path,
        name: &'static str,
        serve: &Serve,
        dir: &Path,
    ) -> anyhow::Result<(StandIn, T)> {
        let settings = dir.join(format!("{name}.json"));
        std::fs::write(&settings, serde_json::to_vec(serve)?).with_context(|| format!("cannot write {}", settings.display()))?;
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(exe)
            .arg("--serve-standin")
            .arg(&settings)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start the {name} stand-in ({})", exe.display()))?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            anyhow::bail!("the {name} stand-in has no pipes");
        };
        let mut stand_in = StandIn { name, child, input, output: std::io::BufReader::new(output), log };
        let ready = stand_in.read()?;
        Ok((stand_in, ready))
    }

    /// Sends `command` and reads its answer.
    pub fn ask<T: serde::de::DeserializeOwned>(&mut self, command: &str) -> anyhow::Result<T> {
        writeln!(self.input, "{command}")
            .and_then(|()| self.input.flush())
            .with_context(|| format!("the {} stand-in stopped; its log: {}", self.name, self.log.display()))?;
        self.read()
    }

    fn read<T: serde::de::DeserializeOwned>(&mut self) -> anyhow::Result<T> {
        let mut line = String::new();
        self.output.read_line(&mut line).with_context(|| format!("cannot read from the {} stand-in", self.name))?;
        if line.is_empty() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            anyhow::bail!(
                "the {} stand-in stopped; its log:\n{}",
                self.name,
                log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let value: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("the {} stand-in said {line:?}", self.name))?;
        if let Some(error) = value.get("error") {
            anyhow::bail!("the {} stand-in: {error}", self.name);
        }
        serde_json::from_value(value).with_context(|| format!("the {} stand-in said {line:?}", self.name))
    }
}
