//! The `ferry` command line: its commands and flags, and one module per
//! command that carries it out. `main.rs` only parses, sets up logging and
//! dispatches here.

mod check;
pub mod configure;
mod dead_letters;
pub mod event_handler_flags;
pub mod plugin;
mod start;
mod status;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// ferry carries Teleport audit events to Logstash through sandboxed
/// WebAssembly plugins.
#[derive(Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    /// Log debug detail.
    #[arg(short, long, global = true)]
    pub debug: bool,
    /// How log lines look on stderr: `text` for people, `json` (one object
    /// a line) for journald and ELK. Default `text`, or `log-format` in the config.
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
    Demo(crate::demo::DemoArgs),
    /// Measure throughput: the redact plugin in WebAssembly against the same
    /// code compiled into ferry, through the real pipeline.
    Bench(crate::bench::BenchArgs),
    /// List, show, replay or purge the dead letters of a config's state
    /// database (alone: list them as JSON Lines).
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Write, build, try and examine plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Manage the state database (`ferry state reset` after it was lost).
    #[command(subcommand)]
    State(crate::state::StateCommand),
}

impl Command {
    /// teleport-event-handler reads its config path from `FDFWD_CONFIG`;
    /// ferry does too when neither `--config` nor `FERRY_CONFIG` says
    /// otherwise.
    ///
    /// Its `start` flags are kept here too, before anything loads the config.
    pub fn adopt_event_handler_config_variable(&mut self) {
        if let Command::Start { event_handler, .. } | Command::Check { event_handler, .. } = self {
            std::mem::take(event_handler).install();
        }
        let (Command::Start { config, .. } | Command::Check { config, .. } | Command::Status { config, .. } | Command::DeadLetters(dead_letters::DeadLettersArgs { config, .. })) = self else { return };
        if config.as_os_str() == "ferry.toml" && std::env::var_os("FERRY_CONFIG").is_none()
            && let Some(path) = std::env::var_os("FDFWD_CONFIG") {
                *config = PathBuf::from(path);
            }
    }

    /// `debug = true` in the config (or `FDFWD_DEBUG`), as the event handler
    /// takes it, turns on debug logging like `-d`. A config that does not
    /// load is reported later, once logging is up.
    pub fn config_asks_for_debug(&self) -> bool {
        let env_debug = std::env::var("FDFWD_DEBUG").is_ok_and(|value| matches!(value.trim(), "1" | "true" | "yes" | "on"));
        let (Command::Start { config, .. } | Command::Check { config, .. }) = self else { return env_debug };
        env_debug || crate::config::FerryConfig::load(config).is_ok_and(|loaded| loaded.debug)
    }

    /// `log-format` in the config of `start` or `check`, when it loads and says.
    pub fn config_log_format(&self) -> Option<crate::observe::LogFormat> {
        let (Command::Start { config, .. } | Command::Check { config, .. }) = self else { return None };
        crate::config::FerryConfig::load(config).ok().and_then(|loaded| loaded.log_format)
    }

    /// Carries out the command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Start { config, http_addr, progress_every, .. } => start::run(config, http_addr, progress_every).await,
            Command::Check { config, probe, .. } => check::run(config, probe).await,
            Command::Status { config, json } => status::run(config, json).await,
            Command::Configure(args) => configure::run(args),
            Command::Version => {
                println!("ferry {} (plugin contract ferry:plugin@{}, wasmtime 48)", env!("CARGO_PKG_VERSION"), crate::plugin::CONTRACT_VERSION);
                Ok(())
            }
            Command::Demo(args) => crate::demo::run(args).await,
            Command::Bench(args) => crate::bench::run(args).await,
            Command::DeadLetters(args) => args.run().await,
            Command::Plugin(command) => command.run().await,
            Command::State(command) => command.run().await,
        }
    }
}
