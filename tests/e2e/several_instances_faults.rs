//! What operators and networks do to several instances on one PostgreSQL
//! state (a real server, started by the stand-in): the database restarts,
//! briefly or for longer than the lease; it stops answering (a partition);
//! a standby is probed; a SQLite deployment moves to PostgreSQL mid-stream;
//! the database asks for TLS and a client certificate.

use crate::several_instances::{
    BATCH, config, event, leads, start, start_leased, stop_cleanly, uids, wait_delivered, wait_standing_by, wait_to_lead,
};
use crate::util::{self, Config, DEADLINE, IN, OUT, Running, Sandbox};
use ferry_standin::pki::Pki;
use ferry_standin::postgres::Postgres;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// Appends the events `from..to` to the input file.
fn write_events(sandbox: &Sandbox, from: usize, to: usize) {
    sandbox.append(IN, (from..to).map(event).collect::<String>().as_bytes());
}

/// Every event `0..count` arrived, and how many arrived twice.
fn assert_all_arrived(sandbox: &Sandbox, count: usize) -> usize {
    let delivered = uids(sandbox);
    let distinct: BTreeSet<&String> = delivered.iter().collect();
    let wanted: BTreeSet<String> = (0..count).map(|n| format!("e-{n}")).collect();
    assert_eq!(distinct.len(), count, "every event at least once{}", sandbox.report(None));
    assert!(distinct.iter().all(|uid| wanted.contains(*uid)), "only events that were written{}", sandbox.report(None));
    delivered.len() - distinct.len()
}

