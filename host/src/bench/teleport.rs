//! `ferry bench --teleport`: the real job, measured side by side in one run.
//!
//! The Teleport stand-in (gRPC over mutual TLS, serving the demo's audit
//! events repeated with unique ids) and a fresh Logstash stand-in per run
//! (mutual TLS) run in this process; ferry runs as a child process
//! (`ferry start` with a generated config and identity, `exit-on-last-event`)
//! so that its CPU time and peak RSS, taken from `wait4`, are its own. The
//! reference client ([`super::reference`]) runs the same way. Rounds are
//! interleaved and the median of each figure is reported, as the file mode
//! does.
//!
//! What is measured, per run:
//! - events/s: events recorded by the Logstash stand-in over the span from
//!   the first request arriving to the last one recorded, so that process
//!   start-up and plugin compilation (fresh storage each run) are left out;
//! - CPU seconds per 100k events: the child's user + system time, start-up
//!   included;
//! - request latency p50/p99: per request, from its head arriving at the
//!   Logstash stand-in to its events being recorded (the receiver's side of
//!   a batch: body transfer, decoding, storing);
//! - peak RSS: the child's `VmHWM`, polled while it runs (its
//!   `ru_maxrss` would count this process's size at the fork).

use super::BenchArgs;
use super::reference::Settings;
use anyhow::Context;
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::teleport::{StandInOptions, TeleportStandIn};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Events per page and per request, as the original's config has it.
const BATCH: usize = 500;
/// Requests in flight: ferry's default `batches-in-flight`.
const IN_FLIGHT: usize = 4;
/// Where the audit log search starts, and how wide one search is.
const START_TIME: &str = "2019-01-01T00:00:00Z";
const WINDOW: Duration = Duration::from_secs(8760 * 3600);

#[derive(Clone, Copy, PartialEq)]
enum Plugin {
    None,
    Wasm,
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Reference,
    /// `[teleport]`, top-level keys and `[forward.fluentd]`: JSON arrays.
    Original(Plugin),
    /// `[source.teleport]` and `[sinks.*]` with `format = "json-array"`.
    Native(Plugin),
    /// The original's config with `format = "single"` under `[forward.fluentd]`.
    Single(Plugin),
}

impl Variant {
    fn label(self) -> String {
        let plugin = |plugin: Plugin| match plugin {
            Plugin::None => "no plugin",
            Plugin::Wasm => "redact (WebAssembly)",
        };
        match self {
            Variant::Reference => "reference client".into(),
            Variant::Original(p) => format!("original config, {}", plugin(p)),
            Variant::Native(p) => format!("native sinks, {}", plugin(p)),
            Variant::Single(p) => format!("single, {}", plugin(p)),
        }
    }
}

/// One run of one variant.
#[derive(Debug, Clone, Serialize)]
struct Run {
    events_per_second: f64,
    cpu_seconds_per_100k: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    peak_rss_mib: f64,
    wall_seconds: f64,
    requests: usize,
    delivered: usize,
    unique: usize,
}

/// A variant's medians over its rounds.
#[derive(Debug, Serialize)]
struct Row {
    variant: String,
    #[serde(flatten)]
    median: Run,
    ratio_to_reference: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    events: usize,
    batch: usize,
    rounds: usize,
    cores: usize,
    load_average: String,
    variants: Vec<Row>,
}

/// Runs the end-to-end benchmark and prints a table, or JSON with `--json`.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the ferry binary")?;
    let audit_log = audit_log(args.events.max(1))?;
    let events = audit_log.len();
    let options = StandInOptions { events: audit_log, sessions: BTreeMap::new(), export_api: false, ..StandInOptions::default() };
    let teleport = TeleportStandIn::start(options).await.context("cannot start the stand-in Teleport Auth Service")?;
    let variants = [
        Variant::Reference,
        Variant::Original(Plugin::Wasm),
        Variant::Original(Plugin::None),
        Variant::Native(Plugin::Wasm),
        Variant::Native(Plugin::None),
        Variant::Single(Plugin::Wasm),
    ];
    let rounds = args.rounds.max(1);
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, variant) in variants.iter().enumerate() {
            let run = run_once(&exe, &teleport, *variant, events).await.with_context(|| format!("bench variant `{}`", variant.label()))?;
            eprintln!("round {}: {:<36} {:>10.0} events/s", round + 1, variant.label(), run.events_per_second);
            runs[i].push(run);
        }
    }
    let medians: Vec<Run> = runs.iter().map(|r| median_run(r)).collect();
    let reference = medians[0].events_per_second;
    let report = Report {
        events,
        batch: BATCH,
        rounds,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average: std::fs::read_to_string("/proc/loadavg").map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
        variants: variants
            .iter()
            .zip(medians)
            .map(|(variant, median)| Row { variant: variant.label(), ratio_to_reference: if reference > 0.0 { median.events_per_second / reference } else { 0.0 }, median })
            .collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &Report) {
    println!(
        "ferry bench --teleport: {} events, batch {}, {} in flight, {} rounds (median), {} cores, load {}",
        report.events, report.batch, IN_FLIGHT, report.rounds, report.cores, report.load_average
    );
    println!("| variant | events/s | × reference | CPU s / 100k | request p50 ms | p99 ms | peak RSS MiB | requests |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &report.variants {
        let m = &row.median;
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
            row.variant, m.events_per_second, row.ratio_to_reference, m.cpu_seconds_per_100k, m.latency_p50_ms, m.latency_p99_ms, m.peak_rss_mib, m.requests
        );
    }
}

