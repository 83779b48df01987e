//! The Teleport source when Teleport misbehaves, through the real binary:
//! a page key that expires, an export chunk that vanishes, ids that repeat
//! or are empty at the end of the log, and where a recording's `print`
//! events go. Each scenario runs `ferry start` to the end of the log
//! (`exit-on-last-event`), so a ferry that stalls or loops fails by its
//! deadline rather than by a sleep.

use crate::util::{self, Config, OUT, Sandbox};
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::teleport::{IdentitySpec, StandInOptions};
use serde_json::Value;
use std::collections::BTreeSet;

use crate::teleport::{Cluster, SID};

impl Cluster {
    /// A scenario folder with an identity for this stand-in.
    fn sandbox(&self, name: &str, config: &str) -> Sandbox {
        let sandbox = Sandbox::new(name, config);
        self.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
        sandbox
    }
}

/// An event handler style config for `addr` (the fixtures' year in one
/// window, pages of 20) that ends at the last event of the log.
fn config(addr: &str) -> Config {
    Config::teleport_job(addr).set("exit-on-last-event", true)
}

/// [`config`] into the file sink `default`.
fn into_file(addr: &str) -> String {
    config(addr).file_sink("default", OUT).text()
}

fn lines(sandbox: &Sandbox) -> Vec<Value> {
    util::complete_lines(&sandbox.read(OUT))
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{OUT} holds a line that is not JSON ({err}): {line}")))
        .collect()
}

