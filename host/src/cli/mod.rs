//! The `ferry` command line: its commands and flags, and one module per
//! command that carries it out. [`main`] parses, loads the config once,
//! sets up logging and dispatches; the binary's `main.rs` only calls it.

mod check;
pub mod configure;
mod dead_letters;
pub mod demo;
pub mod event_handler_flags;
mod out;
pub mod plugin;
mod start;
mod state;
mod status;

use crate::app::{ConfigFile, FerryConfig};
use crate::config::ConfigError;
use crate::observe::LogFormat;
use clap::{Parser, Subcommand};
use out::say;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::filter::LevelFilter;

/// ferry carries Teleport audit events to Logstash through sandboxed
/// WebAssembly plugins.
#[derive(Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    /// Log debug detail.
    #[arg(short, long, global = true)]
    pub debug: bool,
    /// How log lines look on stderr: `text` for people, `json` (one object
    /// a line) for journald and ELK. Default `text` (`start` and `check`:
    /// the config's `log-format`, when it sets one).
    #[arg(long, global = true, value_enum, env = "FERRY_LOG_FORMAT")]
    pub log_format: Option<crate::observe::LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Forward events as the config says, until stopped (SIGINT or SIGTERM)
    /// or until a non-following source ends.
    Start {
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
        /// teleport-event-handler's own flags, for a drop-in start.
        #[command(flatten)]
        event_handler: event_handler_flags::EventHandlerFlags,
        /// Serve /metrics, /healthz and /readyz on this HOST:PORT (over
        /// `http-addr` in the config).
        #[arg(long, env = "FERRY_HTTP_ADDR")]
        http_addr: Option<String>,
        /// How often to log progress when stderr is not a terminal; 0 for never.
        #[arg(long, default_value = "60s", value_parser = crate::units::parse_duration)]
        progress_every: std::time::Duration,
    },
    /// Check a config and load its plugins without forwarding anything.
    Check {
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
        /// teleport-event-handler's own flags, as `start` takes them.
        #[command(flatten)]
        event_handler: event_handler_flags::EventHandlerFlags,
        /// Also connect to Teleport and to every sink (TLS with the client
        /// certificate, one harmless request) and say what works.
        #[arg(long)]
        probe: bool,
    },
    /// Show each source's cursor, the newest delivered event and the lag,
    /// recordings in progress, dead letters per stage and the state's size.
    Status {
        /// The config file.
        #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml")]
        config: PathBuf,
        /// One JSON document, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Write certificates, the Teleport role, ferry.toml, a Logstash pipeline,
    /// fluent.conf and the systemd unit for a new installation.
    Configure(configure::ConfigureArgs),
    /// Print the version of ferry and of the plugin contract.
    Version,
    /// Run the whole job on built-in sample events, with no set-up.
    Demo(demo::DemoArgs),
    /// List, show, replay or purge the dead letters of a config's state
    /// database (alone: list them as JSON Lines).
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Write, build, try and examine plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Manage the state database (`ferry state reset` after it was lost).
    #[command(subcommand)]
    State(state::StateCommand),
}

/// Runs the `ferry` command line on `args` (the program's name first) and
/// says how the process should exit.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let command = cli.command.with_event_handler_config_variable();
    // `start` and `check` load their config here, once: it may ask for
    // debug logging or JSON lines, and logging must be up before anything
    // is reported (a config that does not load among them).
    let config = command.config_file().map(|file| file.load().map(|config| (file, config)));
    let loaded = config.as_ref().and_then(|loaded| loaded.as_ref().ok()).map(|(_, config)| config);
    let debug = cli.debug || event_handler_debug() || loaded.is_some_and(|config| config.debug);
    let format = cli.log_format.or_else(|| loaded.and_then(|config| config.log_format)).unwrap_or_default();
    let terminal = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_logging(debug, format, terminal);
    loaded.inspect(|config| config.warn_notices());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ferry: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(command.run(config, terminal));
    // Whatever is still running (a source read or plugin call left behind at
    // the shutdown deadline) must not hold the exit: it is cut off here.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`ferry … | head`): it has what it
        // wanted, as a tool killed by SIGPIPE would leave it.
        Err(_) if out::closed() => ExitCode::SUCCESS,
        Err(err) => {
            // A JSON log stays JSON to its last line.
            let line = crate::error::join_causes(err.chain());
            match format {
                LogFormat::Text => eprintln!("ferry: error: {line}"),
                LogFormat::Json => tracing::error!(error = %line, "Stopped with an error."),
            }
            ExitCode::FAILURE
        }
    }
}

/// `FDFWD_DEBUG`, as the event handler takes it, turns on debug logging like `-d`.
fn event_handler_debug() -> bool {
    std::env::var("FDFWD_DEBUG").is_ok_and(|value| matches!(value.trim(), "1" | "true" | "yes" | "on"))
}

