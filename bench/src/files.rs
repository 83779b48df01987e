//! `ferry-bench` without `--teleport`: end-to-end throughput of the real
//! pipeline in this process (file source → chain → file sink, SQLite
//! cursor) with the redact plugin as WebAssembly, against the same redact
//! code compiled in, in one run.

use crate::BenchArgs;
use anyhow::Context;
use ferry::app::FerryConfig;
use ferry::event::{Event, Outcome};
use ferry::metrics::Metrics;
use ferry::plugin::{OnError, PluginError, Transform};
use std::path::Path;
use std::sync::Arc;

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

/// Runs the file rounds and prints a table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let repeat = args.events.div_ceil(ferry::cli::demo::SAMPLE_EVENTS.lines().count()).max(1);
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
    println!(
        "ferry-bench: {} events per round, batch size {}, {} rounds, {} cores",
        repeat * ferry::cli::demo::SAMPLE_EVENTS.lines().count(),
        args.batch_size,
        args.rounds.max(1),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (variant, rate) in variants.iter().zip(&medians) {
        println!("  {:<32} {rate:>10.0} events/s (median)", variant.label());
    }
    println!("  WebAssembly / native ratio: {:.2}", medians[2] / medians[1]);
    Ok(())
}

async fn run_once(variant: Variant, repeat: usize, batch_size: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let config_path = ferry::cli::demo::write_setup(dir.path(), repeat, &ferry::cli::demo::file_sink("out/events.jsonl"))?;
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
            let (pipeline, _runtime, _plugins) = ferry::app::build_pipeline(&config, metrics).await?;
            pipeline.run(ferry::shutdown::Shutdown::never()).await?
        }
        Variant::Native | Variant::NoPlugin => {
            let parts = ferry::app::build_parts(&config, metrics.clone(), false).await?;
            let transforms: Vec<Box<dyn Transform>> = if variant == Variant::Native {
                let settings = redact_config(dir.path())?;
                vec![Box::new(NativeRedact { redactor: redact::Redactor::from_config(&settings).map_err(anyhow::Error::msg)? })]
            } else {
                Vec::new()
            };
            let pipeline = ferry::app::assemble(&config, parts, transforms, metrics).await?;
            pipeline.run(ferry::shutdown::Shutdown::never()).await?
        }
    };
    anyhow::ensure!(summary.delivered == summary.events_in, "bench run lost events: {summary}");
    Ok(summary.rate())
}

/// `ferry start` with the redact code compiled in as the chain: what the
/// redact plugin would cost if WebAssembly cost nothing. Stops on SIGTERM
/// or SIGINT as `ferry start` does.
pub async fn run_native_redact(path: &Path) -> anyhow::Result<()> {
    let config = FerryConfig::load(path)?;
    let metrics = Arc::new(Metrics::default());
    let parts = ferry::app::build_parts(&config, metrics.clone(), false).await?;
    let settings = redact_config(path)?;
    let transforms: Vec<Box<dyn Transform>> =
        vec![Box::new(NativeRedact { redactor: redact::Redactor::from_config(&settings).map_err(anyhow::Error::msg)? })];
    let pipeline = ferry::app::assemble(&config, parts, transforms, metrics).await?;
    let (trigger, shutdown) = ferry::shutdown::channel();
    ferry::shutdown::fire_on_signals(trigger);
    let summary = pipeline.run(shutdown).await?;
    tracing::info!(%summary, "Stopped.");
    Ok(())
}

/// The demo's redact settings as the JSON the plugin's `init` receives.
fn redact_config(_dir: &Path) -> anyhow::Result<String> {
    let spec: ferry::plugin::PluginSpec = toml::from_str(ferry::cli::demo::DEMO_REDACT_CONFIG)?;
    Ok(spec.settings().config_json)
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
