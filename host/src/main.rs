//! The `ferry` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry::config::FerryConfig;
use ferry::metrics::Metrics;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// ferry carries Teleport audit events to Logstash through sandboxed
/// WebAssembly plugins.
#[derive(Parser)]
#[command(name = "ferry", version, about)]
struct Cli {
    /// Log debug detail.
    #[arg(short, long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Forward events as the config says, until stopped (SIGINT or SIGTERM)
    /// or until a non-following source ends.
    Start {
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
    },
    /// Check a config and load its plugins without forwarding anything.
    Check {
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
    },
    /// Print the version of ferry and of the plugin contract.
    Version,
    /// Run the whole job on built-in sample events, with no set-up.
    Demo(ferry::demo::DemoArgs),
    /// Measure throughput: the redact plugin in WebAssembly against the same
    /// code compiled into ferry, through the real pipeline.
    Bench(ferry::bench::BenchArgs),
    /// List the dead letters of a config's state database as JSON Lines.
    DeadLetters {
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
        /// Most dead letters to list, oldest first.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Write, try and examine plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage the state database (`ferry state reset` after it was lost).
    #[command(subcommand)]
    State(ferry::state::StateCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run a plugin over JSON Lines events read from stdin and print what
    /// became of each (kept, dropped, failed, routed, replaced with the
    /// changed fields), then a summary.
    Test(ferry::plugin::tool::TestArgs),
    /// Show a component's ferry:plugin version, exports, imports and size,
    /// and whether this ferry would load it.
    Inspect(ferry::plugin::tool::InspectArgs),
    /// Create a working plugin to start from, with its build instructions.
    New {
        /// The plugin's name (lowercase letters, digits, `-`, `_`); also its folder.
        name: String,
        /// The language to write it in.
        #[arg(long)]
        lang: ferry::plugin::scaffold::Language,
        /// Where to create the plugin's folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    adopt_event_handler_config_variable(&mut cli.command);
    let debug = cli.debug || config_asks_for_debug(&cli.command);
    init_logging(debug);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ferry: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Whatever is still running (a source read or plugin call left behind at
    // the shutdown deadline) must not hold the exit: it is cut off here.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ferry: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: most of ferry's
/// errors already name their cause in their own message.
fn one_line(err: &anyhow::Error) -> String {
    ferry::error::join_causes(err.chain())
}

/// teleport-event-handler reads its config path from `FDFWD_CONFIG`; ferry
/// does too when neither `--config` nor `FERRY_CONFIG` says otherwise.
fn adopt_event_handler_config_variable(command: &mut Command) {
    let (Command::Start { config } | Command::Check { config } | Command::DeadLetters { config, .. }) = command else { return };
    if config.as_os_str() == "ferry.toml" && std::env::var_os("FERRY_CONFIG").is_none()
        && let Some(path) = std::env::var_os("FDFWD_CONFIG") {
            *config = PathBuf::from(path);
        }
}

/// `debug = true` in the config (or `FDFWD_DEBUG`), as the event handler
/// takes it, turns on debug logging like `-d`. A config that does not load
/// is reported later, once logging is up.
fn config_asks_for_debug(command: &Command) -> bool {
    let env_debug = std::env::var("FDFWD_DEBUG").is_ok_and(|value| matches!(value.trim(), "1" | "true" | "yes" | "on"));
    let (Command::Start { config } | Command::Check { config }) = command else { return env_debug };
    env_debug || FerryConfig::load(config).is_ok_and(|loaded| loaded.debug)
}

fn init_logging(debug: bool) {
    let default = if debug { "ferry=debug,info" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Start { config } => start(config).await,
        Command::Check { config } => check(config).await,
        Command::Version => {
            println!(
                "ferry {} (plugin contract ferry:plugin@{}, wasmtime 48)",
                env!("CARGO_PKG_VERSION"),
                ferry::plugin::CONTRACT_VERSION
            );
            Ok(())
        }
        Command::Demo(args) => ferry::demo::run(args).await,
        Command::Bench(args) => ferry::bench::run(args).await,
        Command::DeadLetters { config, limit } => dead_letters(config, limit).await,
        Command::Plugin(command) => plugin(command).await,
        Command::State(command) => command.run().await,
    }
}

/// Plugin tools run on a blocking thread: plugin calls must not block the
/// async runtime's own threads.
async fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    use ferry::plugin::tool;
    let work = move || -> anyhow::Result<()> {
        let stdout = std::io::stdout().lock();
        match command {
            PluginCommand::Test(args) => tool::test(&args, std::io::stdin().lock(), std::io::BufWriter::new(stdout)).map(drop)?,
            PluginCommand::Inspect(args) => tool::inspect(&args, stdout)?,
            PluginCommand::New { name, lang, dir } => plugin_new(&name, lang, &dir)?,
        }
        Ok(())
    };
    tokio::task::spawn_blocking(work).await.context("the plugin tool stopped unexpectedly")?
}

async fn start(path: PathBuf) -> anyhow::Result<()> {
    let hangups = ferry::reload::hangups();
    let config = FerryConfig::load(&path)?;
    let metrics = Arc::new(Metrics::default());
    let (mut pipeline, runtime, plugins) = ferry::app::build_pipeline(&config, metrics.clone()).await?;
    let (trigger, shutdown) = ferry::shutdown::channel();
    ferry::shutdown::fire_on_signals(trigger.clone());
    ferry::shutdown::fire_on_panic(trigger);
    let reloader = ferry::reload::Reloader::new(path, config, runtime, plugins, pipeline.chain.swap_handle(), metrics);
    tokio::spawn(reloader.run(shutdown.clone(), hangups));
    let summary = pipeline.run(shutdown).await?;
    // A panic anywhere (a sink's delivery, a reload) stopped the pipeline
    // through the hook; it must not look like a clean stop.
    anyhow::ensure!(!ferry::shutdown::panicked(), "a part of ferry panicked (see the log above); exiting with a failure so that the service manager restarts ferry");
    tracing::info!(%summary, "Stopped.");
    Ok(())
}

async fn check(path: PathBuf) -> anyhow::Result<()> {
    let config = FerryConfig::load(&path)?;
    let parts = ferry::app::build_parts(&config, Arc::new(Metrics::default()), false).await?;
    let plugins: Vec<&str> = parts.plugins.iter().map(|p| p.settings().name.as_str()).collect();
    let sinks: Vec<&str> = parts.sinks.keys().map(String::as_str).collect();
    println!(
        "{}: ok: source {}, plugins [{}], sinks [{}] (default `{}`)",
        path.display(),
        parts.source.name(),
        plugins.join(", "),
        sinks.join(", "),
        parts.default_sink
    );
    Ok(())
}

async fn dead_letters(path: PathBuf, limit: u32) -> anyhow::Result<()> {
    let config = FerryConfig::load(&path)?;
    let database = config.database_path();
    anyhow::ensure!(database.exists(), "no state database at {}: ferry has not run with this config", database.display());
    let state = ferry::state::State::open(&database).await?;
    let mut out = std::io::stdout().lock();
    for letter in state.dead_letters(limit).await? {
        let line = serde_json::to_string(&letter).context("cannot encode a dead letter")?;
        match writeln!(out, "{line}") {
            Ok(()) => {}
            // The reader has seen enough (`ferry dead-letters | head`).
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(err) => return Err(err).context("cannot write to stdout"),
        }
    }
    Ok(())
}

fn plugin_new(name: &str, language: ferry::plugin::scaffold::Language, dir: &std::path::Path) -> anyhow::Result<()> {
    let scaffold = ferry::plugin::scaffold::create(name, language, dir)?;
    println!("Created the {language} plugin `{name}` in {}:", scaffold.dir.display());
    for file in &scaffold.files {
        println!("  {file}");
    }
    println!("Build it (see its README.md):\n  cd {}", scaffold.dir.display());
    for step in &scaffold.build {
        println!("  {step}");
    }
    println!("Then try it: ferry plugin test {} < events.jsonl", scaffold.output);
    Ok(())
}
