//! Switching over in place: the Teleport position belongs to the cluster,
//! not to the address ferry reaches it by, and the event handler's saved
//! state (`<storage>/<host>_<port>/`) is taken over where it stopped.
//!
//! The stand-ins play the same cluster (`ferry.test`) at two addresses: the
//! first serves the head of an audit log, the second all of it, so that a
//! second run must go on exactly where the first stopped. The event
//! handler's folders are written as Teleport's `integrations/event-handler`
//! writes them (`state.go`, `lib/events/export/cursor.go`), with the page
//! keys and export chunks the stand-in issues.

use crate::teleport::{Cluster, SID};
use crate::util::{self, Config, OUT, Sandbox};
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::teleport::{IdentitySpec, StandInOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

const SESSIONS: &str = "sessions.jsonl";
/// The config's `start-time` (see `Config::teleport_job`) and its windows.
const START: &str = "2019-01-01T00:00:00Z";
const WINDOW: Duration = Duration::from_secs(8760 * 3600);
/// The event handler's page size, the `batch` of `Config::teleport_job`.
const EH_BATCH: usize = 20;

/// A log of `count` recent events (they fall in the last search window, as
/// new events do), ids `sw-0`, `sw-1`, … in time order.
fn recent_log(count: usize) -> Vec<Value> {
    let first = SystemTime::now() - Duration::from_secs(600);
    (0..count)
        .map(|n| {
            let time = humantime::format_rfc3339_millis(first + Duration::from_secs(n as u64)).to_string();
            json!({"event": "user.create", "code": "T1002I", "uid": format!("sw-{n}"), "time": time, "name": format!("user-{n}")})
        })
        .collect()
}

/// The same cluster twice: `head` serves the first `cut` events of the
/// log, `all` every one, each at its own port (legacy engine).
fn head_and_all(count: usize, cut: usize) -> (Cluster, Cluster) {
    let log = recent_log(count);
    let options = |events: Vec<Value>| StandInOptions { events, export_api: false, ..StandInOptions::default() };
    (Cluster::start(options(log[..cut].to_vec())), Cluster::start(options(log)))
}

fn job(addr: &str) -> Config {
    Config::teleport_job(addr).set("exit-on-last-event", true).file_sink("default", OUT).file_sink("sessions", SESSIONS)
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines.iter().map(|line| line["uid"].as_str().unwrap_or_default().to_owned()).collect()
}

fn out_ids(sandbox: &Sandbox) -> Vec<String> {
    let lines: Vec<Value> = util::complete_lines(&sandbox.read(OUT)).iter().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    ids(&lines)
}

fn expected_ids(count: usize) -> Vec<String> {
    (0..count).map(|n| format!("sw-{n}")).collect()
}

/// Runs `ferry start` to the end with the identity of `cluster` at `addr`.
fn run_against(sandbox: &Sandbox, cluster: &Cluster, addr: &str) -> util::Output {
    sandbox.set_config(&job(addr).text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    let output = sandbox.run("start");
    output.assert_success(sandbox);
    output
}

fn localhost(cluster: &Cluster) -> String {
    format!("localhost:{}", cluster.standin.addr().port())
}

/// Rewrites the Teleport positions of the database as a ferry that keyed
/// them by address stored them: under `teleport:<key>` for each key given
/// (a copy each), and nothing saying where they came from.
fn store_under_address_keys(sandbox: &Sandbox, keys: &[&str]) {
    let path = sandbox.path("storage/ferry.db");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("the database opens");
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT source, position FROM cursors WHERE source LIKE 'teleport:%'").fetch_all(&pool).await.expect("read");
        assert!(!rows.is_empty(), "the first run stored a Teleport position");
        sqlx::query("DELETE FROM cursors WHERE source LIKE 'teleport:%'").execute(&pool).await.expect("delete");
        let _ = sqlx::query("DELETE FROM position_origins").execute(&pool).await;
        for key in keys {
            for (source, position) in &rows {
                let suffix = source.find('#').map_or("", |at| &source[at..]);
                sqlx::query("INSERT INTO cursors (source, position) VALUES (?, ?)")
                    .bind(format!("teleport:{key}{suffix}"))
                    .bind(position)
                    .execute(&pool)
                    .await
                    .expect("insert");
            }
        }
        pool.close().await;
    });
}

