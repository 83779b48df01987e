//! A file source knows its file by identity, not only by offset: a file
//! rotated or truncated while ferry is stopped or running loses nothing.
//!
//! Each scenario runs the real binary on a followed file, moves the file as
//! logrotate would (rename, or `copytruncate`), and checks that every event
//! written arrived, each once, with nothing dead-lettered.

use crate::util::{self, Config, DEADLINE, IN, Sandbox};

/// `in.jsonl`, followed and polled every `poll`, into `out.jsonl`, in
/// batches of 100.
fn config(poll: &str) -> String {
    Config::new()
        .pipeline(100, "10ms")
        .set("source.file.path", IN)
        .set("source.file.poll-interval", poll)
        .file_sink("default", util::OUT)
        .text()
}

/// Lines `PREFIX-N` for N in `range`, each an event with its own uid.
fn lines(prefix: &str, range: std::ops::Range<usize>) -> String {
    range
        .map(|n| format!("{{\"uid\":\"{prefix}-{n}\",\"event\":\"user.login\",\"user\":\"alice\",\"time\":\"2026-11-30T10:00:00Z\"}}\n"))
        .collect()
}

fn uids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("{prefix}-{n}")).collect()
}

/// Waits until every uid of `wanted` has arrived.
fn wait_for_all(sandbox: &Sandbox, ferry: &util::Running, wanted: &[String], what: &str) {
    util::wait_for(
        what,
        DEADLINE,
        || {
            let got = util::arrived(sandbox);
            wanted.iter().all(|uid| got.contains_key(uid))
        },
        || {
            let got = util::arrived(sandbox);
            let missing: Vec<&String> = wanted.iter().filter(|uid| !got.contains_key(*uid)).collect();
            format!(
                "{} uids missing, from {:?} to {:?}{}",
                missing.len(),
                missing.first(),
                missing.last(),
                sandbox.report(Some(&ferry.snapshot()))
            )
        },
    );
}

/// Fails unless the output holds exactly the uids of `wanted`, each once,
/// and nothing was dead-lettered.
fn assert_exactly(sandbox: &Sandbox, wanted: &[String], run: &util::Output) {
    let got = util::arrived(sandbox);
    let missing: Vec<&String> = wanted.iter().filter(|uid| !got.contains_key(*uid)).collect();
    assert!(
        missing.is_empty(),
        "{} uids missing, from {:?} to {:?}{}",
        missing.len(),
        missing.first(),
        missing.last(),
        sandbox.report(Some(run))
    );
    let twice: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}{}", sandbox.report(Some(run)));
    assert_eq!(got.len(), wanted.len(), "uids that were never written arrived{}", sandbox.report(Some(run)));
    let letters = sandbox.dead_letters();
    assert!(letters.is_empty(), "nothing should be dead-lettered: {letters:?}{}", sandbox.report(Some(run)));
}

/// Starts ferry, waits for `wanted`, stops it with SIGTERM.
fn run_until(sandbox: &Sandbox, wanted: &[String], what: &str) -> util::Output {
    let mut ferry = sandbox.spawn_start();
    wait_for_all(sandbox, &ferry, wanted, what);
    ferry.terminate();
    let stopped = ferry.wait(sandbox, DEADLINE);
    stopped.assert_success(sandbox);
    stopped
}

#[test]
fn rotation_while_stopped_finishes_the_old_file_and_reads_the_new_one_whole() {
    let sandbox = Sandbox::new("rotation_stopped", &config("20ms"));
    sandbox.write(IN, lines("old", 0..1000).as_bytes());
    run_until(&sandbox, &uids("old", 0..1000), "the first 1,000 lines");

    // While ferry is stopped: the writer adds to the file, logrotate renames
    // it, and the writer starts a new file longer than the old one.
    sandbox.append(IN, lines("old", 1000..1100).as_bytes());
    std::fs::rename(sandbox.path(IN), sandbox.path("in.jsonl.1")).expect("rotate");
    sandbox.write(IN, lines("new", 0..2000).as_bytes());

    let wanted: Vec<String> = [uids("old", 0..1100), uids("new", 0..2000)].concat();
    let run = run_until(&sandbox, &wanted, "the rest of the rotated file and the whole new one");
    assert_exactly(&sandbox, &wanted, &run);

    // A third start goes on in the new file.
    sandbox.append(IN, lines("new", 2000..2010).as_bytes());
    let wanted: Vec<String> = [wanted, uids("new", 2000..2010)].concat();
    let run = run_until(&sandbox, &wanted, "lines appended to the new file");
    assert_exactly(&sandbox, &wanted, &run);
}

