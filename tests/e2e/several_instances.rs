//! Several instances on one PostgreSQL state (a real server from Debian's
//! packages, started by the stand-in): one active, the others standing by;
//! a standby takes over when the active one dies, from the shared cursor;
//! an active one paused past its lease comes back, commits nothing and
//! steps down.

use crate::teleport::Cluster;
use crate::util::{self, Config, DEADLINE, IN, OUT, Running, Sandbox};
use ferry_standin::postgres::Postgres;
use ferry_standin::teleport::{IdentitySpec, StandInOptions};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) const BATCH: usize = 50;
const SESSIONS: &str = "sessions.jsonl";
pub(crate) const LEASE: &str = "2s";

/// A file job on the PostgreSQL database `url`, batches of 50, one in flight.
pub(crate) fn config(url: &str) -> String {
    Config::new()
        .pipeline(BATCH, "20ms")
        .set("pipeline.batches-in-flight", 1)
        .file_source(IN, true)
        .set("source.file.poll-interval", "20ms")
        .file_sink("default", OUT)
        .set("storage", url)
        .text()
}

/// `ferry start` as the instance `name` (its own config file, the same
/// but for `[leadership] instance`), with the database's password in the
/// environment.
pub(crate) fn start(sandbox: &Sandbox, server: &Postgres, name: &str) -> Running {
    start_leased(sandbox, server, name, LEASE)
}

/// `start` with a lease of `lease`.
pub(crate) fn start_leased(sandbox: &Sandbox, server: &Postgres, name: &str, lease: &str) -> Running {
    let text = std::fs::read_to_string(sandbox.config()).expect("ferry.toml");
    spawn_instance(sandbox, server, name, &format!("{text}\n[leadership]\ninstance = \"{name}\"\nlease = \"{lease}\"\n"))
}

/// `ferry start` on the config `text`, written to the instance `name`'s own
/// file (`ferry-NAME.toml`), with the database's password in the environment.
pub(crate) fn spawn_instance(sandbox: &Sandbox, server: &Postgres, name: &str, text: &str) -> Running {
    let file = format!("ferry-{name}.toml");
    sandbox.write(&file, text.as_bytes());
    let mut command = Command::new(util::FERRY);
    command
        .args(["start", "--config"])
        .arg(sandbox.path(&file))
        .current_dir(sandbox.root())
        .env("FERRY_STORAGE_PASSWORD", server.password())
        .env_remove("FERRY_LOG");
    sandbox.spawn_command(command)
}

/// A distinct event per number.
pub(crate) fn event(n: usize) -> String {
    format!("{{\"uid\":\"e-{n}\",\"event\":\"user.login\",\"time\":\"2026-12-07T10:00:00Z\",\"user\":\"u{n}\"}}\n")
}

pub(crate) fn uids(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .out_lines()
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
            value["uid"].as_str().unwrap_or_else(|| panic!("no uid: {line}")).to_owned()
        })
        .collect()
}

pub(crate) fn leads(running: &Running) -> bool {
    running.stderr().contains("This instance is now the active one")
}

/// Waits for `running` to become the active instance; how long it took.
pub(crate) fn wait_to_lead(sandbox: &Sandbox, running: &Running, since: Instant) -> Duration {
    util::wait_for("the standby to take over", DEADLINE, || leads(running), || sandbox.report(Some(&running.snapshot())));
    since.elapsed()
}

/// Waits until `running` stands by.
pub(crate) fn wait_standing_by(sandbox: &Sandbox, running: &Running) {
    util::wait_for(
        "the instance to stand by",
        DEADLINE,
        || running.stderr().contains("Standing by: "),
        || sandbox.report(Some(&running.snapshot())),
    );
}

/// Stops each of `instances` with SIGTERM, as a service manager does, and
/// fails unless each exits cleanly.
pub(crate) fn stop_cleanly<const N: usize>(sandbox: &Sandbox, instances: [&mut Running; N]) {
    for running in instances {
        running.terminate();
        running.wait(sandbox, DEADLINE).assert_success(sandbox);
    }
}

pub(crate) fn wait_delivered(sandbox: &Sandbox, count: usize, running: &Running) {
    util::wait_for(
        &format!("{count} distinct events delivered"),
        DEADLINE,
        || uids(sandbox).into_iter().collect::<BTreeSet<_>>().len() >= count,
        || sandbox.report(Some(&running.snapshot())),
    );
}

