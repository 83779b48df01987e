//! The `ferry` command line: parses, sets up logging (text or JSON) and
//! hands the command to `ferry::cli`, where each command lives.

use clap::Parser;
use ferry::cli::Cli;
use ferry::observe::LogFormat;
use std::process::ExitCode;

/// See `host/Cargo.toml`: the static (musl) build's allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    cli.command.adopt_event_handler_config_variable();
    let debug = cli.debug || cli.command.config_asks_for_debug();
    let format = cli.log_format.or_else(|| cli.command.config_log_format()).unwrap_or_default();
    init_logging(debug, format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ferry: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli.command.run());
    // Whatever is still running (a source read or plugin call left behind at
    // the shutdown deadline) must not hold the exit: it is cut off here.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A JSON log stays JSON to its last line.
            match format {
                LogFormat::Text => eprintln!("ferry: error: {}", one_line(&err)),
                LogFormat::Json => tracing::error!(error = %one_line(&err), "Stopped with an error."),
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: most of ferry's
/// errors already name their cause in their own message.
fn one_line(err: &anyhow::Error) -> String {
    ferry::error::join_causes(err.chain())
}

fn init_logging(debug: bool, format: LogFormat) {
    let default = if debug { "ferry=debug,info" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(ferry::observe::progress::log_writer);
    match format {
        LogFormat::Text => {
            ferry::observe::progress::set_terminal(terminal);
            builder.with_ansi(terminal).init();
        }
        // `message` and the event's fields at the top level, one object a line.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
}
