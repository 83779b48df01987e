//! `ferry-failover`: two ferry instances sharing their state in a real
//! PostgreSQL, the active one killed with SIGKILL every 5–15 s while the
//! audit log keeps growing. Not a test (it runs for minutes): run it by hand
//! with `bench/failover.sh` and read its report.
//!
//! A Teleport stand-in's audit log grows as the clock passes each event's
//! time (legacy engine), with a session recording announced every 20 s; both
//! instances read it into a Logstash stand-in. Each killed instance is
//! started again at once, as `Restart=always` would, and stands by. Each
//! takeover is timed from the kill to the lease's next epoch in the
//! database. At the end every event must have arrived; duplicates are
//! compared with what the batches in flight at the kills can explain.

mod live;

use anyhow::{Context, bail};
use clap::Parser;
use ferry_standin::postgres::Postgres;
use live::{Counts, Live, RECORDING_EVENTS, RECORDING_EVERY, signal, spawn_with_env};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// `ferry-failover`: kill the active one of two ferry instances again and again.
#[derive(Debug, clap::Parser)]
#[command(name = "ferry-failover", about)]
struct Args {
    /// How long the kills go on, in minutes.
    #[arg(long, default_value_t = 3)]
    minutes: u64,
    /// Audit events per second.
    #[arg(long, default_value_t = 40)]
    rate: u64,
    /// The lease (`[leadership] lease`).
    #[arg(long, default_value = "3s")]
    lease: String,
    /// The ferry binary.
    #[arg(long, default_value = "target/release/ferry")]
    ferry: PathBuf,
    /// Where the configs, logs and the report go (kept).
    #[arg(long, default_value = "target/failover")]
    dir: PathBuf,
}

const BATCH: usize = 100;
const IN_FLIGHT: usize = 4;
const DRAIN: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(failover(args))
}

/// One ferry instance of the two.
struct Instance {
    name: &'static str,
    child: Child,
    starts: usize,
}

async fn failover(args: Args) -> anyhow::Result<()> {
    let ferry = std::fs::canonicalize(&args.ferry).with_context(|| format!("no ferry binary at {}", args.ferry.display()))?;
    let run = Duration::from_secs(args.minutes * 60);
    let live = Live::set_up(&args.dir, run, args.rate).await?;
    let (dir, start, audit_total) = (live.dir.clone(), live.start, live.audit_total);
    let (teleport, logstash) = (&live.teleport, &live.logstash);
    let sink = |name: &str, path: &str| live.sink(name, path, "2s");
    let database = Postgres::start();
    let url = database.create_database("failover");
    let password = [("FERRY_STORAGE_PASSWORD", database.password().to_owned())];
    for name in ["a", "b"] {
        let config = format!(
            "storage = \"{url}\"\nstart-time = \"{}\"\nwindow-size = \"1h\"\ntimeout = \"1s\"\nbatch = 100\nconcurrency = 3\nskip-session-types = []\n\n[teleport]\naddr = \"{}\"\nidentity = \"identity\"\n\n[leadership]\ninstance = \"{name}\"\nlease = \"{}\"\n\n[pipeline]\nbatch-size = {BATCH}\nbatches-in-flight = {IN_FLIGHT}\nlinger = \"200ms\"\n\n{}\n{}\nper-session = true\n",
            humantime::format_rfc3339_seconds(start - Duration::from_secs(60)),
            teleport.address(),
            args.lease,
            sink("default", "audit"),
            sink("sessions", "session"),
        );
        std::fs::write(dir.join(format!("{name}.toml")), config)?;
    }
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        instances.push(Instance { name, child: spawn_with_env(&ferry, &dir, name, &format!("{name}-1"), &password)?, starts: 1 });
        wait_for_epoch(&database, 1, Duration::from_secs(120)).await.context("the first instance to take the lease")?;
    }

    let began = Instant::now();
    let mut takeovers = Vec::new();
    let mut seed = 0x5eed_u64;
    let mut epoch = 1;
    while began.elapsed() < run {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(5000 + (seed >> 33) % 10_000)).await;
        let holder = database.sql("failover", "SELECT holder FROM leases").trim().to_owned();
        let Some(active) = instances.iter_mut().find(|instance| instance.name == holder) else {
            bail!("no instance named {holder:?} holds the lease")
        };
        signal(&active.child, libc::SIGKILL);
        let killed = Instant::now();
        let _ = active.child.wait();
        active.starts += 1;
        let log = format!("{}-{}", active.name, active.starts);
        active.child = spawn_with_env(&ferry, &dir, active.name, &log, &password)?;
        epoch += 1;
        wait_for_epoch(&database, epoch, Duration::from_secs(120)).await?;
        takeovers.push(killed.elapsed());
        println!("kill {}: {} taken over after {:.2}s", takeovers.len(), holder, killed.elapsed().as_secs_f64());
    }

    let recording_total = (run.as_secs() / RECORDING_EVERY.as_secs()) as usize * RECORDING_EVENTS;
    let drained = Instant::now();
    let counts = loop {
        let counts = Counts::of(&logstash.events());
        if (counts.distinct("soak-a-") >= audit_total && counts.distinct("soak-r-") >= recording_total) || drained.elapsed() > DRAIN {
            break counts;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    for instance in &mut instances {
        signal(&instance.child, libc::SIGTERM);
        let _ = instance.child.wait();
    }
    let report = report(&args, &takeovers, &counts, audit_total, recording_total, drained.elapsed());
    std::fs::write(dir.join("report.md"), &report)?;
    println!("{report}\nreport: {}", dir.join("report.md").display());
    Ok(())
}

/// Waits until the lease's epoch is at least `epoch`.
async fn wait_for_epoch(database: &Postgres, epoch: i64, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < within {
        let now: i64 = database.try_sql("failover", "SELECT epoch FROM leases").ok().and_then(|text| text.trim().parse().ok()).unwrap_or(0);
        if now >= epoch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("no instance took the lease (epoch {epoch}) within {within:?}")
}

fn report(args: &Args, takeovers: &[Duration], counts: &Counts, audit: usize, recordings: usize, drain: Duration) -> String {
    let mut sorted = takeovers.to_vec();
    sorted.sort();
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let max = sorted.last().copied().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "# ferry-failover: {} min, {} audit events/s, lease {}", args.minutes, args.rate, args.lease);
    let _ = writeln!(out, "\n{} takeovers after SIGKILL: p50 {:.2}s, max {:.2}s", takeovers.len(), p50.as_secs_f64(), max.as_secs_f64());
    let mut duplicates = 0;
    for (what, prefix, total) in [("audit", "soak-a-", audit), ("recordings", "soak-r-", recordings)] {
        let distinct = counts.distinct(prefix);
        duplicates += counts.total(prefix) - distinct;
        let _ = writeln!(
            out,
            "{what}: {total} in, {distinct} distinct out, {} lost, {} duplicates",
            total.saturating_sub(distinct),
            counts.total(prefix) - distinct
        );
    }
    let bound = takeovers.len() * BATCH * IN_FLIGHT;
    let _ = writeln!(
        out,
        "duplicates {duplicates} against at most {bound} in flight at the kills ({} × {BATCH} × {IN_FLIGHT}); drained {:.0}s after the last kill",
        takeovers.len(),
        drain.as_secs_f64()
    );
    out
}