/// How long after now `running` wrote a stderr line holding `text`, if
/// it did within `timeout`.
fn wait_for_line(running: &Running, text: &str, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if running.stderr().contains(text) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits until the file source's cursor in `database` is at the end of the input file.
fn wait_committed_to_the_end(sandbox: &Sandbox, server: &Postgres, database: &str, running: &Running) {
    let end = std::fs::metadata(sandbox.path(IN)).expect("in.jsonl").len().to_string();
    util::wait_for(
        "the cursor committed to the end of the input",
        DEADLINE,
        || server.sql(database, "SELECT position::json->>'offset' FROM cursors WHERE source LIKE 'file:%'") == end,
        || sandbox.report(Some(&running.snapshot())),
    );
}

/// The lease's row: `holder|epoch`.
fn lease_row(server: &Postgres, database: &str) -> String {
    server.sql(database, "SELECT holder, epoch FROM leases").trim().to_owned()
}

#[test]
fn a_database_restart_within_the_lease_loses_nothing_and_ferry_keeps_running() {
    let server = Postgres::start();
    let url = server.create_database("restart");
    let sandbox = Sandbox::new("several_instances_restart", &config(&url));
    // A lease of 6 s: a restart of about 2 s is well within it.
    let mut active = start_leased(&sandbox, &server, "a", "6s");
    util::wait_for("a to lead", DEADLINE, || leads(&active), || sandbox.report(Some(&active.snapshot())));
    let mut standby = start_leased(&sandbox, &server, "b", "6s");
    wait_standing_by(&sandbox, &standby);
    write_events(&sandbox, 0, 300);
    wait_delivered(&sandbox, 300, &active);

    let stopped_at = Instant::now();
    server.stop();
    write_events(&sandbox, 300, 500);
    std::thread::sleep(Duration::from_secs(1));
    server.start_again();
    let outage = stopped_at.elapsed();
    write_events(&sandbox, 500, 600);
    wait_delivered(&sandbox, 600, &active);
    let duplicates = assert_all_arrived(&sandbox, 600);
    assert!(!active.has_exited() && !standby.has_exited(), "a short outage ends no instance{}", sandbox.report(Some(&active.snapshot())));
    assert_eq!(lease_row(&server, "restart"), "a|1", "back within the lease: a kept it");
    assert!(!active.stderr().contains("no longer the active one"), "{}", sandbox.report(Some(&active.snapshot())));
    // The batch in flight when the database went away is committed once it is back, not sent again.
    assert!(duplicates <= BATCH, "{duplicates} duplicates{}", sandbox.report(None));
    wait_committed_to_the_end(&sandbox, &server, "restart", &active);
    eprintln!(
        "outage {outage:?}: a kept the lease; {duplicates} duplicates; a logged {} failed commit(s) and {} failed renewal(s)",
        active.stderr_count("Cannot commit the cursor"),
        active.stderr_count("Cannot renew the lease")
    );
    stop_cleanly(&sandbox, [&mut active, &mut standby]);
}

#[test]
fn a_database_down_longer_than_the_lease_deposes_the_active_one_and_an_instance_leads_once_it_is_back() {
    let server = Postgres::start();
    let url = server.create_database("outage");
    let sandbox = Sandbox::new("several_instances_outage", &config(&url));
    let mut first = start(&sandbox, &server, "a");
    util::wait_for("a to lead", DEADLINE, || leads(&first), || sandbox.report(Some(&first.snapshot())));
    let second = start(&sandbox, &server, "b");
    wait_standing_by(&sandbox, &second);
    write_events(&sandbox, 0, 300);
    wait_delivered(&sandbox, 300, &first);

    let stopped_at = Instant::now();
    server.stop();
    write_events(&sandbox, 300, 400);
    // The lease is 2 s: the active one cannot know whether a standby took over, so it stops.
    let deposed_after = wait_for_line(&first, "is no longer the active one", DEADLINE)
        .unwrap_or_else(|| panic!("a never stepped down{}", sandbox.report(Some(&first.snapshot()))));
    let ended = first.wait(&sandbox, DEADLINE);
    let exited_after = stopped_at.elapsed();
    assert!(!ended.success(), "it exits with a failure, for its service manager to start it again{}", sandbox.report(Some(&ended)));
    assert!(ended.stderr.contains("is no longer the active one"), "{}", sandbox.report(Some(&ended)));
    assert!(ended.stderr.contains("could not be renewed"), "{}", sandbox.report(Some(&ended)));
    // The lease runs from the last renewal, at most a third of it before the stop.
    assert!(deposed_after >= Duration::from_millis(1300), "not before the lease ran out: {deposed_after:?}");
    assert!(deposed_after < Duration::from_secs(5), "within the lease and a margin: {deposed_after:?}");
    let mut second = second;
    assert!(!second.has_exited(), "the standby waits for the database{}", sandbox.report(Some(&second.snapshot())));

    server.start_again();
    let back_at = Instant::now();
    // Its service manager starts the deposed one again: a standby or the leader, whichever asks first.
    let mut restarted = start(&sandbox, &server, "a");
    util::wait_for(
        "an instance to lead",
        DEADLINE,
        || leads(&second) || restarted.stderr().matches("This instance is now the active one").count() > 0,
        || sandbox.report(Some(&second.snapshot())),
    );
    let took = back_at.elapsed();
    write_events(&sandbox, 400, 500);
    let leader = if leads(&second) { &second } else { &restarted };
    wait_delivered(&sandbox, 500, leader);
    let duplicates = assert_all_arrived(&sandbox, 500);
    assert!(duplicates <= BATCH, "at most the batch in flight again: {duplicates}{}", sandbox.report(None));
    let row = lease_row(&server, "outage");
    assert!(row == "b|2" || row == "a|2", "one takeover: {row}");
    eprintln!(
        "a stepped down {deposed_after:?} after the database stopped and exited after {exited_after:?}; {row} leads {took:?} after it was back; {duplicates} duplicates"
    );
    stop_cleanly(&sandbox, [&mut second, &mut restarted]);
}

/// A record of every cursor write that landed, with the epoch the writer
/// carried and the lease's epoch when it landed, kept by a trigger after
/// ferry's fence (so a refused write leaves no row).
fn audit_cursor_writes(server: &Postgres, database: &str) {
    server.sql(
        database,
        "CREATE TABLE cursor_audit (id BIGSERIAL PRIMARY KEY, position TEXT, written_with BIGINT, lease_epoch BIGINT, at TIMESTAMPTZ);
         CREATE FUNCTION cursor_audit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $a$
         BEGIN
             INSERT INTO cursor_audit (position, written_with, lease_epoch, at)
             VALUES (NEW.position, NULLIF(current_setting('ferry.epoch', true), '')::BIGINT,
                     (SELECT epoch FROM leases WHERE name = 'active'), clock_timestamp());
             RETURN NEW;
         END $a$;
         CREATE TRIGGER cursor_audit AFTER INSERT OR UPDATE ON cursors FOR EACH ROW EXECUTE FUNCTION cursor_audit();",
    );
}

#[test]
fn a_partition_from_the_database_past_the_lease_lands_no_write_of_the_old_epoch() {
    let server = Postgres::start();
    let url = server.create_database("partition");
    let sandbox = Sandbox::new("several_instances_partition", &config(&url));
    let mut first = start(&sandbox, &server, "a");
    util::wait_for("a to lead", DEADLINE, || leads(&first), || sandbox.report(Some(&first.snapshot())));
    audit_cursor_writes(&server, "partition");
    let second = start(&sandbox, &server, "b");
    wait_standing_by(&sandbox, &second);
    write_events(&sandbox, 0, 300);
    wait_delivered(&sandbox, 300, &first);

    // Nothing answers and no connection breaks: a's renewal and its next
    // commit hang, as behind a dropped network.
    server.pause();
    let paused_at = Instant::now();
    write_events(&sandbox, 300, 400);
    // The active one must not trust a lease it could not renew for its
    // length: it steps down within the lease (2 s) and a margin, not when
    // the connection pool gives up (10 s) or the network does.
    let within = Duration::from_secs(5);
    let stepped_down = wait_for_line(&first, "is no longer the active one", Duration::from_secs(15));
    server.resume();
    let stepped_down =
        stepped_down.unwrap_or_else(|| panic!("a never stepped down while partitioned{}", sandbox.report(Some(&first.snapshot()))));
    assert!(
        stepped_down <= within,
        "a went on as the active one for {stepped_down:?} without reaching the database (lease 2 s){}",
        sandbox.report(Some(&first.snapshot()))
    );
    let ended = first.wait(&sandbox, DEADLINE);
    assert!(!ended.success(), "{}", sandbox.report(Some(&ended)));

    wait_to_lead(&sandbox, &second, paused_at);
    write_events(&sandbox, 400, 500);
    wait_delivered(&sandbox, 500, &second);
    let duplicates = assert_all_arrived(&sandbox, 500);
    assert!(duplicates <= BATCH, "at most the batch in flight again: {duplicates}{}", sandbox.report(None));
    assert_eq!(lease_row(&server, "partition"), "b|2");
    // Every cursor write that landed carried the lease's epoch of its moment, and none of epoch 1 after b's.
    let audit = server.sql("partition", "SELECT written_with, lease_epoch FROM cursor_audit ORDER BY id");
    let rows: Vec<(i64, i64)> = audit
        .lines()
        .map(|line| {
            let (with, lease) = line.split_once('|').expect("two columns");
            (with.parse().expect("an epoch"), lease.parse().expect("an epoch"))
        })
        .collect();
    assert!(rows.iter().all(|(with, lease)| with == lease), "a write of another epoch than the lease's landed: {audit}");
    let first_of_b = rows.iter().position(|(with, _)| *with == 2).expect("b committed");
    assert!(rows[first_of_b..].iter().all(|(with, _)| *with == 2), "a write of epoch 1 landed after b took over: {audit}");
    wait_committed_to_the_end(&sandbox, &server, "partition", &second);
    eprintln!("a stepped down {stepped_down:?} into the partition; {duplicates} duplicates; {} cursor writes audited", rows.len());
    let mut second = second;
    stop_cleanly(&sandbox, [&mut second]);
}

/// The value of `name` in Prometheus text, if it is there.
fn metric(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(str::to_owned))
}

