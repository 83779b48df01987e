//! `ferry plugin …`: what a plugin author runs. `new` writes a plugin to
//! start from, `build` builds it into a component, `test` runs it on events
//! and `inspect` says what a component is: `new`, `build`, `test` is the
//! whole authoring loop.

pub mod build;
pub mod examples;
pub mod inspect;
pub mod scaffold;
pub mod test;

use crate::cli::out::say;
use crate::plugin::PluginError;
use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// The plugin commands.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Run a plugin over JSON Lines events read from stdin and print what
    /// became of each (kept, dropped, failed, routed, replaced with the
    /// changed fields), then a summary.
    Test(test::TestArgs),
    /// Show a component's ferry:plugin version, exports, imports and size,
    /// and whether this ferry would load it.
    Inspect(inspect::InspectArgs),
    /// Create a working plugin to start from, with its build instructions;
    /// or, with `--example NAME`, write one of the example plugins this
    /// binary carries, built, as NAME.wasm and NAME.toml into `--dir`.
    New {
        /// The plugin's name (lowercase letters, digits, `-`, `_`); also its folder.
        #[arg(required_unless_present = "example")]
        name: Option<String>,
        /// The language to write it in.
        #[arg(long, required_unless_present = "example")]
        lang: Option<scaffold::Language>,
        /// Which template of the language: `json` (C only) reads each event
        /// with a small JSON reader written into the folder.
        #[arg(long, value_enum, default_value_t = scaffold::Template::Plain, conflicts_with = "example")]
        template: scaffold::Template,
        /// Write this built example plugin (and its settings) instead of a
        /// plugin's source.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["name", "lang"])]
        example: Option<examples::Example>,
        /// Where to create the plugin's folder (with `--example`: where to
        /// write its two files, such as the plugins folder).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build a plugin folder (as `ferry plugin new` writes it: Rust, Python,
    /// JavaScript, C or Go) into a component and print the component's path.
    Build(build::BuildArgs),
}

impl PluginCommand {
    /// Runs the command on a blocking thread: plugin calls and builds must
    /// not block the async runtime's own threads.
    pub async fn run(self) -> anyhow::Result<()> {
        let work = move || -> anyhow::Result<()> {
            let stdout = crate::cli::out::Stdout::lock();
            match self {
                PluginCommand::Test(args) => test::test(&args, std::io::stdin().lock(), std::io::BufWriter::new(stdout)).map(drop)?,
                PluginCommand::Inspect(args) => inspect::inspect(&args, stdout)?,
                PluginCommand::New { example: Some(example), dir, .. } => write_example(example, &dir)?,
                PluginCommand::New { name: Some(name), lang: Some(lang), template, dir, .. } => new(&name, lang, template, &dir)?,
                PluginCommand::New { .. } => anyhow::bail!("ferry plugin new: give NAME and --lang, or --example NAME"),
                PluginCommand::Build(args) => build::run(&args, stdout).map(drop)?,
            }
            Ok(())
        };
        tokio::task::spawn_blocking(work).await.context("the plugin tool stopped unexpectedly")?
    }
}

/// `ferry plugin new`: writes the scaffold and says how to go on.
fn new(name: &str, language: scaffold::Language, template: scaffold::Template, dir: &Path) -> anyhow::Result<()> {
    let scaffold = scaffold::create_from(name, language, template, dir)?;
    say!("Created the {language} plugin `{name}` in {}:", scaffold.dir.display())?;
    for file in &scaffold.files {
        say!("  {file}")?;
    }
    say!("Build it:\n  ferry plugin build {}", scaffold.dir.display())?;
    say!("or by hand (see its README.md):\n  cd {}", scaffold.dir.display())?;
    for step in &scaffold.build {
        say!("  {step}")?;
    }
    say!("Then try it: ferry plugin test {} < events.jsonl", scaffold.dir.join(&scaffold.output).display())?;
    Ok(())
}

/// `ferry plugin new --example NAME`: writes the built example and its
/// settings and says what to do with them.
fn write_example(example: examples::Example, dir: &Path) -> anyhow::Result<()> {
    let [wasm, settings] = examples::write(example, dir)?;
    println!("Wrote the example plugin `{}`:", example.name());
    println!("  {}", wasm.display());
    println!("  {}  (its settings: edit them)", settings.display());
    println!("In ferry's plugins folder (plugins-dir) the two join the chain in name order; then");
    println!("  ferry check --config ferry.toml");
    println!("loads every plugin with its settings.");
    Ok(())
}

/// `$XDG_CACHE_HOME/ferry/NAME`, else `~/.cache/ferry/NAME`: where the
/// plugin commands keep what they may reuse; `None` without a home folder.
fn user_cache(name: &str) -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|dir| dir.join("ferry").join(name))
}

/// The compile cache `plugin test` uses: `--cache`, else the user's cache
/// folder; `None` for `--cache none` or when there is no home folder.
fn compile_cache(chosen: Option<&std::path::Path>) -> Option<PathBuf> {
    match chosen {
        Some(path) if path.as_os_str() == "none" => None,
        Some(path) => Some(path.to_owned()),
        None => user_cache("plugin-cache"),
    }
}

/// Why a tool could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The plugin cannot be loaded, or this ferry would refuse it.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The `NAME.toml` beside the plugin does not load.
    #[error(transparent)]
    Settings(#[from] crate::config::ConfigError),
    /// `--config` is not a JSON object.
    #[error("--config: {0}")]
    Config(String),
    /// `--batch` is 0.
    #[error("--batch: must be at least 1")]
    Batch,
    /// Standard input could not be read.
    #[error("cannot read events from stdin: {0}")]
    Input(std::io::Error),
    /// The report could not be written.
    #[error("cannot write the report: {0}")]
    Output(std::io::Error),
}