fn init_logging(debug: bool, format: LogFormat, terminal: bool) {
    let asked = std::env::var("FERRY_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::try_new(log_directives(asked.as_deref(), debug))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_directives(None, debug)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(crate::observe::progress::log_writer);
    match format {
        LogFormat::Text => builder.with_ansi(terminal).init(),
        // `message` and the event's fields at the top level, one object a line.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
}

/// The level of the libraries ferry is built on (wasmtime, Cranelift, h2,
/// hyper, rustls, sqlx …) unless a directive names them: their debug lines
/// are tens of thousands per start, and say nothing about ferry's job.
const LIBRARY_LEVEL: LevelFilter = LevelFilter::WARN;

/// The tracing filter for `FERRY_LOG` (`asked`) and `--debug`. A plain level
/// (`debug`) is ferry's own; the libraries stay at [`LIBRARY_LEVEL`] (or
/// quieter, when the level is), unless a directive names their target
/// (`debug,cranelift=debug`). Without `FERRY_LOG`, ferry logs at info, or
/// debug with `--debug`.
fn log_directives(asked: Option<&str>, debug: bool) -> String {
    let own = if debug { LevelFilter::DEBUG } else { LevelFilter::INFO };
    let mut directives = vec![LIBRARY_LEVEL.to_string(), format!("ferry={own}")];
    for directive in asked.unwrap_or_default().split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.parse::<LevelFilter>() {
            Ok(level) => {
                directives[0] = level.min(LIBRARY_LEVEL).to_string();
                directives[1] = format!("ferry={level}");
            }
            Err(_) => directives.push(directive.to_owned()),
        }
    }
    directives.join(",")
}

/// A config loaded by [`main`]: where it came from and what it says, or why
/// it did not load.
type Loaded = Option<Result<(ConfigFile, FerryConfig), ConfigError>>;

impl Command {
    /// teleport-event-handler reads its config path from `FDFWD_CONFIG`;
    /// ferry does too when neither `--config` nor `FERRY_CONFIG` says
    /// otherwise.
    fn with_event_handler_config_variable(mut self) -> Command {
        let (Command::Start { config, .. }
        | Command::Check { config, .. }
        | Command::Status { config, .. }
        | Command::DeadLetters(dead_letters::DeadLettersArgs { config, .. })) = &mut self
        else {
            return self;
        };
        if config.as_os_str() == "ferry.toml"
            && std::env::var_os("FERRY_CONFIG").is_none()
            && let Some(path) = std::env::var_os("FDFWD_CONFIG")
        {
            *config = PathBuf::from(path);
        }
        self
    }

    /// The config `start` and `check` run, with the event handler's flags
    /// given to them.
    fn config_file(&self) -> Option<ConfigFile> {
        let (Command::Start { config, event_handler, .. } | Command::Check { config, event_handler, .. }) = self else { return None };
        Some(ConfigFile { path: config.clone(), flags: event_handler.values.clone() })
    }

    /// Carries out the command; `config` is what [`Command::config_file`]
    /// loaded, and `terminal` says whether to draw a progress line.
    async fn run(self, config: Loaded, terminal: bool) -> anyhow::Result<()> {
        let loaded = || -> anyhow::Result<(ConfigFile, FerryConfig)> {
            Ok(config.ok_or_else(|| anyhow::anyhow!("no config was loaded for this command"))??)
        };
        match self {
            Command::Start { http_addr, progress_every, .. } => {
                let (file, config) = loaded()?;
                start::run(file, config, http_addr, progress_every, terminal).await
            }
            Command::Check { probe, .. } => {
                let (file, config) = loaded()?;
                check::run(&file.path, config, probe).await
            }
            Command::Status { config, json } => status::run(config, json).await,
            Command::Configure(args) => configure::run(args),
            Command::Version => {
                say!(
                    "ferry {} (plugin contract ferry:plugin@{}, wasmtime 48)",
                    env!("CARGO_PKG_VERSION"),
                    crate::plugin::CONTRACT_VERSION
                )?;
                Ok(())
            }
            Command::Demo(args) => demo::run(args).await,
            Command::DeadLetters(args) => args.run().await,
            Command::Plugin(command) => command.run().await,
            Command::State(command) => command.run().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What a subscriber with the filter of `FERRY_LOG=asked` lets through
    /// of a debug line from ferry and from Cranelift, and a warning from h2.
    fn logged(asked: Option<&str>, debug: bool) -> String {
        let lines = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_new(log_directives(asked, debug)).expect("a valid filter"))
            .with_writer(move || Capture(writer.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "ferry::pipeline", "ferry detail");
            tracing::debug!(target: "cranelift_codegen::context", "compiler detail");
            tracing::warn!(target: "h2::proto", "library warning");
        });
        String::from_utf8(lines.lock().expect("lock").clone()).expect("utf-8")
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_plain_level_is_ferrys_and_libraries_stay_at_warn() {
        let text = logged(Some("debug"), false);
        assert!(text.contains("ferry detail"), "{text}");
        assert!(!text.contains("compiler detail"), "{text}");
        assert!(text.contains("library warning"), "{text}");
    }

    #[test]
    fn a_library_named_by_target_gets_its_level() {
        let text = logged(Some("debug,cranelift_codegen=debug"), false);
        assert!(text.contains("ferry detail") && text.contains("compiler detail"), "{text}");
    }

    #[test]
    fn debug_is_ferrys_only_and_off_is_off_for_all() {
        let text = logged(None, true);
        assert!(text.contains("ferry detail") && !text.contains("compiler detail"), "{text}");
        assert!(!logged(None, false).contains("ferry detail"), "info by default");
        assert_eq!(logged(Some("off"), false), "", "FERRY_LOG=off silences the libraries too");
    }
}