#[test]
fn a_standby_takes_over_from_the_shared_cursor_each_time_the_active_one_is_killed() {
    let server = Postgres::start();
    let url = server.create_database("takeover");
    let sandbox = Sandbox::new("several_instances", &config(&url));
    let mut active = start(&sandbox, &server, "a");
    util::wait_for("a to lead", DEADLINE, || leads(&active), || sandbox.report(Some(&active.snapshot())));
    let mut standby = start(&sandbox, &server, "b");
    wait_standing_by(&sandbox, &standby);

    let mut written = 0;
    let mut takeovers = Vec::new();
    let mut names = ["a", "b"];
    for _ in 0..3 {
        let upto = written + 400;
        sandbox.append(IN, (written..upto).map(event).collect::<String>().as_bytes());
        written = upto;
        wait_delivered(&sandbox, written - 200, &active);
        // The active one dies mid-stream, as a host would.
        let killed_at = Instant::now();
        active.kill(&sandbox);
        sandbox.append(IN, (written..written + 100).map(event).collect::<String>().as_bytes());
        written += 100;
        takeovers.push(wait_to_lead(&sandbox, &standby, killed_at));
        // The killed one comes back, as its service manager restarts it: a standby now.
        names.swap(0, 1);
        let restarted = start(&sandbox, &server, names[1]);
        active = std::mem::replace(&mut standby, restarted);
        wait_standing_by(&sandbox, &standby);
    }
    wait_delivered(&sandbox, written, &active);
    let delivered = uids(&sandbox);
    let distinct: BTreeSet<&String> = delivered.iter().collect();
    let wanted: BTreeSet<String> = (0..written).map(|n| format!("e-{n}")).collect();
    assert_eq!(distinct.len(), written, "every event once at least{}", sandbox.report(None));
    assert!(distinct.iter().all(|uid| wanted.contains(*uid)), "only events that were written");
    let duplicates = delivered.len() - distinct.len();
    // At most the batch in flight at each kill is sent again.
    assert!(duplicates <= takeovers.len() * BATCH, "{duplicates} duplicates for {} takeovers{}", takeovers.len(), sandbox.report(None));
    // A lease of 2 s, tried every third of it: a takeover within the lease and a try, plus start-up.
    for took in &takeovers {
        assert!(*took < Duration::from_secs(20), "a takeover took {took:?}{}", sandbox.report(None));
    }
    eprintln!("takeovers: {takeovers:?}; duplicates: {duplicates}");

    let mut status = Command::new(util::FERRY);
    status
        .args(["status", "--config"])
        .arg(sandbox.path(&format!("ferry-{}.toml", names[0])))
        .env("FERRY_STORAGE_PASSWORD", server.password());
    let shown = util::stdout_of_success(status);
    assert!(shown.contains(&format!("lease: held by {} (epoch 4)", names[0])), "{shown}");
    assert!(shown.contains(&format!("instance {}: active (epoch 4)", names[0])), "{shown}");
    assert!(shown.contains(&format!("instance {}: standby", names[1])), "{shown}");
    stop_cleanly(&sandbox, [&mut active, &mut standby]);
}

#[test]
fn an_instance_paused_past_its_lease_commits_nothing_and_steps_down() {
    let server = Postgres::start();
    let url = server.create_database("paused");
    let sandbox = Sandbox::new("several_instances_paused", &config(&url));
    let mut first = start(&sandbox, &server, "a");
    util::wait_for("a to lead", DEADLINE, || leads(&first), || sandbox.report(Some(&first.snapshot())));
    let second = start(&sandbox, &server, "b");
    sandbox.append(IN, (0..300).map(event).collect::<String>().as_bytes());
    wait_delivered(&sandbox, 300, &first);

    signal(&first, "STOP");
    let paused_at = Instant::now();
    wait_to_lead(&sandbox, &second, paused_at);
    sandbox.append(IN, (300..600).map(event).collect::<String>().as_bytes());
    wait_delivered(&sandbox, 600, &second);
    let cursor_before = server.sql("paused", "SELECT position FROM cursors WHERE source LIKE 'file:%'");
    signal(&first, "CONT");
    let ended = first.wait(&sandbox, DEADLINE);
    assert!(
        !ended.success(),
        "a deposed instance exits with a failure, for its service manager to restart it{}",
        sandbox.report(Some(&ended))
    );
    assert!(ended.stderr.contains("is no longer the active one"), "{}", sandbox.report(Some(&ended)));
    assert_eq!(
        server.sql("paused", "SELECT position FROM cursors WHERE source LIKE 'file:%'"),
        cursor_before,
        "a committed nothing after it came back"
    );
    assert_eq!(server.sql("paused", "SELECT holder, epoch FROM leases").trim(), "b|2");
    sandbox.append(IN, (600..700).map(event).collect::<String>().as_bytes());
    wait_delivered(&sandbox, 700, &second);
}