fn info_lines<'a>(output: &'a util::Output, text: &str) -> Vec<&'a str> {
    output.stderr.lines().filter(|line| line.contains(text)).collect()
}

/// (a) The same cluster reached at `127.0.0.1:P` and then at `localhost:Q`:
/// the second run goes on where the first stopped.
#[test]
fn the_same_cluster_at_another_address_resumes_with_no_gap_and_no_resend() {
    let (head, all) = head_and_all(30, 17);
    let sandbox = Sandbox::new("switch-address", "");
    run_against(&sandbox, &head, &head.standin.address());
    assert_eq!(out_ids(&sandbox), expected_ids(17), "{}", sandbox.report(None));
    let output = run_against(&sandbox, &all, &localhost(&all));
    assert_eq!(
        out_ids(&sandbox),
        expected_ids(30),
        "every event once, in order, across the address change\n{}",
        sandbox.report(Some(&output))
    );
    let status = sandbox.run("status");
    status.assert_success(&sandbox);
    assert!(status.stdout.contains("source teleport:ferry.test"), "the position is the cluster's\n{}", sandbox.report(Some(&status)));
}

/// (b) A database written by a ferry that keyed the position by address
/// resumes, says so once, and `ferry status` says where it came from.
#[test]
fn a_position_stored_under_the_address_is_migrated_to_the_cluster() {
    let (head, all) = head_and_all(30, 11);
    let sandbox = Sandbox::new("switch-migrate", "");
    run_against(&sandbox, &head, &head.standin.address());
    let addr = localhost(&all);
    store_under_address_keys(&sandbox, &[&addr]);
    let output = run_against(&sandbox, &all, &addr);
    assert_eq!(out_ids(&sandbox), expected_ids(30), "{}", sandbox.report(Some(&output)));
    let said = info_lines(&output, "migrated");
    assert_eq!(said.len(), 1, "one line says the position was migrated\n{}", sandbox.report(Some(&output)));
    assert!(said[0].contains(&format!("teleport:{addr}")) && said[0].contains("teleport:ferry.test"), "{}", said[0]);
    let status = sandbox.run("status");
    assert!(status.stdout.contains(&format!("migrated from teleport:{addr}")), "{}", sandbox.report(Some(&status)));
}

/// (b) A single position stored under another address (`auth:3025` before,
/// the Proxy now) is adopted, with one line naming it.
#[test]
fn a_single_position_under_another_address_is_adopted() {
    let (head, all) = head_and_all(30, 9);
    let sandbox = Sandbox::new("switch-adopt", "");
    run_against(&sandbox, &head, &head.standin.address());
    store_under_address_keys(&sandbox, &["auth.example.com:3025"]);
    let output = run_against(&sandbox, &all, &localhost(&all));
    assert_eq!(out_ids(&sandbox), expected_ids(30), "{}", sandbox.report(Some(&output)));
    let said = info_lines(&output, "teleport:auth.example.com:3025");
    assert_eq!(said.len(), 1, "one line names the position adopted\n{}", sandbox.report(Some(&output)));
}

/// (b) Several positions under other addresses: which one is this cluster's
/// cannot be told, so ferry refuses on one line naming them and the
/// command that chooses; after it, the chosen one is resumed.
#[test]
fn several_positions_under_other_addresses_are_refused_until_one_is_chosen() {
    let (head, all) = head_and_all(30, 13);
    let sandbox = Sandbox::new("switch-several", "");
    run_against(&sandbox, &head, &head.standin.address());
    store_under_address_keys(&sandbox, &["auth-a.example.com:3025", "auth-b.example.com:3025"]);
    let addr = localhost(&all);
    sandbox.set_config(&job(&addr).text());
    all.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    let refused = sandbox.run("start");
    let error = refused.one_line_error(&sandbox);
    for name in ["teleport:auth-a.example.com:3025", "teleport:auth-b.example.com:3025", "ferry state adopt-position"] {
        assert!(error.contains(name), "the refusal names {name}: {error}");
    }
    assert_eq!(out_ids(&sandbox), expected_ids(13), "a refused start sends nothing");
    let chosen = sandbox.run_command(sandbox.command(&["state", "adopt-position", "teleport:auth-b.example.com:3025"]));
    chosen.assert_success(&sandbox);
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    assert_eq!(out_ids(&sandbox), expected_ids(30), "{}", sandbox.report(Some(&output)));
}

