//! What a newcomer meets at the command line: a reader that stops early
//! (`| head -1`), debug logging that is about ferry, and error lines that
//! say what is wrong and what to do.

use crate::util::{self, Config, IN, OUT, Plugin, Sandbox};
use std::process::{Command, Stdio};

/// Runs `ferry ARGS…` in the sandbox with stdout a pipe whose reader is
/// already gone (as `ferry … | head -1` leaves it once `head` has its line):
/// the exit code and stderr.
fn with_stdout_closed(sandbox: &Sandbox, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut command = Command::new(util::FERRY);
    command.args(args).current_dir(sandbox.root()).env_remove("FERRY_LOG").stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped());
    let output = command.spawn().expect("ferry runs").wait_with_output().expect("ferry ends");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Every command that answers on stdout stops quietly when its reader went
/// away, instead of panicking (exit 101) or reporting a broken pipe.
#[test]
fn a_closed_stdout_ends_each_command_quietly() {
    let config = Config::empty()
        .set("source.file.path", IN)
        .file_sink("default", OUT)
        .plugin(Plugin::built("redact").set("config.fields", vec!["login"]));
    let sandbox = Sandbox::new("cli_closed_stdout", &config.text());
    let redact = util::plugin("redact");
    let redact = redact.to_str().expect("a UTF-8 path");
    let commands: [&[&str]; 5] = [
        &["version"],
        &["check", "--config", "ferry.toml"],
        &["status", "--config", "ferry.toml"],
        &["plugin", "inspect", redact],
        &["plugin", "new", "tiny", "--lang", "rust", "--dir", "scaffold"],
    ];
    for args in commands {
        let (code, stderr) = with_stdout_closed(&sandbox, args);
        assert!(
            !stderr.contains("panicked") && !stderr.to_lowercase().contains("broken pipe"),
            "ferry {args:?} with stdout closed: {stderr}"
        );
        assert_eq!(code, Some(0), "ferry {args:?} with stdout closed should end as `head` expects: {stderr}");
    }
}

/// `FERRY_LOG=debug` is ferry's debug detail: Cranelift compiling the
/// plugin stays quiet (it printed tens of thousands of lines).
#[test]
fn ferry_log_debug_is_about_ferry() {
    let config = Config::empty()
        .set("source.file.path", IN)
        .file_sink("default", OUT)
        .plugin(Plugin::built("redact").set("config.fields", vec!["login"]));
    let sandbox = Sandbox::new("cli_log_debug", &config.text());
    let mut command = sandbox.command(&["check"]);
    command.env("FERRY_LOG", "debug");
    let run = sandbox.run_command(command);
    run.assert_success(&sandbox);
    let foreign: Vec<&str> = run.stderr.lines().filter(|line| !line.contains(" ferry::") && !line.contains("ferry:")).collect();
    assert!(foreign.is_empty(), "{} lines not from ferry, first: {:?}{}", foreign.len(), foreign.first(), sandbox.report(None));

    let mut command = sandbox.command(&["check"]);
    command.env("FERRY_LOG", "debug,cranelift_codegen=debug");
    let run = sandbox.run_command(command);
    assert!(run.stderr.contains("cranelift_codegen"), "a library named by target still logs{}", sandbox.report(None));
}

/// `dead-letters list` with none says so (on stderr: stdout stays JSON
/// Lines), and `show` refuses the filters it would ignore.
#[test]
fn dead_letters_say_when_there_are_none_and_show_takes_no_filters() {
    let sandbox = Sandbox::new("cli_no_dead_letters", &Config::file_job(false).text());
    let fixtures = util::fixtures();
    sandbox.write(IN, util::jsonl(&fixtures[..3]).as_bytes());
    sandbox.run("start").assert_success(&sandbox);
    let list = sandbox.run_command(sandbox.command(&["dead-letters", "list"]));
    list.assert_success(&sandbox);
    assert_eq!(list.stdout, "", "{}", sandbox.report(Some(&list)));
    let database = sandbox.path("storage/ferry.db");
    assert_eq!(list.stderr, format!("no dead letters in {}\n", database.display()), "{}", sandbox.report(Some(&list)));
    let filtered = sandbox.run_command(sandbox.command(&["dead-letters", "list", "--stage", "sink"]));
    assert!(filtered.stderr.starts_with("no dead letters matching the filters in "), "{}", sandbox.report(Some(&filtered)));

    for args in [&["dead-letters", "show", "1", "--stage", "sink"][..], &["dead-letters", "show", "1", "--limit", "3"]] {
        let show = sandbox.run_command(sandbox.command(args));
        assert_eq!(show.status.and_then(|status| status.code()), Some(2), "clap refuses the flag{}", sandbox.report(Some(&show)));
        assert!(show.stderr.contains("unexpected argument"), "{}", sandbox.report(Some(&show)));
    }
    let before = sandbox.run_command(sandbox.command(&["dead-letters", "--component", "default", "show", "1"]));
    let message = before.one_line_error(&sandbox);
    assert!(message.contains("takes no filters"), "{message}");
}

/// The `--log-format` help of a command without a config does not send
/// people looking for one.
#[test]
fn log_format_help_names_the_config_only_for_the_commands_that_read_one() {
    let sandbox = Sandbox::new("cli_log_format_help", "");
    let help = sandbox.run_args(&["demo", "--help"], None);
    help.assert_success(&sandbox);
    let text = help.stdout.split("--log-format").nth(1).unwrap_or_default().split("\n  -").next().unwrap_or_default().to_owned();
    assert!(!text.contains("or `log-format` in the config"), "{text}");
    assert!(text.contains("`start` and `check`"), "{text}");
}
