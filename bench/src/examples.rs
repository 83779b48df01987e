//! The example plugins of `--teleport --examples`, one per language, and
//! what each costs before its first event: its size and the time ferry takes
//! to compile it at a first start.
//!
//! The Python and JavaScript examples (`tag`, `reshape`) come built from
//! `--examples` (`cargo test` builds them with `ferry-plugin-build`); the Go
//! and C examples (`plugins/go/team-tags`, `plugins/c/drop-types`) are built
//! here, by the ferry under test's `ferry plugin build`, as an author builds
//! a plugin: a copy of each folder in the bench's temporary folder (the build
//! writes beside the code), with the repository's contract and, for Go, its
//! go.mod pointing at the repository's SDK.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The Go and C examples, relative to the repository's `plugins/` folder.
const GO_EXAMPLE: &str = "go/team-tags";
const C_EXAMPLE: &str = "c/drop-types";

/// The example components of one bench.
pub struct Examples {
    /// `--examples`: the built Python and JavaScript examples.
    built: PathBuf,
    /// `team-tags.wasm`, built here.
    pub go: PathBuf,
    /// `drop-types.wasm`, built here.
    pub c: PathBuf,
}

impl Examples {
    /// Builds the Go and C examples from the repository's `plugins/`
    /// folder with `ferry` (a command that runs the ferry under test) into
    /// `work`; `built` holds the Python and JavaScript ones.
    pub fn prepare(built: &Path, ferry: impl Fn() -> std::process::Command, work: &Path) -> anyhow::Result<Examples> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let go = build_copy(&ferry, &repo, GO_EXAMPLE, work)?;
        let c = build_copy(&ferry, &repo, C_EXAMPLE, work)?;
        Ok(Examples { built: built.to_owned(), go, c })
    }

    /// A built Python or JavaScript example, `NAME.wasm` in `--examples`.
    pub fn built(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.built.join(format!("{name}.wasm"));
        std::fs::read(&path).with_context(|| format!("cannot read the example plugin {} (build it with `cargo test`)", path.display()))
    }
}

/// Copies the example `relative` (its own files, not its subfolders) from
/// the repository into `work`, with the repository's contract as its
/// `wit/plugin.wit` and a go.mod whose SDK is the repository's, builds it
/// with `ferry plugin build` and returns the component's path.
fn build_copy(ferry: &impl Fn() -> std::process::Command, repo: &Path, relative: &str, work: &Path) -> anyhow::Result<PathBuf> {
    let source = repo.join("plugins").join(relative);
    let name = source.file_name().context("an example folder has a name")?.to_owned();
    let dir = work.join(&name);
    std::fs::create_dir_all(dir.join("wit")).with_context(|| format!("cannot create {}", dir.display()))?;
    for entry in std::fs::read_dir(&source).with_context(|| format!("cannot list the example {}", source.display()))? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap_or_default()))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    std::fs::copy(repo.join("wit/plugin.wit"), dir.join("wit/plugin.wit")).context("cannot copy the contract")?;
    let go_mod = dir.join("go.mod");
    if go_mod.is_file() {
        let sdk = std::path::absolute(repo.join("sdk/go"))?;
        let text = std::fs::read_to_string(&go_mod)?.replace("../../../sdk/go", &sdk.to_string_lossy());
        std::fs::write(&go_mod, text)?;
    }
    let started = Instant::now();
    let output = ferry().arg("plugin").arg("build").arg(&dir).stderr(std::process::Stdio::inherit()).output()?;
    anyhow::ensure!(output.status.success(), "`ferry plugin build {}` failed ({}); its messages are above", dir.display(), output.status);
    let wasm = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    eprintln!("built {} in {:.1} s", wasm.display(), started.elapsed().as_secs_f64());
    Ok(wasm)
}

/// What a plugin costs before its first event: its component's size and
/// how long ferry's runtime takes to load it with an empty compile cache
/// (compile, write to the cache, instantiate, `init` with its settings), as
/// at a first start. Later starts read the compiled code from the cache.
pub fn first_start(name: &str, wasm: &[u8], settings: &str) -> anyhow::Result<(u64, Duration)> {
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let path = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, wasm)?;
    std::fs::write(path.with_extension("toml"), settings)?;
    let cache = dir.path().join("plugin-cache");
    std::fs::create_dir(&cache)?;
    let (spec, _) = ferry::app::spec_beside(&path)?;
    let runtime = ferry::plugin::Runtime::new(Some(cache), std::sync::Arc::new(ferry::metrics::Metrics::default()))?;
    let started = Instant::now();
    let (_plugin, loaded) = runtime.load(spec.settings()).with_context(|| format!("cannot load {name}"))?;
    let took = started.elapsed();
    anyhow::ensure!(loaded == ferry::plugin::Loaded::Compiled, "{name} came from a cache that should be empty");
    Ok((wasm.len() as u64, took))
}