#[test]
fn a_healthy_standby_is_ready_and_the_metrics_tell_who_leads() {
    let server = Postgres::start();
    let url = server.create_database("probes");
    let text = format!("http-addr = \"127.0.0.1:0\"\n{}", config(&url));
    let sandbox = Sandbox::new("several_instances_probes", &text);
    let mut active = start(&sandbox, &server, "a");
    util::wait_for("a to lead", DEADLINE, || leads(&active), || sandbox.report(Some(&active.snapshot())));
    let mut standby = start(&sandbox, &server, "b");
    wait_standing_by(&sandbox, &standby);
    write_events(&sandbox, 0, 100);
    wait_delivered(&sandbox, 100, &active);
    let (active_addr, standby_addr) = (util::served_addr(&active, &sandbox), util::served_addr(&standby, &sandbox));

    let ready = util::http_get(&standby_addr, "/readyz").expect("the standby answers /readyz");
    assert_eq!(ready.status, 200, "a standby is healthy: {}", ready.body);
    let metrics = util::http_get(&standby_addr, "/metrics").expect("the standby's /metrics").body;
    assert_eq!(metric(&metrics, "ferry_leader").as_deref(), Some("0"), "{metrics}");
    assert_eq!(metric(&metrics, "ferry_lease_epoch").as_deref(), Some("0"), "{metrics}");

    util::wait_for(
        "the active one to be ready",
        DEADLINE,
        || util::http_get(&active_addr, "/readyz").is_some_and(|answer| answer.status == 200),
        || sandbox.report(Some(&active.snapshot())),
    );
    let metrics = util::http_get(&active_addr, "/metrics").expect("the active one's /metrics").body;
    assert_eq!(metric(&metrics, "ferry_leader").as_deref(), Some("1"), "{metrics}");
    assert_eq!(metric(&metrics, "ferry_lease_epoch").as_deref(), Some("1"), "{metrics}");

    // The standby takes over: its metrics follow.
    active.kill(&sandbox);
    wait_to_lead(&sandbox, &standby, Instant::now());
    let metrics = util::http_get(&standby_addr, "/metrics").expect("the new active one's /metrics").body;
    assert_eq!(metric(&metrics, "ferry_leader").as_deref(), Some("1"), "{metrics}");
    assert_eq!(metric(&metrics, "ferry_lease_epoch").as_deref(), Some("2"), "{metrics}");
    stop_cleanly(&sandbox, [&mut standby]);
}

