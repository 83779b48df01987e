//! Operating ferry: `ferry status`, `ferry dead-letters list|show|replay|purge`
//! and `ferry check --probe`, against the stand-in Logstash and Teleport.
//!
//! The run: the fixtures plus one line that is not JSON, in batches of 5,
//! into the Logstash stand-in, which refuses the first request with a 400:
//! five events become sink dead letters, the bad line a source dead letter,
//! everything else is delivered.

use crate::util::{self, Config, IN, Sandbox};
use ferry_standin::logstash::{Fault, LogstashStandIn};
use ferry_standin::pki::PkiFiles;
use ferry_standin::teleport::{IdentitySpec, StandInOptions, TeleportStandIn};
use serde_json::{Value, json};
use std::time::SystemTime;

const BAD_LINE: &str = "this line is not JSON";

struct Setup {
    runtime: tokio::runtime::Runtime,
    standin: LogstashStandIn,
    sandbox: Sandbox,
    pki: PkiFiles,
    fixtures: Vec<util::FixtureEvent>,
}

fn logstash_config(url: &str, pki: &PkiFiles) -> Config {
    Config::logstash_job(false, url, &pki.ca, &pki.client_cert, &pki.client_key)
        .pipeline(5, "20ms")
        .set("sinks.default.retry-initial", "50ms")
        .set("sinks.default.retry-max", "200ms")
}

/// Runs the job to its end once; the first request is refused with a 400.
fn after_a_run(name: &str) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let standin = runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let fixtures = util::fixtures();
    let sandbox = Sandbox::new(name, "");
    let pki = standin.pki.write(&sandbox.path("pki")).expect("certificates written");
    sandbox.set_config(&logstash_config(&standin.url(), &pki).text());
    let missing = sandbox.run("status");
    missing.assert_success(&sandbox);
    assert_eq!(missing.stdout.lines().count(), 1, "a missing state database is one line{}", sandbox.report(Some(&missing)));
    assert!(missing.stdout.starts_with("no state database at "), "{}", sandbox.report(Some(&missing)));

    sandbox.write(IN, format!("{}{BAD_LINE}\n", util::jsonl(&fixtures)).as_bytes());
    standin.inject(vec![Fault::BadRequest("refused by the test".into())]);
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    assert_eq!(standin.event_count(), fixtures.len() - 5, "all but the refused batch arrived{}", sandbox.report(Some(&run)));
    Setup { runtime, standin, sandbox, pki, fixtures }
}

fn status_json(sandbox: &Sandbox) -> Value {
    let output = sandbox.run_command(sandbox.command(&["status", "--json"]));
    output.assert_success(sandbox);
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|err| panic!("`ferry status --json` is not JSON ({err}){}", sandbox.report(Some(&output))))
}

