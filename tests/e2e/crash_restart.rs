//! A crash loses nothing and a clean stop repeats nothing.
//!
//! ferry follows a growing file, is killed with SIGKILL mid-stream, and after
//! a restart every event arrives, with at most the one batch that was in
//! flight delivered twice. SIGTERM, even in the middle of a delivery, lets
//! the batches in flight finish and commits them before ferry exits 0, so
//! the next run starts exactly where the stopped one ended.

use crate::util::{self, Config, DEADLINE, IN, OUT, Plugin, Sandbox};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

const BATCH: usize = 50;

/// The redact job over `in.jsonl` (polled every 20 ms, followed or read to
/// its end) into the file sink `default`, one batch of 50 in flight.
fn config(follow: bool) -> String {
    job(follow).file_sink("default", OUT).text()
}

/// As [`config`], without a sink.
fn job(follow: bool) -> Config {
    let redact = Plugin::built("redact").set("config.fields", vec!["login"]).set("config.replacement", "***");
    Config::new()
        .plugin(redact)
        .pipeline(BATCH, "20ms")
        .set("pipeline.batches-in-flight", 1)
        .file_source(IN, follow)
        .set("source.file.poll-interval", "20ms")
}

/// The fixtures repeated with a suffix on every uid (and a uid given to the
/// events that have none), so that every line has its own uid.
fn many_events(copies: usize) -> Vec<(String, String)> {
    let fixtures = util::fixtures();
    let mut events = Vec::new();
    for copy in 0..copies {
        for (line, event) in fixtures.iter().enumerate() {
            let mut value = event.value.clone();
            let base = value.get("uid").and_then(Value::as_str).map_or_else(|| format!("no-uid-{line}"), str::to_owned);
            let uid = format!("{base}-copy{copy}");
            value["uid"] = Value::from(uid.clone());
            let text = serde_json::to_string(&value).expect("a JSON value always serialises");
            events.push((uid, format!("{text}\n")));
        }
    }
    events
}

/// The uid of each complete output line; a line that is not a JSON object
/// with a uid fails the test.
fn output_uids(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .out_lines()
        .iter()
        .enumerate()
        .map(|(n, line)| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("output line {n} is not JSON ({err}); a torn write?\n{line}{}", sandbox.report(None)));
            value.get("uid").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| panic!("output line {n} has no uid: {line}"))
        })
        .collect()
}

