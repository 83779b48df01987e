//! `ferry-bench --teleport`: the real job, measured side by side in one run.
//!
//! The Teleport stand-in (gRPC over mutual TLS, serving the demo's audit
//! events repeated with unique ids) and the Logstash stand-in (mutual TLS,
//! counting events) each run in a process of their own ([`super::standin`]),
//! and ferry runs as a child process (`ferry start` with a generated config,
//! `exit-on-last-event`), so that its CPU time and peak RSS, taken from
//! `wait4`, are its own, and no stand-in shares a runtime with another. The
//! reference client ([`super::reference`]) runs the same way. Rounds are
//! interleaved and the median of each figure is reported, as the file mode
//! does. `--examples` adds the Python, JavaScript, Go and C example plugins
//! (`tag`, `reshape`, `team-tags`, `drop-types`; the last two built here by
//! `ferry plugin build`, see [`super::examples`]) as variants with the
//! original's config, and a table per language: the job's figures beside
//! each component's size and first-start compile time.
//!
//! What is measured, per run:
//! - events/s: events recorded by the Logstash stand-in over the span from
//!   the first request arriving to the last one recorded, so that process
//!   start-up and plugin compilation are left out (each run has fresh
//!   storage, but all share one compile cache, as restarts of one ferry
//!   do, so a component is compiled in the first round only);
//! - CPU seconds per 100k events: the child's user + system time, start-up
//!   included; and per request, for `single`, whose cost is per request;
//! - request latency p50/p99: per request, from its head arriving at the
//!   Logstash stand-in to its events being recorded (the receiver's side of
//!   a batch: body transfer, decoding, counting);
//! - peak RSS: the child's `VmHWM`, polled while it runs (its
//!   `ru_maxrss` would count this process's size at the fork).
//!
//! With `--backlog`, the memory a stalled sink costs instead: ferry with the
//! original's config and redact reads a log of `--events` (a million, say)
//! while the Logstash stand-in answers every request `503`, and in a second
//! run answers none, for `--backlog-seconds`; then ferry is stopped with
//! SIGTERM and its peak RSS, how far it read ahead of the sink, and how long
//! it took to stop are reported.

use super::examples::{self, Examples};
use super::reference::Settings;
use super::standin::{LogstashReady, Serve, StandIn, Tally, TeleportReady};
use crate::BenchArgs;
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Events per page and per request, as the original's config has it.
const BATCH: usize = 500;
/// Requests in flight: ferry's default `batches-in-flight`.
const IN_FLIGHT: usize = 4;
/// Where the audit log search starts, and how wide one search is.
const START_TIME: &str = "2019-01-01T00:00:00Z";
const WINDOW: Duration = Duration::from_secs(8760 * 3600);
/// The path events are POSTed to; sessions go elsewhere.
const EVENTS_PATH: &str = "/test.log";

#[derive(Clone, Copy, PartialEq)]
enum Plugin {
    None,
    /// `plugins/redact` as WebAssembly.
    Wasm,
    /// The same redact code compiled into ferry (`ferry-bench --native-redact`).
    Compiled,
    /// `plugins/python/tag`, from `--examples`.
    Python,
    /// `plugins/js/reshape`, from `--examples`.
    JavaScript,
    /// `plugins/go/team-tags`, built by `ferry plugin build`.
    Go,
    /// `plugins/c/drop-types`, built by `ferry plugin build`.
    C,
}

/// A WebAssembly plugin of a run: its name, component and settings (`NAME.toml`).
struct PluginFiles {
    name: &'static str,
    wasm: Vec<u8>,
    settings: String,
}

