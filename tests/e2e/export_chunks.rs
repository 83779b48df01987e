//! Export chunks Teleport cannot serve for a while, through the real binary
//! against the Teleport stand-in: a chunk that answers NOT_FOUND is asked
//! again (re-listing its date) before it is given up; one given up on is a
//! dead letter naming its date, chunk and cursor, which `dead-letters
//! replay` reads again from that cursor; a chunk left partial by a kill that
//! is no longer listed is asked again, then dead-lettered, never dropped
//! without a word.

use crate::export::{cluster, ids, sandbox, stored_dates};
use crate::util::{self, Config, DEADLINE};
use ferry_standin::logstash::{self, LogstashStandIn};
use serde_json::Value;
use std::time::Duration;

/// A short bound on retrying a chunk, so that a test gives up in seconds
/// (the default is 5 attempts over at least 10 minutes).
fn short_bound(config: Config) -> Config {
    config.set("teleport.chunk-retry-attempts", 3).set("teleport.chunk-retry-time", "2s")
}

/// The dead letters' payloads (the chunk's date, name and cursor) and reasons.
fn chunk_letters(letters: &[Value]) -> Vec<(Value, String)> {
    letters
        .iter()
        .map(|letter| {
            let payload = letter["payload"].as_str().and_then(|text| serde_json::from_str(text).ok()).unwrap_or(Value::Null);
            (payload, letter["reason"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[test]
fn a_chunk_not_found_twice_then_served_is_read_whole() {
    let cluster = cluster(200, 40, Duration::ZERO);
    cluster.standin.chunk_not_found("chunk-0002", 2);
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = sandbox("export-chunk-late", &cluster, &logstash, |config| short_bound(config).set("concurrency", 2));
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let report = || sandbox.report(Some(&output));
    let got = ids(&logstash.events());
    assert_eq!(got.len(), 200, "every event, the late chunk's too\n{}", report());
    assert!(got.values().all(|&count| count == 1), "nothing twice\n{}", report());
    assert_eq!(cluster.standin.chunk_not_found_answers("chunk-0002"), 2, "the chunk was asked again after NOT_FOUND\n{}", report());
    let letters = sandbox.dead_letters();
    assert!(letters.is_empty(), "nothing dead-lettered: {letters:?}\n{}", report());
}

#[test]
fn a_chunk_never_found_is_one_dead_letter_after_the_bound() {
    let cluster = cluster(200, 40, Duration::ZERO);
    cluster.standin.chunk_not_found("chunk-0002", usize::MAX);
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = sandbox("export-chunk-gone", &cluster, &logstash, |config| short_bound(config).set("concurrency", 2));
    let started = std::time::Instant::now();
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let report = || sandbox.report(Some(&output));
    assert!(started.elapsed() >= Duration::from_secs(2), "the chunk was asked for at least `chunk-retry-time`\n{}", report());
    let answers = cluster.standin.chunk_not_found_answers("chunk-0002");
    assert!(answers >= 3, "asked at least `chunk-retry-attempts` times, not {answers}\n{}", report());
    let got = ids(&logstash.events());
    assert_eq!(got.len(), 160, "every event of the other chunks\n{}", report());
    let letters = chunk_letters(&sandbox.dead_letters());
    assert_eq!(letters.len(), 1, "one dead letter, for the chunk given up: {letters:?}\n{}", report());
    let (payload, reason) = &letters[0];
    assert_eq!(payload["date"], "2024-05-01", "{payload}");
    assert_eq!(payload["chunk"], "chunk-0002", "{payload}");
    assert_eq!(payload["cursor"], "", "nothing of it was read: {payload}");
    assert!(reason.contains("chunk-0002") && reason.contains("2024-05-01") && reason.contains("NotFound"), "{reason}");
    assert!(!reason.contains('\n'), "a one-line reason: {reason:?}");

    // Replayed while Teleport still refuses the chunk: the letter stays.
    let replay = sandbox.run_command(sandbox.command(&["dead-letters", "replay", "--timeout", "10s"]));
    assert!(
        replay.status.is_some_and(|status| !status.success()),
        "a chunk still refused fails the replay\n{}",
        sandbox.report(Some(&replay))
    );
    let letters = chunk_letters(&sandbox.dead_letters());
    assert_eq!(letters.len(), 1, "the letter stays: {letters:?}");
    assert!(letters[0].1.contains("still cannot be read"), "{letters:?}\n{}", sandbox.report(Some(&replay)));
    assert_eq!(logstash.event_count(), 160, "nothing more was sent");

    // Served again: the replay reads the chunk from its cursor and delivers its events.
    cluster.standin.chunk_not_found("chunk-0002", 0);
    let replay = sandbox.run_command(sandbox.command(&["dead-letters", "replay", "--timeout", "10s"]));
    replay.assert_success(&sandbox);
    let got = ids(&logstash.events());
    assert_eq!(got.len(), 200, "the chunk's events arrived on replay\n{}", sandbox.report(Some(&replay)));
    assert!(got.values().all(|&count| count == 1), "nothing twice\n{}", sandbox.report(Some(&replay)));
    assert!(sandbox.dead_letters().is_empty(), "the letter is gone\n{}", sandbox.report(Some(&replay)));
}

#[test]
fn a_partial_chunk_gone_from_the_listing_after_a_restart_is_dead_lettered() {
    // One chunk at a time, slow deliveries: the kill leaves a chunk partial.
    let cluster = cluster(300, 100, Duration::ZERO);
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    logstash.inject((0..40).map(|_| logstash::Fault::Delay(Duration::from_millis(60))));
    let sandbox = sandbox("export-chunk-unlisted", &cluster, &logstash, |config| short_bound(config).set("concurrency", 1));
    let mut running = sandbox.spawn_start();
    util::wait_for("part of a chunk", DEADLINE, || logstash.event_count() >= 30, || sandbox.report(Some(&running.snapshot())));
    let killed = running.kill(&sandbox);
    let dates = stored_dates(&sandbox);
    let partial = dates.iter().find_map(|date| date["partial"].as_object().and_then(|partial| partial.iter().next()));
    let Some((chunk, cursor)) = partial.map(|(chunk, cursor)| (chunk.clone(), cursor.clone())) else {
        panic!("the kill left a chunk partial: {dates:?}\n{}", sandbox.report(Some(&killed)));
    };
    cluster.standin.unlist_chunk(&chunk);

    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let report = || sandbox.report(Some(&output));
    let answers = cluster.standin.chunk_not_found_answers(&chunk);
    assert!(answers >= 3, "the partial chunk {chunk} was asked again {answers} times, not dropped\n{}", report());
    let letters = chunk_letters(&sandbox.dead_letters());
    assert_eq!(letters.len(), 1, "one dead letter, for the partial chunk gone: {letters:?}\n{}", report());
    let (payload, reason) = &letters[0];
    assert_eq!(payload["date"], "2024-05-01", "{payload}");
    assert_eq!(payload["chunk"], Value::from(chunk.as_str()), "{payload}");
    assert_eq!(&payload["cursor"], &cursor, "the cursor it had reached: {payload}");
    assert!(reason.contains(&chunk), "{reason}");
    let others = ids(&logstash.events());
    assert!(others.len() >= 200, "the other chunks' events arrived ({})\n{}", others.len(), report());
    let dates = stored_dates(&sandbox);
    assert!(dates.iter().all(|date| date["date"] != "2024-05-01"), "the date is finished and passed: {dates:?}");

    // Teleport serves the chunk again: the replay reads it from the cursor
    // it had reached, and every event of the date has arrived.
    cluster.standin.chunk_not_found(&chunk, 0);
    let replay = sandbox.run_command(sandbox.command(&["dead-letters", "replay", "--timeout", "10s"]));
    replay.assert_success(&sandbox);
    let got = ids(&logstash.events());
    assert_eq!(got.len(), 300, "every event of the date after the replay\n{}", sandbox.report(Some(&replay)));
    assert!(sandbox.dead_letters().is_empty(), "the letter is gone\n{}", sandbox.report(Some(&replay)));
}

#[test]
fn a_chunk_being_asked_for_again_shows_in_readyz() {
    let cluster = cluster(200, 40, Duration::ZERO);
    cluster.standin.chunk_not_found("chunk-0002", usize::MAX);
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = sandbox("export-chunk-readyz", &cluster, &logstash, |config| {
        config.set("teleport.chunk-retry-attempts", 1000).set("teleport.chunk-retry-time", "1h").set("exit-on-last-event", false)
    });
    let mut running = sandbox.spawn_command(sandbox.command(&["start", "--http-addr", "127.0.0.1:0"]));
    let addr = util::served_addr(&running, &sandbox);
    let readyz = || util::http_get(&addr, "/readyz").map(|answer| format!("{} {}", answer.status, answer.body)).unwrap_or_default();
    util::wait_for(
        "/readyz to name the chunk being asked for again",
        DEADLINE,
        || {
            let seen = readyz();
            seen.starts_with("503") && seen.contains("export chunk chunk-0002 of 2024-05-01 cannot be read") && seen.contains("NotFound")
        },
        || format!("last /readyz: {}\n{}", readyz(), sandbox.report(Some(&running.snapshot()))),
    );
    assert!(sandbox.dead_letters().is_empty(), "nothing given up within its bound");
    running.terminate();
    running.wait(&sandbox, Duration::from_secs(30)).assert_success(&sandbox);
}
