//! The run loop over real files: resuming, rotation, replacement and
//! truncation, while stopped and while running.

use super::*;
use crate::source::SourceRecord;

fn source(dir: &Path, follow: bool) -> FileSource {
    FileSource {
        name: "file:test".into(),
        path: dir.join("in.jsonl"),
        follow,
        poll_interval: Duration::from_millis(10),
        max_line: 1 << 20,
        rotate_wait: ROTATE_WAIT,
    }
}

/// The tests' `rotate-wait`: long beside the poll interval, short for a test.
const ROTATE_WAIT: Duration = Duration::from_millis(400);

/// `count` events with uids `PREFIX-N`, each about 60 bytes.
fn events(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|n| format!("{{\"uid\":\"{prefix}-{n}\",\"event\":\"user.login\",\"pad\":\"xxxxxxxx\"}}\n")).collect()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open to append");
    file.write_all(text.as_bytes()).expect("append");
}

/// Runs a source to its end (`follow = false`) from `position`; every
/// record it sent.
async fn run_to_end(dir: &Path, position: Option<String>) -> Vec<SourceRecord> {
    let (tx, mut rx) = mpsc::channel(100_000);
    source(dir, false).run(position, tx, Shutdown::never()).await.expect("the source runs");
    let mut records = Vec::new();
    while let Ok(record) = rx.try_recv() {
        records.push(record);
    }
    records
}

fn ids(records: &[SourceRecord]) -> Vec<String> {
    records.iter().filter_map(|r| if let Item::Event(e) = &r.item { Some(e.id.clone()) } else { None }).collect()
}

fn expected(parts: &[(&str, std::ops::Range<usize>)]) -> Vec<String> {
    parts.iter().flat_map(|(prefix, range)| range.clone().map(move |n| format!("{prefix}-{n}"))).collect()
}

/// The last cursor a run left.
fn last(records: &[SourceRecord]) -> Option<String> {
    records.last().map(|r| r.position.encode().into_owned())
}

#[tokio::test]
async fn the_same_file_goes_on_from_its_cursor_and_a_bare_offset_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.jsonl");
    append(&path, &events("a", 0..10));
    let first = run_to_end(dir.path(), None).await;
    assert_eq!(ids(&first), expected(&[("a", 0..10)]));
    append(&path, &events("a", 10..13));
    let second = run_to_end(dir.path(), last(&first)).await;
    assert_eq!(ids(&second), expected(&[("a", 10..13)]));
    // ferry before file identities stored the offset alone.
    let offset = std::fs::metadata(&path).expect("stat").len() - events("a", 12..13).len() as u64;
    let legacy = run_to_end(dir.path(), Some(offset.to_string())).await;
    assert_eq!(ids(&legacy), expected(&[("a", 12..13)]));
    assert!(
        matches!(FilePosition::parse(&legacy[0].position.encode()), Ok(FilePosition::File(_))),
        "the cursor is stored with the file's identity from then on"
    );
}

#[tokio::test]
async fn rotation_while_stopped_finishes_the_old_file_then_reads_the_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.jsonl");
    append(&path, &events("old", 0..20));
    let first = run_to_end(dir.path(), None).await;
    // Written while ferry was stopped, just before the rotation.
    append(&path, &events("old", 20..23));
    std::fs::rename(&path, dir.path().join("in.jsonl.1")).expect("rotate");
    append(&path, &events("new", 0..40));
    let second = run_to_end(dir.path(), last(&first)).await;
    assert_eq!(ids(&second), expected(&[("old", 20..23), ("new", 0..40)]));
    assert!(second.iter().any(|r| matches!(r.item, Item::Progress)), "the cursor moves to the new file before its first line");
    // Stopped again: the new file is now the one the cursor names.
    append(&path, &events("new", 40..42));
    let third = run_to_end(dir.path(), last(&second)).await;
    assert_eq!(ids(&third), expected(&[("new", 40..42)]));
}

