//! Python and JavaScript plugins: componentize-py packs an `app.py` with
//! CPython, componentize-js an `app.js` with StarlingMonkey, into one
//! WebAssembly component each. [`build_examples`] builds every such plugin
//! of ferry's `plugins/` (for the test-plugins crate); [`build_plugin`] one
//! plugin author's folder (for `ferry plugin build`).
//!
//! The tools are installed on first use into a tools folder, pinned to the
//! versions the project was measured with: componentize-py (PyPI) in a
//! virtual environment, componentize-js (npm) in a node_modules folder. An
//! example plugin is built again only when its sources, the WIT or the
//! tools are newer than its component (a build takes 15 s or so per plugin).
//!
//! componentize-js is called directly, not through `jco componentize`, which
//! cannot see its `--wit` path in jco 1.35. Its wasi:http import is disabled:
//! ferry links plain WASI only.

use crate::{Failure, Progress};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The componentize-py release the Python plugins are built with.
const COMPONENTIZE_PY: (&str, &str) = ("componentize-py", "0.25.1");
/// The componentize-js release the JavaScript plugins are built with.
const COMPONENTIZE_JS: (&str, &str) = ("@bytecodealliance/componentize-js", "0.23.0");

/// A plugin language: what file a plugin's code starts in, where ferry's
/// own plugins of it live, and how its tool is installed and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `app.py`, built by componentize-py.
    Python,
    /// `app.js`, built by componentize-js.
    JavaScript,
}

impl Language {
    /// The language of the plugin in `dir`, by the file its code starts in
    /// (as `ferry plugin new` writes it), if any.
    pub fn of_folder(dir: &Path) -> Option<Language> {
        [Language::Python, Language::JavaScript].into_iter().find(|language| dir.join(language.entry()).is_file())
    }

    /// The file a plugin's code starts in.
    pub fn entry(self) -> &'static str {
        match self {
            Language::Python => "app.py",
            Language::JavaScript => "app.js",
        }
    }

    /// Its name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
        }
    }

    fn folder(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "js",
        }
    }

    /// The tool's package and pinned version.
    fn tool(self) -> (&'static str, &'static str) {
        match self {
            Language::Python => COMPONENTIZE_PY,
            Language::JavaScript => COMPONENTIZE_JS,
        }
    }
}

/// What a build script that runs [`build_examples`] must watch.
pub fn watched(root: &Path) -> Vec<PathBuf> {
    ["plugins/python", "plugins/js"].iter().map(|path| root.join(path)).collect()
}

/// Builds every Python and JavaScript plugin of `root/plugins` into
/// `wasm_dir`, installing the tools into `tools_dir` when missing. Returns
/// the one-line reason when a tool is missing or a build fails.
pub fn build_examples(root: &Path, wasm_dir: &Path, tools_dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(wasm_dir).map_err(|err| format!("cannot create {}: {err}", wasm_dir.display()))?;
    // The two languages build in parallel: each build is one long, mostly
    // single-threaded tool run.
    std::thread::scope(|scope| {
        let handles = [Language::Python, Language::JavaScript]
            .map(|language| scope.spawn(move || build_language(language, root, wasm_dir, tools_dir)));
        handles.into_iter().try_for_each(|handle| handle.join().unwrap_or_else(|_| Err("a plugin build thread panicked".into())))
    })
}

/// Builds the plugin in `dir` (its entry file and `wit/plugin.wit` beside
/// it, as `ferry plugin new` writes them) into `dir/<folder name>.wasm`,
/// installing the tool into `tools_dir` first when missing; returns the
/// component's path. The tool's own output goes to stderr.
pub fn build_plugin(language: Language, dir: &Path, tools_dir: &Path, progress: Progress) -> Result<PathBuf, Failure> {
    let wit = dir.join("wit");
    if !wit.is_dir() {
        return Err(format!("no wit/ folder (the contract the plugin implements, which `ferry plugin new` writes) in {}", dir.display()));
    }
    let tool = install(language, tools_dir, progress)?;
    let output = dir.join(format!("{}.wasm", plugin_name(dir)));
    componentize(language, &tool, dir, &wit, &output, &tools_dir.join("stage"))?;
    Ok(output)
}

