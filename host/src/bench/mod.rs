//! `ferry bench`: end-to-end throughput of the real pipeline (file source →
//! chain → file sink, SQLite cursor) with the redact plugin as WebAssembly,
//! against the same redact code compiled into ferry, in one run; with
//! `--teleport`, the real job (Teleport stand-in → ferry as a child process
//! → Logstash stand-in, mTLS on both sides) beside a minimal reference
//! client ([`teleport`], [`reference`]).
//!
//! A benchmark, not a test: numbers depend on the machine and its load, so
//! each variant runs several rounds, interleaved, and the median is reported
//! beside the ratio, which is what the targets are stated in.

use crate::config::FerryConfig;
use crate::event::{Event, Outcome};
use crate::metrics::Metrics;
use crate::plugin::{OnError, PluginError, Transform};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;

pub mod reference;
pub mod standin;
pub mod teleport;

/// Options of `ferry bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Events per round (the sample events repeated, with unique ids).
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Rounds per variant; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Measure the real job instead: Teleport stand-in (gRPC, mTLS) → ferry
    /// as a child process → Logstash stand-in (mTLS), per config variant,
    /// beside a minimal reference client.
    #[arg(long)]
    pub teleport: bool,
    /// With `--teleport`: print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// With `--teleport`: measure memory with a stalled sink instead: ferry
    /// against a log of `--events` (say 1000000) while the Logstash
    /// stand-in refuses every request, then answers none.
    #[arg(long, requires = "teleport")]
    pub backlog: bool,
    /// With `--backlog`: how long ferry runs against the stalled sink
    /// before it is stopped with SIGTERM.
    #[arg(long, default_value_t = 20.0)]
    pub backlog_seconds: f64,
    /// With `--teleport`: the folder holding the Python and JavaScript
    /// example plugins built (`tag.wasm`, `reshape.wasm`; `cargo test`
    /// builds them into `target/wasm-plugins/wasm32-wasip2/release`). Adds a
    /// variant for each with the original's config.
    #[arg(long, requires = "teleport")]
    pub examples: Option<std::path::PathBuf>,
    /// With `--teleport`: the compile cache every run of ferry shares, as a
    /// restarted ferry has its own (default: one in the bench's temporary
    /// folder, so each component is compiled in the first round only).
    #[arg(long, requires = "teleport")]
    pub plugin_cache: Option<std::path::PathBuf>,
    /// Run as the reference client with the settings in this JSON file
    /// (`ferry bench --teleport` starts it as a child process).
    #[arg(long, hide = true)]
    pub reference_client: Option<std::path::PathBuf>,
    /// Run as a stand-in with the settings in this JSON file (`ferry bench
    /// --teleport` starts the Teleport and Logstash stand-ins so).
    #[arg(long, hide = true)]
    pub serve_standin: Option<std::path::PathBuf>,
    /// Run `ferry start` with the config in this file, the redact code
    /// compiled into ferry as its chain instead of the plugins folder's
    /// (`ferry bench --teleport` starts it as a child process).
    #[arg(long, hide = true)]
    pub native_redact: Option<std::path::PathBuf>,
}

/// The same redaction as `plugins/redact`, compiled into the host.
struct NativeRedact {
    redactor: redact::Redactor,
}

impl Transform for NativeRedact {
    fn name(&self) -> &str {
        "redact-native"
    }
    fn on_error(&self) -> OnError {
        OnError::DeadLetter
    }
    fn process(&mut self, batch: &[Event]) -> Result<Vec<Outcome>, PluginError> {
        Ok(batch
            .iter()
            .map(|event| match self.redactor.redact(&event.json) {
                Ok(None) => Outcome::Keep,
                Ok(Some(json)) => Outcome::Replace(json),
                Err(reason) => Outcome::Fail(reason),
            })
            .collect())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    NoPlugin,
    Native,
    Wasm,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::NoPlugin => "no plugin (pipeline ceiling)",
            Variant::Native => "redact compiled into ferry",
            Variant::Wasm => "redact as WebAssembly plugin",
        }
    }
}

