//! The Teleport source against the stand-in Auth Service, over real gRPC
//! and mutual TLS, through the real binary.
//!
//! Each scenario starts the stand-in in the test process (its own tokio
//! runtime), writes an identity file in Teleport's format, and runs
//! `ferry start` on an event handler style config (`[teleport]` plus the
//! event handler's top-level keys) with file sinks for audit events and
//! session recordings. What the sinks hold is compared with what the
//! stand-in serves, event by event.

use crate::util::{self, Config, DEADLINE, OUT, Sandbox};
use ferry_standin::logstash::{self, LogstashStandIn};
use ferry_standin::teleport::{Fault, IdentitySpec, Method, StandInOptions, TeleportStandIn, Validity};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const SESSIONS: &str = "sessions.jsonl";
pub(crate) const SID: &str = "516965e5-e6ef-11e9-9d5b-42010a80002b";

/// The stand-in and the runtime it runs on (also used by `teleport_faults`).
pub(crate) struct Cluster {
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) standin: TeleportStandIn,
}

impl Cluster {
    pub(crate) fn start(options: StandInOptions) -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
        let standin = runtime.block_on(TeleportStandIn::start(options)).expect("the stand-in starts");
        Cluster { runtime, standin }
    }

    /// The fixtures, with a `session.upload` for the fixture session.
    fn with_fixtures(export_api: bool) -> Cluster {
        Cluster::start(StandInOptions { export_api, announce_sessions: true, ..StandInOptions::default() })
    }

    /// The audit log as served, as JSON, oldest first.
    pub(crate) fn audit_log(&self) -> Vec<Value> {
        self.standin
            .audit_events()
            .iter()
            .map(|event| event.unstructured.clone().unwrap_or_default().to_json_value().expect("a well-formed Struct"))
            .collect()
    }

    /// The fixture session's events as streamed, as JSON.
    fn session(&self) -> Vec<Value> {
        let events = self.standin.session_events(SID).expect("the fixture session");
        events.iter().map(|event| event.unstructured.clone().unwrap_or_default().to_json_value().expect("a well-formed Struct")).collect()
    }

    fn write_identity(&self, sandbox: &Sandbox, spec: &IdentitySpec) -> String {
        self.standin.write_identity_with(&sandbox.path("identity"), spec).expect("identity written").serial
    }
}

/// An event handler style config reading from `addr`, into file sinks for
/// audit events and for session recordings.
fn config(addr: &str) -> Config {
    Config::teleport_job(addr).file_sink("default", OUT).file_sink("sessions", SESSIONS)
}

/// `config` with the identity file re-read every 100 ms, as Machine ID
/// renews it.
fn refreshed(config: Config) -> Config {
    config.set("teleport.refresh.enabled", true).set("teleport.refresh.interval", "100ms")
}

/// As [`config`], ending at the last event of the log.
fn to_the_end(addr: &str) -> Config {
    config(addr).set("exit-on-last-event", true)
}

fn lines(sandbox: &Sandbox, file: &str) -> Vec<Value> {
    util::complete_lines(&sandbox.read(file))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{file} holds a line that is not JSON ({err}): {line}")))
        .collect()
}

fn event_type(event: &Value) -> &str {
    event.get("event").and_then(Value::as_str).unwrap_or_default()
}

/// Runs `ferry start` to the end (exit-on-last-event) and checks it succeeded.
fn run_to_end(sandbox: &Sandbox) -> util::Output {
    let output = sandbox.run("start");
    output.assert_success(sandbox);
    output
}

fn every_event_once_in_order(export_api: bool) {
    let cluster = Cluster::with_fixtures(export_api);
    let sandbox =
        Sandbox::new(if export_api { "teleport-export" } else { "teleport-legacy" }, &to_the_end(&cluster.standin.address()).text());
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    let output = run_to_end(&sandbox);

    let expected = cluster.audit_log();
    assert_eq!(expected.len(), 184, "183 fixtures and the session.upload the stand-in adds");
    let got = lines(&sandbox, OUT);
    assert_eq!(got.len(), expected.len(), "every audit event once\n{}", sandbox.report(Some(&output)));
    assert!(got == expected, "the audit events arrive as served, in order\n{}", sandbox.report(Some(&output)));
    let engine = if export_api { "engine=\"export\"" } else { "engine=\"legacy\"" };
    assert!(output.stderr.contains(engine), "ferry says which engine it uses ({engine})\n{}", sandbox.report(Some(&output)));

    // The recording announced by session.upload, without the print events
    // (skipped by default, as the event handler does).
    let session: Vec<Value> = cluster.session().into_iter().filter(|event| event_type(event) != "print").collect();
    assert_eq!(session.len(), 4);
    assert_eq!(lines(&sandbox, SESSIONS), session, "the session recording goes to the sessions sink\n{}", sandbox.report(Some(&output)));
}