#[test]
fn copytruncate_while_stopped_reads_the_rest_from_the_copy() {
    let sandbox = Sandbox::new("copytruncate_stopped", &config("20ms"));
    sandbox.write(IN, lines("old", 0..1000).as_bytes());
    run_until(&sandbox, &uids("old", 0..1000), "the first 1,000 lines");

    sandbox.append(IN, lines("old", 1000..1200).as_bytes());
    std::fs::copy(sandbox.path(IN), sandbox.path("in.jsonl.1")).expect("copy");
    // Truncated in place (same inode) and written past the old offset.
    std::fs::write(sandbox.path(IN), lines("new", 0..1500)).expect("truncate and write");

    let wanted: Vec<String> = [uids("old", 0..1200), uids("new", 0..1500)].concat();
    let run = run_until(&sandbox, &wanted, "the rest of the copy and the whole truncated file");
    assert_exactly(&sandbox, &wanted, &run);
}

#[test]
fn rotation_and_replacement_while_running_lose_nothing() {
    let sandbox = Sandbox::new("rotation_running", &config("50ms"));
    sandbox.write(IN, lines("a", 0..500).as_bytes());
    let mut ferry = sandbox.spawn_start();
    wait_for_all(&sandbox, &ferry, &uids("a", 0..500), "the first 500 lines");

    // Renamed; the writer still adds to the renamed file, then starts anew.
    std::fs::rename(sandbox.path(IN), sandbox.path("in.jsonl.1")).expect("rotate");
    sandbox.append("in.jsonl.1", lines("a", 500..550).as_bytes());
    sandbox.write(IN, lines("b", 0..800).as_bytes());
    wait_for_all(&sandbox, &ferry, &[uids("a", 0..550), uids("b", 0..800)].concat(), "the rotated file's tail and the new file");

    // Replaced in one step by a file renamed over it.
    sandbox.write("next.tmp", lines("c", 0..300).as_bytes());
    std::fs::rename(sandbox.path("next.tmp"), sandbox.path(IN)).expect("replace");
    let wanted: Vec<String> = [uids("a", 0..550), uids("b", 0..800), uids("c", 0..300)].concat();
    wait_for_all(&sandbox, &ferry, &wanted, "the replacing file");

    ferry.terminate();
    let run = ferry.wait(&sandbox, DEADLINE);
    run.assert_success(&sandbox);
    assert_exactly(&sandbox, &wanted, &run);
}

#[test]
fn truncation_while_running_reads_the_file_again_from_its_start() {
    // A slow poll, so that the file is truncated and rewritten longer than
    // before while ferry waits, as a busy writer would.
    let sandbox = Sandbox::new("truncation_running", &config("500ms"));
    sandbox.write(IN, lines("a", 0..300).as_bytes());
    let mut ferry = sandbox.spawn_start();
    wait_for_all(&sandbox, &ferry, &uids("a", 0..300), "the first 300 lines");

    std::fs::write(sandbox.path(IN), lines("b", 0..600)).expect("truncate and write");
    let wanted: Vec<String> = [uids("a", 0..300), uids("b", 0..600)].concat();
    wait_for_all(&sandbox, &ferry, &wanted, "the rewritten file from its start");

    ferry.terminate();
    let run = ferry.wait(&sandbox, DEADLINE);
    run.assert_success(&sandbox);
    assert_exactly(&sandbox, &wanted, &run);
}

#[test]
fn a_rotated_file_that_is_gone_is_reported_and_the_new_one_read_whole() {
    let sandbox = Sandbox::new("rotation_gone", &config("20ms"));
    sandbox.write(IN, lines("old", 0..200).as_bytes());
    run_until(&sandbox, &uids("old", 0..200), "the first 200 lines");

    // Rotated and compressed (or deleted) while ferry was stopped: what was
    // written to it after the cursor cannot be read any more, and ferry says so.
    std::fs::remove_file(sandbox.path(IN)).expect("delete");
    sandbox.write(IN, lines("new", 0..300).as_bytes());
    let wanted: Vec<String> = [uids("old", 0..200), uids("new", 0..300)].concat();
    let run = run_until(&sandbox, &wanted, "the whole new file");
    assert_exactly(&sandbox, &wanted, &run);
    let reported: Vec<&str> = run.stderr.lines().filter(|line| line.contains("ERROR") && line.contains("cannot be found")).collect();
    assert_eq!(reported.len(), 1, "one ERROR line says the rotated file is gone{}", sandbox.report(Some(&run)));
    assert!(reported[0].contains(&sandbox.path(IN).display().to_string()), "it names the file: {}", reported[0]);
}
