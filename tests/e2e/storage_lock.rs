//! One ferry at a time on a storage: `ferry start`, `dead-letters replay`
//! and the `state` commands that write hold a lock on `<storage>/ferry.lock`
//! for as long as they run. A second one exits at once with one line naming
//! the holder (pid, host, since when, its command) instead of delivering
//! every event a second time; the read-only commands still work beside it,
//! and a holder killed with SIGKILL leaves no stale lock behind.

use crate::util::{self, Config, DEADLINE, IN, Running, Sandbox};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// How long a refused ferry may take to exit: at once, not after a timeout.
const AT_ONCE: Duration = Duration::from_secs(15);

/// A followed `in.jsonl` into `out.jsonl`, in batches of 10.
fn following() -> Config {
    Config::file_job(true).pipeline(10, "10ms").set("source.file.poll-interval", "20ms")
}

fn events(from: usize, to: usize) -> String {
    (from..to).map(|n| format!("{{\"uid\":\"e-{n}\",\"event\":\"user.login\"}}\n")).collect()
}

/// This machine's host name, as ferry names it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").expect("the host name").trim().to_owned()
}

/// Waits until `out.jsonl` holds `count` lines.
fn wait_for_out(sandbox: &Sandbox, running: &Running, count: usize) {
    util::wait_for(
        &format!("{count} events delivered"),
        DEADLINE,
        || sandbox.out_count() >= count,
        || sandbox.report(Some(&running.snapshot())),
    );
}

/// Asserts that every uid in `out.jsonl` arrived exactly once, `count` in all.
fn assert_each_once(sandbox: &Sandbox, count: usize) {
    let lines = sandbox.out_lines();
    let ids: Vec<String> = lines.iter().map(|line| util::event_id(line)).collect();
    let twice: Vec<_> = util::tally(ids.iter().map(String::as_str)).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "events delivered more than once: {twice:?}{}", sandbox.report(None));
    assert_eq!(lines.len(), count, "{}", sandbox.report(None));
}

/// Runs `command` and returns its one-line error, which must name the
/// holder `holder` on this host and the storage's lock file.
fn refused(sandbox: &Sandbox, command: std::process::Command, holder: u32, what: &str) -> String {
    let mut running = sandbox.spawn_command(command);
    let output = running.wait(sandbox, AT_ONCE);
    let error = output.one_line_error(sandbox);
    let database = sandbox.path("storage/ferry.db");
    assert!(error.starts_with(&format!("state database {}: ", database.display())), "{error}");
    assert!(error.contains(&format!("pid {holder} on host {}", host_name())), "the holder is named: {error}");
    assert!(error.contains(what), "the holder's command is named: {error}");
    assert!(error.contains(" since "), "{error}");
    assert!(error.contains(&sandbox.path("storage/ferry.lock").display().to_string()), "{error}");
    error
}

#[test]
fn a_second_start_is_refused_while_the_first_delivers_each_event_once() {
    // The same endpoint too: the second is refused for the storage, before
    // it would fail on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free port").port();
    let sandbox = Sandbox::new("lock_second_start", &following().set("http-addr", format!("127.0.0.1:{port}")).text());
    sandbox.write(IN, events(0, 20).as_bytes());
    let mut first = sandbox.spawn_start();
    wait_for_out(&sandbox, &first, 20);

    refused(&sandbox, sandbox.command(&["start"]), first.pid(), "ferry start");
    sandbox.append(IN, events(20, 40).as_bytes());
    wait_for_out(&sandbox, &first, 40);

    // The read-only commands work beside it.
    let status = sandbox.run("status");
    status.assert_success(&sandbox);
    assert!(status.stdout.contains("state database"), "{}", sandbox.report(Some(&status)));
    assert!(sandbox.dead_letters().is_empty());
    sandbox.run_command(sandbox.command(&["dead-letters", "list"])).assert_success(&sandbox);
    sandbox.run("check").assert_success(&sandbox);
    // A dry run keeps a state of its own, so it runs beside the real one.
    sandbox.write("dry-run.toml", Config::file_job(false).set("dry-run", true).text().as_bytes());
    let dry = sandbox.run_args(&["start", "--config", "dry-run.toml"], None);
    dry.assert_success(&sandbox);

    // Replaying dead letters would send beside the running ferry.
    refused(&sandbox, sandbox.command(&["dead-letters", "replay"]), first.pid(), "ferry start");
    refused(&sandbox, sandbox.command(&["state", "reset"]), first.pid(), "ferry start");

    let lock = sandbox.path("storage/ferry.lock");
    let mode = std::fs::metadata(&lock).unwrap_or_else(|err| panic!("{}: {err}", lock.display())).permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the lock file is private like the database");

    first.terminate();
    first.wait(&sandbox, DEADLINE).assert_success(&sandbox);
    assert_each_once(&sandbox, 40);
}

#[test]
fn a_start_after_the_holder_was_killed_runs() {
    let sandbox = Sandbox::new("lock_killed", &following().text());
    sandbox.write(IN, events(0, 10).as_bytes());
    let mut first = sandbox.spawn_start();
    wait_for_out(&sandbox, &first, 10);
    first.kill(&sandbox);

    // No stale lock: the kernel let go of it with the process.
    let mut second = sandbox.spawn_start();
    sandbox.append(IN, events(10, 20).as_bytes());
    wait_for_out(&sandbox, &second, 20);
    assert!(!second.has_exited(), "the new start runs{}", sandbox.report(Some(&second.snapshot())));
    refused(&sandbox, sandbox.command(&["start"]), second.pid(), "ferry start");
    second.terminate();
    second.wait(&sandbox, DEADLINE).assert_success(&sandbox);
}

#[test]
fn of_two_started_at_once_on_a_fresh_storage_exactly_one_runs() {
    for round in 0..3 {
        let sandbox = Sandbox::new(&format!("lock_race_{round}"), &following().text());
        sandbox.write(IN, events(0, 10).as_bytes());
        let mut one = sandbox.spawn_start();
        let mut two = sandbox.spawn_start();
        let started = Instant::now();
        while !one.has_exited() && !two.has_exited() {
            assert!(
                started.elapsed() < AT_ONCE,
                "both still run after {AT_ONCE:?}{}{}",
                sandbox.report(Some(&one.snapshot())),
                sandbox.report(Some(&two.snapshot()))
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let (mut loser, mut winner) = if one.has_exited() { (one, two) } else { (two, one) };
        let output = loser.wait(&sandbox, DEADLINE);
        let error = output.one_line_error(&sandbox);
        assert!(!error.contains("no such table"), "{error}");
        assert!(error.contains(&format!("pid {} on host", winner.pid())), "the loser names the winner: {error}");
        wait_for_out(&sandbox, &winner, 10);
        assert!(!winner.has_exited(), "the winner runs{}", sandbox.report(Some(&winner.snapshot())));
        winner.terminate();
        winner.wait(&sandbox, DEADLINE).assert_success(&sandbox);
        assert_each_once(&sandbox, 10);
    }
}
