//! `ferry-share`: the same export read by one ferry instance (`[leadership]
//! slots = 1`) and then by several sharing it (`slots = N`, N instances, a
//! fresh database), each until every event is at the sink. Not a test (its
//! numbers depend on the machine and its load): run it by hand with
//! `bench/share.sh` and read its report.
//!
//! Each run has its own Teleport stand-in (the bulk export API, every chunk
//! stream answered after `--delay-ms`, as a backend that fetches the chunk
//! first), its own Logstash stand-in and its own PostgreSQL database; every
//! instance its own identity (user `ferry-NAME`), so the stand-in's record
//! of the export requests tells how many chunks each read. The report gives
//! each run's events per second (from starting the instances to the last
//! distinct event at the sink), the ratio of the shared run to the single
//! one, the chunks each instance read, the duplicates, and the machine.

// Its processes, counts and sink tables; not its growing log.
#[allow(dead_code)]
mod live;

use anyhow::{Context, bail};
use clap::Parser;
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::postgres::Postgres;
use ferry_standin::teleport::{IdentitySpec, StandInOptions, TeleportStandIn};
use live::{Counts, logstash_sink, long_validity, signal, spawn_ferry};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `ferry-share`: one instance against several sharing the export.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ferry-share", about)]
struct Args {
    /// Dates of audit events (the days before today).
    #[arg(long, default_value_t = 3)]
    dates: u64,
    /// Export chunks per date.
    #[arg(long, default_value_t = 30)]
    chunks: usize,
    /// Events per chunk.
    #[arg(long, default_value_t = 200)]
    events_per_chunk: usize,
    /// How long each chunk stream waits before it is answered, in ms.
    #[arg(long, default_value_t = 300)]
    delay_ms: u64,
    /// Slots (and instances) of the shared run.
    #[arg(long, default_value_t = 3)]
    slots: usize,
    /// Chunks each instance reads at once (`concurrency`).
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// The lease (`[leadership] lease`).
    #[arg(long, default_value = "2s")]
    lease: String,
    /// The ferry binary; by default ferry's command line built into this one.
    #[arg(long)]
    ferry: Option<PathBuf>,
    /// Where the configs, logs and the report go (emptied first, kept).
    #[arg(long, default_value = "target/share")]
    dir: PathBuf,
}

const BATCH: usize = 500;
const IN_FLIGHT: usize = 4;
/// The longest a run may take to deliver every event.
const DRAIN: Duration = Duration::from_secs(600);
const UID_PREFIX: &str = "share-";
const SECONDS_PER_DAY: u64 = 86_400;