impl Plugin {
    /// The plugin's component and its settings (`NAME.toml` beside it),
    /// for the plugins folder of a run; `None` for no WebAssembly plugin.
    fn files(self, examples: Option<&Examples>) -> anyhow::Result<Option<PluginFiles>> {
        let examples = || examples.context("the Python, JavaScript, Go and C variants need --examples");
        let files = |name: &'static str, wasm: Vec<u8>, settings: &str| Some(PluginFiles { name, wasm, settings: settings.to_owned() });
        Ok(match self {
            Plugin::None | Plugin::Compiled => None,
            Plugin::Wasm => files("redact", ferry::cli::demo::REDACT_PLUGIN.to_vec(), ferry::cli::demo::DEMO_REDACT_CONFIG),
            // Patterns that match no sample event, so that every event
            // still arrives, yet each event's type is read and tried.
            Plugin::Python => files(
                "tag",
                examples()?.built("tag")?,
                "[config]\ntags = { pipeline = \"ferry\", env = \"bench\" }\ndrop = [\"lint.*\", \"*.bench_skipped\"]\n",
            ),
            Plugin::JavaScript => files(
                "reshape",
                examples()?.built("reshape")?,
                "[config]\nrename = { \"addr.remote\" = \"remote_addr\" }\nlowercase = [\"user\"]\nroutes = [{ types = \"session.*\", sinks = [\"default\"] }]\n",
            ),
            // The example's own settings: every event gets a team (its
            // user's, its role's, else the default) and is kept.
            Plugin::Go => {
                let wasm = &examples()?.go;
                let settings = std::fs::read_to_string(wasm.with_extension("toml")).context("cannot read team-tags.toml")?;
                files("team-tags", std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?, &settings)
            }
            Plugin::C => {
                let wasm = &examples()?.c;
                files(
                    "drop-types",
                    std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?,
                    "max-memory = \"32MiB\"\n\n[config]\ntypes = [\"session.bench_skipped\", \"lint.*\"]\n",
                )
            }
        })
    }

    /// The language the plugin is written in, for the per-language table.
    fn language(self) -> Option<&'static str> {
        match self {
            Plugin::Wasm => Some("Rust"),
            Plugin::Python => Some("Python"),
            Plugin::JavaScript => Some("JavaScript"),
            Plugin::Go => Some("Go"),
            Plugin::C => Some("C"),
            Plugin::None | Plugin::Compiled => None,
        }
    }
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
            Plugin::Compiled => "redact (compiled in)",
            Plugin::Python => "Python tag",
            Plugin::JavaScript => "JavaScript reshape",
            Plugin::Go => "Go team-tags",
            Plugin::C => "C drop-types",
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
    /// The child's CPU time per request made: what `single` costs.
    cpu_us_per_request: f64,
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
    /// Which ferry ran: `--ferry`'s binary, or the one built in.
    ferry: String,
    variants: Vec<Row>,
    /// One row per plugin language with the original's config (with
    /// `--examples`, all five).
    languages: Vec<LanguageRow>,
    targets: Targets,
}

/// The targets for the Go and C plugins, from the per-language rows.
#[derive(Debug, Default, Serialize)]
struct Targets {
    /// The C plugin's events/s over the Rust redact plugin's (target ≥ 0.9).
    c_to_rust: Option<f64>,
    /// The Go plugin's events/s (target ≥ 50,000).
    go_events_per_second: Option<f64>,
}

impl Targets {
    fn of(languages: &[LanguageRow]) -> Targets {
        let rate = |language: &str| languages.iter().find(|row| row.language == language).map(|row| row.events_per_second);
        Targets {
            c_to_rust: rate("C").zip(rate("Rust")).filter(|(_, rust)| *rust > 0.0).map(|(c, rust)| c / rust),
            go_events_per_second: rate("Go"),
        }
    }
}

/// One language's plugin in the whole job (original config), and what it
/// costs before its first event.
#[derive(Debug, Serialize)]
struct LanguageRow {
    language: &'static str,
    variant: String,
    events_per_second: f64,
    cpu_seconds_per_100k: f64,
    peak_rss_mib: f64,
    component_kib: f64,
    /// Loading the component with an empty compile cache, as at a first start.
    first_start_compile_ms: f64,
}