#[test]
fn the_legacy_engine_delivers_every_event_once_in_order() {
    every_event_once_in_order(false);
}

#[test]
fn the_export_engine_delivers_every_event_once_in_order() {
    every_event_once_in_order(true);
}

fn types_filter(export_api: bool) {
    let cluster = Cluster::with_fixtures(export_api);
    let text = to_the_end(&cluster.standin.address())
        .set("types", "user.login,session.start,session.end")
        .set("skip-event-types", vec!["session.end"])
        .text();
    let sandbox = Sandbox::new("teleport-types", &text);
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    let output = run_to_end(&sandbox);
    let expected: Vec<Value> =
        cluster.audit_log().into_iter().filter(|event| matches!(event_type(event), "user.login" | "session.start")).collect();
    assert_eq!(expected.len(), 5, "the fixtures have four logins and a session start");
    assert!(lines(&sandbox, OUT) == expected, "only the listed types, without the skipped one\n{}", sandbox.report(Some(&output)));
    assert!(sandbox.read(SESSIONS).is_empty(), "session.upload is not among the types, so no recording is streamed");
}

#[test]
fn types_and_skip_event_types_filter_in_the_legacy_engine() {
    types_filter(false);
}

#[test]
fn types_and_skip_event_types_filter_in_the_export_engine() {
    types_filter(true);
}

#[test]
fn print_events_carry_their_base64_data_as_sent() {
    let cluster = Cluster::with_fixtures(false);
    let sandbox =
        Sandbox::new("teleport-print", &to_the_end(&cluster.standin.address()).set("skip-session-types", Vec::<&str>::new()).text());
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    let output = run_to_end(&sandbox);
    let expected = cluster.session();
    assert_eq!(expected.len(), 160);
    let got = lines(&sandbox, SESSIONS);
    assert!(got == expected, "all 160 session events, prints included\n{}", sandbox.report(Some(&output)));
    let prints: Vec<&Value> = got.iter().filter(|event| event_type(event) == "print").collect();
    assert_eq!(prints.len(), 156);
    assert!(
        prints.iter().all(|print| print.get("data").and_then(Value::as_str).is_some_and(|data| !data.is_empty())),
        "every print has data"
    );
}

