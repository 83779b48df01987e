//! `ferry dead-letters replay` of session recording events a sessions sink
//! refused: each goes back to `<session-url>.<sid>.log` (its `print` events
//! have no `sid` of their own), through today's plugin chain, or exactly as
//! stored with `--as-stored`.

use crate::teleport::{Cluster, SID};
use crate::util::{Config, OUT, Plugin, Sandbox};
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::teleport::{IdentitySpec, StandInOptions};
use serde_json::Value;
use std::time::Duration;

/// The path the sessions sink posts the fixture session's events to.
fn session_path() -> String {
    format!("/session.{SID}.log")
}

fn letters(sandbox: &Sandbox) -> Vec<Value> {
    let output = sandbox.run_command(sandbox.command(&["dead-letters", "list"]));
    output.assert_success(sandbox);
    output.stdout.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

fn payload(letter: &Value) -> Value {
    serde_json::from_str(letter["payload"].as_str().expect("a payload")).expect("the payload is an event")
}

/// The id of the letter whose event is of type `event_type`.
fn letter_of(letters: &[Value], event_type: &str) -> String {
    let letter = letters.iter().find(|letter| payload(letter)["event"] == event_type).unwrap_or_else(|| panic!("a `{event_type}` letter"));
    letter["id"].as_i64().expect("an id").to_string()
}

/// The fixture session streamed into a Logstash stand-in as the sessions
/// sink (`<url>session.<sid>.log`), audit events into a file.
struct Setup {
    cluster: Cluster,
    logstash: LogstashStandIn,
    sandbox: Sandbox,
    base: Config,
}

fn setup(name: &str) -> Setup {
    let cluster = Cluster::start(StandInOptions { announce_sessions: true, ..StandInOptions::default() });
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = Sandbox::new(name, "");
    let pki = logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
    let base = Config::teleport_job(&cluster.standin.address())
        .set("exit-on-last-event", true)
        .set("skip-session-types", Vec::<&str>::new())
        .file_sink("default", OUT)
        .logstash_sink("sessions", &format!("{}session", logstash.url()), &pki.ca, &pki.client_cert, &pki.client_key)
        .set("sinks.sessions.per-session", true);
    sandbox.set_config(&base.text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    Setup { cluster, logstash, sandbox, base }
}

/// A plugin that failed a recording's `print` events: replayed once it is
/// fixed, they go to the recording's sink and session, not the audit sink.
#[test]
fn recording_events_a_plugin_failed_replay_to_the_sessions_sink() {
    let Setup { cluster: _cluster, logstash, sandbox, base } = setup("replay-sessions-plugin");
    let picky = |fails: &str| Plugin::built("hostile").set("name", "picky").set("config.mode", "fail-each").set("config.when-type", fails);
    sandbox.set_config(&base.clone().plugin(picky("print")).text());
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let stored = letters(&sandbox);
    assert_eq!(stored.len(), 156, "every print is a dead letter{}", sandbox.report(Some(&run)));
    assert!(stored.iter().all(|letter| letter["stage"] == "plugin" && letter["sink"] == "sessions" && letter["session_id"] == SID));
    assert_eq!(logstash.event_count(), 4, "the rest of the recording arrived");
    let audit = sandbox.out_count();

    // The plugin fixed: it fails no event any more.
    sandbox.set_config(&base.plugin(picky("none.such")).text());
    let replay = sandbox.run_command(sandbox.command(&["dead-letters", "replay"]));
    replay.assert_success(&sandbox);
    assert_eq!(sandbox.out_count(), audit, "no recording event goes to the audit sink{}", sandbox.report(Some(&replay)));
    assert_eq!(logstash.event_count(), 160, "every print arrived at the sessions sink{}", sandbox.report(Some(&replay)));
    for request in logstash.requests() {
        assert_eq!(
            (request.path.as_str(), request.status),
            (session_path().as_str(), 200),
            "every recording event goes to the session's URL"
        );
    }
}

#[test]
fn refused_recording_events_replay_to_their_session_url_through_todays_chain() {
    let Setup { cluster: _cluster, logstash, sandbox, base } = setup("replay-sessions");

    // The sessions sink refuses every event: 160 recording events are dead-lettered.
    logstash.refuse_for(422, "unprocessable", Duration::from_secs(3600));
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let stored = letters(&sandbox);
    assert_eq!(stored.len(), 160, "every recording event is a dead letter{}", sandbox.report(Some(&run)));
    assert!(stored.iter().all(|letter| letter["stage"] == "sink" && letter["component"] == "sessions"));
    assert!(stored.iter().all(|letter| letter["session_id"] == SID), "each letter records its recording's session id: {:?}", stored[0]);
    let shown = sandbox.run_command(sandbox.command(&["dead-letters", "show", &letter_of(&stored, "print")]));
    shown.assert_success(&sandbox);
    assert!(shown.stdout.contains(&format!("\"session_id\": \"{SID}\"")), "`show` names the session{}", sandbox.report(Some(&shown)));
    logstash.stop_refusing();
    let refused = logstash.requests().len();

    // A redaction added since the failure applies to a replayed letter.
    let redact = Plugin::built("redact").set("config.fields", vec!["login"]).set("config.replacement", "***");
    sandbox.set_config(&base.clone().plugin(redact).text());
    let start = letter_of(&stored, "session.start");
    let replay = sandbox.run_command(sandbox.command(&["dead-letters", "replay", "--id", &start]));
    replay.assert_success(&sandbox);
    let got = logstash.events();
    assert_eq!(got.len(), 1, "{}", sandbox.report(Some(&replay)));
    assert_eq!((got[0]["event"].as_str(), got[0]["login"].as_str()), (Some("session.start"), Some("***")), "redacted by today's chain");

    // `--as-stored` sends exactly what was stored.
    let resize = letter_of(&stored, "resize");
    let replay = sandbox.run_command(sandbox.command(&["dead-letters", "replay", "--as-stored", "--id", &resize]));
    replay.assert_success(&sandbox);
    let got = logstash.events();
    assert_eq!(got.len(), 2, "{}", sandbox.report(Some(&replay)));
    assert_eq!(got[1], payload(stored.iter().find(|l| l["id"].as_i64().map(|id| id.to_string()) == Some(resize.clone())).expect("it")));

    // The rest, prints included, each to the session's URL.
    let replay = sandbox.run_command(sandbox.command(&["dead-letters", "replay"]));
    replay.assert_success(&sandbox);
    assert!(letters(&sandbox).is_empty(), "every letter was delivered and removed");
    let got = logstash.events();
    assert_eq!(got.len(), 160, "every recording event arrived once{}", sandbox.report(Some(&replay)));
    let mut indexes: Vec<i64> = got.iter().map(|event| event["ei"].as_i64().expect("an event index")).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..160).collect::<Vec<i64>>(), "each recording event once");
    let replayed = logstash.requests().split_off(refused);
    assert!(!replayed.is_empty());
    for request in &replayed {
        assert_eq!(
            (request.path.as_str(), request.status),
            (session_path().as_str(), 200),
            "every replayed event goes to the session's URL"
        );
    }
}
