//! `ferry-soak`: half an hour of an operator's day, compressed, against two
//! real ferry processes. Not a test (it takes as long as it is asked to):
//! run it by hand with `bench/soak.sh` and read its report.
//!
//! - A Teleport stand-in whose audit log grows as the clock passes each
//!   event's time (legacy engine), with a session recording announced every
//!   20 s; ferry A reads it into a Logstash stand-in (audit events and the
//!   recordings' `<session-url>.<sid>.log`).
//! - A JSON Lines file a writer appends to, rotated every 2 minutes as
//!   logrotate does without `copytruncate` (rename, new file, the writer
//!   still on the old one for 2 s); ferry B follows it into the same
//!   Logstash stand-in.
//! - The Logstash stand-in fails 10 % of requests at random (500, 503, 429,
//!   resets, acknowledgements lost), answers 403 for 20 s every 7 minutes and
//!   503 for 60 s once, mid-run.
//! - Both ferry processes get SIGHUP every 10 s; ferry A's identity is issued
//!   again every 5 minutes (read again through `refresh`).
//!
//! Every minute it samples each ferry's RSS and open file descriptors and
//! what was produced and received. At the end it lifts the faults, waits for
//! everything to arrive, stops both with SIGTERM and reports events in and
//! out, lost, duplicates (with what the lost acknowledgements explain), the
//! samples, and every ERROR line ferry logged, grouped.

mod live;

use anyhow::{Context, bail};
use clap::Parser;
use ferry_standin::logstash::Chaos;
use ferry_standin::teleport::{IdentitySpec, TeleportStandIn};
use live::{Counts, Live, RECORDING_EVENTS, RECORDING_EVERY, long_validity, signal, spawn_with_env};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// `ferry-soak`: two ferry processes under faults, signals and rotations for a while.
#[derive(Debug, clap::Parser)]
#[command(name = "ferry-soak", about)]
struct Args {
    /// How long the faults go on, in minutes.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Audit events per second, and file lines per second.
    #[arg(long, default_value_t = 40)]
    rate: u64,
    /// The ferry binary.
    #[arg(long, default_value = "target/release/ferry")]
    ferry: PathBuf,
    /// A plugin component for ferry A's chain (reloaded by every SIGHUP),
    /// e.g. the redact plugin; none: no plugin.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Where the configs, states, logs and the report go (kept).
    #[arg(long, default_value = "target/soak")]
    dir: PathBuf,
}

const ROTATE_EVERY: Duration = Duration::from_secs(120);
const HUP_EVERY: Duration = Duration::from_secs(10);
const RENEW_EVERY: Duration = Duration::from_secs(300);
const SPELL_EVERY: Duration = Duration::from_secs(420);
const SPELL: Duration = Duration::from_secs(20);
const OUTAGE: Duration = Duration::from_secs(60);
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
const DRAIN: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(soak(args))
}