/// `ferry ARGS…` with the database's password in the environment, to its end.
fn ferry_with_password(sandbox: &Sandbox, server: &Postgres, args: &[&str]) -> util::Output {
    let mut command = Command::new(util::FERRY);
    command.args(args).current_dir(sandbox.root()).env("FERRY_STORAGE_PASSWORD", server.password()).env_remove("FERRY_LOG");
    sandbox.run_command(command)
}

/// A file job on the SQLite state in the folder `storage`.
fn sqlite_config() -> Config {
    Config::new()
        .pipeline(BATCH, "20ms")
        .set("pipeline.batches-in-flight", 1)
        .file_source(IN, true)
        .set("source.file.poll-interval", "20ms")
        .file_sink("default", OUT)
}

#[test]
fn state_copy_mid_stream_moves_a_sqlite_deployment_to_postgres_with_every_event_exactly_once() {
    let server = Postgres::start();
    let url = server.create_database("moved");
    let sandbox = Sandbox::new("several_instances_copy", &sqlite_config().text());
    let total = 5000;
    let mut running = sandbox.spawn_start();
    write_events(&sandbox, 0, 100);
    util::wait_for("the first events delivered", DEADLINE, || sandbox.out_count() >= 100, || sandbox.report(Some(&running.snapshot())));

    // Refused while ferry runs on the folder, naming it.
    let refused = ferry_with_password(&sandbox, &server, &["state", "copy", "storage", &url]);
    let message = refused.one_line_error(&sandbox);
    assert!(message.contains("ferry start") || message.contains(&running.pid().to_string()), "names the holder: {message}");
    assert!(!message.contains(server.password()), "{message}");

    // Stopped while it works through a burst.
    write_events(&sandbox, 100, total);
    util::wait_for("more events delivered", DEADLINE, || sandbox.out_count() >= 600, || sandbox.report(Some(&running.snapshot())));
    stop_cleanly(&sandbox, [&mut running]);
    let before = sandbox.out_count();
    assert!(before < total, "stopped mid-stream: {before} of {total} delivered; write more events");
    let copied = ferry_with_password(&sandbox, &server, &["state", "copy", "storage", &url]);
    copied.assert_success(&sandbox);
    assert!(copied.stdout.contains("copied 1 cursor(s)"), "{copied}");

    sandbox.set_config(&sqlite_config().set("storage", url.as_str()).text());
    let mut command = sandbox.command(&["start"]);
    command.env("FERRY_STORAGE_PASSWORD", server.password());
    let mut moved = sandbox.spawn_command(command);
    util::wait_for("every event", DEADLINE, || sandbox.out_count() >= total, || sandbox.report(Some(&moved.snapshot())));
    let arrived = util::arrived(&sandbox);
    let twice: Vec<_> = arrived.iter().filter(|(_, n)| **n > 1).map(|(uid, _)| uid).collect();
    assert_eq!(arrived.len(), total, "no gap across the switch{}", sandbox.report(Some(&moved.snapshot())));
    assert!(twice.is_empty(), "sent again across the switch: {twice:?}{}", sandbox.report(None));
    stop_cleanly(&sandbox, [&mut moved]);
    eprintln!("{before} of {total} events before the switch, the rest after, each once");
}

