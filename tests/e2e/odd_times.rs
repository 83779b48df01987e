//! Event times Teleport sends that no calendar ferry writes can hold: before
//! 1970 (Go's zero time is year 1), after year 9999, nanoseconds out of
//! range, the ends of the `int64` range. ferry used to panic formatting them
//! for its legacy cursor, and a restart resumed on the same page: a crash
//! loop. Each such event is delivered as served, once, with one line naming
//! it; the cursor keeps the last time it could write.

use crate::teleport::Cluster;
use crate::util::{self, Config, OUT};
use ferry_standin::teleport::{IdentitySpec, StandInOptions};
use prost_types::Timestamp;
use serde_json::Value;

/// Twelve `user.login` events a second apart from 2020, ids `u-0` … `u-11`.
fn events() -> Vec<Value> {
    let start = humantime::parse_rfc3339("2020-01-01T00:00:00Z").expect("a time");
    (0..12)
        .map(|n| {
            let time = humantime::format_rfc3339_seconds(start + std::time::Duration::from_secs(n)).to_string();
            serde_json::json!({"event": "user.login", "uid": format!("u-{n}"), "code": "T1000I", "success": true, "user": format!("user-{n}"), "time": time})
        })
        .collect()
}

/// The page times served instead of the events' own, by id.
fn odd_times() -> Vec<(String, Timestamp)> {
    let at = |seconds: i64, nanos: i32| Timestamp { seconds, nanos };
    [
        ("u-1", at(-1, 0)),                        // a second before 1970
        ("u-3", at(-62_135_596_800, 0)),           // 0001-01-01: Go's zero time
        ("u-4", at(253_402_300_800, 0)),           // 10000-01-01
        ("u-6", at(1_577_836_806, 1_500_000_000)), // nanos out of range
        ("u-7", at(1_577_836_807, -1)),            // negative nanos
        ("u-9", at(i64::MAX, 999_999_999)),        // no SystemTime holds it
        ("u-11", at(i64::MIN, 0)),                 // nor this
    ]
    .into_iter()
    .map(|(uid, time)| (uid.to_owned(), time))
    .collect()
}

fn lines(text: &str) -> Vec<Value> {
    util::complete_lines(text).iter().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
}

/// The legacy engine reads the log to its end in pages of five, twice (a
/// restart): every event once, as served, and a line naming each odd time.
#[test]
fn odd_event_times_are_delivered_once_without_a_crash_loop() {
    let options = StandInOptions {
        events: events(),
        sessions: Default::default(),
        export_api: false,
        odd_times: odd_times(),
        ..StandInOptions::default()
    };
    let cluster = Cluster::start(options);
    let text = Config::teleport_job(&cluster.standin.address())
        .set("exit-on-last-event", true)
        .set("start-time", "2019-12-31T00:00:00Z")
        .set("window-size", "87600h")
        .set("batch", 5)
        .file_sink("default", OUT)
        .text();
    let sandbox = util::Sandbox::new("teleport-odd-times", &text);
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");

    for run in ["first", "restart"] {
        let output = sandbox.run("start");
        let report = || format!("({run} run)\n{}", sandbox.report(Some(&output)));
        assert!(!output.stderr_lines().iter().any(|line| line.contains("panicked")), "ferry panicked {}", report());
        output.assert_success(&sandbox);
        let got = lines(&sandbox.read(OUT));
        assert!(got == cluster.audit_log(), "every event once, as served {}", report());
        if run == "first" {
            for (uid, _) in odd_times().iter().filter(|(uid, _)| !["u-6", "u-7"].contains(&uid.as_str())) {
                let named = output.stderr_lines().iter().filter(|line| line.contains(&format!("`{uid}`"))).count();
                assert_eq!(named, 1, "one line names event {uid} and its time {}", report());
            }
        }
    }
}