fn letters(sandbox: &Sandbox, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["dead-letters", "list"];
    all.extend_from_slice(args);
    let output = sandbox.run_command(sandbox.command(&all));
    output.assert_success(sandbox);
    output.stdout.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

#[test]
fn status_shows_the_cursor_the_newest_event_and_dead_letters_per_stage() {
    let setup = after_a_run("ops-status");
    let sandbox = &setup.sandbox;
    let status = status_json(sandbox);
    let input = std::fs::metadata(sandbox.path(IN)).expect("the input");
    let source = &status["sources"][0];
    assert_eq!(source["kind"], "file", "{status:#}");
    assert_eq!(source["cursor"]["offset"], json!(input.len()), "the cursor is at the end of the input: {status:#}");
    assert_eq!(source["cursor"]["ino"], json!(std::os::unix::fs::MetadataExt::ino(&input)), "{status:#}");
    let newest = setup
        .fixtures
        .iter()
        .filter_map(|f| f.value["time"].as_str())
        .filter_map(|time| humantime::parse_rfc3339_weak(time).or_else(|_| humantime::parse_rfc3339(time)).ok())
        .max()
        .expect("the fixtures have times");
    let stored = source["newest_event_time"].as_str().unwrap_or_else(|| panic!("a newest event time: {status:#}"));
    assert_eq!(humantime::parse_rfc3339(stored).ok(), Some(newest), "{status:#}");
    let lag = SystemTime::now().duration_since(newest).expect("the fixtures are in the past").as_secs_f64();
    let shown = source["lag_seconds"].as_f64().expect("a lag");
    assert!((shown - lag).abs() < 120.0, "lag {shown} s, expected about {lag} s: {status:#}");
    assert_eq!(status["dead_letters"]["by_stage"], json!({ "sink": 5, "source": 1 }), "{status:#}");
    assert_eq!(status["dead_letters"]["total"], 6);
    assert!(status["size_bytes"].as_u64().is_some_and(|size| size > 0), "{status:#}");

    let text = sandbox.run("status");
    text.assert_success(sandbox);
    assert!(
        text.stdout.contains(&format!("cursor: {} at byte {}", sandbox.path(IN).display(), input.len())),
        "{}",
        sandbox.report(Some(&text))
    );
    assert!(text.stdout.contains("dead letters: 6"), "{}", sandbox.report(Some(&text)));
    assert!(text.stdout.contains("sink default: 5"), "{}", sandbox.report(Some(&text)));
}

#[test]
fn replay_with_the_sink_up_delivers_and_removes_what_it_delivered() {
    let setup = after_a_run("ops-replay-up");
    let sandbox = &setup.sandbox;
    let refused = letters(sandbox, &["--stage", "sink"]);
    assert_eq!(refused.len(), 5);
    // `ferry dead-letters --config F` alone still lists everything.
    assert_eq!(sandbox.dead_letters().len(), 6);

    let replay = sandbox.run_command(sandbox.command(&["dead-letters", "replay", "--stage", "sink"]));
    replay.assert_success(sandbox);
    assert!(replay.stdout.contains("5 delivered"), "{}", sandbox.report(Some(&replay)));
    assert_eq!(setup.standin.event_count(), setup.fixtures.len(), "the receiver now has every event{}", sandbox.report(Some(&replay)));
    let received = setup.standin.events();
    for letter in &refused {
        let event: Value = serde_json::from_str(letter["payload"].as_str().expect("a payload")).expect("JSON");
        assert!(received.contains(&event), "the replayed event arrived: {event}");
    }
    let left = sandbox.dead_letters();
    assert_eq!(left.len(), 1, "only the source dead letter stays: {left:?}");
    assert_eq!(left[0]["stage"], "source");

    // The bad line fails again and stays, with its new reason; the command says so.
    let again = sandbox.run_command(sandbox.command(&["dead-letters", "replay"]));
    assert!(!again.success(), "a dead letter that fails again fails the replay{}", sandbox.report(Some(&again)));
    let left = sandbox.dead_letters();
    assert_eq!(left.len(), 1);
    assert!(left[0]["reason"].as_str().is_some_and(|r| r.contains("still not an event")), "{left:?}");
}

#[test]
fn replay_with_the_sink_down_keeps_every_dead_letter() {
    let setup = after_a_run("ops-replay-down");
    let sandbox = &setup.sandbox;
    let before = letters(sandbox, &["--stage", "sink"]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address");
    sandbox.set_config(&logstash_config(&format!("https://{closed}/"), &setup.pki).text());
    let replay = sandbox.run_command(sandbox.command(&["dead-letters", "replay", "--stage", "sink", "--timeout", "1s"]));
    assert!(!replay.success(), "the replay fails{}", sandbox.report(Some(&replay)));
    assert!(replay.stdout.contains("5 failed again"), "{}", sandbox.report(Some(&replay)));
    let after = letters(sandbox, &["--stage", "sink"]);
    assert_eq!(after.len(), before.len(), "nothing was removed");
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old["id"], new["id"]);
        assert_eq!(old["payload"], new["payload"], "the event is kept as it was");
        assert!(new["reason"].as_str().is_some_and(|r| r.contains("did not acknowledge within 1s")), "{new}");
    }
    drop(setup.runtime);
}