/// Builds the plugins of one language that are older than their sources;
/// installs the tool only when some plugin needs building.
fn build_language(language: Language, root: &Path, wasm_dir: &Path, tools_dir: &Path) -> Result<(), Failure> {
    let wit = root.join("wit");
    let mut tool = None;
    for dir in plugin_dirs(&root.join("plugins").join(language.folder()), language) {
        let output = wasm_dir.join(format!("{}.wasm", plugin_name(&dir)));
        let tool = match &tool {
            Some(tool) => tool,
            None => tool.insert(install(language, tools_dir, &crate::quiet)?),
        };
        if !is_up_to_date(&output, &[dir.as_path(), wit.as_path(), &tool.marker]) {
            componentize(language, tool, &dir, &wit, &output, &tools_dir.join("stage"))?;
        }
    }
    Ok(())
}

/// The plugin folders of one language: each sub-folder holding the entry file.
fn plugin_dirs(folder: &Path, language: Language) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|entry| entry.path()).filter(|dir| dir.join(language.entry()).is_file()).collect();
    dirs.sort();
    dirs
}

fn plugin_name(dir: &Path) -> String {
    dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

/// An installed tool: the program to run and the file whose age says when it
/// was installed (a newer tool rebuilds every plugin).
pub struct Tool {
    program: PathBuf,
    marker: PathBuf,
}

/// Installs the language's tool into `tools_dir` unless the same version is
/// there already; `progress` hears of an installation before it starts.
pub fn install(language: Language, tools_dir: &Path, progress: Progress) -> Result<Tool, Failure> {
    let (package, version) = language.tool();
    let tool_name = package.rsplit('/').next().unwrap_or(package);
    match language {
        Language::Python => {
            let venv = tools_dir.join("python");
            let tool = Tool { program: venv.join("bin/componentize-py"), marker: venv.join(format!("{package}=={version}.installed")) };
            if tool.marker.exists() && tool.program.exists() {
                return Ok(tool);
            }
            require(language, "python3", (3, 10), "Python 3.10 or later with venv (Debian: apt-get install python3 python3-venv)")?;
            progress(&format!("Installing {tool_name} {version} into {}", venv.display()));
            let _ = std::fs::remove_dir_all(&venv);
            run(
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
                "python3 -m venv",
                "is the venv module installed? (Debian: apt-get install python3-venv)",
            )?;
            run(
                Command::new(venv.join("bin/pip")).args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    &format!("{package}=={version}"),
                ]),
                &format!("pip install {package}=={version}"),
                "PyPI must be reachable to install it",
            )?;
            touch(&tool.marker)?;
            Ok(tool)
        }
        Language::JavaScript => {
            let prefix = tools_dir.join("js");
            let tool = Tool {
                program: prefix.join("node_modules/.bin/componentize-js"),
                marker: prefix.join(format!("{}@{version}.installed", package.replace('/', "+"))),
            };
            if tool.marker.exists() && tool.program.exists() {
                return Ok(tool);
            }
            // componentize-js's parser (oxc-parser) needs Node.js 20, and
            // npm 9 leaves out some of its native parts: in both cases the
            // install succeeds and the build fails later on a missing module.
            const NEWER: &str = "Debian 12 ships Node.js 18 with npm 9: `npm install --prefix DIR node@20 npm@11` and put DIR/node_modules/.bin first on PATH";
            require(language, "node", (20, 0), &format!("Node.js 20 or later ({NEWER})"))?;
            require(language, "npm", (10, 0), &format!("npm 10 or later ({NEWER})"))?;
            progress(&format!("Installing {tool_name} {version} into {}", prefix.display()));
            let _ = std::fs::remove_dir_all(&prefix);
            std::fs::create_dir_all(&prefix).map_err(|err| format!("cannot create {}: {err}", prefix.display()))?;
            run(
                Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
                    .arg(&prefix)
                    .arg(format!("{package}@{version}")),
                &format!("npm install {package}@{version}"),
                "the npm registry must be reachable to install it",
            )?;
            touch(&tool.marker)?;
            Ok(tool)
        }
    }
}

