//! `ferry plugin new`: a working plugin to start from, in Rust, Python,
//! JavaScript, C or Go.
//!
//! Every scaffold carries a copy of the contract (`wit/plugin.wit`) this
//! ferry implements, so it builds without a ferry checkout; the Rust one also
//! carries ferry's Rust SDK (`ferry-guest/`), whose bindings are generated
//! from that copy, and the event contract it reads events with
//! (`ferry-event/`), so a plugin reads ids and types as this ferry does; the
//! C one carries the C bindings generated from that copy (`bindings/`); the
//! Go one carries ferry's Go SDK (`ferry-plugin/`, from `sdk/go`). The templates live in `host/templates/` and are compiled
//! into the binary. Each scaffold does the same small job (drop the event
//! types named in its config, mark every other event), so that it shows
//! config, replace, drop and counters, and can be checked after it is built.

use std::path::{Path, PathBuf};

/// The languages ferry can scaffold a plugin in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// Rust with ferry's SDK, `ferry-guest`; built by cargo for wasm32-wasip2.
    Rust,
    /// Python, packed with CPython by componentize-py.
    Python,
    /// JavaScript, packed with StarlingMonkey by componentize-js.
    Js,
    /// C, compiled by clang for WASI with wasi-libc (Debian's clang-16,
    /// lld-16 and wasi-libc), made a component by ferry itself.
    C,
    /// Go with ferry's Go SDK, built by the standard Go toolchain (1.24 or
    /// later) for wasip1, made a component by ferry itself.
    Go,
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
            Language::C => "C",
            Language::Go => "Go",
        })
    }
}

/// Which of a language's templates `ferry plugin new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Template {
    /// The language's starting plugin: drops the types its config lists and
    /// marks every other event (every language has it).
    #[default]
    Plain,
    /// C only: each event read with a small JSON reader that the folder
    /// carries (`json.h`, `json.c` and its native test); drops the types
    /// its config lists and redacts the fields it lists.
    Json,
}

/// Why a scaffold could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a plugin, crate and file name.
    #[error("invalid plugin name `{name}`: use a lowercase letter, then lowercase letters, digits, `-` or `_` (at most 64)")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// Scaffolding never overwrites anything.
    #[error("{} already exists; choose another name or --dir", path.display())]
    Exists {
        /// The plugin's folder.
        path: PathBuf,
    },
    /// The template is not one of this language's.
    #[error("--template {template}: there is no such {language} template (`json` is a C template: give --lang c)")]
    Template {
        /// The template asked for.
        template: &'static str,
        /// The language asked for.
        language: Language,
    },
    /// The C bindings could not be generated from the contract.
    #[error("{0}")]
    Bindings(String),
    /// The file system refused.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or folder being written.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A plugin folder just written.
#[derive(Debug)]
pub struct Scaffold {
    /// The plugin's folder.
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<String>,
    /// Shell commands, run in `dir`, that build the plugin by hand (its
    /// README gives them after `ferry plugin build`).
    pub build: Vec<String>,
    /// The component the build writes, relative to `dir`.
    pub output: String,
}

/// The contract every scaffold implements.
const WIT: &str = include_str!("../../../../wit/plugin.wit");

/// Writes a new plugin called `name` in `language` into `parent/name`.
pub fn create(name: &str, language: Language, parent: &Path) -> Result<Scaffold, ScaffoldError> {
    create_from(name, language, Template::Plain, parent)
}

