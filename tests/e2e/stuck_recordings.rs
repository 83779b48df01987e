//! Session recordings Teleport cannot serve: each is asked for within
//! bounds and then dead-lettered (and `dead-letters replay` streams it again
//! once Teleport can), never holds the audit log back, and shows in
//! `/readyz`, `/metrics` and `ferry status` while it fails.

use crate::teleport::{Cluster, SID};
use crate::util::{Config, OUT, Sandbox, http_get, served_addr, wait_for};
use ferry_standin::teleport::{IdentitySpec, StandInOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Recordings beyond what two streams may have waiting (2 × 16) before the
/// audit log waits for them.
const RECORDINGS: usize = 34;

/// `RECORDINGS` short recordings, all before the fixtures' audit log, so
/// that their `session.upload` events come first in it.
fn recordings() -> BTreeMap<String, Vec<Value>> {
    (0..RECORDINGS)
        .map(|n| {
            let sid = format!("stuck-{n:02}");
            let event = |ei: usize, kind: &str| {
                json!({ "ei": ei, "event": kind, "sid": sid, "uid": format!("{sid}-{ei}"), "time": format!("2019-01-02T00:{n:02}:0{ei}.000Z") })
            };
            let events = vec![event(0, "session.start"), event(1, "session.end")];
            (sid.clone(), events)
        })
        .collect()
}

fn job(cluster: &Cluster, sandbox: &Sandbox, retry: &str) -> Config {
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    Config::teleport_job(&cluster.standin.address())
        .set("concurrency", 2)
        .set("teleport.missing-recording-retry", retry)
        .set("skip-session-types", Vec::<&str>::new())
        .file_sink("default", OUT)
}

/// As many events arrived as the audit log holds (fixtures and uploads),
/// every upload among them: no recording is served, so nothing else comes.
fn audit_log_arrived(cluster: &Cluster, sandbox: &Sandbox) -> bool {
    let lines = sandbox.out_lines();
    let uploads = lines.iter().filter(|line| line.contains("\"session.upload\"")).count();
    lines.len() == cluster.audit_log().len() && uploads == cluster.audit_log().iter().filter(|e| e["event"] == "session.upload").count()
}

#[test]
fn recordings_teleport_cannot_serve_do_not_hold_the_audit_log_and_show_as_failing() {
    let cluster = Cluster::start(StandInOptions { sessions: recordings(), announce_sessions: true, ..StandInOptions::default() });
    for sid in recordings().keys() {
        cluster.standin.fail_recording(sid, tonic::Code::Internal);
    }
    let sandbox = Sandbox::new("stuck-recordings-failing", "");
    sandbox.set_config(&job(&cluster, &sandbox, "10m").text());
    let mut running = sandbox.spawn_command(sandbox.command(&["start", "--http-addr", "127.0.0.1:0"]));
    let addr = served_addr(&running, &sandbox);

    wait_for(
        "the whole audit log, past the recordings that fail",
        Duration::from_secs(90),
        || audit_log_arrived(&cluster, &sandbox),
        || sandbox.report(Some(&running.snapshot())),
    );
    let ready = http_get(&addr, "/readyz").expect("/readyz answers");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("session recording stuck-") && ready.body.contains("Internal"), "{}", ready.body);
    let metrics = http_get(&addr, "/metrics").expect("/metrics answers").body;
    let failing: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("ferry_source_parts_failing "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ferry_source_parts_failing in\n{metrics}"));
    assert!(failing >= 1.0, "{metrics}");
    wait_for(
        "`ferry status` to show a failing recording",
        Duration::from_secs(30),
        || sandbox.run_args(&["status"], None).stdout.contains("FAILING (1 round(s) of tries)"),
        || sandbox.report(Some(&sandbox.run_args(&["status"], None))),
    );
    assert!(sandbox.dead_letters().is_empty(), "nothing is given up before its bounds");
    running.terminate();
    running.wait(&sandbox, Duration::from_secs(30)).assert_success(&sandbox);
}

#[test]
fn a_recording_stuck_in_a_silent_stream_holds_the_audit_log_for_a_bounded_time() {
    let cluster = Cluster::start(StandInOptions { sessions: recordings(), announce_sessions: true, ..StandInOptions::default() });
    for sid in recordings().keys() {
        cluster.standin.hang_recording(sid);
    }
    let sandbox = Sandbox::new("stuck-recordings-silent", "");
    sandbox.set_config(&job(&cluster, &sandbox, "10m").text());
    let mut running = sandbox.spawn_start();
    wait_for(
        "the whole audit log, past recordings whose streams never answer",
        Duration::from_secs(100),
        || audit_log_arrived(&cluster, &sandbox),
        || sandbox.report(Some(&running.snapshot())),
    );
    assert_eq!(running.stderr_count("No session recording has moved for 30s"), 1, "{}", running.stderr());
    running.terminate();
    running.wait(&sandbox, Duration::from_secs(30)).assert_success(&sandbox);
}

#[test]
fn a_recording_that_keeps_failing_is_dead_lettered_and_replay_streams_it_again() {
    let cluster = Cluster::start(StandInOptions { announce_sessions: true, ..StandInOptions::default() });
    cluster.standin.fail_recording(SID, tonic::Code::Internal);
    let sandbox = Sandbox::new("stuck-recordings-given-up", "");
    sandbox.set_config(&job(&cluster, &sandbox, "1s").text());
    let mut running = sandbox.spawn_start();
    wait_for("the audit log", Duration::from_secs(30), || audit_log_arrived(&cluster, &sandbox), || sandbox.report(None));
    wait_for(
        "the recording to be dead-lettered",
        Duration::from_secs(60),
        || !sandbox.dead_letters().is_empty(),
        || sandbox.report(Some(&running.snapshot())),
    );
    let letters = sandbox.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let reason = letters[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("session recording {SID} cannot be streamed (asked 3 times)")) && reason.contains("Internal"),
        "{reason}"
    );
    // Three rounds of three tries each, not for ever.
    assert_eq!(cluster.standin.recording_asks(SID), 9, "{}", running.stderr());
    running.terminate();
    running.wait(&sandbox, Duration::from_secs(30)).assert_success(&sandbox);
    let before = sandbox.out_count();

    // Teleport serves it again: the replay streams it from where it stopped.
    cluster.standin.heal_recording(SID);
    let replay = sandbox.run_args(&["dead-letters", "replay"], None);
    replay.assert_success(&sandbox);
    assert!(sandbox.dead_letters().is_empty(), "{}", sandbox.report(Some(&replay)));
    // Every line since is the recording's (its `print` events carry no `sid`).
    let recording: Vec<i64> = sandbox.out_lines()[before..]
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
        .map(|event| event["ei"].as_i64().expect("an index"))
        .collect();
    assert_eq!(recording, (0..160).collect::<Vec<i64>>(), "the whole recording, once, in order{}", sandbox.report(Some(&replay)));
}
