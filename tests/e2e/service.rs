//! The systemd unit in `packaging/systemd` starts and reloads ferry with
//! command lines this binary accepts: its `ExecStart`, with the paths
//! pointed into a test folder, runs a whole job to the end.

use crate::util::{self, Config, FERRY, IN, Sandbox};
use std::process::Command;

const UNIT: &str = include_str!("../../packaging/systemd/ferry.service");

/// The value of `key=` in the unit (the first one).
fn setting(key: &str) -> &'static str {
    UNIT.lines()
        .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

#[test]
fn the_units_exec_start_runs_ferry_as_written() {
    let sandbox = Sandbox::new("service", &Config::file_job(false).text());
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let words: Vec<&str> = setting("ExecStart").split_whitespace().collect();
    assert_eq!(words[0], "/usr/local/bin/ferry", "the unit runs the installed binary");
    let config = sandbox.config();
    let args: Vec<&str> =
        words[1..].iter().map(|word| if *word == "/etc/ferry/ferry.toml" { config.to_str().expect("UTF-8 path") } else { word }).collect();
    let mut command = Command::new(FERRY);
    command.args(&args).current_dir(sandbox.root());
    let output = sandbox.run_command(command);
    output.assert_success(&sandbox);
    assert_eq!(sandbox.out_count(), events.len(), "the job ran to the end\n{}", sandbox.report(Some(&output)));
    assert_eq!(setting("ExecReload"), "/bin/kill -HUP $MAINPID", "reload is SIGHUP, which ferry takes as a plugin reload");
    assert!(!UNIT.contains("MemoryDenyWriteExecute=yes"), "wasmtime needs to make compiled code executable");
}