#[test]
fn state_migrate_creates_the_schema_on_a_fresh_database() {
    let server = Postgres::start();
    let url = server.create_database("fresh");
    let sandbox = Sandbox::new("several_instances_migrate", &config(&url));
    let migrated = ferry_with_password(&sandbox, &server, &["state", "migrate", "--config", "ferry.toml"]);
    migrated.assert_success(&sandbox);
    assert!(migrated.stdout.contains("the schema is up to date"), "{migrated}");
    let tables = server.sql("fresh", "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
    for table in ["cursors", "dead_letters", "instances", "leases"] {
        assert!(tables.lines().any(|line| line == table), "{table} in {tables}");
    }
    // Twice is fine: a deploy step run again.
    ferry_with_password(&sandbox, &server, &["state", "migrate", "--config", "ferry.toml"]).assert_success(&sandbox);
}

#[test]
fn over_tls_with_a_client_certificate_ferry_commits_and_a_wrong_ca_is_one_line_naming_the_url() {
    let pki = Pki::generate("postgres").expect("a PKI");
    let server = Postgres::start_tls(&pki);
    let url = server.create_database("tls");
    assert!(url.contains("sslmode=verify-full") && url.contains("sslcert="), "{url}");
    let sandbox = Sandbox::new("several_instances_tls", &config(&url));
    let mut running = start(&sandbox, &server, "a");
    util::wait_for("a to lead", DEADLINE, || leads(&running), || sandbox.report(Some(&running.snapshot())));
    write_events(&sandbox, 0, 200);
    wait_delivered(&sandbox, 200, &running);
    wait_committed_to_the_end(&sandbox, &server, "tls", &running);
    let ssl = server.sql("tls", "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'ferry' AND client_dn LIKE '%ferry%'");
    assert_ne!(ssl, "0", "ferry's connections are TLS with its client certificate");
    stop_cleanly(&sandbox, [&mut running]);

    let other = Pki::generate("another").expect("another PKI");
    sandbox.write("wrong-ca.crt", other.ca.cert.as_bytes());
    let files = server.client_files().expect("TLS files");
    let wrong = url.replace(&files.ca.display().to_string(), &sandbox.path("wrong-ca.crt").display().to_string());
    assert_ne!(wrong, url);
    sandbox.set_config(&config(&wrong));
    let failed = ferry_with_password(&sandbox, &server, &["start", "--config", "ferry.toml"]);
    let message = failed.one_line_error(&sandbox);
    assert!(message.contains(&wrong), "names the storage URL: {message}");
    assert!(message.contains("cannot connect") && message.contains("certificate"), "says what is wrong: {message}");
    assert!(!message.contains(server.password()), "{message}");
    eprintln!("a wrong CA: {message}");
}