pub(crate) fn signal(running: &Running, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &running.pid().to_string()]).status().expect("kill");
    assert!(status.success(), "kill -{name} failed");
}

/// A Teleport audit log that grows for `seconds` from now, `rate` events a
/// second, with a recording of 20 events every 4 s (its `session.upload`
/// announced in the log).
fn live_log(seconds: u64, rate: u64) -> StandInOptions {
    let start = std::time::SystemTime::now();
    let time = |at: Duration| humantime::format_rfc3339_millis(start + at).to_string();
    let events = (0..seconds * rate)
        .map(|n| json!({ "event": "user.login", "uid": format!("a-{n}"), "time": time(Duration::from_millis(n * 1000 / rate)), "user": "alice" }))
        .collect();
    let sessions = (0..seconds / 4)
        .map(|m| {
            let sid = format!("rec-{m:03}");
            let events = (0..20)
                .map(|ei| {
                    let kind = match ei {
                        0 => "session.start",
                        19 => "session.end",
                        _ => "print",
                    };
                    let at = Duration::from_secs(m * 4) + Duration::from_millis(ei * 10);
                    json!({ "event": kind, "ei": ei, "sid": sid, "uid": format!("r-{m}-{ei}"), "time": time(at) })
                })
                .collect();
            (sid, events)
        })
        .collect();
    StandInOptions { events, sessions, announce_sessions: true, export_api: false, live: true, ..StandInOptions::default() }
}

/// Every uid of `file`'s lines, with how often it came.
fn tally(sandbox: &Sandbox, file: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in util::complete_lines(&sandbox.read(file)) {
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        if let Some(uid) = value["uid"].as_str() {
            *counts.entry(uid.to_owned()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn the_audit_log_and_its_recordings_survive_a_takeover_after_each_kill() {
    let cluster = Cluster::start(live_log(24, 20));
    let server = Postgres::start();
    let url = server.create_database("teleport");
    let start_time = humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(60)).to_string();
    let config = Config::teleport_job(&cluster.standin.address())
        .set("start-time", start_time.as_str())
        .set("window-size", "1h")
        .set("skip-session-types", Vec::<&str>::new())
        .set("storage", url.as_str())
        .file_sink("default", OUT)
        .file_sink("sessions", SESSIONS);
    let sandbox = Sandbox::new("several_instances_teleport", &config.text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity");
    let mut active = start(&sandbox, &server, "a");
    util::wait_for("a to lead", DEADLINE, || leads(&active), || sandbox.report(Some(&active.snapshot())));
    let mut standby = start(&sandbox, &server, "b");
    let mut names = ["a", "b"];
    let mut kills = 0;
    for _ in 0..3 {
        // The log grows meanwhile; the active one dies mid-stream.
        std::thread::sleep(Duration::from_secs(6));
        let killed_at = Instant::now();
        active.kill(&sandbox);
        kills += 1;
        wait_to_lead(&sandbox, &standby, killed_at);
        names.swap(0, 1);
        let restarted = start(&sandbox, &server, names[1]);
        active = std::mem::replace(&mut standby, restarted);
        wait_standing_by(&sandbox, &standby);
    }
    let audit = cluster.audit_log();
    let recordings: usize = 24 / 4 * 20;
    util::wait_for(
        "the whole audit log and every recording",
        Duration::from_secs(120),
        || tally(&sandbox, OUT).len() >= audit.len() && tally(&sandbox, SESSIONS).len() >= recordings,
        || {
            format!(
                "{} audit of {}, {} recording events of {recordings}{}",
                tally(&sandbox, OUT).len(),
                audit.len(),
                tally(&sandbox, SESSIONS).len(),
                sandbox.report(Some(&active.snapshot()))
            )
        },
    );
    let (out, sessions) = (tally(&sandbox, OUT), tally(&sandbox, SESSIONS));
    for event in &audit {
        let uid = event["uid"].as_str().expect("every served event has a uid");
        assert!(out.contains_key(uid), "audit event {uid} lost{}", sandbox.report(None));
    }
    assert_eq!(sessions.len(), recordings, "every recording event, none foreign");
    let duplicates: usize = out.values().chain(sessions.values()).map(|n| n - 1).sum();
    // The batches in flight at each kill (10 events, one at a time, for the
    // audit log and for a recording's stream).
    assert!(duplicates <= kills * 2 * 10, "{duplicates} duplicates for {kills} kills{}", sandbox.report(None));
    stop_cleanly(&sandbox, [&mut active, &mut standby]);
}