async fn soak(args: Args) -> anyhow::Result<()> {
    let ferry = std::fs::canonicalize(&args.ferry).with_context(|| format!("no ferry binary at {}", args.ferry.display()))?;
    let run = Duration::from_secs(args.minutes * 60);
    let live = Live::set_up(&args.dir, run, args.rate).await?;
    let (dir, start, audit_total) = (live.dir.clone(), live.start, live.audit_total);
    let (teleport, logstash) = (&live.teleport, &live.logstash);
    let sink = |name: &str, path: &str| live.sink(name, path, "5s");
    let plugin = match &args.plugin {
        Some(path) => format!("\n[[plugins]]\npath = {:?}\n[plugins.config]\nfields = [\"login\"]\n", std::fs::canonicalize(path)?),
        None => String::new(),
    };
    let teleport_config = format!(
        "storage = \"state-teleport\"\nstart-time = \"{}\"\nwindow-size = \"1h\"\ntimeout = \"1s\"\nbatch = 100\nconcurrency = 3\nskip-session-types = []\n\n[teleport]\naddr = \"{}\"\nidentity = \"identity\"\nrefresh.enabled = true\nrefresh.interval = \"20s\"\n\n[pipeline]\nbatch-size = 100\nlinger = \"200ms\"\n\n{}\n{}\nper-session = true\n{plugin}",
        humantime::format_rfc3339_seconds(start - Duration::from_secs(60)),
        teleport.address(),
        sink("default", "audit"),
        sink("sessions", "session"),
    );
    let file_config = format!(
        "storage = \"state-file\"\n\n[source.file]\npath = \"in.jsonl\"\nfollow = true\nrotate-wait = \"5s\"\n\n[pipeline]\nbatch-size = 100\nlinger = \"200ms\"\n\n{}",
        sink("default", "file")
    );
    std::fs::write(dir.join("teleport.toml"), teleport_config)?;
    std::fs::write(dir.join("file.toml"), file_config)?;
    std::fs::write(dir.join("in.jsonl"), "")?;

    let mut ferry_a = spawn_with_env(&ferry, &dir, "teleport", "teleport", &[])?;
    let mut ferry_b = spawn_with_env(&ferry, &dir, "file", "file", &[])?;
    let writer = FileWriter::start(dir.join("in.jsonl"), args.rate);
    logstash.set_chaos(Some(Chaos { rate: 0.10, seed: 0x50A4 }));

    let began = Instant::now();
    let mut report = String::new();
    let _ = writeln!(report, "| minute | A rss MiB | A fds | B rss MiB | B fds | audit in/out | recordings in/out | file in/out |");
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|");
    let mut next = Ticks::default();
    let mut outage_done = false;
    while began.elapsed() < run {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = began.elapsed();
        if due(&mut next.hup, now, HUP_EVERY) {
            signal(&ferry_a, libc::SIGHUP);
            signal(&ferry_b, libc::SIGHUP);
        }
        if due(&mut next.renew, now, RENEW_EVERY) {
            renew(teleport, &dir)?;
        }
        if due(&mut next.rotate, now, ROTATE_EVERY) {
            writer.rotate();
        }
        if due(&mut next.spell, now, SPELL_EVERY) {
            logstash.refuse_for(403, "403 Forbidden: client certificate not allowed", SPELL);
        }
        if !outage_done && now >= run / 2 {
            outage_done = true;
            logstash.refuse_for(503, "503 Service Unavailable: pipeline down", OUTAGE);
        }
        if due(&mut next.sample, now, SAMPLE_EVERY) {
            let counts = Counts::of(&logstash.events());
            let produced = Produced::at(start, args.rate, writer.written());
            let _ = writeln!(
                report,
                "| {} | {:.1} | {} | {:.1} | {} | {}/{} | {}/{} | {}/{} |",
                now.as_secs() / 60,
                rss_mib(ferry_a.id()),
                fds(ferry_a.id()),
                rss_mib(ferry_b.id()),
                fds(ferry_b.id()),
                produced.audit,
                counts.distinct("soak-a-"),
                produced.recording_events,
                counts.distinct("soak-r-"),
                produced.file,
                counts.distinct("soak-f-")
            );
            println!("{}", report.lines().last().unwrap_or_default());
            for child in [&mut ferry_a, &mut ferry_b] {
                if let Some(status) = child.try_wait()? {
                    bail!("a ferry exited during the soak ({status}); see {}", dir.display());
                }
            }
        }
    }

    // The faults lifted and the writers stopped: everything must arrive.
    logstash.set_chaos(None);
    logstash.stop_refusing();
    let file_total = writer.stop();
    let recording_total = (run.as_secs() / RECORDING_EVERY.as_secs()) as usize * RECORDING_EVENTS;
    let drained = Instant::now();
    let counts = loop {
        let counts = Counts::of(&logstash.events());
        let complete = counts.distinct("soak-a-") >= audit_total
            && counts.distinct("soak-r-") >= recording_total
            && counts.distinct("soak-f-") >= file_total;
        if complete || drained.elapsed() > DRAIN {
            break counts;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let drain_time = drained.elapsed();
    let final_sample = [(rss_mib(ferry_a.id()), fds(ferry_a.id())), (rss_mib(ferry_b.id()), fds(ferry_b.id()))];
    signal(&ferry_a, libc::SIGTERM);
    signal(&ferry_b, libc::SIGTERM);
    let status_a = ferry_a.wait()?;
    let status_b = ferry_b.wait()?;

    let chaos = logstash.chaos_count();
    let _ = writeln!(
        report,
        "\nafter the run: A {:.1} MiB / {} fds, B {:.1} MiB / {} fds",
        final_sample[0].0, final_sample[0].1, final_sample[1].0, final_sample[1].1
    );
    let _ = writeln!(report, "drained in {}s after the faults stopped; exits: A {status_a}, B {status_b}", drain_time.as_secs());
    for (what, prefix, total) in
        [("audit", "soak-a-", audit_total), ("recordings", "soak-r-", recording_total), ("file", "soak-f-", file_total)]
    {
        let distinct = counts.distinct(prefix);
        let _ = writeln!(
            report,
            "{what}: {total} in, {distinct} distinct out, {} lost, {} duplicates",
            total.saturating_sub(distinct),
            counts.total(prefix) - distinct
        );
    }
    let _ = writeln!(
        report,
        "Logstash faults: {} 500/503, {} 429, {} resets, {} lost acknowledgements ({} events stored whose acknowledgement was lost)",
        chaos.statuses, chaos.throttled, chaos.resets, chaos.lost_acks, chaos.lost_ack_events
    );
    for name in ["teleport", "file"] {
        let _ = writeln!(report, "\nERROR lines of ferry {name}, grouped:");
        for (message, (count, example)) in error_groups(&dir.join(format!("{name}.log")))? {
            let _ = writeln!(report, "- {count} × {message}\n  e.g. {example}");
        }
    }
    std::fs::write(dir.join("report.md"), &report)?;
    println!("{report}\nreport: {}", dir.join("report.md").display());
    Ok(())
}

/// Issues the identity again, written beside and renamed over, as tbot does.
fn renew(teleport: &TeleportStandIn, dir: &Path) -> anyhow::Result<()> {
    let next = dir.join("identity.next");
    teleport.write_identity_with(&next, &IdentitySpec { validity: long_validity(), ..IdentitySpec::default() })?;
    std::fs::rename(next, dir.join("identity"))?;
    Ok(())
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 =
        status.lines().find_map(|line| line.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
    kib / 1024.0
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|dir| dir.count()).unwrap_or(0)
}

/// When each periodic action is next due.
#[derive(Default)]
struct Ticks {
    hup: Duration,
    renew: Duration,
    rotate: Duration,
    spell: Duration,
    sample: Duration,
}

/// Whether the action whose next time is `at` is due at `now`; if so, its
/// next time moves on by `every` (the first comes after one period).
fn due(at: &mut Duration, now: Duration, every: Duration) -> bool {
    if at.is_zero() {
        *at = every;
    }
    if now < *at {
        return false;
    }
    *at += every;
    true
}

/// What has been produced by now.
struct Produced {
    audit: u64,
    recording_events: u64,
    file: usize,
}

impl Produced {
    fn at(start: SystemTime, rate: u64, file: usize) -> Produced {
        let elapsed = SystemTime::now().duration_since(start).unwrap_or_default();
        let recordings = elapsed.as_secs() / RECORDING_EVERY.as_secs() + 1;
        Produced { audit: elapsed.as_millis() as u64 * rate / 1000, recording_events: recordings * RECORDING_EVENTS as u64, file }
    }
}

/// ERROR lines of a JSON log, grouped by their message with the digits
/// taken out: message → (count, one line as logged).
fn error_groups(log: &Path) -> anyhow::Result<BTreeMap<String, (usize, String)>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let mut groups: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else { continue };
        if value["level"] != "ERROR" {
            continue;
        }
        let message = value["message"].as_str().or_else(|| value["fields"]["message"].as_str()).unwrap_or_default();
        let shape: String = message.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).take(160).collect();
        let entry = groups.entry(shape).or_insert((0, line.chars().take(400).collect()));
        entry.0 += 1;
    }
    Ok(groups)
}