/// As the event handler sends a recording: every event of it, `print`
/// events too (they have no `sid`), to `<session-url>.<sid>.log` — also
/// when a plugin replaced the event (here redact masks the printed data).
#[test]
fn a_recordings_prints_go_to_the_session_url_of_the_stream() {
    let cluster = Cluster::start(StandInOptions { export_api: false, announce_sessions: true, ..StandInOptions::default() });
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = Sandbox::new("teleport-session-url", "");
    let pki = logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
    let url = logstash.url();
    let text = config(&cluster.standin.address()).set("skip-session-types", Vec::<&str>::new()).set("plugins-dir", "plugins").fluentd(
        &format!("{url}test.log"),
        &format!("{url}session"),
        &pki.ca,
        &pki.client_cert,
        &pki.client_key,
    );
    sandbox.set_config(&text.text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    let wasm = std::fs::read(util::plugin("redact")).expect("the redact plugin is built by ferry-test-plugins (tests/plugins-build)");
    sandbox.write("plugins/redact.wasm", &wasm);
    sandbox.write("plugins/redact.toml", b"[config]\nfields = [\"data\"]\nreplacement = \"***\"\n");

    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let report = || {
        format!(
            "{}\nrequests: {:?}",
            sandbox.report(Some(&output)),
            logstash.requests().iter().map(|r| r.path.clone()).collect::<BTreeSet<_>>()
        )
    };
    let session_path = format!("/session.{SID}.log");
    let requests = logstash.requests();
    let session_events: usize = requests.iter().filter(|request| request.path == session_path).map(|request| request.events).sum();
    let audit_events: usize = requests.iter().filter(|request| request.path == "/test.log").map(|request| request.events).sum();
    assert_eq!(session_events, 160, "the whole recording, its 156 prints too, at {session_path}\n{}", report());
    assert_eq!(audit_events, 184, "the audit log at the audit URL\n{}", report());
    let paths: BTreeSet<String> = requests.iter().map(|request| request.path.clone()).collect();
    assert_eq!(paths, BTreeSet::from(["/test.log".to_owned(), session_path]), "nothing went anywhere else\n{}", report());
    let prints: Vec<Value> =
        logstash.events().into_iter().filter(|event| event.get("event").and_then(Value::as_str) == Some("print")).collect();
    assert_eq!(prints.len(), 156);
    assert!(
        prints.iter().all(|print| print.get("data").and_then(Value::as_str) == Some("***") && print.get("sid").is_none()),
        "the plugin replaced every print, which has no sid"
    );
}

/// The event handler's own config, unchanged: `[forward.fluentd]` sends each
/// batch as one JSON array (Logstash's http input, Fluentd's in_http and
/// Fluent Bit's each take it as that many events), not one request per
/// event; `format = "single"` under it restores one event per request.
#[test]
fn the_drop_in_config_sends_json_arrays_and_single_restores_one_event_per_request() {
    let cluster = Cluster::start(StandInOptions { export_api: false, ..StandInOptions::default() });
    let audit_log = cluster.audit_log().len();
    let run = |name: &str, single: bool| {
        let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
        let sandbox = Sandbox::new(name, "");
        let pki = logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
        let url = logstash.url();
        let mut config = config(&cluster.standin.address()).fluentd(
            &format!("{url}test.log"),
            &format!("{url}session"),
            &pki.ca,
            &pki.client_cert,
            &pki.client_key,
        );
        if single {
            config = config.set("forward.fluentd.format", "single");
        }
        sandbox.set_config(&config.text());
        cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
        let output = sandbox.run("start");
        output.assert_success(&sandbox);
        let requests: Vec<_> = logstash.requests().into_iter().filter(|request| request.path == "/test.log").collect();
        let events: usize = requests.iter().map(|request| request.events).sum();
        assert_eq!(events, audit_log, "every audit event once\n{}", sandbox.report(Some(&output)));
        requests
    };
    let arrays = run("teleport-dropin-arrays", false);
    assert!(arrays.iter().all(|request| request.content_type.starts_with("application/json")), "JSON bodies");
    assert!(arrays.len() * 5 <= audit_log, "{} requests for {audit_log} events: batches of 10 should need about a tenth", arrays.len());
    assert!(arrays.iter().any(|request| request.events > 1), "some request carries more than one event");
    let single = run("teleport-dropin-single", true);
    assert_eq!(single.len(), audit_log, "one request per event with format = \"single\"");
    assert!(single.iter().all(|request| request.events == 1));
}

/// teleport-event-handler's `start` flags (as a unit file or a chart's
/// `extraArgs` passes them) set what their `FDFWD_*` variables set and win
/// over them and over the file: here the file and the variable name a
/// receiver that does not exist, the flags the real one.
#[test]
fn the_event_handlers_start_flags_win_over_its_variables_and_the_file() {
    let cluster = Cluster::start(StandInOptions { export_api: false, ..StandInOptions::default() });
    let audit_log = cluster.audit_log().len();
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = Sandbox::new("teleport-dropin-flags", "");
    let pki = logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
    let url = logstash.url();
    let nowhere = "https://127.0.0.1:9/";
    let config = config(&cluster.standin.address()).fluentd(
        &format!("{nowhere}test.log"),
        &format!("{nowhere}session"),
        &pki.ca,
        &pki.client_cert,
        &pki.client_key,
    );
    sandbox.set_config(&config.text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    let mut command = sandbox.command(&[
        "start",
        "--fluentd-url",
        &format!("{url}test.log"),
        "--fluentd-session-url",
        &format!("{url}session"),
        "--batch=7",
        "--exit-on-last-event",
    ]);
    command.env("FDFWD_FLUENTD_URL", format!("{nowhere}from-the-variable.log"));
    let output = sandbox.run_command(command);
    output.assert_success(&sandbox);
    let events: usize = logstash.requests().iter().filter(|request| request.path == "/test.log").map(|request| request.events).sum();
    assert_eq!(events, audit_log, "every audit event reached the flag's receiver\n{}", sandbox.report(Some(&output)));

    // A flag's bad value is named as the flag, on one line.
    let bad = sandbox.run_command(sandbox.command(&["check", "--batch", "many"]));
    let line = bad.stderr_lines().into_iter().find(|line| line.contains("error")).unwrap_or_default();
    assert!(
        !bad.status.is_some_and(|status| status.success())
            && line.contains("flag --batch")
            && line.contains("`many` is not a whole number"),
        "{line}\n{}",
        sandbox.report(Some(&bad))
    );
}

/// A page key Teleport refuses for good (INVALID_ARGUMENT, as a backend
/// whose keys expired): ferry searches again from the last event it read
/// and delivers the whole log once, instead of asking with the dead key
/// for ever.
#[test]
fn an_expired_page_key_is_searched_again_and_nothing_is_lost() {
    let cluster = Cluster::start(StandInOptions { export_api: false, ..StandInOptions::default() });
    // The first window (2019) holds 49 events: pages of 20 at keys k1, k2;
    // k1 is served, then every key expires, so k2 is refused.
    cluster.standin.expire_page_keys_after(1);
    let sandbox = cluster.sandbox("teleport-expired-key", &into_file(&cluster.standin.address()));
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let expected = cluster.audit_log();
    let got = lines(&sandbox);
    assert_eq!(got.len(), expected.len(), "every event once\n{}", sandbox.report(Some(&output)));
    assert!(got == expected, "in order, none twice\n{}", sandbox.report(Some(&output)));
    let warning = output.stderr_lines().into_iter().find(|line| line.contains("refused the audit log page key"));
    let warning = warning.unwrap_or_else(|| panic!("no line says the key was refused\n{}", sandbox.report(Some(&output))));
    assert!(warning.contains("has expired") && warning.contains("searching again from the last event read"), "{warning}");
    assert!(sandbox.dead_letters().is_empty(), "nothing was lost, so nothing is dead-lettered");
}

/// An export chunk listed, then removed by retention before ferry reads it
/// (NOT_FOUND): ferry skips it with a dead letter naming it, and delivers
/// every other event once.
#[test]
fn a_vanished_export_chunk_is_dead_lettered_and_ingestion_goes_on() {
    let cluster = Cluster::start(StandInOptions { export_api: true, chunk_size: 10, ..StandInOptions::default() });
    let vanished = cluster.standin.vanish_chunk("chunk-0001");
    let vanished_ids: BTreeSet<String> = vanished.iter().map(|event| event.id.clone()).collect();
    let dates: BTreeSet<String> = vanished
        .iter()
        .filter_map(|event| event.time.as_ref())
        .map(|time| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.seconds as u64)).to_string()[..10]
                .to_owned()
        })
        .collect();
    assert!(vanished.len() >= 10 && !dates.is_empty(), "the fixtures have dates with a second chunk");
    // A short bound on asking again for the vanished chunk (default 5 times over 10 minutes).
    let config = config(&cluster.standin.address()).set("teleport.chunk-retry-attempts", 2).set("teleport.chunk-retry-time", "1s");
    let sandbox = cluster.sandbox("teleport-vanished-chunk", &config.file_sink("default", OUT).text());
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let report = || sandbox.report(Some(&output));

    // Events compared as their JSON text: some fixtures have no uid.
    let served = cluster.standin.audit_events().into_iter().zip(cluster.audit_log());
    let expected: Vec<String> = served.filter(|(event, _)| !vanished_ids.contains(&event.id)).map(|(_, json)| json.to_string()).collect();
    let got: Vec<String> = lines(&sandbox).iter().map(Value::to_string).collect();
    assert_eq!(got.len(), expected.len(), "every event that exists, once\n{}", report());
    assert_eq!(got.iter().collect::<BTreeSet<_>>(), expected.iter().collect::<BTreeSet<_>>(), "{}", report());

    let letters = sandbox.dead_letters();
    let reasons: Vec<&str> = letters.iter().filter_map(|letter| letter.get("reason").and_then(Value::as_str)).collect();
    assert_eq!(reasons.len(), dates.len(), "one dead letter per vanished chunk: {reasons:?}\n{}", report());
    for date in &dates {
        let named = format!("export chunk chunk-0001 of {date} cannot be read");
        assert!(
            reasons.iter().any(|reason| reason.contains(&named) && reason.contains("NotFound")),
            "no dead letter says `{named}`: {reasons:?}"
        );
    }
}