// === The event handler's state ===

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).expect("readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.strip_prefix(dir).expect("inside").display().to_string(), std::fs::read(&path).expect("readable"));
            }
        }
    }
    files
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder created");
    std::fs::write(path, bytes).expect("written");
}

fn seconds(time: &str) -> SystemTime {
    humantime::parse_rfc3339_weak(time).unwrap_or_else(|err| panic!("{time}: {err}"))
}

fn event_time(event: &ferry_proto::auditlog::EventUnstructured) -> SystemTime {
    event.time.and_then(|time| SystemTime::try_from(time).ok()).expect("a time")
}

/// The event handler's legacy state just after it forwarded the audit event
/// at `sent` (index into the log): the window holding it, the key of its
/// page (pages of `EH_BATCH` from the window's start), its id; and where on
/// its page the event is.
fn legacy_state(cluster: &Cluster, sent: usize) -> (String, String, String, usize) {
    let log = cluster.standin.audit_events();
    let start = seconds(START);
    let windows = (event_time(&log[sent]).duration_since(start).expect("after the start").as_secs() / WINDOW.as_secs()) as u32;
    let window_start = start + WINDOW * windows;
    let in_window: Vec<_> = log.iter().filter(|event| (window_start..window_start + WINDOW).contains(&event_time(event))).collect();
    let at = in_window.iter().position(|event| event.id == log[sent].id).expect("in its window");
    let page_start = at / EH_BATCH * EH_BATCH;
    let key = if page_start == 0 {
        String::new()
    } else {
        cluster.standin.page_key_after(&in_window[page_start - 1].id).expect("a key for the page")
    };
    (humantime::format_rfc3339_seconds(window_start).to_string(), key, log[sent].id.clone(), at % EH_BATCH)
}