/// Writes a new plugin called `name` in `language` from `template` into `parent/name`.
pub fn create_from(name: &str, language: Language, template: Template, parent: &Path) -> Result<Scaffold, ScaffoldError> {
    check_name(name)?;
    if template == Template::Json && language != Language::C {
        return Err(ScaffoldError::Template { template: "json", language });
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists { path: dir });
    }
    let lib_name = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{lib_name}}", &lib_name)
            .replace("{{type_name}}", &type_name(name))
            .replace("{{ferry_version}}", env!("CARGO_PKG_VERSION"))
    };
    let files: Vec<(&'static str, String)> = match (language, template) {
        (Language::Rust, _) => vec![
            ("Cargo.toml", fill(include_str!("../../../templates/rust/Cargo.toml"))),
            // Pins the dependencies ferry's own plugins are built and tested with.
            ("Cargo.lock", include_str!("../../../../plugins/Cargo.lock").to_owned()),
            ("src/lib.rs", fill(include_str!("../../../templates/rust/lib.rs"))),
            ("README.md", fill(include_str!("../../../templates/rust/README.md"))),
            ("ferry-guest/Cargo.toml", fill(include_str!("../../../templates/rust/ferry-guest.Cargo.toml"))),
            ("ferry-guest/src/lib.rs", include_str!("../../../../guest-sdk/src/lib.rs").to_owned()),
            ("ferry-guest/src/event.rs", include_str!("../../../../guest-sdk/src/event.rs").to_owned()),
            ("ferry-guest/src/wire.rs", include_str!("../../../../guest-sdk/src/wire.rs").to_owned()),
            ("ferry-guest/src/host.rs", include_str!("../../../../guest-sdk/src/host.rs").to_owned()),
            ("ferry-guest/src/json.rs", include_str!("../../../../guest-sdk/src/json.rs").to_owned()),
            ("ferry-guest/src/plugin.rs", include_str!("../../../../guest-sdk/src/plugin.rs").to_owned()),
            ("ferry-event/Cargo.toml", fill(include_str!("../../../templates/rust/ferry-event.Cargo.toml"))),
            ("ferry-event/src/lib.rs", include_str!("../../../../event/src/lib.rs").to_owned()),
            ("ferry-event/src/header.rs", include_str!("../../../../event/src/header.rs").to_owned()),
            ("ferry-event/src/outcome.rs", include_str!("../../../../event/src/outcome.rs").to_owned()),
            ("ferry-event/src/lines.rs", include_str!("../../../../event/src/lines.rs").to_owned()),
            ("wit/plugin.wit", WIT.to_owned()),
        ],
        (Language::Python, _) => vec![
            ("app.py", fill(include_str!("../../../templates/python/app.py"))),
            ("README.md", fill(include_str!("../../../templates/python/README.md"))),
            ("wit/plugin.wit", WIT.to_owned()),
        ],
        (Language::Js, _) => vec![
            ("app.js", fill(include_str!("../../../templates/js/app.js"))),
            ("package.json", fill(include_str!("../../../templates/js/package.json"))),
            ("README.md", fill(include_str!("../../../templates/js/README.md"))),
            ("wit/plugin.wit", WIT.to_owned()),
        ],
        (Language::C, Template::Json) => vec![
            ("NAME.c", fill(include_str!("../../../templates/c/json/plugin.c"))),
            ("json.h", include_str!("../../../templates/c/json/json.h").to_owned()),
            ("json.c", include_str!("../../../templates/c/json/json.c").to_owned()),
            ("test/json_test.c", include_str!("../../../templates/c/json/test/json_test.c").to_owned()),
            ("NAME.toml", fill(include_str!("../../../templates/c/json/plugin.toml"))),
            ("README.md", fill(include_str!("../../../templates/c/json/README.md"))),
            ("wit/plugin.wit", WIT.to_owned()),
        ],
        (Language::C, Template::Plain) => vec![
            ("NAME.c", fill(include_str!("../../../templates/c/plugin.c"))),
            ("NAME.toml", fill(include_str!("../../../templates/c/plugin.toml"))),
            ("README.md", fill(include_str!("../../../templates/c/README.md"))),
            ("wit/plugin.wit", WIT.to_owned()),
        ],
        (Language::Go, _) => vec![
            ("main.go", fill(include_str!("../../../templates/go/main.go"))),
            ("go.mod", fill(include_str!("../../../templates/go/go.mod"))),
            ("NAME.toml", fill(include_str!("../../../templates/go/plugin.toml"))),
            ("README.md", fill(include_str!("../../../templates/go/README.md"))),
            ("wit/plugin.wit", WIT.to_owned()),
            ("ferry-plugin/go.mod", include_str!("../../../../sdk/go/go.mod").to_owned()),
            ("ferry-plugin/doc.go", include_str!("../../../../sdk/go/doc.go").to_owned()),
            ("ferry-plugin/plugin.go", include_str!("../../../../sdk/go/plugin.go").to_owned()),
            ("ferry-plugin/event.go", include_str!("../../../../sdk/go/event.go").to_owned()),
            ("ferry-plugin/fields.go", include_str!("../../../../sdk/go/fields.go").to_owned()),
            ("ferry-plugin/outcome.go", include_str!("../../../../sdk/go/outcome.go").to_owned()),
            ("ferry-plugin/abi.go", include_str!("../../../../sdk/go/abi.go").to_owned()),
            ("ferry-plugin/host_native.go", include_str!("../../../../sdk/go/host_native.go").to_owned()),
        ],
    };
    // `NAME` in a file's name is the plugin's (the C and Go plugins' code and settings).
    let files: Vec<(String, String)> = files.into_iter().map(|(relative, text)| (relative.replace("NAME", name), text)).collect();
    for (relative, text) in &files {
        write(&dir.join(relative), text)?;
    }
    let mut files: Vec<String> = files.into_iter().map(|(relative, _)| relative).collect();
    if language == Language::C {
        // For the editor and a build by hand; `ferry plugin build` writes them again.
        ferry_plugin_build::c::write_bindings(&dir.join("wit"), &dir.join(ferry_plugin_build::c::BINDINGS))
            .map_err(ScaffoldError::Bindings)?;
        files.extend(C_BINDINGS.map(str::to_owned));
    }
    let (build, output) = build_commands(name, &lib_name, language);
    Ok(Scaffold { dir, files, build, output })
}