/// The demo's audit events repeated with unique ids, up to `count`, without
/// `session.upload`: its recording would be streamed again for every copy,
/// and the reference client does not stream recordings.
fn audit_log(count: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    let per_copy = crate::demo::SAMPLE_EVENTS.lines().filter(|line| !line.contains("\"session.upload\"")).count().max(1);
    let text = crate::demo::sample_events(count.div_ceil(per_copy));
    let text = std::str::from_utf8(&text).context("the sample events are UTF-8")?;
    text.lines()
        .filter(|line| !line.contains("\"session.upload\""))
        .take(count)
        .map(|line| serde_json::from_str(line).context("a sample event is not JSON"))
        .collect()
}

async fn run_once(exe: &Path, teleport: &TeleportStandIn, variant: Variant, events: usize) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let dir = dir.path();
    let logstash = LogstashStandIn::start(None).await.context("cannot start the stand-in Logstash")?;
    let pki = logstash.pki.write(&dir.join("pki")).context("cannot write the Logstash certificates")?;
    teleport.write_identity(&dir.join("identity")).context("cannot write the identity file")?;
    let url = logstash.url();
    let mut command = std::process::Command::new(exe);
    match variant {
        Variant::Reference => {
            let settings = Settings {
                addr: teleport.address(),
                identity: dir.join("identity"),
                url: format!("{url}test.log"),
                ca: pki.ca.clone(),
                cert: pki.client_cert.clone(),
                key: pki.client_key.clone(),
                batch: BATCH,
                in_flight: IN_FLIGHT,
                start: crate::source::teleport::config::parse_start_time(START_TIME).map_err(anyhow::Error::msg)?,
                window: WINDOW,
            };
            let path = dir.join("reference.json");
            std::fs::write(&path, serde_json::to_vec(&settings)?).context("cannot write the reference client's settings")?;
            command.arg("bench").arg("--reference-client").arg(&path);
        }
        Variant::Original(plugin) | Variant::Native(plugin) | Variant::Single(plugin) => {
            let plugins = dir.join("plugins");
            std::fs::create_dir_all(&plugins).context("cannot create the plugins folder")?;
            if plugin == Plugin::Wasm {
                std::fs::write(plugins.join("10-redact.wasm"), crate::demo::REDACT_PLUGIN).context("cannot write the redact plugin")?;
                std::fs::write(plugins.join("10-redact.toml"), crate::demo::DEMO_REDACT_CONFIG).context("cannot write the plugin settings")?;
            }
            let tls = format!("ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n", pki.ca.display(), pki.client_cert.display(), pki.client_key.display());
            let common = "storage = \"storage\"\nplugins-dir = \"plugins\"\n";
            let text = match variant {
                Variant::Native(_) => format!(
                    "{common}\n[pipeline]\nbatch-size = {BATCH}\n\n[source.teleport]\naddr = \"{addr}\"\nidentity = \"identity\"\nstart-time = \"{START_TIME}\"\nwindow-size = \"8760h\"\ntimeout = \"100ms\"\nbatch = {BATCH}\nengine = \"legacy\"\nexit-on-last-event = true\n\n\
                     [sinks.default]\ntype = \"logstash\"\nurl = \"{url}test.log\"\nformat = \"json-array\"\n{tls}\n[sinks.sessions]\ntype = \"logstash\"\nurl = \"{url}session\"\n{tls}",
                    addr = teleport.address()
                ),
                _ => format!(
                    "{common}batch = {BATCH}\nstart-time = \"{START_TIME}\"\nwindow-size = \"8760h\"\ntimeout = \"100ms\"\nexit-on-last-event = true\n\n[teleport]\naddr = \"{addr}\"\nidentity = \"identity\"\n\n\
                     [forward.fluentd]\nurl = \"{url}test.log\"\nsession-url = \"{url}session\"\n{tls}{single}",
                    addr = teleport.address(),
                    single = if matches!(variant, Variant::Single(_)) { "format = \"single\"\n" } else { "" }
                ),
            };
            let path = dir.join("ferry.toml");
            std::fs::write(&path, text).context("cannot write the bench config")?;
            command.arg("start").arg("--config").arg(&path);
        }
    }
    let log_path = dir.join("child.log");
    let log = std::fs::File::create(&log_path).context("cannot create the child's log")?;
    command.current_dir(dir).stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
    let started = Instant::now();
    let child = command.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
    let limit = Duration::from_secs(120) + Duration::from_millis(events as u64 * 2);
    let usage = wait_with_usage(child, limit).await?;
    let wall = started.elapsed();
    let log_tail = || std::fs::read_to_string(&log_path).map(|text| text.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")).unwrap_or_default();
    anyhow::ensure!(usage.success, "the child process failed; its last lines:\n{}", log_tail());

    let requests: Vec<_> = logstash.requests().into_iter().filter(|request| request.path == "/test.log").collect();
    let delivered: usize = requests.iter().map(|request| request.events).sum();
    let unique = logstash
        .events()
        .iter()
        // Copies of a sample without `uid` differ by the `copy` field the
        // repetition adds, so the whole event tells them apart.
        .map(|event| event.get("uid").and_then(serde_json::Value::as_str).map_or_else(|| event.to_string(), str::to_owned))
        .collect::<HashSet<String>>()
        .len();
    anyhow::ensure!(delivered == events && unique == events, "the Logstash stand-in recorded {delivered} events ({unique} distinct) of {events}; the child's last lines:\n{}", log_tail());
    let first = requests.iter().map(|request| request.arrived).min().context("no request reached the Logstash stand-in")?;
    let last = requests.iter().map(|request| request.arrived + request.took).max().unwrap_or(first);
    let span = (last - first).as_secs_f64().max(1e-6);
    let mut took: Vec<f64> = requests.iter().map(|request| request.took.as_secs_f64() * 1000.0).collect();
    took.sort_by(f64::total_cmp);
    Ok(Run {
        events_per_second: events as f64 / span,
        cpu_seconds_per_100k: usage.cpu.as_secs_f64() * 100_000.0 / events as f64,
        latency_p50_ms: percentile(&took, 0.50),
        latency_p99_ms: percentile(&took, 0.99),
        peak_rss_mib: usage.max_rss_kib as f64 / 1024.0,
        wall_seconds: wall.as_secs_f64(),
        requests: requests.len(),
        delivered,
        unique,
    })
}