/// The stand-ins of one bench, each in its own process, and the folder
/// their files are in.
struct Peers {
    /// The compile cache of every run's storage folder.
    plugin_cache: PathBuf,
    teleport: StandIn,
    teleport_ready: TeleportReady,
    identity: PathBuf,
    logstash: StandIn,
    logstash_ready: LogstashReady,
    _dir: tempfile::TempDir,
}

impl Peers {
    fn start(exe: &Path, events: usize, plugin_cache: Option<&Path>) -> anyhow::Result<Peers> {
        let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
        let plugin_cache = plugin_cache.map_or_else(|| dir.path().join("plugin-cache"), Path::to_owned);
        std::fs::create_dir_all(&plugin_cache).with_context(|| format!("cannot create the compile cache {}", plugin_cache.display()))?;
        let identity = dir.path().join("identity");
        let (teleport, teleport_ready) =
            StandIn::spawn(exe, "teleport", &Serve::Teleport { events, identity: identity.clone() }, dir.path())?;
        let (logstash, logstash_ready) = StandIn::spawn(exe, "logstash", &Serve::Logstash { pki: dir.path().join("pki") }, dir.path())?;
        Ok(Peers { plugin_cache, teleport, teleport_ready, identity, logstash, logstash_ready, _dir: dir })
    }

    /// The requests to the events path since the last tally.
    fn tally(&mut self) -> anyhow::Result<Tally> {
        self.logstash.ask(&format!("tally {EVENTS_PATH}"))
    }
}

/// The programs the bench starts: itself (stand-ins, the reference client,
/// ferry with redact compiled in) and the ferry under test.
struct Exes {
    bench: PathBuf,
    /// `--ferry`; else ferry's own command line built into this binary
    /// (`ferry-bench ferry …`, the same code as the `ferry` binary).
    ferry: Option<PathBuf>,
}

impl Exes {
    fn find(args: &BenchArgs) -> anyhow::Result<Exes> {
        let bench = std::env::current_exe().context("cannot find the ferry-bench binary")?;
        if let Some(ferry) = &args.ferry {
            anyhow::ensure!(ferry.is_file(), "--ferry {}: no such file", ferry.display());
        }
        Ok(Exes { bench, ferry: args.ferry.clone() })
    }

    /// A command that runs ferry with the arguments added to it.
    fn ferry(&self) -> std::process::Command {
        match &self.ferry {
            Some(path) => std::process::Command::new(path),
            None => {
                let mut command = std::process::Command::new(&self.bench);
                command.arg("ferry");
                command
            }
        }
    }

    fn describe(&self) -> String {
        self.ferry.as_ref().map_or_else(|| "ferry's command line built into ferry-bench".to_owned(), |path| path.display().to_string())
    }
}

/// Runs the end-to-end benchmark and prints a table, or JSON with `--json`.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let exe = Exes::find(args)?;
    let mut peers = Peers::start(&exe.bench, args.events.max(1), args.plugin_cache.as_deref())?;
    if args.backlog {
        return backlog(args, &exe, &mut peers).await;
    }
    let events = peers.teleport_ready.events;
    let mut variants = vec![
        Variant::Reference,
        Variant::Original(Plugin::Wasm),
        Variant::Original(Plugin::None),
        Variant::Native(Plugin::Wasm),
        Variant::Native(Plugin::Compiled),
        Variant::Native(Plugin::None),
        Variant::Single(Plugin::Wasm),
    ];
    // Kept until the runs are over: the Go and C examples are built into it.
    let work = tempfile::tempdir().context("cannot create a temporary folder")?;
    let examples = match &args.examples {
        Some(built) => {
            variants.extend([Plugin::Python, Plugin::JavaScript, Plugin::Go, Plugin::C].map(Variant::Original));
            Some(Examples::prepare(built, || exe.ferry(), work.path())?)
        }
        None => None,
    };
    let examples = examples.as_ref();
    // Loading a plugin runs its `init` on a runtime of ferry's own.
    let first_starts = tokio::task::block_in_place(|| first_starts(&variants, examples))?;
    let rounds = args.rounds.max(1);
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, variant) in variants.iter().enumerate() {
            let run = run_once(&exe, &mut peers, *variant, examples, events)
                .await
                .with_context(|| format!("bench variant `{}`", variant.label()))?;
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
        load_average: load_average(),
        ferry: exe.describe(),
        languages: Vec::new(),
        targets: Targets::default(),
        variants: variants
            .iter()
            .zip(medians)
            .map(|(variant, median)| Row {
                variant: variant.label(),
                ratio_to_reference: if reference > 0.0 { median.events_per_second / reference } else { 0.0 },
                median,
            })
            .collect(),
    };
    let languages = languages(&report.variants, &variants, first_starts);
    let report = Report { targets: Targets::of(&languages), languages, ..report };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Each WebAssembly plugin's size and first-start compile time, measured