#[tokio::test]
async fn a_rotated_file_that_is_gone_leaves_the_new_one_read_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.jsonl");
    append(&path, &events("old", 0..20));
    let first = run_to_end(dir.path(), None).await;
    std::fs::remove_file(&path).expect("delete");
    append(&path, &events("new", 0..30));
    let second = run_to_end(dir.path(), last(&first)).await;
    assert_eq!(ids(&second), expected(&[("new", 0..30)]));
}

#[tokio::test]
async fn copytruncate_while_stopped_reads_the_rest_from_the_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.jsonl");
    append(&path, &events("old", 0..20));
    let first = run_to_end(dir.path(), None).await;
    append(&path, &events("old", 20..25));
    std::fs::copy(&path, dir.path().join("in.jsonl.1")).expect("copy");
    std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("truncate");
    // Longer than before, so that only the first bytes tell it apart.
    append(&path, &events("new", 0..60));
    let second = run_to_end(dir.path(), last(&first)).await;
    assert_eq!(ids(&second), expected(&[("old", 20..25), ("new", 0..60)]));
}

#[tokio::test]
async fn truncation_while_stopped_without_a_copy_reads_from_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.jsonl");
    append(&path, &events("old", 0..20));
    let first = run_to_end(dir.path(), None).await;
    std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("truncate");
    append(&path, &events("new", 0..5));
    let second = run_to_end(dir.path(), last(&first)).await;
    assert_eq!(ids(&second), expected(&[("new", 0..5)]));
}

/// A following source over `dir`; the records it sends, and the trigger
/// that stops it.
fn follow(dir: &Path) -> (mpsc::Receiver<SourceRecord>, crate::shutdown::Trigger, tokio::task::JoinHandle<Result<(), SourceError>>) {
    follow_from(dir, None)
}

/// As [`follow`], from a stored cursor.
fn follow_from(
    dir: &Path,
    position: Option<String>,
) -> (mpsc::Receiver<SourceRecord>, crate::shutdown::Trigger, tokio::task::JoinHandle<Result<(), SourceError>>) {
    let (tx, rx) = mpsc::channel(100_000);
    let (trigger, shutdown) = crate::shutdown::channel();
    let task = tokio::spawn(source(dir, true).run(position, tx, shutdown));
    (rx, trigger, task)
}

/// The ids of the next `n` events the source sends (within 10 s).
async fn next_ids(rx: &mut mpsc::Receiver<SourceRecord>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let record = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap_or_else(|_| panic!("only {got:?} arrived"));
        if let Item::Event(event) = record.expect("the source runs").item {
            got.push(event.id);
        }
    }
    got
}

#[tokio::test]
async fn rotation_and_replacement_while_running_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.jsonl");
    append(&path, &events("a", 0..10));
    let (mut rx, trigger, task) = follow(dir.path());
    assert_eq!(next_ids(&mut rx, 10).await, expected(&[("a", 0..10)]));
    // The writer adds to the old file after the rename, then moves on.
    std::fs::rename(&path, dir.path().join("in.jsonl.1")).expect("rotate");
    append(&dir.path().join("in.jsonl.1"), &events("a", 10..12));
    append(&path, &events("b", 0..10));
    assert_eq!(next_ids(&mut rx, 12).await, expected(&[("a", 10..12), ("b", 0..10)]));
    // Replaced in one step (rename over it).
    let fresh = dir.path().join("fresh.tmp");
    append(&fresh, &events("c", 0..10));
    std::fs::rename(&fresh, &path).expect("replace");
    assert_eq!(next_ids(&mut rx, 10).await, expected(&[("c", 0..10)]));
    trigger.fire();
    task.await.expect("joins").expect("the source ends cleanly");
}

#[tokio::test]
async fn truncation_while_running_reads_the_copy_then_the_file_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.jsonl");
    append(&path, &events("a", 0..10));
    let (mut rx, trigger, task) = follow(dir.path());
    assert_eq!(next_ids(&mut rx, 10).await, expected(&[("a", 0..10)]));
    // copytruncate: lines the source has not read yet are in the copy.
    let mut with_more = std::fs::read(&path).expect("read");
    with_more.extend_from_slice(events("a", 10..12).as_bytes());
    std::fs::write(dir.path().join("in.jsonl.1"), &with_more).expect("copy");
    std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("truncate");
    append(&path, &events("b", 0..3));
    assert_eq!(next_ids(&mut rx, 5).await, expected(&[("a", 10..12), ("b", 0..3)]));
    // Truncated and rewritten past the old length before the source looked.
    let rewritten = events("c", 0..30);
    std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("truncate");
    append(&path, &rewritten);
    assert_eq!(next_ids(&mut rx, 30).await, expected(&[("c", 0..30)]));
    trigger.fire();
    task.await.expect("joins").expect("the source ends cleanly");
}