/// Events of the stand-in's last page: times a second apart from 2020.
fn events_with_uids(uids: &[Option<&str>]) -> Vec<Value> {
    let start = humantime::parse_rfc3339("2020-01-01T00:00:00Z").expect("a time");
    uids.iter()
        .enumerate()
        .map(|(n, uid)| {
            let time = humantime::format_rfc3339_seconds(start + std::time::Duration::from_secs(n as u64)).to_string();
            let mut event =
                serde_json::json!({"event": "user.login", "code": "T1000I", "success": true, "user": format!("user-{n}"), "time": time});
            if let Some(uid) = uid {
                event["uid"] = Value::from(*uid);
            }
            event
        })
        .collect()
}

fn read_once_to_the_end(name: &str, options: StandInOptions, count: usize) {
    let cluster = Cluster::start(options);
    // One window from before the events to after now: the last window,
    // which ferry polls until it has read everything.
    let text = config(&cluster.standin.address())
        .set("start-time", "2019-12-31T00:00:00Z")
        .set("window-size", "87600h")
        .set("batch", 5)
        .file_sink("default", OUT);
    let sandbox = cluster.sandbox(name, &text.text());
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let got = lines(&sandbox);
    assert_eq!(got.len(), count, "every event once, none sent again\n{}", sandbox.report(Some(&output)));
    assert!(got == cluster.audit_log(), "as served\n{}", sandbox.report(Some(&output)));
}