/// A writer appending JSON Lines to a file at a steady rate, rotated as
/// logrotate does: the file renamed to `.1` (`.1` to `.2`, the oldest
/// removed), a new one created, the writer kept on the old file for 2 s
/// before it reopens (a late writer).
struct FileWriter {
    rotate: std::sync::mpsc::Sender<()>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    written: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileWriter {
    fn start(path: PathBuf, rate: u64) -> FileWriter {
        let (rotate, rotations) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop2, written2) = (stop.clone(), written.clone());
        let thread = std::thread::spawn(move || write_lines(&path, rate, &rotations, &stop2, &written2));
        FileWriter { rotate, stop, written, thread: Some(thread) }
    }

    fn written(&self) -> usize {
        self.written.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn rotate(&self) {
        let _ = self.rotate.send(());
    }

    /// Stops writing; the lines written.
    fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.written()
    }
}

fn write_lines(
    path: &Path,
    rate: u64,
    rotations: &std::sync::mpsc::Receiver<()>,
    stop: &std::sync::atomic::AtomicBool,
    written: &std::sync::atomic::AtomicUsize,
) {
    let open = || std::fs::OpenOptions::new().append(true).create(true).open(path).expect("the soak's input file opens");
    let mut file = open();
    let mut reopen_at: Option<Instant> = None;
    let pause = Duration::from_millis(1000 / rate.max(1));
    let mut n = 0usize;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        if rotations.try_recv().is_ok() {
            let older = path.with_extension("jsonl.2");
            let old = path.with_extension("jsonl.1");
            let _ = std::fs::remove_file(&older);
            let _ = std::fs::rename(&old, &older);
            let _ = std::fs::rename(path, &old);
            std::fs::write(path, "").expect("the new input file is created");
            reopen_at = Some(Instant::now() + Duration::from_secs(2));
        }
        if reopen_at.is_some_and(|at| Instant::now() >= at) {
            file = open();
            reopen_at = None;
        }
        let time = humantime::format_rfc3339_millis(SystemTime::now());
        let line = format!("{{\"event\":\"soak.file\",\"uid\":\"soak-f-{n}\",\"time\":\"{time}\",\"user\":\"bob\"}}\n");
        if file.write_all(line.as_bytes()).is_ok() {
            n += 1;
            written.store(n, std::sync::atomic::Ordering::SeqCst);
        }
        std::thread::sleep(pause);
    }
}