/// Fails with what to install when `program` cannot be run or says (in
/// `--version`: `Python 3.11.2`, `v18.19.0`) it is older than `at_least`.
fn require(language: Language, program: &str, at_least: (u32, u32), what: &str) -> Result<(), Failure> {
    let output = match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => output,
        _ => return Err(format!("building a {} plugin needs {what}; `{program}` was not found or does not run", language.name())),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text.trim().trim_start_matches(|c: char| !c.is_ascii_digit()).split('.').map(|part| part.parse::<u32>().ok());
    let found = (numbers.next().flatten(), numbers.next().flatten());
    match found {
        (Some(major), Some(minor)) if (major, minor) < at_least => {
            Err(format!("building a {} plugin needs {what}; `{program}` is {}", language.name(), text.trim()))
        }
        _ => Ok(()),
    }
}

/// Builds one plugin. The sources are copied to a scratch folder first, so
/// the tools' by-products (Python's `__pycache__`) stay out of the checkout;
/// the component is written beside its final name and renamed, so that an
/// interrupted build leaves no truncated plugin behind.
fn componentize(language: Language, tool: &Tool, dir: &Path, wit: &Path, output: &Path, stage_root: &Path) -> Result<(), Failure> {
    let name = plugin_name(dir);
    let stage = stage_root.join(format!("{}-{name}", language.folder()));
    let _ = std::fs::remove_dir_all(&stage);
    copy_dir(dir, &stage).map_err(|err| format!("cannot copy {} to {}: {err}", dir.display(), stage.display()))?;
    let partial = output.with_extension("wasm.partial");
    let mut command = Command::new(&tool.program);
    command.current_dir(&stage);
    match language {
        Language::Python => {
            command.arg("-d").arg(wit).args(["-w", "plugin", "componentize", "app", "-o"]).arg(&partial);
        }
        Language::JavaScript => {
            command.arg("app.js").arg("--wit").arg(wit).args(["-n", "plugin", "-d", "http", "-d", "fetch-event", "-o"]).arg(&partial);
        }
    }
    let what = format!("building the {} plugin {}", language.name(), dir.display());
    run(&mut command, &what, "see the tool's output above")?;
    std::fs::rename(&partial, output).map_err(|err| format!("cannot move {} to {}: {err}", partial.display(), output.display()))
}

/// Runs a command with its output shown by cargo when the build fails.
/// The tool's stdout goes to stderr with the rest of its output: stdout is
/// for cargo's directives in a build script, and for the component's path
/// alone in `ferry plugin build` (componentize-py prints "Component built
/// successfully" there).
fn run(command: &mut Command, what: &str, hint: &str) -> Result<(), Failure> {
    match command.stdout(std::io::stderr()).status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{what} failed ({status}); {hint}")),
        Err(err) => Err(format!("{what} failed: cannot run {}: {err}", command.get_program().to_string_lossy())),
    }
}

/// True when `output` exists and is newer than every file under `inputs`.
fn is_up_to_date(output: &Path, inputs: &[&Path]) -> bool {
    let Some(built) = modified(output) else { return false };
    inputs.iter().all(|input| newest(input).is_some_and(|newest| newest < built))
}

/// The newest modification time of a file, or of any file under a folder.
fn newest(path: &Path) -> Option<SystemTime> {
    let mut latest = modified(path)?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path).ok()?.filter_map(Result::ok) {
            if is_source(&entry.path()) {
                latest = latest.max(newest(&entry.path())?);
            }
        }
    }
    Some(latest)
}

/// Leaves out what tools and editors put beside the sources.
fn is_source(path: &Path) -> bool {
    let name = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    !(name.starts_with('.') || name == "__pycache__" || name == "node_modules")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|meta| meta.modified()).ok()
}

fn touch(path: &Path) -> Result<(), Failure> {
    std::fs::write(path, b"").map_err(|err| format!("cannot write {}: {err}", path.display()))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if !is_source(&entry.path()) {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