/// How often each `uid` (or whole event, for events without one) occurs.
fn tally(events: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in events {
        let key = event.get("uid").and_then(Value::as_str).map_or_else(|| event.to_string(), str::to_owned);
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Every expected event arrived, and at most `batch` of them twice.
fn nothing_lost_at_most_a_batch_twice(expected: &[Value], got: &[Value], batch: usize, what: &str, sandbox: &Sandbox) {
    let (want, have) = (tally(expected), tally(got));
    for (key, count) in &want {
        let seen = have.get(key).copied().unwrap_or(0);
        assert!(seen >= *count, "{what}: {key} was lost\n{}", sandbox.report(None));
    }
    let duplicates: usize = have.iter().map(|(key, count)| count.saturating_sub(want.get(key).copied().unwrap_or(0))).sum();
    assert!(duplicates <= batch, "{what}: {duplicates} duplicates, more than one batch of {batch}\n{}", sandbox.report(None));
    assert!(have.keys().all(|key| want.contains_key(key)), "{what}: an event that was never served arrived");
}

#[test]
fn killed_mid_page_and_restarted_nothing_is_lost() {
    let cluster = Cluster::with_fixtures(false);
    // Slow pages of five, so that ferry is killed in the middle of the log.
    for _ in 0..30 {
        cluster.standin.inject(Method::GetUnstructuredEvents, Fault::Delay(Duration::from_millis(40)));
    }
    let text = to_the_end(&cluster.standin.address()).set("batch", 5).text();
    let sandbox = Sandbox::new("teleport-kill-page", &text);
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    let mut running = sandbox.spawn_start();
    util::wait_for("some audit events", DEADLINE, || sandbox.out_count() >= 40, || sandbox.report(Some(&running.snapshot())));
    let killed = running.kill(&sandbox);
    let delivered = sandbox.out_count();
    assert!(delivered < 184, "ferry was killed before the end of the log ({delivered} delivered)\n{}", sandbox.report(Some(&killed)));
    run_to_end(&sandbox);
    nothing_lost_at_most_a_batch_twice(&cluster.audit_log(), &lines(&sandbox, OUT), 10, "audit events", &sandbox);
}

#[test]
fn killed_mid_session_and_restarted_the_session_resumes() {
    let cluster = Cluster::with_fixtures(false);
    let runtime = &cluster.runtime;
    let logstash = runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    // Every session batch waits, so that ferry is killed in the middle of the recording.
    logstash.inject((0..40).map(|_| logstash::Fault::Delay(Duration::from_millis(60))));
    let sandbox = Sandbox::new("teleport-kill-session", "");
    let pki = logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
    let text = to_the_end(&cluster.standin.address()).set("skip-session-types", Vec::<&str>::new()).unset("sinks.sessions").logstash_sink(
        "sessions",
        &logstash.url(),
        &pki.ca,
        &pki.client_cert,
        &pki.client_key,
    );
    sandbox.set_config(&text.text());
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    let mut running = sandbox.spawn_start();
    util::wait_for("part of the session", DEADLINE, || logstash.event_count() >= 40, || sandbox.report(Some(&running.snapshot())));
    let killed = running.kill(&sandbox);
    let before = logstash.event_count();
    assert!(before < 160, "ferry was killed in the middle of the session ({before} of 160)\n{}", sandbox.report(Some(&killed)));
    let output = run_to_end(&sandbox);
    let got = logstash.events();
    assert!(got.len() >= 160, "the restart resumed the session\n{}", sandbox.report(Some(&output)));
    nothing_lost_at_most_a_batch_twice(&cluster.session(), &got, 10, "session events", &sandbox);
    assert!(got.len() - 160 <= 10, "the restart did not start the session over");
}

#[test]
fn an_expired_identity_is_refused_on_one_line() {
    let cluster = Cluster::with_fixtures(false);
    let sandbox = Sandbox::new("teleport-expired", &config(&cluster.standin.address()).text());
    cluster.write_identity(&sandbox, &IdentitySpec { validity: Validity::Expired, ..IdentitySpec::default() });
    for command in ["start", "check"] {
        let message = sandbox.run(command).one_line_error(&sandbox);
        assert!(message.contains("`teleport.identity`"), "{command}: {message}");
        assert!(message.contains("expired"), "{command}: {message}");
        assert!(message.contains(&sandbox.path("identity").display().to_string()), "{command}: {message}");
    }
}

/// A wrong client certificate, then the right one written in its place:
/// ferry retries, says why on one line, and delivers everything once the
/// identity is renewed. The renewed identity is used by new connections.
#[test]
fn a_wrong_ca_is_retried_and_a_renewed_identity_recovers() {
    let cluster = Cluster::with_fixtures(false);
    let text = refreshed(to_the_end(&cluster.standin.address())).text();
    let sandbox = Sandbox::new("teleport-wrong-ca", &text);
    cluster.write_identity(&sandbox, &IdentitySpec { foreign_ca: true, ..IdentitySpec::default() });
    let mut running = sandbox.spawn_start();
    util::wait_for(
        "refused handshakes",
        DEADLINE,
        || cluster.standin.handshake_errors().len() >= 2,
        || sandbox.report(Some(&running.snapshot())),
    );
    let warnings = running.stderr();
    assert!(sandbox.read(OUT).is_empty(), "nothing is read with a refused certificate");
    assert!(!running.has_exited(), "ferry keeps retrying\n{}", sandbox.report(Some(&running.snapshot())));
    let serial = cluster.write_identity(&sandbox, &IdentitySpec::default());
    let output = running.wait(&sandbox, DEADLINE);
    output.assert_success(&sandbox);
    assert_eq!(
        lines(&sandbox, OUT),
        cluster.audit_log(),
        "everything arrives once the identity is renewed\n{}",
        sandbox.report(Some(&output))
    );
    assert!(cluster.standin.connections().iter().any(|peer| peer.serial == serial), "the renewed certificate was used");
    let retry_line = warnings.lines().find(|line| line.contains("retrying")).unwrap_or_else(|| panic!("no retry warning\n{warnings}"));
    assert!(retry_line.contains(&cluster.standin.address()), "the warning names the address: {retry_line}");
}

/// ferry started before Teleport: it retries until the Auth Service is up.
#[test]
fn a_server_that_is_down_is_waited_for() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address");
    // A restarted stand-in has a new CA; Machine ID would renew the identity.
    let text = refreshed(to_the_end(&port.to_string())).text();
    let sandbox = Sandbox::new("teleport-down", &text);
    // The identity comes from a stand-in that is started and stopped first.
    let first = Cluster::with_fixtures(false);
    first.write_identity(&sandbox, &IdentitySpec::default());
    let mut running = sandbox.spawn_start();
    util::wait_for("a retry warning", DEADLINE, || running.stderr().contains("retrying"), || sandbox.report(Some(&running.snapshot())));
    assert!(!running.has_exited(), "ferry waits for Teleport\n{}", sandbox.report(Some(&running.snapshot())));
    drop(first);
    let cluster =
        Cluster::start(StandInOptions { export_api: false, announce_sessions: true, listen: Some(port), ..StandInOptions::default() });
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    let output = running.wait(&sandbox, DEADLINE);
    output.assert_success(&sandbox);
    assert_eq!(lines(&sandbox, OUT), cluster.audit_log(), "nothing lost while Teleport was down\n{}", sandbox.report(Some(&output)));
}

#[test]
fn a_rotated_identity_is_used_by_new_connections_while_running() {
    let cluster = Cluster::with_fixtures(false);
    let text = refreshed(config(&cluster.standin.address())).text();
    let sandbox = Sandbox::new("teleport-rotate", &text);
    let first = cluster.write_identity(&sandbox, &IdentitySpec::default());
    let running = sandbox.spawn_start();
    util::wait_for("every audit event", DEADLINE, || sandbox.out_count() >= 184, || sandbox.report(Some(&running.snapshot())));
    let second = cluster.write_identity(&sandbox, &IdentitySpec::default());
    assert_ne!(first, second);
    // Once the watcher has re-read the file, make ferry reconnect.
    util::wait_for(
        "the new identity re-read",
        DEADLINE,
        || running.stderr().lines().any(|line| line.contains("Re-read the Teleport identity") && line.contains(&second)),
        || sandbox.report(Some(&running.snapshot())),
    );
    cluster.standin.drop_connections();
    util::wait_for(
        "a connection with the new certificate",
        DEADLINE,
        || cluster.standin.connections().iter().any(|peer| peer.serial == second),
        || sandbox.report(Some(&running.snapshot())),
    );
    running.terminate();
    assert_eq!(sandbox.out_count(), 184, "no event twice across the reconnection");
}

#[test]
fn failed_logins_past_the_threshold_lock_the_user_once() {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let failed = |n: usize| serde_json::json!({"event": "user.login", "code": "T1000W", "success": false, "user": "mallory", "method": "local", "time": now, "uid": format!("failed-{n}")});
    let mut events: Vec<Value> = (0..5).map(failed).collect();
    events.push(serde_json::json!({"event": "user.login", "code": "T1000I", "success": true, "user": "alice", "time": now, "uid": "ok-1"}));
    let cluster = Cluster::start(StandInOptions { events, export_api: false, ..StandInOptions::default() });
    let text = to_the_end(&cluster.standin.address())
        .set("start-time", "2000-01-01T00:00:00Z")
        .set("window-size", "87600h")
        .set("lock-enabled", true)
        .set("lock-failed-attempts-count", 3)
        .set("lock-period", "1h")
        .set("lock-for", "10m")
        .text();
    let sandbox = Sandbox::new("teleport-lock", &text);
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    let output = run_to_end(&sandbox);
    assert_eq!(sandbox.out_count(), 6, "{}", sandbox.report(Some(&output)));
    util::wait_for("the lock", DEADLINE, || !cluster.standin.locks().is_empty(), || sandbox.report(Some(&output)));
    let locks = cluster.standin.locks();
    assert_eq!(locks.len(), 1, "exactly one lock for five failures over a threshold of three: {locks:?}");
    let lock = &locks[0];
    assert_eq!(lock.metadata.as_ref().map(|m| m.name.as_str()), Some("event-handler-auto-lock-mallory-"));
    let spec = lock.spec.as_ref().expect("a spec");
    assert_eq!(spec.target.as_ref().map(|t| t.user.as_str()), Some("mallory"));
    assert_eq!(spec.message, "User is locked due to too many failed login attempts");
    assert!(spec.expires.is_some(), "lock-for sets an expiry");
}

#[test]
fn start_time_cannot_change_once_ingestion_started() {
    let cluster = Cluster::with_fixtures(false);
    let sandbox = Sandbox::new("teleport-start-time", &to_the_end(&cluster.standin.address()).text());
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    run_to_end(&sandbox);
    sandbox.set_config(&to_the_end(&cluster.standin.address()).set("start-time", "2020-01-01T00:00:00Z").text());
    let message = sandbox.run("start").one_line_error(&sandbox);
    assert!(message.contains("`teleport.start-time`: ingestion started from 2019-01-01T00:00:00Z"), "{message}");
}

/// A recording announced but not uploaded is asked for again later, then
/// dead-lettered; one the server cannot read is dead-lettered at once. The
/// audit log flows on meanwhile and ferry keeps running.
#[test]
fn missing_and_unreadable_recordings_are_dead_lettered_and_ingestion_goes_on() {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let upload = |sid: &str| serde_json::json!({"event": "session.upload", "code": "T2005I", "sid": sid, "time": now, "uid": format!("upload-{sid}")});
    // The first recording asked for gets the injected fault.
    let mut events = vec![upload(SID), upload("ghost-session")];
    events
        .push(serde_json::json!({"event": "user.login", "code": "T1000I", "success": true, "user": "alice", "time": now, "uid": "after"}));
    let cluster = Cluster::start(StandInOptions { events, export_api: false, ..StandInOptions::default() });
    cluster.standin.inject(Method::StreamUnstructuredSessionEvents, Fault::Status(tonic::Code::DataLoss, "recording is corrupted".into()));
    let text = config(&cluster.standin.address())
        .set("concurrency", 1)
        .set("teleport.missing-recording-retry", "100ms")
        .set("start-time", "2020-01-01T00:00:00Z")
        .set("window-size", "87600h")
        .text();
    let sandbox = Sandbox::new("teleport-missing", &text);
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    let running = sandbox.spawn_start();
    util::wait_for("the audit events", DEADLINE, || sandbox.out_count() == 3, || sandbox.report(Some(&running.snapshot())));
    let mut letters = Vec::new();
    util::wait_for(
        "two dead letters",
        DEADLINE,
        || {
            letters = sandbox.dead_letters();
            letters.len() == 2
        },
        || sandbox.report(Some(&running.snapshot())),
    );
    let reasons: Vec<&str> = letters.iter().filter_map(|letter| letter.get("reason").and_then(Value::as_str)).collect();
    assert!(
        reasons.iter().any(|r| r.contains("session recording ghost-session is not in Teleport's storage (asked 3 times)")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains(&format!("session recording {SID} cannot be read")) && r.contains("recording is corrupted")),
        "{reasons:?}"
    );
    let asked = cluster.standin.calls().iter().filter(|call| call.method == Method::StreamUnstructuredSessionEvents).count();
    assert!(asked >= 4, "the missing recording was asked for three times, the corrupted one once ({asked} calls)");
    assert!(sandbox.read(SESSIONS).is_empty(), "nothing of either recording was delivered");
    let mut running = running;
    assert!(!running.has_exited(), "ferry keeps running\n{}", sandbox.report(Some(&running.snapshot())));
    running.terminate();
    running.wait(&sandbox, DEADLINE).assert_success(&sandbox);
}

/// `dry-run`: everything is read and processed, nothing is sent, no cursor
/// is kept, so a second dry run reads everything again.
#[test]
fn a_dry_run_reads_everything_and_sends_nothing() {
    let cluster = Cluster::with_fixtures(false);
    let sandbox = Sandbox::new("teleport-dry-run", &to_the_end(&cluster.standin.address()).set("dry-run", true).text());
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    for run in 1..=2 {
        let output = run_to_end(&sandbox);
        assert!(
            output.stderr.contains("188 events in, 188 delivered"),
            "run {run}: 184 audit and 4 session events\n{}",
            sandbox.report(Some(&output))
        );
        assert!(sandbox.read(OUT).is_empty() && sandbox.read(SESSIONS).is_empty(), "nothing was sent");
    }
    assert!(!sandbox.path("storage/ferry.db").exists(), "the real state is untouched");
}

/// Through a Proxy with TLS routing: ferry asks for the cluster's Auth
/// Service by ALPN, and everything arrives as it does directly.
#[test]
fn through_a_proxy_with_tls_routing() {
    let cluster =
        Cluster::start(StandInOptions { export_api: false, announce_sessions: true, tls_routing: true, ..StandInOptions::default() });
    let text = to_the_end(&cluster.standin.address()).set("teleport.cluster", "ferry.test").text();
    let sandbox = Sandbox::new("teleport-proxy", &text);
    cluster.write_identity(&sandbox, &IdentitySpec::default());
    let output = run_to_end(&sandbox);
    assert!(lines(&sandbox, OUT) == cluster.audit_log(), "every audit event through the proxy\n{}", sandbox.report(Some(&output)));
    let alpn = &cluster.standin.connections()[0].alpn;
    assert_eq!(alpn.first().map(String::as_str), Some("teleport-auth@66657272792e74657374.teleport.cluster.local"), "{alpn:?}");
}