#[test]
fn purge_removes_only_what_it_names() {
    let setup = after_a_run("ops-purge");
    let sandbox = &setup.sandbox;
    let bare = sandbox.run_command(sandbox.command(&["dead-letters", "purge"]));
    assert!(!bare.success(), "purge without --all or filters refuses{}", sandbox.report(Some(&bare)));
    assert_eq!(sandbox.dead_letters().len(), 6);

    let purge = sandbox.run_command(sandbox.command(&["dead-letters", "purge", "--stage", "source"]));
    purge.assert_success(sandbox);
    assert!(purge.stdout.starts_with("removed 1 dead letter(s)"), "{}", sandbox.report(Some(&purge)));
    let left = sandbox.dead_letters();
    assert_eq!(left.len(), 5);
    assert!(left.iter().all(|l| l["stage"] == "sink"));

    let id = left[2]["id"].as_i64().expect("an id").to_string();
    let show = sandbox.run_command(sandbox.command(&["dead-letters", "show", &id]));
    show.assert_success(sandbox);
    let shown: Value = serde_json::from_str(&show.stdout).expect("JSON");
    assert_eq!(shown["id"].to_string(), id);
    assert!(shown["payload"].is_object(), "the event is shown as JSON: {shown}");

    let purge = sandbox.run_command(sandbox.command(&["dead-letters", "purge", "--id", &id]));
    purge.assert_success(sandbox);
    assert!(purge.stdout.starts_with("removed 1 dead letter(s)"), "{}", sandbox.report(Some(&purge)));
    let ids: Vec<String> = sandbox.dead_letters().iter().map(|l| l["id"].to_string()).collect();
    assert_eq!(ids.len(), 4);
    assert!(!ids.contains(&id), "{ids:?}");

    let all = sandbox.run_command(sandbox.command(&["dead-letters", "purge", "--all"]));
    all.assert_success(sandbox);
    assert!(all.stdout.starts_with("removed 4 dead letter(s)"), "{}", sandbox.report(Some(&all)));
    assert!(sandbox.dead_letters().is_empty());
}

struct Peers {
    _runtime: tokio::runtime::Runtime,
    teleport: TeleportStandIn,
    logstash: LogstashStandIn,
    sandbox: Sandbox,
    pki: PkiFiles,
}

fn peers(name: &str) -> Peers {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let teleport = runtime.block_on(TeleportStandIn::start(StandInOptions::default())).expect("the stand-in Teleport starts");
    let logstash = runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = Sandbox::new(name, "");
    let pki = logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
    teleport.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    Peers { _runtime: runtime, teleport, logstash, sandbox, pki }
}

fn probe_config(peers: &Peers, url: &str) -> String {
    Config::teleport_job(&peers.teleport.addr().to_string())
        .logstash_sink("default", url, &peers.pki.ca, &peers.pki.client_cert, &peers.pki.client_key)
        .text()
}

#[test]
fn check_probe_passes_against_the_stand_ins() {
    let peers = peers("ops-probe-ok");
    let sandbox = &peers.sandbox;
    sandbox.set_config(&probe_config(&peers, &peers.logstash.url()));
    let probe = sandbox.run_command(sandbox.command(&["check", "--probe"]));
    probe.assert_success(sandbox);
    let teleport = format!("teleport {}: ok", peers.teleport.addr());
    assert!(probe.stdout.lines().any(|line| line.starts_with(&teleport)), "{}", sandbox.report(Some(&probe)));
    assert!(
        probe.stdout.lines().any(|line| line.starts_with("sink default (") && line.contains("): ok")),
        "{}",
        sandbox.report(Some(&probe))
    );
    assert_eq!(peers.logstash.event_count(), 0, "the probe created no event{}", sandbox.report(Some(&probe)));
    assert_eq!(peers.logstash.requests().len(), 1, "one request reached Logstash{}", sandbox.report(Some(&probe)));
}

#[test]
fn check_probe_names_the_sink_that_is_down() {
    let peers = peers("ops-probe-sink-down");
    let sandbox = &peers.sandbox;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address");
    sandbox.set_config(&probe_config(&peers, &format!("https://{closed}/")));
    let probe = sandbox.run_command(sandbox.command(&["check", "--probe"]));
    assert!(!probe.success(), "{}", sandbox.report(Some(&probe)));
    let failed: Vec<&str> = probe.stdout.lines().filter(|line| line.contains("FAILED")).collect();
    assert_eq!(failed.len(), 1, "{}", sandbox.report(Some(&probe)));
    assert!(failed[0].starts_with(&format!("sink default (https://{closed}/): FAILED: ")), "{}", sandbox.report(Some(&probe)));
    assert!(probe.stdout.contains(&format!("teleport {}: ok", peers.teleport.addr())), "{}", sandbox.report(Some(&probe)));
}