/// Appends `lines` to `path` in chunks of 30 lines every 10 ms, so that
/// ferry is busy reading them for a while; the pace is the input's, not a
/// wait for a result.
fn trickle(path: std::path::PathBuf, lines: Vec<String>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for chunk in lines.chunks(30) {
            util::append(&path, chunk.concat().as_bytes());
            // The writer's pace: the time is the point, not a wait.
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn lines_of(events: &[(String, String)]) -> Vec<String> {
    events.iter().map(|(_, line)| line.clone()).collect()
}

/// Fails unless the output holds every uid of `wanted` and nothing else;
/// returns how many deliveries were duplicates.
fn assert_all_delivered(sandbox: &Sandbox, wanted: &BTreeSet<&str>, run: &util::Output, when: &str) -> usize {
    let uids = output_uids(sandbox);
    let counts = util::tally(uids.iter().map(String::as_str));
    let missing: Vec<&&str> = wanted.iter().filter(|uid| !counts.contains_key(**uid)).take(20).collect();
    assert!(missing.is_empty(), "{when}: uids missing, e.g. {missing:?}{}", sandbox.report(Some(run)));
    let unknown: Vec<&&str> = counts.keys().filter(|uid| !wanted.contains(**uid)).take(20).collect();
    assert!(unknown.is_empty(), "{when}: output holds uids that were never written: {unknown:?}{}", sandbox.report(Some(run)));
    uids.len() - counts.len()
}

#[test]
fn sigkill_mid_stream_loses_nothing_and_repeats_at_most_one_batch() {
    let sandbox = Sandbox::new("crash_restart", &config(true));
    let events = many_events(24);
    let (before_crash, rest) = events.split_at(1500);
    let (while_down, rest) = rest.split_at(1000);
    let (after_restart, before_stop) = rest.split_at(600);
    let input = sandbox.path(IN);

    // Ferry starts before its input exists and follows it as it grows.
    let mut ferry = sandbox.spawn_start();
    let writer = trickle(input.clone(), lines_of(before_crash));
    util::wait_for(
        "ferry to deliver some events before the crash",
        DEADLINE,
        || sandbox.out_count() >= 6 * BATCH,
        || sandbox.report(Some(&ferry.snapshot())),
    );
    let killed = ferry.kill(&sandbox);
    let at_kill = sandbox.out_count();
    assert!(at_kill < events.len(), "the crash should come mid-stream{}", sandbox.report(Some(&killed)));
    writer.join().expect("the writer thread panicked");
    sandbox.append(IN, lines_of(while_down).concat().as_bytes());

    // Restart; more input arrives while it runs.
    let mut ferry = sandbox.spawn_start();
    let writer = trickle(input.clone(), lines_of(after_restart));
    let wanted: BTreeSet<&str> = events[..3100].iter().map(|(uid, _)| uid.as_str()).collect();
    util::wait_for(
        "every event to arrive after the restart",
        DEADLINE,
        || {
            sandbox.out_count() >= wanted.len() && {
                let got: BTreeSet<String> = output_uids(&sandbox).into_iter().collect();
                wanted.iter().all(|uid| got.contains(*uid))
            }
        },
        || {
            let got: BTreeSet<String> = output_uids(&sandbox).into_iter().collect();
            let missing: Vec<&&str> = wanted.iter().filter(|uid| !got.contains(**uid)).take(20).collect();
            format!("uids missing, e.g. {missing:?}\n{}", sandbox.report(Some(&ferry.snapshot())))
        },
    );
    writer.join().expect("the writer thread panicked");
    let duplicates = assert_all_delivered(&sandbox, &wanted, &ferry.snapshot(), "after the crash");
    assert!(
        duplicates <= BATCH,
        "{duplicates} duplicate deliveries after one crash; at most one batch ({BATCH}) may be sent twice (killed at {at_kill} lines){}",
        sandbox.report(Some(&ferry.snapshot()))
    );

    // SIGTERM while busy: ferry finishes the batches in flight and exits 0.
    let busy_from = sandbox.out_count();
    let writer = trickle(input.clone(), lines_of(before_stop));
    util::wait_for(
        "ferry to be busy with new input",
        DEADLINE,
        || sandbox.out_count() >= busy_from + 4 * BATCH,
        || sandbox.report(Some(&ferry.snapshot())),
    );
    ferry.terminate();
    let stopped = ferry.wait(&sandbox, DEADLINE);
    stopped.assert_success(&sandbox);
    assert!(stopped.stderr.contains("Stopped."), "no summary logged at shutdown{}", sandbox.report(Some(&stopped)));
    writer.join().expect("the writer thread panicked");

    // A clean stop drained what was in flight and committed it: reading the
    // rest delivers every event and no duplicate beyond the crash's.
    sandbox.set_config(&config(false));
    let rest = sandbox.run("start");
    rest.assert_success(&sandbox);
    let wanted: BTreeSet<&str> = events.iter().map(|(uid, _)| uid.as_str()).collect();
    let after_stop = assert_all_delivered(&sandbox, &wanted, &rest, "after the clean stop");
    assert_eq!(
        after_stop,
        duplicates,
        "a clean stop (SIGTERM) must not cause duplicates: in-flight batches are drained and committed{}",
        sandbox.report(Some(&stopped))
    );

    // The cursor is at the end: another run delivers nothing.
    let out_before = sandbox.read(OUT);
    let again = sandbox.run("start");
    again.assert_success(&sandbox);
    assert!(sandbox.read(OUT) == out_before, "a run at the end of the input delivered events again{}", sandbox.report(Some(&again)));
}

#[test]
fn sigterm_during_a_delivery_finishes_it_before_exiting() {
    // The sink is ferry's stdout, a pipe nobody reads yet: once it is full,
    // ferry is stuck in the middle of delivering a batch.
    let sandbox = Sandbox::new("sigterm_drain", &job(true).set("sinks.default.type", "stdout").text());
    let events = many_events(6);
    sandbox.write(IN, lines_of(&events).concat().as_bytes());
    let stderr = std::fs::File::create(sandbox.path("stopped-run.stderr")).expect("create the stderr file");
    let mut command = sandbox.command(&["start"]);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    let mut child = command.spawn().expect("start ferry");
    let pid = child.id();
    let stderr = || sandbox.read("stopped-run.stderr");
    util::wait_for(
        "ferry to block writing a batch to its full stdout pipe",
        DEADLINE,
        || util::blocked_in(pid, "pipe_write"),
        || format!("----- ferry's stderr\n{}{}", stderr(), sandbox.report(None)),
    );

    // SIGTERM now, then let the pipe drain: the batch being written must be
    // finished and committed, and ferry must exit 0.
    let status = std::process::Command::new("kill").arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill {pid} failed");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    // `util::wait_for`, by hand: on a timeout this ferry (a plain child, not
    // a `Running`) must be killed before the test fails.
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait for ferry") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("ferry did not exit after SIGTERM\n----- ferry's stderr\n{}", stderr());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let first = reader.join().expect("reader thread").expect("ferry's stdout is UTF-8");
    assert!(exit.success(), "ferry should exit 0 after SIGTERM, got {exit}\n----- ferry's stderr\n{}", stderr());
    assert!(first.is_empty() || first.ends_with('\n'), "ferry's stdout ends in a torn line\n----- ferry's stderr\n{}", stderr());

    // Read the rest into a file: every event once over both runs.
    sandbox.set_config(&config(false));
    let rest = sandbox.run("start");
    rest.assert_success(&sandbox);
    let mut uids: Vec<String> = util::complete_lines(&first)
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v.get("uid")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("<not an event: {line}>"))
        })
        .collect();
    let before_stop = uids.len();
    uids.extend(output_uids(&sandbox));
    let counts = util::tally(uids.iter().map(String::as_str));
    let repeated: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).take(10).collect();
    let wanted: BTreeSet<&str> = events.iter().map(|(uid, _)| uid.as_str()).collect();
    let missing: Vec<&&str> = wanted.iter().filter(|uid| !counts.contains_key(**uid)).take(10).collect();
    assert!(
        repeated.is_empty() && missing.is_empty() && counts.len() == wanted.len(),
        "after SIGTERM mid-delivery every event must arrive exactly once over the two runs ({before_stop} before the stop); \
         repeated {repeated:?}, missing {missing:?}\n----- the stopped run's stderr\n{}{}",
        stderr(),
        sandbox.report(Some(&rest))
    );
}