/// once per plugin, in this process, before the rounds.
fn first_starts(variants: &[Variant], examples: Option<&Examples>) -> anyhow::Result<Vec<(Plugin, u64, Duration)>> {
    let mut measured = Vec::new();
    for variant in variants {
        let Variant::Original(plugin) = *variant else { continue };
        if let Some(files) = plugin.files(examples)? {
            let (size, took) = examples::first_start(files.name, &files.wasm, &files.settings)?;
            measured.push((plugin, size, took));
        }
    }
    Ok(measured)
}

/// The per-language table: each language's plugin with the original's
/// config, its figures from the rounds beside its size and compile time.
fn languages(rows: &[Row], variants: &[Variant], first_starts: Vec<(Plugin, u64, Duration)>) -> Vec<LanguageRow> {
    first_starts
        .into_iter()
        .filter_map(|(plugin, size, took)| {
            let at = variants.iter().position(|variant| *variant == Variant::Original(plugin))?;
            let row = &rows[at];
            Some(LanguageRow {
                language: plugin.language()?,
                variant: row.variant.clone(),
                events_per_second: row.median.events_per_second,
                cpu_seconds_per_100k: row.median.cpu_seconds_per_100k,
                peak_rss_mib: row.median.peak_rss_mib,
                component_kib: size as f64 / 1024.0,
                first_start_compile_ms: took.as_secs_f64() * 1000.0,
            })
        })
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn print_table(report: &Report) {
    println!(
        "ferry-bench --teleport: {} events, batch {}, {} in flight, {} rounds (median), {} cores, load {}; ferry: {}",
        report.events, report.batch, IN_FLIGHT, report.rounds, report.cores, report.load_average, report.ferry
    );
    println!("| variant | events/s | × reference | CPU s / 100k | CPU µs / request | request p50 ms | p99 ms | peak RSS MiB | requests |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &report.variants {
        let m = &row.median;
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.1} | {} |",
            row.variant,
            m.events_per_second,
            row.ratio_to_reference,
            m.cpu_seconds_per_100k,
            m.cpu_us_per_request,
            m.latency_p50_ms,
            m.latency_p99_ms,
            m.peak_rss_mib,
            m.requests
        );
    }
    if report.languages.is_empty() {
        return;
    }
    println!();
    println!("| language | plugin (original config) | events/s | CPU s / 100k | peak RSS MiB | component KiB | first-start compile ms |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for row in &report.languages {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.1} | {:.0} | {:.0} |",
            row.language,
            row.variant,
            row.events_per_second,
            row.cpu_seconds_per_100k,
            row.peak_rss_mib,
            row.component_kib,
            row.first_start_compile_ms
        );
    }
    println!();
    if let Some(ratio) = report.targets.c_to_rust {
        let verdict = if ratio >= 0.9 { "met" } else { "missed" };
        println!("C drop-types / Rust redact: {ratio:.2}× (target ≥ 0.9×: {verdict})");
    }
    if let Some(rate) = report.targets.go_events_per_second {
        let verdict = if rate >= 50_000.0 { "met" } else { "missed" };
        println!("Go team-tags: {rate:.0} events/s (target ≥ 50k/s: {verdict})");
    }
}

