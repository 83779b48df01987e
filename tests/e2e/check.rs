//! `ferry check`: a good config says ok; every broken one fails with exactly
//! one line on stderr that names the problem and where it is.

use crate::util::{self, Config, IN, OUT, Plugin, Sandbox};
use std::path::Path;

/// `in.jsonl` into the file sink `default`: what every case but one has.
fn source_and_sink() -> Config {
    Config::empty().set("source.file.path", IN).file_sink("default", OUT)
}

fn redact() -> Plugin {
    Plugin::built("redact").set("config.fields", vec!["login"])
}

fn hostile(name: &str, mode: &str) -> Plugin {
    Plugin::built("hostile").set("name", name).set("config.mode", mode)
}

#[test]
fn a_good_config_checks_ok_and_touches_nothing() {
    let config = source_and_sink().set("storage", "storage").plugin(redact()).plugin(hostile("quiet", "log")).text();
    let sandbox = Sandbox::new("check_ok", &config);
    let run = sandbox.run("check");
    run.assert_success(&sandbox);
    let expected = format!(
        "{}: ok: source file:{}, plugins [redact, quiet], sinks [default] (default `default`)\n",
        sandbox.config().display(),
        sandbox.path("in.jsonl").display()
    );
    assert_eq!(run.stdout, expected, "{}", sandbox.report(Some(&run)));
    assert_eq!(run.stderr, "", "a successful check prints nothing on stderr{}", sandbox.report(Some(&run)));
    let mut left: Vec<String> = std::fs::read_dir(sandbox.root())
        .expect("list the folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("run-"))
        .collect();
    left.sort();
    assert_eq!(left, ["ferry.toml"], "check must not create state, input or output{}", sandbox.report(Some(&run)));
}

/// Paths are written by the config builder, quoted as TOML wants: a plugin
/// and a sink in a folder whose name holds quotes, a backslash and spaces
/// check ok (config text put together with `format!` broke on them).
#[test]
fn paths_with_quotes_and_spaces_check_ok() {
    let odd = "it's \"odd\" \\ dir";
    let sandbox = Sandbox::new("check_odd_paths", "");
    let wasm = std::fs::read(util::plugin("redact")).expect("the redact plugin is built by ferry-test-plugins (tests/plugins-build)");
    sandbox.write(&format!("{odd}/redact.wasm"), &wasm);
    let config = Config::empty()
        .set("source.file.path", IN)
        .file_sink("default", &format!("{odd}/out.jsonl"))
        .plugin(Plugin::new(&sandbox.path(&format!("{odd}/redact.wasm"))).set("config.fields", vec!["login"]));
    sandbox.set_config(&config.text());
    let run = sandbox.run("check");
    run.assert_success(&sandbox);
    assert!(run.stdout.contains("plugins [redact]"), "{}", sandbox.report(Some(&run)));
}

/// One broken setup: the config, files beside it, and what the one error
/// line must contain (`{cfg}` is the config file's path, `{dir}` its folder).
struct Case {
    name: &'static str,
    config: String,
    files: Vec<(&'static str, Vec<u8>)>,
    says: Vec<String>,
}

fn case(name: &'static str, config: impl Into<String>, says: &[&str]) -> Case {
    Case { name, config: config.into(), files: Vec::new(), says: says.iter().map(|s| (*s).to_owned()).collect() }
}

impl Case {
    fn with_file(mut self, path: &'static str, bytes: &[u8]) -> Case {
        self.files.push((path, bytes.to_vec()));
        self
    }
}

#[test]
fn every_broken_config_fails_with_one_line_naming_the_problem() {
    let cases = [
        // The first three are written as text on purpose: their errors name
        // a line and column of it.
        case(
            "unknown key",
            format!("storage = \"s\"\n\n[pipeline]\nbatch-sise = 3\n{}", source_and_sink()),
            &["{cfg}:4:1: unknown field `batch-sise`", "batch-size"],
        ),
        case(
            "wrong type",
            format!("[pipeline]\nbatch-size = 5\nlinger = 20\n{}", source_and_sink()),
            &["{cfg}:3:10: ", "invalid type: integer `20`"],
        ),
        case(
            "bad duration",
            format!("[pipeline]\nlinger = \"soon\"\n{}", source_and_sink()),
            &["{cfg}:2:10: ", "`soon` is not a duration"],
        ),
        case(
            "zero batch size",
            source_and_sink().set("pipeline.batch-size", 0).text(),
            &["{cfg}: `pipeline.batch-size`: must be at least 1"],
        ),
        case("no sink", Config::empty().set("source.file.path", IN).text(), &["{cfg}: `sinks`: no sink is configured"]),
        case(
            "missing plugin file",
            source_and_sink().plugin(Plugin::new(Path::new("missing.wasm"))).text(),
            &["plugin {dir}/missing.wasm: cannot read: "],
        ),
        case(
            "text file as a plugin",
            source_and_sink().set("plugins-dir", "plugins").text(),
            &["plugin {dir}/plugins/x.wasm: not a ferry plugin", "not a WebAssembly file"],
        )
        .with_file("plugins/x.wasm", b"this is not WebAssembly\n"),
        case(
            "core module as a plugin",
            source_and_sink().set("plugins-dir", "plugins").text(),
            &["plugin {dir}/plugins/core.wasm: not a ferry plugin", "core WebAssembly module"],
        )
        .with_file("plugins/core.wasm", b"\0asm\x01\0\0\0"),
        case("plugins-dir missing", source_and_sink().set("plugins-dir", "gone").text(), &["{dir}/gone"]),
        case(
            "typo in a plugin's settings",
            source_and_sink().set("plugins-dir", "plugins").text(),
            &["{dir}/plugins/a.toml:1:1: unknown field `on-eror`"],
        )
        .with_file("plugins/a.wasm", b"")
        .with_file("plugins/a.toml", b"on-eror = \"pass\"\n"),
        case(
            "init refuses its config",
            source_and_sink().plugin(hostile("evil", "init-fail")).text(),
            &["plugin `evil` refused its config: refusing config on purpose"],
        ),
        case(
            "plugin config rejected",
            source_and_sink().plugin(hostile("confused", "sideways")).text(),
            &["plugin `confused` refused its config: config: unknown mode \"sideways\""],
        ),
    ];

    for case in cases {
        let sandbox = Sandbox::new("check", &case.config);
        for (path, bytes) in &case.files {
            sandbox.write(path, bytes);
        }
        let run = sandbox.run("check");
        let context = format!("case `{}`{}", case.name, sandbox.report(Some(&run)));
        assert!(run.status.is_some() && !run.success(), "ferry check should fail: {context}");
        let message = run.one_line_error(&sandbox);
        for says in &case.says {
            let says =
                says.replace("{cfg}", &sandbox.config().display().to_string()).replace("{dir}", &sandbox.root().display().to_string());
            assert!(message.contains(&says), "the error should contain `{says}`; it is `{message}`: {context}");
        }
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let sandbox = Sandbox::new("check_missing", "");
    let mut command = std::process::Command::new(util::FERRY);
    command.arg("check").arg("--config").arg(sandbox.path("nowhere.toml")).env_remove("FERRY_LOG");
    let run = sandbox.run_command(command);
    let message = run.one_line_error(&sandbox);
    let path = sandbox.path("nowhere.toml").display().to_string();
    assert!(message.starts_with(&format!("cannot read {path}: ")), "{message}{}", sandbox.report(Some(&run)));
}