/// An index of the log after the `session.upload`, in the middle of an
/// event handler page that is not its window's first (so that the saved
/// `cursor` is a real page key): neither the page's first event nor its last.
fn mid_page_after_upload(cluster: &Cluster) -> usize {
    let log = cluster.standin.audit_events();
    let upload = log.iter().position(|event| event.r#type == "session.upload").expect("the session is announced");
    (upload + 1..log.len() - 5)
        .find(|&sent| {
            let (_, key, _, at) = legacy_state(cluster, sent);
            !key.is_empty() && (2..EH_BATCH - 2).contains(&at)
        })
        .expect("an event in the middle of a later page")
}

/// The audit log as served, as JSON, by id.
fn served_by_id(cluster: &Cluster) -> BTreeMap<String, Value> {
    cluster.standin.audit_events().iter().map(|event| event.id.clone()).zip(cluster.audit_log()).collect()
}

/// JSON documents as comparable texts, sorted.
fn texts(values: &[Value]) -> Vec<String> {
    let mut texts: Vec<String> = values.iter().map(Value::to_string).collect();
    texts.sort();
    texts
}

/// The Logstash stand-in as the default sink.
fn with_logstash(sandbox: &Sandbox, config: Config, logstash: &LogstashStandIn) -> Config {
    let pki = logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
    config.unset("sinks.default").logstash_sink("default", &logstash.url(), &pki.ca, &pki.client_cert, &pki.client_key)
}

/// Writes the event handler's legacy-engine state into `dir`: it had
/// forwarded the audit log up to the event at `sent` and the fixture
/// recording up to event index 1.
fn write_legacy_state(cluster: &Cluster, dir: &Path, sent: usize) {
    let (window, key, id, _) = legacy_state(cluster, sent);
    write_file(&dir.join("start_time"), START.as_bytes());
    write_file(&dir.join("window_time"), window.as_bytes());
    write_file(&dir.join("cursor"), key.as_bytes());
    write_file(&dir.join("id"), id.as_bytes());
    write_file(&dir.join(format!("session{SID}")), &1u64.to_be_bytes());
    // A dry run's folder is no state to take over.
    write_file(&dir.join("dry_run/0123456789abcdef0123456789abcdef/cursor"), b"bogus");
}

/// (c) The legacy engine's `cursor` and `id` in the middle of a page and a
/// recording in progress: ferry sends exactly what the event handler had not.
#[test]
fn the_event_handlers_legacy_state_is_taken_over_with_nothing_twice_and_nothing_skipped() {
    let cluster = Cluster::start(StandInOptions { export_api: false, announce_sessions: true, ..StandInOptions::default() });
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = Sandbox::new("switch-eh-legacy", "");
    let addr = cluster.standin.address();
    let sent = mid_page_after_upload(&cluster);
    let folder = sandbox.path("storage").join(addr.replace(':', "_"));
    write_legacy_state(&cluster, &folder, sent);
    let before = snapshot(&folder);
    sandbox.set_config(&with_logstash(&sandbox, job(&addr), &logstash).text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    let output = sandbox.run("start");
    output.assert_success(&sandbox);

    let got = logstash.events();
    assert!(
        got == cluster.audit_log()[sent + 1..],
        "the audit log from just after the event handler's last event, once each\n{}",
        sandbox.report(Some(&output))
    );
    let session: Vec<Value> =
        util::complete_lines(&sandbox.read(SESSIONS)).iter().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    let indices: Vec<i64> = session.iter().map(|event| event["ei"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(indices, [158, 159], "the recording from just after index 1 (prints skipped)\n{}", sandbox.report(Some(&output)));
    let said = info_lines(&output, &folder.display().to_string());
    assert_eq!(said.len(), 1, "one line says what was taken from where\n{}", sandbox.report(Some(&output)));
    assert_eq!(snapshot(&folder), before, "the event handler's files are left as they were");
}

/// (c) The export engine's `cursor_v2`: a date with one chunk done and one
/// half read, in a folder of another address (the only one): the rest of
/// that date and every later date, once each, nothing of what was done.
#[test]
fn the_event_handlers_export_state_of_another_address_is_taken_over() {
    let cluster = Cluster::start(StandInOptions { chunk_size: 2, ..StandInOptions::default() });
    let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let layout = cluster.standin.export_layout();
    let busiest = (0..layout.len()).filter(|&at| at > 0).max_by_key(|&at| (layout[at].1.len(), at)).expect("dates");
    assert!(layout[busiest].1.len() >= 3, "a date with three chunks: {layout:?}");
    let sandbox = Sandbox::new("switch-eh-export", "");
    let folder = sandbox.path("storage/teleport.example.com_443");
    write_file(&folder.join("start_time"), START.as_bytes());
    let (previous, previous_chunks) = &layout[busiest - 1];
    let done: String = previous_chunks.iter().map(|(chunk, _)| format!("{chunk}\n")).collect();
    write_file(&folder.join(format!("cursor_v2/{previous}/completed-chunks")), done.as_bytes());
    let (date, chunks) = &layout[busiest];
    write_file(&folder.join(format!("cursor_v2/{date}/completed-chunks")), format!("{}\n", chunks[0].0).as_bytes());
    write_file(&folder.join(format!("cursor_v2/{date}/{}.chunk", chunks[1].0)), b"1");
    let before = snapshot(&folder);

    let mut expected: Vec<String> = chunks[1].1[1..].to_vec();
    for (_, chunk) in &chunks[2..] {
        expected.extend(chunk.iter().cloned());
    }
    for (_, later) in &layout[busiest + 1..] {
        for (_, chunk) in later {
            expected.extend(chunk.iter().cloned());
        }
    }
    sandbox.set_config(&with_logstash(&sandbox, job(&cluster.standin.address()), &logstash).text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let served = served_by_id(&cluster);
    let expected: Vec<Value> = expected.iter().map(|id| served[id].clone()).collect();
    let got = texts(&logstash.events());
    assert!(got.windows(2).all(|pair| pair[0] != pair[1]), "no event twice\n{}", sandbox.report(Some(&output)));
    assert!(
        got == texts(&expected),
        "exactly what the event handler had not sent ({} of {})\n{}",
        got.len(),
        expected.len(),
        sandbox.report(Some(&output))
    );
    let said = info_lines(&output, &folder.display().to_string());
    assert_eq!(said.len(), 1, "one line says what was taken from where\n{}", sandbox.report(Some(&output)));
    assert_eq!(snapshot(&folder), before, "the event handler's files are left as they were");
}

/// (c) The event handler's state of several addresses and none of this
/// one: which is this cluster's cannot be told; one line names them.
#[test]
fn the_event_handlers_state_of_several_other_addresses_is_refused() {
    let cluster = Cluster::start(StandInOptions { export_api: false, ..StandInOptions::default() });
    let sandbox = Sandbox::new("switch-eh-several", "");
    for folder in ["storage/auth-a.example.com_3025", "storage/auth-b.example.com_3025"] {
        write_file(&sandbox.path(folder).join("start_time"), START.as_bytes());
        write_file(&sandbox.path(folder).join("id"), b"some-event");
    }
    sandbox.set_config(&job(&cluster.standin.address()).text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    let error = sandbox.run("start").one_line_error(&sandbox);
    for name in ["auth-a.example.com_3025", "auth-b.example.com_3025", "ferry state import-event-handler"] {
        assert!(error.contains(name), "the refusal names {name}: {error}");
    }
    assert_eq!(sandbox.out_count(), 0, "a refused start sends nothing");
}

/// (d) `ferry state import-event-handler DIR` on purpose, refused once a
/// position exists unless `--replace`; `ferry status` says where the
/// position came from; the next start resumes from it.
#[test]
fn import_event_handler_takes_a_folder_over_and_status_says_so() {
    let cluster = Cluster::start(StandInOptions { export_api: false, announce_sessions: true, ..StandInOptions::default() });
    let sandbox = Sandbox::new("switch-import", &job(&cluster.standin.address()).text());
    cluster.standin.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
    let sent = mid_page_after_upload(&cluster);
    let folder = sandbox.path("backup/auth.example.com_3025");
    write_legacy_state(&cluster, &folder, sent);
    let dir = folder.display().to_string();

    let import = sandbox.run_command(sandbox.command(&["state", "import-event-handler", &dir]));
    import.assert_success(&sandbox);
    assert!(import.stdout.contains(&dir), "it says what it took from where\n{}", sandbox.report(Some(&import)));
    let status = sandbox.run("status");
    status.assert_success(&sandbox);
    assert!(status.stdout.contains(&format!("imported from {dir} at ")), "{}", sandbox.report(Some(&status)));
    let json = sandbox.run_command(sandbox.command(&["status", "--json"]));
    let report: Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    assert_eq!(report["sources"][0]["origin"]["kind"], "imported", "{report}");
    assert_eq!(report["sources"][0]["origin"]["from"], dir, "{report}");

    let again = sandbox.run_command(sandbox.command(&["state", "import-event-handler", &dir]));
    let error = again.one_line_error(&sandbox);
    assert!(error.contains("teleport:ferry.test") && error.contains("--replace"), "{error}");
    let replaced = sandbox.run_command(sandbox.command(&["state", "import-event-handler", &dir, "--replace"]));
    replaced.assert_success(&sandbox);

    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let got: Vec<Value> = util::complete_lines(&sandbox.read(OUT)).iter().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    assert!(got == cluster.audit_log()[sent + 1..], "resumed from the imported position\n{}", sandbox.report(Some(&output)));
}