#[test]
fn check_probe_names_teleport_when_it_refuses_the_identity() {
    let peers = peers("ops-probe-identity-refused");
    let sandbox = &peers.sandbox;
    let foreign = IdentitySpec { foreign_ca: true, ..IdentitySpec::default() };
    peers.teleport.write_identity_with(&sandbox.path("identity"), &foreign).expect("identity written");
    sandbox.set_config(&probe_config(&peers, &peers.logstash.url()));
    let probe = sandbox.run_command(sandbox.command(&["check", "--probe"]));
    assert!(!probe.success(), "{}", sandbox.report(Some(&probe)));
    let failed: Vec<&str> = probe.stdout.lines().filter(|line| line.contains("FAILED")).collect();
    assert_eq!(failed.len(), 1, "{}", sandbox.report(Some(&probe)));
    assert!(failed[0].starts_with(&format!("teleport {}: FAILED: ", peers.teleport.addr())), "{}", sandbox.report(Some(&probe)));
    assert!(
        probe.stdout.lines().any(|line| line.starts_with("sink default (") && line.contains("): ok")),
        "{}",
        sandbox.report(Some(&probe))
    );
}

#[test]
fn status_after_a_teleport_run_shows_the_engine_cursor_and_the_newest_event() {
    let cluster =
        crate::teleport::Cluster::start(StandInOptions { export_api: false, announce_sessions: true, ..StandInOptions::default() });
    let addr = cluster.standin.addr().to_string();
    let config =
        Config::teleport_job(&addr).file_sink("default", util::OUT).file_sink("sessions", "sessions.jsonl").set("exit-on-last-event", true);
    let sandbox = Sandbox::new("ops-status-teleport", &config.text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let status = status_json(&sandbox);
    let source = &status["sources"][0];
    assert_eq!(source["source"], format!("teleport:{}", cluster.standin.cluster_name()), "the position is keyed by cluster: {status:#}");
    assert_eq!(source["kind"], "teleport", "{status:#}");
    assert_eq!(source["cursor"]["engine"], "legacy", "the stand-in is told to have no export API: {status:#}");
    assert_eq!(source["sessions"], json!([]), "every recording was streamed: {status:#}");
    let mut times: Vec<String> = cluster.audit_log().iter().filter_map(|event| event["time"].as_str().map(str::to_owned)).collect();
    let recording = cluster.standin.session_events(crate::teleport::SID).expect("the fixture session");
    times.extend(
        recording
            .iter()
            .map(|event| event.unstructured.clone().unwrap_or_default().to_json_value().expect("a well-formed Struct"))
            .filter_map(|event| event["time"].as_str().map(str::to_owned)),
    );
    let newest = times
        .iter()
        .filter_map(|time| humantime::parse_rfc3339_weak(time).or_else(|_| humantime::parse_rfc3339(time)).ok())
        .max()
        .expect("times");
    let stored = source["newest_event_time"].as_str().unwrap_or_else(|| panic!("a newest event time: {status:#}"));
    assert_eq!(humantime::parse_rfc3339(stored).ok(), Some(newest), "{status:#}");
    let text = sandbox.run("status");
    text.assert_success(&sandbox);
    assert!(text.stdout.contains("cursor: legacy engine, window from "), "{}", sandbox.report(Some(&text)));
    assert!(text.stdout.contains("dead letters: 0"), "{}", sandbox.report(Some(&text)));
}

/// A config that does not build (the identity is missing) does not stop
/// the probes: every sink is still tried and reported.
#[test]
fn check_probe_reports_every_target_even_when_the_identity_is_missing() {
    let peers = peers("ops-probe-no-identity");
    let sandbox = &peers.sandbox;
    std::fs::remove_file(sandbox.path("identity")).expect("identity removed");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address");
    let config = Config::teleport_job(&peers.teleport.addr().to_string())
        .logstash_sink("default", &peers.logstash.url(), &peers.pki.ca, &peers.pki.client_cert, &peers.pki.client_key)
        .logstash_sink("down", &format!("https://{closed}/"), &peers.pki.ca, &peers.pki.client_cert, &peers.pki.client_key);
    sandbox.set_config(&config.text());
    let probe = sandbox.run_command(sandbox.command(&["check", "--probe"]));
    assert!(!probe.success(), "{}", sandbox.report(Some(&probe)));
    let lines: Vec<&str> = probe.stdout.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with(&format!("{}: FAILED: ", sandbox.config().display()))), "{}", sandbox.report(Some(&probe)));
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("teleport {}: FAILED: ", peers.teleport.addr()))),
        "{}",
        sandbox.report(Some(&probe))
    );
    assert!(lines.iter().any(|l| l.starts_with("sink default (") && l.contains("): ok")), "{}", sandbox.report(Some(&probe)));
    assert!(lines.iter().any(|l| l.starts_with(&format!("sink down (https://{closed}/): FAILED: "))), "{}", sandbox.report(Some(&probe)));
}