fn main() -> ExitCode {
    // `ferry-share ferry ARGS…`: ferry's command line, which the instances run
    // unless `--ferry` names a binary.
    let mut argv = std::env::args_os().skip(1).peekable();
    if argv.peek().is_some_and(|first| first == "ferry") {
        return ferry::cli::main(argv);
    }
    let args = Args::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(share(args)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferry-share: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// One run: how many slots and instances, and what it measured.
#[derive(Debug, Serialize)]
struct RunReport {
    slots: usize,
    instances: usize,
    seconds: f64,
    events_per_second: f64,
    delivered: usize,
    distinct: usize,
    duplicates: usize,
    /// Distinct chunks each instance asked for, by instance name.
    chunks_per_instance: BTreeMap<String, usize>,
    /// Chunk requests, resumptions included.
    chunk_requests: usize,
    /// The load average when the run started.
    load_before: String,
}

#[derive(Debug, Serialize)]
struct Report {
    dates: u64,
    chunks_per_date: usize,
    events_per_chunk: usize,
    events: usize,
    delay_ms: u64,
    concurrency: usize,
    lease: String,
    cores: usize,
    runs: Vec<RunReport>,
    /// The shared run's events per second over the single one's.
    ratio: f64,
    load_after: String,
}

async fn share(args: Args) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let ferry = Ferry::find(args.ferry.as_deref())?;
    let database = Postgres::start();
    let mut runs = Vec::new();
    for (label, slots) in [("single", 1), ("shared", args.slots)] {
        let run = run(&args, &ferry, &database, (&dir.join(label), label), slots).await?;
        println!(
            "slots = {slots}: {:.0} events/s in {:.2}s, chunks per instance {:?}",
            run.events_per_second, run.seconds, run.chunks_per_instance
        );
        runs.push(run);
    }
    let ratio = runs[1].events_per_second / runs[0].events_per_second.max(f64::MIN_POSITIVE);
    let report = Report {
        dates: args.dates,
        chunks_per_date: args.chunks,
        events_per_chunk: args.events_per_chunk,
        events: total_events(&args),
        delay_ms: args.delay_ms,
        concurrency: args.concurrency,
        lease: args.lease.clone(),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        runs,
        ratio,
        load_after: load_average(),
    };
    let text = markdown(&report);
    std::fs::write(dir.join("report.md"), &text)?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    println!("{text}\nreport: {}", dir.join("report.md").display());
    Ok(())
}

/// How to run ferry: a binary, or this one's `ferry` subcommand.
struct Ferry {
    program: PathBuf,
    built_in: bool,
}

impl Ferry {
    fn find(binary: Option<&Path>) -> anyhow::Result<Ferry> {
        Ok(match binary {
            Some(path) => Ferry {
                program: std::fs::canonicalize(path).with_context(|| format!("no ferry binary at {}", path.display()))?,
                built_in: false,
            },
            None => Ferry { program: std::env::current_exe().context("cannot find this program")?, built_in: true },
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        if self.built_in {
            command.arg("ferry");
        }
        command
    }
}

fn total_events(args: &Args) -> usize {
    usize::try_from(args.dates).unwrap_or(usize::MAX).saturating_mul(args.chunks).saturating_mul(args.events_per_chunk)
}

/// Today's UTC day number.
fn today() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / SECONDS_PER_DAY
}

/// `chunks × events_per_chunk` logins on each of the `dates` days before
/// today, spread over the day, with ids `share-<n>`.
fn audit_log(args: &Args) -> Vec<Value> {
    let per_date = args.chunks * args.events_per_chunk;
    let first = today().saturating_sub(args.dates);
    (0..total_events(args))
        .map(|n| {
            let day = first + (n / per_date) as u64;
            let millis = (n % per_date) as u64 * SECONDS_PER_DAY * 1000 / per_date.max(1) as u64;
            let time = UNIX_EPOCH + Duration::from_secs(day * SECONDS_PER_DAY) + Duration::from_millis(millis);
            let time = humantime::format_rfc3339_millis(time).to_string();
            json!({ "event": "user.login", "code": "T1000I", "success": true, "user": "alice", "time": time, "uid": format!("{UID_PREFIX}{n}") })
        })
        .collect()
}

/// The instances of a run with `slots` slots: `i0`, `i1`, ….
fn names(slots: usize) -> Vec<String> {
    (0..slots).map(|n| format!("i{n}")).collect()
}

/// Exports the whole log with `slots` instances sharing it, in `dir`, on
/// the database `share_LABEL`.
async fn run(args: &Args, ferry: &Ferry, database: &Postgres, (dir, label): (&Path, &str), slots: usize) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(dir)?;
    let total = total_events(args);
    let options = StandInOptions {
        events: audit_log(args),
        sessions: BTreeMap::new(),
        chunk_size: args.events_per_chunk,
        export_stream_delay: Duration::from_millis(args.delay_ms),
        ..StandInOptions::default()
    };
    let teleport = TeleportStandIn::start(options).await.context("cannot start the Teleport stand-in")?;
    let logstash = LogstashStandIn::start(None).await.context("cannot start the Logstash stand-in")?;
    let pki = logstash.pki.write(&dir.join("pki"))?;
    let url = database.create_database(&format!("share_{label}"));
    let start_time =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(today().saturating_sub(args.dates) * SECONDS_PER_DAY));
    let names = names(slots);
    for name in &names {
        let spec = IdentitySpec { user: format!("ferry-{name}"), validity: long_validity(), ..IdentitySpec::default() };
        teleport.write_identity_with(&dir.join(format!("identity-{name}")), &spec)?;
        let config = format!(
            "storage = \"{url}\"\nstart-time = \"{start_time}\"\nconcurrency = {}\ntimeout = \"1s\"\n\n[teleport]\naddr = \"{}\"\nidentity = \"identity-{name}\"\nengine = \"export\"\n\n[leadership]\ninstance = \"{name}\"\nlease = \"{}\"\nslots = {slots}\n\n[pipeline]\nbatch-size = {BATCH}\nbatches-in-flight = {IN_FLIGHT}\nlinger = \"200ms\"\n\n{}",
            args.concurrency,
            teleport.address(),
            args.lease,
            logstash_sink(&logstash, &pki, "default", "share", "2s"),
        );
        std::fs::write(dir.join(format!("{name}.toml")), config)?;
    }

    let load_before = load_average();
    let password = [("FERRY_STORAGE_PASSWORD", database.password().to_owned())];
    let began = Instant::now();
    let mut children = Vec::new();
    for name in &names {
        children.push((dir.join(format!("{name}.log")), spawn_ferry(ferry.command(), dir, name, name, &password)?));
    }
    let delivered = wait_delivered(&logstash, total, &mut children).await;
    let seconds = began.elapsed().as_secs_f64();
    for (_, child) in &mut children {
        signal(child, libc::SIGTERM);
        let _ = child.wait();
    }
    let counts = delivered?;
    let distinct = counts.distinct(UID_PREFIX);
    let mut chunks: BTreeMap<String, BTreeSet<(String, String)>> = names.iter().map(|name| (name.clone(), BTreeSet::new())).collect();
    let requests = teleport.export_requests();
    for request in &requests {
        let caller = request.peer.as_ref().map(|peer| peer.common_name.trim_start_matches("ferry-").to_owned()).unwrap_or_default();
        chunks.entry(caller).or_default().insert((request.date.clone(), request.chunk.clone()));
    }
    Ok(RunReport {
        slots,
        instances: names.len(),
        seconds,
        events_per_second: distinct as f64 / seconds.max(f64::MIN_POSITIVE),
        delivered: counts.total(UID_PREFIX),
        distinct,
        duplicates: counts.total(UID_PREFIX) - distinct,
        chunks_per_instance: chunks.into_iter().map(|(name, chunks)| (name, chunks.len())).collect(),
        chunk_requests: requests.len(),
        load_before,
    })
}