/// The files wit-bindgen's C generator writes for the `plugin` world.
const C_BINDINGS: [&str; 3] = ["bindings/plugin.h", "bindings/plugin.c", "bindings/plugin_component_type.o"];

/// How each language's scaffold is built, as its README says.
fn build_commands(name: &str, lib_name: &str, language: Language) -> (Vec<String>, String) {
    match language {
        Language::Rust => {
            (vec!["cargo build --release --target wasm32-wasip2".to_owned()], format!("target/wasm32-wasip2/release/{lib_name}.wasm"))
        }
        Language::Python => (
            vec![
                "python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1".to_owned(),
                format!(".venv/bin/componentize-py -d wit -w plugin componentize app -o {name}.wasm"),
            ],
            format!("{name}.wasm"),
        ),
        Language::Js => (vec!["npm install".to_owned(), "npm run build".to_owned()], format!("{name}.wasm")),
        Language::C => (
            vec![
                format!(
                    "mkdir -p build && clang-16 --target=wasm32-wasi -mexec-model=reactor -O2 -I bindings -o build/{name}.core.wasm *.c bindings/plugin.c bindings/plugin_component_type.o"
                ),
                format!("wasm-tools component new build/{name}.core.wasm --adapt wasi_snapshot_preview1.reactor.wasm -o {name}.wasm"),
            ],
            format!("{name}.wasm"),
        ),
        Language::Go => (
            // The core module only: `ferry plugin build` then prepares it and
            // makes it a component, which stock tools cannot (see the README).
            vec![format!("mkdir -p build && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o build/{name}.core.wasm .")],
            format!("{name}.wasm"),
        ),
    }
}

/// A plugin name must be usable as a crate name, a Python or npm package
/// name and a file name, everywhere: so lowercase ASCII only.
fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if valid { Ok(()) } else { Err(ScaffoldError::InvalidName { name: name.to_owned() }) }
}

/// `my-plugin` → `MyPlugin`, the Rust type the plugin's state lives in.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

fn write(path: &Path, text: &str) -> Result<(), ScaffoldError> {
    let failed = |source| ScaffoldError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    std::fs::write(path, text).map_err(failed)
}

#[cfg(test)]
#[path = "scaffold_tests.rs"]
mod tests;