/// Pages of five; the last three events (across the last page boundary)
/// repeat one id. ferry used to find the first of them and send the rest
/// again, for ever.
#[test]
fn an_id_repeated_at_the_end_of_the_log_is_read_once() {
    let mut uids: Vec<Option<String>> = (0..9).map(|n| Some(format!("u-{n}"))).collect();
    uids.extend([Some("dup".to_owned()), Some("dup".to_owned()), Some("dup".to_owned())]);
    let uids: Vec<Option<&str>> = uids.iter().map(Option::as_deref).collect();
    let options =
        StandInOptions { events: events_with_uids(&uids), sessions: Default::default(), export_api: false, ..StandInOptions::default() };
    read_once_to_the_end("teleport-repeated-id", options, 12);
}

/// Events that Teleport serves without an id: ferry used to start the last
/// page over again and again.
#[test]
fn events_without_ids_at_the_end_of_the_log_are_read_once() {
    let options = StandInOptions {
        events: events_with_uids(&[None; 12]),
        sessions: Default::default(),
        export_api: false,
        raw_ids: true,
        ..StandInOptions::default()
    };
    read_once_to_the_end("teleport-empty-ids", options, 12);
}

/// A recording whose stream breaks, then fails with INTERNAL (Teleport's
/// word for backend trouble), then is refused from the index ferry got to
/// (OUT_OF_RANGE): ferry retries the first two and asks for the recording
/// from its start after the third, skipping what it already forwarded. It
/// used to give the whole recording up at INTERNAL.
#[test]
fn a_recording_survives_internal_errors_and_a_refused_index() {
    use ferry_standin::teleport::{Fault, Method};
    let cluster = Cluster::start(StandInOptions { export_api: false, announce_sessions: true, ..StandInOptions::default() });
    cluster.standin.inject(Method::StreamUnstructuredSessionEvents, Fault::DropStreamAfter(50));
    cluster.standin.inject(Method::StreamUnstructuredSessionEvents, Fault::Status(tonic::Code::Internal, "backend hiccup".into()));
    cluster.standin.inject(
        Method::StreamUnstructuredSessionEvents,
        Fault::Status(tonic::Code::OutOfRange, "start_index is past what this reader can seek to".into()),
    );
    let text = config(&cluster.standin.address())
        .set("skip-session-types", Vec::<&str>::new())
        .file_sink("default", OUT)
        .file_sink("sessions", "sessions.jsonl");
    let sandbox = cluster.sandbox("teleport-session-faults", &text.text());
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let recording: Vec<Value> = cluster
        .standin
        .session_events(SID)
        .expect("the fixture session")
        .iter()
        .map(|event| event.unstructured.clone().unwrap_or_default().to_json_value().expect("a well-formed Struct"))
        .collect();
    let got: Vec<Value> =
        util::complete_lines(&sandbox.read("sessions.jsonl")).iter().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    assert_eq!(got.len(), 160, "the whole recording, once\n{}", sandbox.report(Some(&output)));
    assert!(got == recording, "in order\n{}", sandbox.report(Some(&output)));
    assert!(sandbox.dead_letters().is_empty(), "the recording was not given up");
    let asked = cluster.standin.calls().iter().filter(|call| call.method == Method::StreamUnstructuredSessionEvents).count();
    assert_eq!(asked, 4, "dropped, internal, refused index, then from the start");
    assert!(output.stderr.contains("asking for it from its start"), "{}", sandbox.report(Some(&output)));
}

