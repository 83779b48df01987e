//! The export engine reading several chunks of a date at once, through the
//! real binary, against the Teleport stand-in with export chunks and the
//! Logstash stand-in: every event arrives, chunk streams overlap, and a
//! ferry killed mid-export resumes every chunk without losing an event.

use crate::teleport::Cluster;
use crate::util::{self, Config, DEADLINE, Sandbox};
use ferry_standin::logstash::{self, LogstashStandIn};
use ferry_standin::teleport::{IdentitySpec, StandInOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// `count` logins on 2024-05-01, a second apart, with ids `login-<n>`.
fn one_day_of_logins(count: usize) -> Vec<Value> {
    let start = humantime::parse_rfc3339("2024-05-01T00:00:00Z").expect("a valid time");
    (0..count)
        .map(|n| {
            let time = humantime::format_rfc3339_millis(start + Duration::from_secs(n as u64)).to_string();
            serde_json::json!({"event": "user.login", "code": "T1000I", "success": true, "user": "alice", "time": time, "uid": format!("login-{n}")})
        })
        .collect()
}

/// The stand-in serving `count` events of one date in chunks of
/// `chunk_size`, each chunk stream answered after `delay`.
pub(crate) fn cluster(count: usize, chunk_size: usize, delay: Duration) -> Cluster {
    Cluster::start(StandInOptions { events: one_day_of_logins(count), chunk_size, export_stream_delay: delay, ..StandInOptions::default() })
}

/// An event handler style config from the events' date to the end of the
/// log, into the Logstash stand-in (the engine is export: the stand-in has
/// the API).
pub(crate) fn sandbox(name: &str, cluster: &Cluster, logstash: &LogstashStandIn, configure: impl FnOnce(Config) -> Config) -> Sandbox {
    let sandbox = Sandbox::new(name, "");
    let pki = logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
    let config = Config::teleport_job(&cluster.standin.address())
        .set("start-time", "2024-05-01T00:00:00Z")
        .set("exit-on-last-event", true)
        .logstash_sink("default", &logstash.url(), &pki.ca, &pki.client_cert, &pki.client_key);
    sandbox.set_config(&configure(config).text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    sandbox
}

/// The dates of the stored export cursor, as `ferry status --json` shows them.
pub(crate) fn stored_dates(sandbox: &Sandbox) -> Vec<Value> {
    let output = sandbox.run_command(sandbox.command(&["status", "--json"]));
    output.assert_success(sandbox);
    let status: Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|err| panic!("`ferry status --json` is not JSON ({err})\n{}", sandbox.report(Some(&output))));
    let cursor = &status["sources"][0]["cursor"];
    assert_eq!(cursor["engine"], "export", "{status:#}");
    cursor["dates"].as_array().cloned().unwrap_or_else(|| panic!("export dates: {status:#}"))
}

/// How often each id arrived.
pub(crate) fn ids(events: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in events {
        let id = event.get("uid").and_then(Value::as_str).unwrap_or_default().to_owned();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_dates_chunks_are_read_at_once_and_every_event_arrives_once() {
    // Ten chunks of 40; each stream waits a little, so streams read at once overlap.
    let cluster = cluster(400, 40, Duration::from_millis(100));
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = sandbox("export-concurrent", &cluster, &logstash, |config| config.set("concurrency", 4));
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let got = ids(&logstash.events());
    assert_eq!(got.len(), 400, "every event arrives\n{}", sandbox.report(Some(&output)));
    assert!(got.values().all(|&count| count == 1), "no event twice: {:?}", got.iter().filter(|(_, count)| **count > 1).collect::<Vec<_>>());
    let at_once = cluster.standin.most_export_streams_at_once();
    assert!(at_once > 1, "more than one chunk stream was open at a time ({at_once})\n{}", sandbox.report(Some(&output)));
    assert!(at_once <= 4, "no more chunk streams at once than `concurrency` ({at_once})");
}

#[test]
fn killed_mid_export_of_several_chunks_and_restarted_nothing_is_lost() {
    let cluster = cluster(600, 30, Duration::from_millis(100));
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    // Slow deliveries, so that ferry is killed in the middle of the export.
    logstash.inject((0..40).map(|_| logstash::Fault::Delay(Duration::from_millis(60))));
    let sandbox = sandbox("export-kill", &cluster, &logstash, |config| config.set("concurrency", 3));
    let mut running = sandbox.spawn_start();
    util::wait_for("part of the export", DEADLINE, || logstash.event_count() >= 100, || sandbox.report(Some(&running.snapshot())));
    let killed = running.kill(&sandbox);
    let before = logstash.event_count();
    assert!(before < 600, "ferry was killed in the middle of the export ({before} of 600)\n{}", sandbox.report(Some(&killed)));
    assert!(cluster.standin.most_export_streams_at_once() > 1, "chunks were read at once before the kill");
    let dates = stored_dates(&sandbox);
    assert_eq!(
        dates.first().map(|date| &date["date"]),
        Some(&Value::from("2024-05-01")),
        "killed while the events' date was read: {dates:?}"
    );

    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let got = ids(&logstash.events());
    let missing: Vec<String> = (0..600).map(|n| format!("login-{n}")).filter(|id| !got.contains_key(id)).collect();
    assert!(missing.is_empty(), "{} events lost across the kill: {missing:?}\n{}", missing.len(), sandbox.report(Some(&output)));
    assert_eq!(got.len(), 600, "no event that was never served");
    let duplicates: usize = got.values().map(|count| count - 1).sum();
    assert!(
        duplicates <= 20,
        "{duplicates} events twice: the restart resumed the chunks, it did not read them again\n{}",
        sandbox.report(Some(&output))
    );

    // The committed cursor has every chunk done: a third run sends nothing.
    let dates = stored_dates(&sandbox);
    assert!(dates.iter().all(|date| date["date"] != "2024-05-01"), "the events' date is finished and passed: {dates:?}");
    assert!(dates.iter().all(|date| date.get("partial").is_none()), "no chunk is under way: {dates:?}");
    let delivered = logstash.event_count();
    let again = sandbox.run("start");
    again.assert_success(&sandbox);
    assert_eq!(logstash.event_count(), delivered, "the cursor after the restart is complete\n{}", sandbox.report(Some(&again)));
}

/// Faults in some chunks while others are open: a vanished chunk is dead-
/// lettered by name, a broken or refused stream resumes its own chunk from
/// its cursor, and the other chunks go on; every other event arrives once.
#[test]
fn faults_in_one_chunk_leave_the_chunks_read_beside_it_alone() {
    use ferry_standin::teleport::{Fault, Method};
    let cluster = cluster(300, 30, Duration::from_millis(50));
    let vanished: Vec<String> = cluster.standin.vanish_chunk("chunk-0003").iter().map(|event| event.id.clone()).collect();
    assert_eq!(vanished.len(), 30);
    cluster.standin.inject(Method::ExportUnstructuredEvents, Fault::DropStreamAfter(5));
    cluster.standin.inject(Method::ExportUnstructuredEvents, Fault::Unavailable);
    cluster.standin.inject(Method::ExportUnstructuredEvents, Fault::DropStreamAfter(12));
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    // A short bound on retrying the vanished chunk (default 5 attempts over 10 minutes).
    let sandbox = sandbox("export-faults", &cluster, &logstash, |config| {
        config.set("concurrency", 4).set("teleport.chunk-retry-attempts", 2).set("teleport.chunk-retry-time", "1s")
    });
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let report = || sandbox.report(Some(&output));
    let got = ids(&logstash.events());
    let existing: Vec<String> = (0..300).map(|n| format!("login-{n}")).filter(|id| !vanished.contains(id)).collect();
    assert_eq!(existing.len(), 270, "the stand-in's ids are the events' uids");
    assert_eq!(got.len(), 270, "every event of the chunks that exist\n{}", report());
    assert!(existing.iter().all(|id| got.contains_key(id)), "every event of the chunks that exist\n{}", report());
    assert!(got.values().all(|&count| count == 1), "a broken stream resumes from its cursor: nothing twice\n{}", report());
    let letters = sandbox.dead_letters();
    let reasons: Vec<&str> = letters.iter().filter_map(|letter| letter.get("reason").and_then(Value::as_str)).collect();
    assert_eq!(reasons.len(), 1, "one dead letter, for the vanished chunk: {reasons:?}\n{}", report());
    assert!(reasons[0].contains("export chunk chunk-0003 of 2024-05-01 cannot be read") && reasons[0].contains("NotFound"), "{reasons:?}");
    assert!(output.stderr.matches("Cannot export chunk chunk-").count() >= 3, "the three broken streams were retried\n{}", report());
    assert!(cluster.standin.most_export_streams_at_once() > 1, "chunks were read at once");
}

/// SIGTERM while several chunk streams wait for Teleport: every stream is
/// given up and ferry exits at once, not when Teleport answers.
#[test]
fn sigterm_stops_every_open_chunk_stream() {
    let cluster = cluster(100, 10, Duration::from_secs(120));
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = sandbox("export-sigterm", &cluster, &logstash, |config| config.set("concurrency", 3));
    let mut running = sandbox.spawn_start();
    util::wait_for(
        "three chunk streams open",
        DEADLINE,
        || cluster.standin.most_export_streams_at_once() >= 3,
        || sandbox.report(Some(&running.snapshot())),
    );
    running.terminate();
    let output = running.wait(&sandbox, Duration::from_secs(15));
    output.assert_success(&sandbox);
    assert_eq!(logstash.event_count(), 0, "nothing was read, so nothing was sent");
}