/// Runs the benchmark and prints a table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(settings) = &args.reference_client {
        return reference::run(settings).await;
    }
    if let Some(settings) = &args.serve_standin {
        return standin::serve(settings).await;
    }
    if let Some(config) = &args.native_redact {
        return run_native_redact(config).await;
    }
    if args.teleport {
        return teleport::run(&args).await;
    }
    let repeat = args.events.div_ceil(crate::demo::SAMPLE_EVENTS.lines().count()).max(1);
    let variants = [Variant::NoPlugin, Variant::Native, Variant::Wasm];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..args.rounds.max(1) {
        for (i, variant) in variants.iter().enumerate() {
            let rate = run_once(*variant, repeat, args.batch_size).await?;
            eprintln!("round {}: {:<32} {rate:>10.0} events/s", round + 1, variant.label());
            rates[i].push(rate);
        }
    }
    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    println!("ferry bench: {} events per round, batch size {}, {} rounds, {} cores", repeat * crate::demo::SAMPLE_EVENTS.lines().count(), args.batch_size, args.rounds.max(1), std::thread::available_parallelism().map_or(1, |n| n.get()));
    for (variant, rate) in variants.iter().zip(&medians) {
        println!("  {:<32} {rate:>10.0} events/s (median)", variant.label());
    }
    println!("  WebAssembly / native ratio: {:.2}", medians[2] / medians[1]);
    Ok(())
}

async fn run_once(variant: Variant, repeat: usize, batch_size: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let config_path = crate::demo::write_setup(dir.path(), repeat, &crate::demo::file_sink("out/events.jsonl"))?;
    let mut text = std::fs::read_to_string(&config_path)?;
    text = text.replace("type = \"file\"\n", "type = \"file\"\nfsync = false\n");
    text.push_str(&format!("\n[pipeline]\nbatch-size = {batch_size}\nlinger = \"5ms\"\nbatches-in-flight = 8\n"));
    if variant != Variant::Wasm {
        // An empty plugins folder: the chain is set up below instead.
        std::fs::remove_dir_all(dir.path().join("plugins"))?;
        std::fs::create_dir(dir.path().join("plugins"))?;
    }
    std::fs::write(&config_path, text)?;
    let config = FerryConfig::load(&config_path)?;
    let metrics = Arc::new(Metrics::default());
    let summary = match variant {
        Variant::Wasm => {
            let (pipeline, _runtime, _plugins) = crate::app::build_pipeline(&config, metrics).await?;
            pipeline.run(crate::shutdown::Shutdown::never()).await?
        }
        Variant::Native | Variant::NoPlugin => {
            let parts = crate::app::build_parts(&config, metrics.clone(), false).await?;
            let transforms: Vec<Box<dyn Transform>> = if variant == Variant::Native {
                let settings = redact_config(dir.path())?;
                vec![Box::new(NativeRedact { redactor: redact::Redactor::from_config(&settings).map_err(anyhow::Error::msg)? })]
            } else {
                Vec::new()
            };
            let pipeline = crate::app::assemble(&config, parts, transforms, metrics).await?;
            pipeline.run(crate::shutdown::Shutdown::never()).await?
        }
    };
    anyhow::ensure!(summary.delivered == summary.events_in, "bench run lost events: {summary}");
    Ok(summary.rate())
}

/// `ferry start` with the redact code compiled in as the chain: what the
/// redact plugin would cost if WebAssembly cost nothing. Stops on SIGTERM
/// or SIGINT as `ferry start` does.
async fn run_native_redact(path: &Path) -> anyhow::Result<()> {
    let config = FerryConfig::load(path)?;
    let metrics = Arc::new(Metrics::default());
    let parts = crate::app::build_parts(&config, metrics.clone(), false).await?;
    let settings = redact_config(path)?;
    let transforms: Vec<Box<dyn Transform>> = vec![Box::new(NativeRedact { redactor: redact::Redactor::from_config(&settings).map_err(anyhow::Error::msg)? })];
    let pipeline = crate::app::assemble(&config, parts, transforms, metrics).await?;
    let (trigger, shutdown) = crate::shutdown::channel();
    crate::shutdown::fire_on_signals(trigger);
    let summary = pipeline.run(shutdown).await?;
    tracing::info!(%summary, "Stopped.");
    Ok(())
}

/// The demo's redact settings as the JSON the plugin's `init` receives.
fn redact_config(_dir: &Path) -> anyhow::Result<String> {
    let spec: crate::plugin::PluginSpec = toml::from_str(crate::demo::DEMO_REDACT_CONFIG)?;
    Ok(spec.settings().config_json)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