/// A finished child: did it succeed, its own CPU time, its peak RSS.
struct Usage {
    success: bool,
    cpu: Duration,
    max_rss_kib: i64,
}

/// Waits for `child` with `wait4`, which reports that child's own resource
/// use; kills it after `limit`.
async fn wait_with_usage(mut child: std::process::Child, limit: Duration) -> anyhow::Result<Usage> {
    let pid = libc::pid_t::try_from(child.id()).context("a process id out of range")?;
    let waiting = tokio::task::spawn_blocking(move || wait4(pid));
    match tokio::time::timeout(limit, waiting).await {
        Ok(joined) => Ok(joined.context("the waiting thread panicked")??),
        Err(_) => {
            let _ = child.kill();
            anyhow::bail!("the child process ran longer than {limit:?} and was killed")
        }
    }
}

fn wait4(pid: libc::pid_t) -> std::io::Result<Usage> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain data, valid when zeroed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // `ru_maxrss` of a child counts the parent's size at the fork (the
    // kernel carries it over `exec`), so the peak is read from the child's
    // own `VmHWM` while it runs; it only grows, and a poll every 20 ms
    // misses at most that last stretch.
    let mut peak_kib = 0;
    loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        // SAFETY: both pointers are to live locals of the right types.
        let waited = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if waited == pid {
            break;
        }
        if waited < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64);
    Ok(Usage {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        max_rss_kib: peak_kib,
    })
}

/// The process's peak resident set (`VmHWM` in `/proc/PID/status`), KiB.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// The median of each figure on its own.
fn median_run(runs: &[Run]) -> Run {
    let pick = |f: fn(&Run) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        super::median(&mut values)
    };
    let last = &runs[runs.len() - 1];
    Run {
        events_per_second: pick(|r| r.events_per_second),
        cpu_seconds_per_100k: pick(|r| r.cpu_seconds_per_100k),
        latency_p50_ms: pick(|r| r.latency_p50_ms),
        latency_p99_ms: pick(|r| r.latency_p99_ms),
        peak_rss_mib: pick(|r| r.peak_rss_mib),
        wall_seconds: pick(|r| r.wall_seconds),
        requests: last.requests,
        delivered: runs.iter().map(|r| r.delivered).min().unwrap_or(0),
        unique: runs.iter().map(|r| r.unique).min().unwrap_or(0),
    }
}