/// Whatever the source sends within `time`: its event ids.
async fn ids_within(rx: &mut mpsc::Receiver<SourceRecord>, time: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let until = tokio::time::Instant::now() + time;
    while let Ok(Some(record)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let Item::Event(event) = record.item {
            got.push(event.id);
        }
    }
    got
}

/// Appends `text` to the renamed file in steps, each `gap` apart.
async fn trickle(path: &Path, parts: &[String], gap: Duration) {
    for part in parts {
        tokio::time::sleep(gap).await;
        append(path, part);
    }
}

#[tokio::test]
async fn a_rotated_file_is_read_until_it_has_been_quiet_for_rotate_wait_then_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.jsonl");
    let rotated = dir.path().join("in.jsonl.1");
    let late = events("a", 10..11);
    let (head, tail) = late.split_at(late.len() / 2);
    append(&path, &events("a", 0..10));
    append(&path, head);
    let (mut rx, trigger, task) = follow(dir.path());
    assert_eq!(next_ids(&mut rx, 10).await, expected(&[("a", 0..10)]));

    // Renamed with half a line in it; the writer finishes that line and
    // goes on through its old descriptor, each write within rotate-wait of
    // the last, while the new file gets lines too.
    std::fs::rename(&path, &rotated).expect("rotate");
    append(&path, &events("b", 0..5));
    let gap = ROTATE_WAIT / 4;
    trickle(&rotated, &[tail.to_owned(), events("a", 11..12), events("a", 12..14), events("a", 14..15)], gap).await;
    // Then it lets go; once quiet for rotate-wait the old file is closed.
    tokio::time::sleep(ROTATE_WAIT * 2).await;
    append(&rotated, &events("a", 15..16));
    append(&path, &events("b", 5..7));
    let got = ids_within(&mut rx, ROTATE_WAIT * 2).await;
    assert_eq!(got, expected(&[("a", 10..15), ("b", 0..7)]), "the half line is one event; nothing is read from the closed file");
    trigger.fire();
    task.await.expect("joins").expect("the source ends cleanly");
}

#[tokio::test]
async fn after_a_restart_the_rotated_file_is_still_read_while_its_writer_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("in.jsonl");
    let rotated = dir.path().join("in.jsonl.1");
    append(&path, &events("a", 0..10));
    let first = run_to_end(dir.path(), None).await;
    // Rotated while ferry was stopped; its writer still holds it.
    std::fs::rename(&path, &rotated).expect("rotate");
    append(&path, &events("b", 0..3));
    let (mut rx, trigger, task) = follow_from(dir.path(), last(&first));
    trickle(&rotated, &[events("a", 10..12), events("a", 12..13)], ROTATE_WAIT / 4).await;
    let got = ids_within(&mut rx, ROTATE_WAIT * 3).await;
    assert_eq!(got, expected(&[("a", 10..13), ("b", 0..3)]));
    trigger.fire();
    task.await.expect("joins").expect("the source ends cleanly");
}

#[test]
fn rotate_wait_is_read_from_the_config_and_defaults_to_five_seconds() {
    let ctx = Context::for_file(Path::new("/etc/ferry/ferry.toml"), true);
    let build = |text: &str| {
        let config: FileSourceConfig = toml::from_str(text).expect("the settings parse");
        FileSource::build(&config, &ctx).expect("the settings are valid")
    };
    assert_eq!(build(r#"path = "in.jsonl""#).rotate_wait, Duration::from_secs(5));
    assert_eq!(build("path = \"in.jsonl\"\nrotate-wait = \"750ms\"").rotate_wait, Duration::from_millis(750));
}
