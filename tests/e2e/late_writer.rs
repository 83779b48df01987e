//! A writer that keeps its descriptor after logrotate renamed its file (no
//! `copytruncate`): what it writes to the renamed file until it reopens is
//! read too, until the rotated file has been quiet for `rotate-wait`.
//!
//! The writer here is a thread holding the file open, as a daemon would:
//! it leaves half a line in the file when it is renamed, finishes that line
//! afterwards, and goes on appending to the renamed file for about 2 s while
//! lines also go to the new file. Every line must arrive (each once when
//! ferry runs throughout), the half line as one event, nothing
//! dead-lettered, also across a crash while the rotated file is still read.

use crate::util::{self, Config, DEADLINE, IN, Sandbox};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Lines before the rename.
const BEFORE: usize = 300;
/// How long the writer goes on with the renamed file.
const LATE: Duration = Duration::from_secs(2);

/// `in.jsonl` followed (polled every 20 ms, `rotate-wait` left at its
/// default) into `out.jsonl`.
fn config() -> String {
    Config::new()
        .pipeline(100, "10ms")
        .set("source.file.path", IN)
        .set("source.file.poll-interval", "20ms")
        .file_sink("default", util::OUT)
        .text()
}

fn line(uid: &str) -> String {
    format!("{{\"uid\":\"{uid}\",\"event\":\"user.login\",\"user\":\"alice\",\"time\":\"2026-11-30T10:00:00Z\"}}\n")
}

/// One `write` per call: a line, or part of one.
fn put(file: &mut std::fs::File, text: &str) {
    file.write_all(text.as_bytes()).unwrap_or_else(|err| panic!("cannot write: {err}"));
}

fn open_append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()))
}

