//! `ferry-bench`: ferry's benchmarks, a program of their own so that the
//! `ferry` binary holds only the product.
//!
//! Without `--teleport`, the file rounds ([`files`]): the pipeline in this
//! process with the redact plugin as WebAssembly against the same code
//! compiled in. With `--teleport`, the real job ([`teleport`]): a Teleport
//! stand-in and a Logstash stand-in in processes of their own ([`standin`]),
//! ferry as a child process, beside a minimal reference client
//! ([`reference`]). `ferry-bench ferry ARGS…` runs ferry's own command line,
//! which is what the job runs unless `--ferry` names a binary.
//!
//! A benchmark, not a test: numbers depend on the machine and its load, so
//! each variant runs several rounds, interleaved, and the median is reported
//! beside the ratio, which is what the targets are stated in.
//!
//! ```sh
//! cargo run --release -p ferry-bench -- --teleport
//! ```

mod examples;
mod files;
mod reference;
mod standin;
mod teleport;

use clap::Parser;
use std::process::ExitCode;

/// `ferry-bench`: how fast ferry forwards, measured against a baseline in one run.
#[derive(Debug, clap::Parser)]
#[command(name = "ferry-bench", version, about)]
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
    /// variant for each with the original's config, and for the Go and C
    /// examples (`plugins/go/team-tags`, `plugins/c/drop-types`), which the
    /// bench builds with `ferry plugin build` (Go: `go` on PATH or FERRY_GO;
    /// C: clang for WASI).
    #[arg(long, requires = "teleport")]
    pub examples: Option<std::path::PathBuf>,
    /// With `--teleport`: the compile cache every run of ferry shares, as a
    /// restarted ferry has its own (default: one in the bench's temporary
    /// folder, so each component is compiled in the first round only).
    #[arg(long, requires = "teleport")]
    pub plugin_cache: Option<std::path::PathBuf>,
    /// With `--teleport`: the ferry binary to measure (say
    /// `target/release/ferry`); by default ferry's own command line, built
    /// into this binary from the same library.
    #[arg(long, requires = "teleport")]
    pub ferry: Option<std::path::PathBuf>,
    /// Run as the reference client with the settings in this JSON file
    /// (`ferry-bench --teleport` starts it as a child process).
    #[arg(long, hide = true)]
    pub reference_client: Option<std::path::PathBuf>,
    /// Run as a stand-in with the settings in this JSON file (`ferry-bench
    /// --teleport` starts the Teleport and Logstash stand-ins so).
    #[arg(long, hide = true)]
    pub serve_standin: Option<std::path::PathBuf>,
    /// Run `ferry start` with the config in this file, the redact code
    /// compiled into ferry as its chain instead of the plugins folder's
    /// (`ferry-bench --teleport` starts it as a child process).
    #[arg(long, hide = true)]
    pub native_redact: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    // `ferry-bench ferry ARGS…`: ferry's command line, "ferry" its program name.
    let mut argv = std::env::args_os().skip(1).peekable();
    if argv.peek().is_some_and(|first| first == "ferry") {
        return ferry::cli::main(argv);
    }
    let args = BenchArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ferry-bench: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ferry-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(settings) = &args.reference_client {
        return reference::run(settings).await;
    }
    if let Some(settings) = &args.serve_standin {
        return standin::serve(settings).await;
    }
    if let Some(config) = &args.native_redact {
        return files::run_native_redact(config).await;
    }
    if args.teleport {
        return teleport::run(&args).await;
    }
    files::run(args).await
}