/// An export stream breaks inside a chunk, and Teleport then refuses the
/// cursor to resume it (INVALID_ARGUMENT, for good): ferry reads the chunk
/// again from its start. Nothing is lost; what comes twice is at most what
/// was read of the chunk before the break.
#[test]
fn a_refused_export_cursor_reads_the_chunk_again_from_its_start() {
    use ferry_standin::teleport::{Fault, Method};
    let cluster = Cluster::start(StandInOptions { export_api: true, chunk_size: 10, ..StandInOptions::default() });
    cluster.standin.inject(Method::ExportUnstructuredEvents, Fault::DropStreamAfter(5));
    cluster.standin.refuse_export_cursors();
    let sandbox = cluster.sandbox("teleport-refused-cursor", &into_file(&cluster.standin.address()));
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let report = || sandbox.report(Some(&output));
    let expected: Vec<String> = cluster.audit_log().iter().map(Value::to_string).collect();
    let got: Vec<String> = lines(&sandbox).iter().map(Value::to_string).collect();
    let want: BTreeSet<&String> = expected.iter().collect();
    assert_eq!(got.iter().collect::<BTreeSet<_>>(), want, "every event arrived, none that was not served\n{}", report());
    assert!(
        got.len() - expected.len() <= 5,
        "{} events twice, more than the five read before the break\n{}",
        got.len() - expected.len(),
        report()
    );
    assert!(output.stderr.contains("reading the chunk again from its start"), "{}", report());
    assert!(sandbox.dead_letters().is_empty(), "nothing was lost, so nothing is dead-lettered");
}

/// Teleport refuses ferry's roles twice (PERMISSION_DENIED), then lets it
/// read: one ERROR line says what to fix (not one per attempt), ferry asks
/// again slowly meanwhile, and then the whole log arrives. About 30 s: two
/// slow retries of 15 s.
#[test]
fn a_refused_identity_is_one_error_line_and_retried_slowly() {
    use ferry_standin::teleport::{Fault, Method};
    let cluster = Cluster::start(StandInOptions { export_api: false, ..StandInOptions::default() });
    for _ in 0..2 {
        cluster.standin.inject(
            Method::GetUnstructuredEvents,
            Fault::Status(tonic::Code::PermissionDenied, "access denied to perform action \"list\" on \"event\"".into()),
        );
    }
    let sandbox = cluster.sandbox("teleport-denied", &into_file(&cluster.standin.address()));
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    assert_eq!(lines(&sandbox), cluster.audit_log(), "everything arrives once Teleport allows it\n{}", sandbox.report(Some(&output)));
    let errors: Vec<&str> = output.stderr_lines().into_iter().filter(|line| line.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one ERROR line for two refusals: {errors:#?}\n{}", sandbox.report(Some(&output)));
    assert!(errors[0].contains("PermissionDenied") && errors[0].contains("`event` and `session` `list` and `read`"), "{}", errors[0]);
    let calls: Vec<_> = cluster.standin.calls().into_iter().filter(|call| call.method == Method::GetUnstructuredEvents).collect();
    assert!(calls.len() >= 3, "asked again after each refusal");
}