/// Writes the child's files into `dir` and returns the command that runs it.
fn child_command(
    exe: &Exes,
    peers: &Peers,
    variant: Variant,
    examples: Option<&Examples>,
    dir: &Path,
) -> anyhow::Result<std::process::Command> {
    let (addr, identity) = (&peers.teleport_ready.addr, peers.identity.display());
    let logstash = &peers.logstash_ready;
    let url = &logstash.url;
    let mut command = std::process::Command::new(&exe.bench);
    match variant {
        Variant::Reference => {
            let settings = Settings {
                addr: addr.clone(),
                identity: peers.identity.clone(),
                url: format!("{url}test.log"),
                ca: logstash.ca.clone(),
                cert: logstash.cert.clone(),
                key: logstash.key.clone(),
                batch: BATCH,
                in_flight: IN_FLIGHT,
                start: ferry::source::teleport::config::parse_start_time(START_TIME).map_err(anyhow::Error::msg)?,
                window: WINDOW,
            };
            let path = dir.join("reference.json");
            std::fs::write(&path, serde_json::to_vec(&settings)?).context("cannot write the reference client's settings")?;
            command.arg("--reference-client").arg(&path);
        }
        Variant::Original(plugin) | Variant::Native(plugin) | Variant::Single(plugin) => {
            let plugins = dir.join("plugins");
            std::fs::create_dir_all(&plugins).context("cannot create the plugins folder")?;
            std::fs::create_dir_all(dir.join("storage")).context("cannot create the storage folder")?;
            std::os::unix::fs::symlink(&peers.plugin_cache, dir.join("storage/plugin-cache")).context("cannot link the compile cache")?;
            if let Some(PluginFiles { name, wasm, settings }) = plugin.files(examples)? {
                std::fs::write(plugins.join(format!("10-{name}.wasm")), wasm).with_context(|| format!("cannot write the {name} plugin"))?;
                std::fs::write(plugins.join(format!("10-{name}.toml")), settings).context("cannot write the plugin settings")?;
            }
            let tls = format!(
                "ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                logstash.ca.display(),
                logstash.cert.display(),
                logstash.key.display()
            );
            let common = "storage = \"storage\"\nplugins-dir = \"plugins\"\n";
            let text = match variant {
                Variant::Native(_) => format!(
                    "{common}\n[pipeline]\nbatch-size = {BATCH}\n\n[source.teleport]\naddr = \"{addr}\"\nidentity = \"{identity}\"\nstart-time = \"{START_TIME}\"\nwindow-size = \"8760h\"\ntimeout = \"100ms\"\nbatch = {BATCH}\nengine = \"legacy\"\nexit-on-last-event = true\n\n\
                     [sinks.default]\ntype = \"logstash\"\nurl = \"{url}test.log\"\nformat = \"json-array\"\n{tls}\n[sinks.sessions]\ntype = \"logstash\"\nurl = \"{url}session\"\n{tls}"
                ),
                _ => format!(
                    "{common}batch = {BATCH}\nstart-time = \"{START_TIME}\"\nwindow-size = \"8760h\"\ntimeout = \"100ms\"\nexit-on-last-event = true\n\n[teleport]\naddr = \"{addr}\"\nidentity = \"{identity}\"\n\n\
                     [forward.fluentd]\nurl = \"{url}test.log\"\nsession-url = \"{url}session\"\n{tls}{single}",
                    single = if matches!(variant, Variant::Single(_)) { "format = \"single\"\n" } else { "" }
                ),
            };
            let path = dir.join("ferry.toml");
            std::fs::write(&path, text).context("cannot write the bench config")?;
            if plugin == Plugin::Compiled {
                command.arg("--native-redact").arg(&path);
            } else {
                command = exe.ferry();
                command.arg("start").arg("--config").arg(&path);
            }
        }
    }
    Ok(command)
}

/// A child's log file, and its last lines for an error message.
struct ChildLog(PathBuf);