/// The writer's story, in steps the test can wait on.
struct LateWriter {
    /// Set while the writer still appends to the renamed file.
    on_old: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

/// Writes `old-0..BEFORE` through a descriptor the writer keeps, starts
/// `old-BEFORE` without its end, then waits for `go`: the file is renamed,
/// a new one created; the half line is finished through the old descriptor,
/// which gets one line every 5 ms for [`LATE`], the new file one line every
/// 20 ms; then the old descriptor is closed and 100 more lines go to the new
/// file. Returns every uid written.
fn start_writer(input: PathBuf, go: std::sync::mpsc::Receiver<()>) -> LateWriter {
    let on_old = Arc::new(AtomicBool::new(false));
    let flag = on_old.clone();
    let thread = std::thread::spawn(move || {
        let mut uids = Vec::new();
        let mut old = open_append(&input);
        for n in 0..BEFORE {
            let uid = format!("old-{n}");
            put(&mut old, &line(&uid));
            uids.push(uid);
        }
        let half = format!("old-{BEFORE}");
        let text = line(&half);
        let (head, tail) = text.split_at(text.len() / 2);
        put(&mut old, head);
        uids.push(half);
        go.recv().expect("the test says when to rotate");

        let rotated = input.with_file_name("in.jsonl.1");
        std::fs::rename(&input, &rotated).expect("rotate");
        let mut new = open_append(&input);
        flag.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        put(&mut old, tail);
        let started = Instant::now();
        let (mut n, mut m) = (BEFORE + 1, 0);
        while started.elapsed() < LATE {
            let uid = format!("old-{n}");
            put(&mut old, &line(&uid));
            uids.push(uid);
            n += 1;
            if n % 4 == 0 {
                let uid = format!("new-{m}");
                put(&mut new, &line(&uid));
                uids.push(uid);
                m += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(old);
        flag.store(false, Ordering::SeqCst);
        for _ in 0..100 {
            let uid = format!("new-{m}");
            put(&mut new, &line(&uid));
            uids.push(uid);
            m += 1;
        }
        uids
    });
    LateWriter { on_old, thread }
}

fn missing(sandbox: &Sandbox, wanted: &[String]) -> Vec<String> {
    let got = util::arrived(sandbox);
    wanted.iter().filter(|uid| !got.contains_key(*uid)).cloned().collect()
}

fn wait_for_uids(sandbox: &Sandbox, ferry: &util::Running, wanted: &[String], what: &str) {
    util::wait_for(
        what,
        DEADLINE,
        || missing(sandbox, wanted).is_empty(),
        || {
            let missing = missing(sandbox, wanted);
            format!("{} of {} uids missing: {:?}{}", missing.len(), wanted.len(), missing, sandbox.report(Some(&ferry.snapshot())))
        },
    );
}

/// The uids written before the rename, the half line excepted.
fn before() -> Vec<String> {
    (0..BEFORE).map(|n| format!("old-{n}")).collect()
}

fn assert_nothing_dead_lettered(sandbox: &Sandbox, run: &util::Output) {
    let letters = sandbox.dead_letters();
    assert!(
        letters.is_empty(),
        "nothing should be dead-lettered (a half line split in two would be): {letters:?}{}",
        sandbox.report(Some(run))
    );
}

#[test]
fn lines_written_to_the_renamed_file_after_the_switch_arrive_each_once() {
    let sandbox = Sandbox::new("late_writer", &config());
    let (go, wait) = std::sync::mpsc::channel();
    let writer = start_writer(sandbox.path(IN), wait);
    let mut ferry = sandbox.spawn_start();
    wait_for_uids(&sandbox, &ferry, &before(), "the lines written before the rename");
    go.send(()).expect("the writer waits");
    let wanted = writer.thread.join().expect("the writer ends");

    wait_for_uids(&sandbox, &ferry, &wanted, "every line of the renamed file and of the new one");
    ferry.terminate();
    let run = ferry.wait(&sandbox, DEADLINE);
    run.assert_success(&sandbox);
    let got = util::arrived(&sandbox);
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}{}", sandbox.report(Some(&run)));
    assert_eq!(got.len(), wanted.len(), "uids that were never written arrived{}", sandbox.report(Some(&run)));
    assert_nothing_dead_lettered(&sandbox, &run);
    assert_order_within_each_file(&sandbox, &run);
}

/// Lines of each file arrive in the order they were written.
fn assert_order_within_each_file(sandbox: &Sandbox, run: &util::Output) {
    for prefix in ["old-", "new-"] {
        let numbers: Vec<usize> = sandbox
            .out_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|value| value.get("uid").and_then(Value::as_str).and_then(|uid| uid.strip_prefix(prefix)?.parse().ok()))
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{prefix}* out of order: {numbers:?}{}", sandbox.report(Some(run)));
    }
}

#[test]
fn a_crash_while_the_renamed_file_is_still_read_loses_nothing() {
    let sandbox = Sandbox::new("late_writer_crash", &config());
    let (go, wait) = std::sync::mpsc::channel();
    let writer = start_writer(sandbox.path(IN), wait);
    let mut ferry = sandbox.spawn_start();
    wait_for_uids(&sandbox, &ferry, &before(), "the lines written before the rename");
    go.send(()).expect("the writer waits");

    // Killed once some late lines of the renamed file arrived, while the
    // writer still appends to it.
    let late: Vec<String> = (BEFORE..BEFORE + 60).map(|n| format!("old-{n}")).collect();
    wait_for_uids(&sandbox, &ferry, &late, "the first late lines of the renamed file");
    assert!(writer.on_old.load(Ordering::SeqCst), "the crash should come while the writer still uses the renamed file");
    let killed = ferry.kill(&sandbox);
    let mut ferry = sandbox.spawn_start();
    let wanted = writer.thread.join().expect("the writer ends");

    wait_for_uids(&sandbox, &ferry, &wanted, "every line after the restart");
    ferry.terminate();
    let run = ferry.wait(&sandbox, DEADLINE);
    run.assert_success(&sandbox);
    let got = util::arrived(&sandbox);
    assert!(got.keys().all(|uid| wanted.contains(uid)), "uids that were never written arrived{}", sandbox.report(Some(&run)));
    assert_nothing_dead_lettered(&sandbox, &killed);
    assert_nothing_dead_lettered(&sandbox, &run);
}