/// Waits until `total` distinct events are at the sink; fails when an
/// instance (its log, its process) exits first or after [`DRAIN`].
async fn wait_delivered(logstash: &LogstashStandIn, total: usize, children: &mut [(PathBuf, Child)]) -> anyhow::Result<Counts> {
    let began = Instant::now();
    loop {
        // Counting events is cheap; telling the distinct ones apart is not,
        // so only once there are enough.
        if logstash.event_count() >= total {
            let counts = Counts::of(&logstash.events());
            if counts.distinct(UID_PREFIX) >= total {
                return Ok(counts);
            }
        }
        for (log, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("an instance exited ({status}) before every event arrived; its log: {}", log.display());
            }
        }
        if began.elapsed() > DRAIN {
            bail!("{} of {total} events arrived within {DRAIN:?}", logstash.event_count());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# ferry-share: {} dates × {} chunks × {} events ({} events), each chunk stream answered after {} ms, concurrency {}, lease {}",
        report.dates, report.chunks_per_date, report.events_per_chunk, report.events, report.delay_ms, report.concurrency, report.lease
    );
    let _ = writeln!(out, "\nmachine: {} cores; load average after: {}\n", report.cores, report.load_after);
    let _ = writeln!(
        out,
        "| run | instances | seconds | events/s | delivered | duplicates | chunks per instance | chunk requests | load before |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for run in &report.runs {
        let chunks: Vec<String> = run.chunks_per_instance.iter().map(|(name, count)| format!("{name} {count}")).collect();
        let _ = writeln!(
            out,
            "| slots = {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} |",
            run.slots,
            run.instances,
            run.seconds,
            run.events_per_second,
            run.delivered,
            run.duplicates,
            chunks.join(", "),
            run.chunk_requests,
            run.load_before
        );
    }
    let _ = writeln!(out, "\nratio (slots = {} over slots = 1): {:.2}", report.runs.last().map_or(0, |run| run.slots), report.ratio);
    out
}