impl ChildLog {
    fn attach(command: &mut std::process::Command, dir: &Path) -> anyhow::Result<ChildLog> {
        let path = dir.join("child.log");
        let log = std::fs::File::create(&path).context("cannot create the child's log")?;
        command.current_dir(dir).stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
        Ok(ChildLog(path))
    }

    fn tail(&self) -> String {
        std::fs::read_to_string(&self.0)
            .map(|text| text.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

async fn run_once(exe: &Exes, peers: &mut Peers, variant: Variant, examples: Option<&Examples>, events: usize) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let dir = dir.path();
    // Whatever an earlier run left behind is not this run's.
    peers.tally()?;
    let mut command = child_command(exe, peers, variant, examples, dir)?;
    let log = ChildLog::attach(&mut command, dir)?;
    let started = Instant::now();
    let child = command.spawn().with_context(|| format!("cannot start {}", exe.bench.display()))?;
    let limit = Duration::from_secs(120) + Duration::from_millis(events as u64 * 2);
    let usage = wait_with_usage(child, limit, None).await?;
    let wall = started.elapsed();
    anyhow::ensure!(usage.success, "the child process failed; its last lines:\n{}", log.tail());

    let tally = peers.tally()?;
    let (delivered, unique) = (tally.events, tally.distinct);
    anyhow::ensure!(
        delivered == events && unique == events,
        "the Logstash stand-in recorded {delivered} events ({unique} distinct) of {events}; the child's last lines:\n{}",
        log.tail()
    );
    anyhow::ensure!(tally.requests > 0, "no request reached the Logstash stand-in");
    Ok(Run {
        events_per_second: events as f64 / tally.span_seconds.max(1e-6),
        cpu_seconds_per_100k: usage.cpu.as_secs_f64() * 100_000.0 / events as f64,
        cpu_us_per_request: usage.cpu.as_secs_f64() * 1e6 / tally.requests as f64,
        latency_p50_ms: tally.latency_p50_ms,
        latency_p99_ms: tally.latency_p99_ms,
        peak_rss_mib: usage.max_rss_kib as f64 / 1024.0,
        wall_seconds: wall.as_secs_f64(),
        requests: tally.requests,
        delivered,
        unique,
    })
}

/// One run of the backlog mode.
#[derive(Debug, Serialize)]
struct BacklogRun {
    sink: &'static str,
    /// Audit events ferry read from the Teleport stand-in: how far ahead of
    /// its stalled sink it got.
    events_read: u64,
    /// Requests the Logstash stand-in saw, and how many it did not accept.
    requests: usize,
    refused: usize,
    delivered: usize,
    peak_rss_mib: f64,
    cpu_seconds: f64,
    /// From SIGTERM to ferry's exit.
    stop_seconds: f64,
    stopped_cleanly: bool,
}

#[derive(Debug, Serialize)]
struct BacklogReport {
    events: usize,
    seconds: f64,
    cores: usize,
    load_average: String,
    variant: String,
    runs: Vec<BacklogRun>,
}

/// `--backlog`: ferry against a log of `--events` while the sink refuses
/// every request, then while it answers none.
async fn backlog(args: &BenchArgs, exe: &Exes, peers: &mut Peers) -> anyhow::Result<()> {
    let variant = Variant::Original(Plugin::Wasm);
    let seconds = Duration::from_secs_f64(args.backlog_seconds.max(0.5));
    let mut runs = Vec::new();
    for (sink, command) in [("answers 503 to every request", "refuse"), ("answers no request", "no-answer")] {
        let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
        let dir = dir.path();
        let _: serde_json::Value = peers.logstash.ask(command)?;
        peers.tally()?;
        let served_before: Served = peers.teleport.ask("served")?;
        let mut child = child_command(exe, peers, variant, None, dir)?;
        let log = ChildLog::attach(&mut child, dir)?;
        let child = child.spawn().with_context(|| format!("cannot start {}", exe.bench.display()))?;
        let usage = wait_with_usage(child, seconds + Duration::from_secs(60), Some(seconds)).await?;
        let served_after: Served = peers.teleport.ask("served")?;
        let tally = peers.tally()?;
        let stop_seconds = usage.stopping.map_or(0.0, |took| took.as_secs_f64());
        anyhow::ensure!(tally.requests > 0, "ferry sent nothing to the stalled sink; its last lines:\n{}", log.tail());
        runs.push(BacklogRun {
            sink,
            events_read: served_after.served - served_before.served,
            requests: tally.requests,
            refused: tally.refused,
            delivered: tally.events,
            peak_rss_mib: usage.max_rss_kib as f64 / 1024.0,
            cpu_seconds: usage.cpu.as_secs_f64(),
            stop_seconds,
            stopped_cleanly: usage.success,
        });
    }
    let _: serde_json::Value = peers.logstash.ask("answer")?;
    let report = BacklogReport {
        events: peers.teleport_ready.events,
        seconds: seconds.as_secs_f64(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average: load_average(),
        variant: variant.label(),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "ferry-bench --teleport --backlog: {} events waiting, {}, {:.0} s per run, then SIGTERM; {} cores, load {}",
            report.events, report.variant, report.seconds, report.cores, report.load_average
        );
        println!("| sink | events read | requests | refused | peak RSS MiB | CPU s | stop s | clean stop |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        for run in &report.runs {
            println!(
                "| {} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {} |",
                run.sink,
                run.events_read,
                run.requests,
                run.refused,
                run.peak_rss_mib,
                run.cpu_seconds,
                run.stop_seconds,
                run.stopped_cleanly
            );
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Served {
    served: u64,
}

/// A finished child: did it succeed, its own CPU time, its peak RSS.
struct Usage {
    success: bool,
    cpu: Duration,
    max_rss_kib: i64,
    /// From SIGTERM to the exit, when the child was sent one.
    stopping: Option<Duration>,
}

/// Waits for `child` with `wait4`, which reports that child's own resource
/// use; sends it SIGTERM after `stop_after`, if given; kills it after `limit`.
async fn wait_with_usage(mut child: std::process::Child, limit: Duration, stop_after: Option<Duration>) -> anyhow::Result<Usage> {
    let pid = libc::pid_t::try_from(child.id()).context("a process id out of range")?;
    let waiting = tokio::task::spawn_blocking(move || wait4(pid, stop_after));
    match tokio::time::timeout(limit, waiting).await {
        Ok(joined) => Ok(joined.context("the waiting thread panicked")??),
        Err(_) => {
            let _ = child.kill();
            anyhow::bail!("the child process ran longer than {limit:?} and was killed")
        }
    }
}

fn wait4(pid: libc::pid_t, stop_after: Option<Duration>) -> std::io::Result<Usage> {
    let started = Instant::now();
    let mut stopped_at = None;
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
        if stopped_at.is_none() && stop_after.is_some_and(|after| started.elapsed() >= after) {
            // SAFETY: `pid` is our child, not yet waited for, so not reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            stopped_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64);
    Ok(Usage {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        max_rss_kib: peak_kib,
        stopping: stopped_at.map(|at| at.elapsed()),
    })
}

/// The process's peak resident set (`VmHWM` in `/proc/PID/status`), KiB.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn percentile(sorted: &[f64], q: f64) -> f64 {
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
        crate::files::median(&mut values)
    };
    let last = &runs[runs.len() - 1];
    Run {
        events_per_second: pick(|r| r.events_per_second),
        cpu_seconds_per_100k: pick(|r| r.cpu_seconds_per_100k),
        cpu_us_per_request: pick(|r| r.cpu_us_per_request),
        latency_p50_ms: pick(|r| r.latency_p50_ms),
        latency_p99_ms: pick(|r| r.latency_p99_ms),
        peak_rss_mib: pick(|r| r.peak_rss_mib),
        wall_seconds: pick(|r| r.wall_seconds),
        requests: last.requests,
        delivered: runs.iter().map(|r| r.delivered).min().unwrap_or(0),
        unique: runs.iter().map(|r| r.unique).min().unwrap_or(0),
    }
}
