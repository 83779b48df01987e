//! Several instances sharing the export (`[leadership] slots`), through the
//! real binary: real PostgreSQL (the stand-in's server), the Teleport
//! stand-in with the export API, and the Logstash stand-in. Each instance
//! has its own identity (user `ferry-NAME`), so the stand-in's record of
//! every `ExportUnstructuredEvents` request tells which instance read which
//! chunk, from which cursor.
//!
//! With `slots = N`, N instances each hold one slot lease and export the
//! chunks that hash to it, at once; a standby takes over a slot whose
//! holder died, from that slot's cursor. `slots > 1` needs PostgreSQL and
//! the export engine.

use crate::export::{self, ids};
use crate::several_instances::{LEASE, spawn_instance, stop_cleanly};
use crate::teleport::Cluster;
use crate::util::{self, Config, DEADLINE, Running, Sandbox};
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::postgres::Postgres;
use ferry_standin::teleport::{ExportRequest, IdentitySpec};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

/// Events per batch and batches in flight: what a killed instance may have
/// delivered without committing, so what may arrive twice.
const BATCH: usize = 10;
const IN_FLIGHT: usize = 2;
/// The date `export::cluster` serves its events on.
const DATE: &str = "2024-05-01";
/// The cursor row of slot 0 (`teleport:<cluster>`), and of slot k the same
/// with `#slot-k`.
const CURSOR: &str = "teleport:ferry.test";

/// The peers and the base config every instance of one scenario shares.
struct Shared {
    cluster: Cluster,
    logstash: LogstashStandIn,
    server: Postgres,
    database: &'static str,
    sandbox: Sandbox,
    /// ferry.toml: the export engine on PostgreSQL with `slots` slots.
    base: Config,
}

impl Shared {
    /// `events` logins on one date in chunks of `chunk_size`, each chunk
    /// stream answered after `delay`; a database `database`; ferry.toml
    /// reading them with `slots` slots into Logstash, `configure`d further.
    fn set_up(
        name: &str,
        database: &'static str,
        (events, chunk_size, delay): (usize, usize, Duration),
        slots: usize,
        configure: impl FnOnce(Config) -> Config,
    ) -> Shared {
        let cluster = export::cluster(events, chunk_size, delay);
        let logstash = cluster.runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
        let server = Postgres::start();
        let url = server.create_database(database);
        let mut base = None;
        let sandbox = export::sandbox(name, &cluster, &logstash, |config| {
            let config = configure(config)
                .set("storage", url.as_str())
                .set("exit-on-last-event", false)
                .set("teleport.engine", "export")
                .set("pipeline.batch-size", util::count(BATCH))
                .set("pipeline.batches-in-flight", util::count(IN_FLIGHT))
                .set("leadership.lease", LEASE)
                .set("leadership.slots", util::count(slots));
            base = Some(config.clone());
            config
        });
        Shared { cluster, logstash, server, database, sandbox, base: base.expect("the config was made") }
    }

    /// `ferry start` as the instance `name`, with its own identity file
    /// (user `ferry-NAME`) and config file (`ferry-NAME.toml`).
    fn start(&self, name: &str) -> Running {
        self.start_with(name, |config| config)
    }

    /// [`Shared::start`] with the base config `configure`d further.
    fn start_with(&self, name: &str, configure: impl FnOnce(Config) -> Config) -> Running {
        let identity = format!("identity-{name}");
        let spec = IdentitySpec { user: format!("ferry-{name}"), ..IdentitySpec::default() };
        self.cluster.standin.write_identity_with(&self.sandbox.path(&identity), &spec).expect("identity written");
        let config = configure(self.base.clone()).set("leadership.instance", name).set("teleport.identity", identity.as_str());
        spawn_instance(&self.sandbox, &self.server, name, &config.text())
    }

    /// The lease rows: name → (holder, epoch); none before the table exists.
    fn leases(&self) -> BTreeMap<String, (String, i64)> {
        let rows = self.server.try_sql(self.database, "SELECT name, holder, epoch FROM leases ORDER BY name").unwrap_or_default();
        rows.lines()
            .filter_map(|row| {
                let mut columns = row.split('|');
                let (name, holder, epoch) = (columns.next()?, columns.next()?, columns.next()?.parse().ok()?);
                Some((name.to_owned(), (holder.to_owned(), epoch)))
            })
            .collect()
    }

    /// Waits until `count` leases are held, each by another instance.
    fn wait_for_holders(&self, count: usize, running: &Running) {
        util::wait_for(
            &format!("{count} leases, each held by another instance"),
            DEADLINE,
            || {
                let leases = self.leases();
                leases.len() == count && leases.values().map(|(holder, _)| holder).collect::<BTreeSet<_>>().len() == count
            },
            || format!("leases: {:?}{}", self.leases(), self.sandbox.report(Some(&running.snapshot()))),
        );
    }

    /// The slots' cursor rows (the cluster's, `#slot-k`), sorted; not the
    /// stored start time (`#start-time`).
    fn slot_cursor_rows(&self) -> Vec<String> {
        let rows = self.server.try_sql(self.database, "SELECT source FROM cursors ORDER BY source").unwrap_or_default();
        let slot_row = |source: &&str| *source == CURSOR || source.strip_prefix(CURSOR).is_some_and(|rest| rest.starts_with("#slot-"));
        rows.lines().filter(slot_row).map(str::to_owned).collect()
    }

    /// Waits until `count` distinct events arrived at Logstash.
    fn wait_delivered(&self, count: usize, running: &Running) {
        util::wait_for(
            &format!("{count} distinct events delivered"),
            DEADLINE,
            || ids(&self.logstash.events()).len() >= count,
            || format!("{} arrived{}", ids(&self.logstash.events()).len(), self.sandbox.report(Some(&running.snapshot()))),
        );
    }

    /// The chunks of the events' date, by name, with their events' ids.
    fn chunks(&self) -> BTreeMap<String, Vec<String>> {
        let layout = self.cluster.standin.export_layout();
        let (_, chunks) = layout.into_iter().find(|(date, _)| date == DATE).expect("the events' date is served");
        chunks.into_iter().collect()
    }

    /// Requests for chunks of the events' date, in arrival order.
    fn requests(&self) -> Vec<ExportRequest> {
        self.cluster.standin.export_requests().into_iter().filter(|request| request.date == DATE).collect()
    }

    /// `ferry status` on the instance `name`'s config.
    fn status(&self, name: &str) -> String {
        let mut status = Command::new(util::FERRY);
        status
            .args(["status", "--config"])
            .arg(self.sandbox.path(&format!("ferry-{name}.toml")))
            .env("FERRY_STORAGE_PASSWORD", self.server.password());
        util::stdout_of_success(status)
    }

    fn report(&self, running: &Running) -> String {
        let requests: Vec<String> = self.requests().iter().map(|r| format!("{} by {} from {:?}", r.chunk, caller(r), r.cursor)).collect();
        format!("leases: {:?}\nrequests: {requests:?}{}", self.leases(), self.sandbox.report(Some(&running.snapshot())))
    }
}

/// Who asked for a request: the common name of its client certificate.
fn caller(request: &ExportRequest) -> String {
    request.peer.as_ref().map(|peer| peer.common_name.clone()).unwrap_or_default()
}

/// The chunks `who` (a certificate's common name) asked for.
fn read_by(requests: &[ExportRequest], who: &str) -> BTreeSet<String> {
    requests.iter().filter(|request| caller(request) == who).map(|request| request.chunk.clone()).collect()
}

/// The cursor rows of `slots` slots: `teleport:<cluster>`, then `#slot-k`.
fn slot_cursors(slots: usize) -> Vec<String> {
    std::iter::once(CURSOR.to_owned()).chain((1..slots).map(|slot| format!("{CURSOR}#slot-{slot}"))).collect()
}

#[test]
fn three_instances_export_the_chunks_of_a_date_at_once_each_chunk_once() {
    // 24 chunks of 20; each stream waits 300 ms, as a backend fetching it.
    let shared = Shared::set_up("shared-export", "three", (480, 20, Duration::from_millis(300)), 3, |config| config);
    let mut a = shared.start("a");
    let mut b = shared.start("b");
    let mut c = shared.start("c");
    shared.wait_for_holders(3, &a);
    shared.wait_delivered(480, &a);
    util::wait_for(
        "the three slots' cursor rows",
        DEADLINE,
        || shared.slot_cursor_rows() == slot_cursors(3),
        || format!("cursor rows: {:?}{}", shared.slot_cursor_rows(), shared.report(&a)),
    );

    let got = ids(&shared.logstash.events());
    assert_eq!(got.len(), 480, "every event arrives{}", shared.report(&a));
    let twice: Vec<_> = got.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "no event twice: {twice:?}{}", shared.report(&a));

    let chunks = shared.chunks();
    assert_eq!(chunks.len(), 24);
    let requests = shared.requests();
    let asked: BTreeMap<&str, usize> = util::tally(requests.iter().map(|request| request.chunk.as_str()));
    let expected: BTreeMap<&str, usize> = chunks.keys().map(|chunk| (chunk.as_str(), 1)).collect();
    assert_eq!(asked, expected, "every chunk was asked for exactly once{}", shared.report(&a));
    assert!(requests.iter().all(|request| request.cursor.is_empty()), "each from its start: {requests:?}");
    let callers: BTreeSet<String> = requests.iter().map(caller).collect();
    let everyone: BTreeSet<String> = ["ferry-a", "ferry-b", "ferry-c"].map(String::from).into();
    assert_eq!(callers, everyone, "each instance read chunks of the date{}", shared.report(&a));

    let shown = shared.status("a");
    let leases = shared.leases();
    assert_eq!(leases.keys().collect::<Vec<_>>(), ["active", "slot-1", "slot-2"], "a lease per slot");
    for (lease, (holder, epoch)) in &leases {
        let named = if lease == "active" { "lease".to_owned() } else { format!("lease {lease}") };
        let line = format!("{named}: held by {holder} (epoch {epoch})");
        assert!(shown.contains(&line), "`ferry status` lists the lease `{lease}` ({line}):\n{shown}");
    }
    for name in ["a", "b", "c"] {
        assert!(shown.contains(&format!("instance {name}:")), "`ferry status` lists the instance {name}:\n{shown}");
    }
    stop_cleanly(&shared.sandbox, [&mut a, &mut b, &mut c]);
}

#[test]
fn a_standby_takes_over_a_killed_slot_and_finishes_its_chunks() {
    // 30 chunks of 20, one at a time per instance, each stream answered
    // after 1 s: each slot's chunks take seconds, so the kill comes mid-export.
    let shared =
        Shared::set_up("shared-export-takeover", "takeover", (600, 20, Duration::from_secs(1)), 3, |config| config.set("concurrency", 1));
    let mut instances: BTreeMap<String, Running> = ["a", "b", "c"].into_iter().map(|name| (name.to_owned(), shared.start(name))).collect();
    shared.wait_for_holders(3, &instances["a"]);
    let mut standby = shared.start("d");

    // The holder of slot 1 dies once some of its chunks' events arrived.
    let (victim, epoch) = shared.leases()["slot-1"].clone();
    let victim_caller = format!("ferry-{victim}");
    let chunks = shared.chunks();
    let arrived_of_victim = || {
        let got = ids(&shared.logstash.events());
        read_by(&shared.requests(), &victim_caller).iter().flat_map(|chunk| &chunks[chunk]).filter(|id| got.contains_key(*id)).count()
    };
    util::wait_for(
        &format!("some events of the chunks {victim} (slot 1) read"),
        DEADLINE,
        || arrived_of_victim() >= BATCH,
        || shared.report(&instances[&victim]),
    );
    let mut killed = instances.remove(&victim).expect("the victim runs");
    killed.kill(&shared.sandbox);
    let read_by_victim = read_by(&shared.requests(), &victim_caller);

    util::wait_for(
        "the standby d to take slot 1, its epoch one higher",
        DEADLINE,
        || shared.leases().get("slot-1") == Some(&("d".to_owned(), epoch + 1)),
        || shared.report(&standby),
    );
    shared.wait_delivered(600, &standby);

    let got = ids(&shared.logstash.events());
    assert_eq!(got.len(), 600, "every event, none that was never served{}", shared.report(&standby));
    let duplicates: usize = got.values().map(|count| count - 1).sum();
    assert!(
        duplicates <= BATCH * IN_FLIGHT,
        "{duplicates} duplicates: only what the killed instance had in flight ({BATCH} × {IN_FLIGHT}){}",
        shared.report(&standby)
    );
    for (chunk, events) in &chunks {
        assert!(events.iter().all(|id| got.contains_key(id)), "chunk {chunk} completed{}", shared.report(&standby));
    }

    // Slot 1's chunks were read by the killed instance and then d, no others;
    // every other chunk by one instance, once, from its start.
    let requests = shared.requests();
    let by_d = read_by(&requests, "ferry-d");
    assert!(!by_d.is_empty(), "d read the chunks of slot 1 left when {victim} died{}", shared.report(&standby));
    let slot_one: BTreeSet<&String> = read_by_victim.iter().chain(&by_d).collect();
    let others: Vec<&ExportRequest> =
        requests.iter().filter(|request| !["ferry-d", victim_caller.as_str()].contains(&caller(request).as_str())).collect();
    assert!(
        others.iter().all(|request| !slot_one.contains(&request.chunk)),
        "no other instance read a chunk of slot 1: {others:?}{}",
        shared.report(&standby)
    );
    let other_chunks = util::tally(others.iter().map(|request| request.chunk.as_str()));
    assert!(other_chunks.values().all(|&count| count == 1), "the other slots' chunks once each: {other_chunks:?}");
    assert!(others.iter().all(|request| request.cursor.is_empty()), "the other slots' chunks from their start: {others:?}");
    assert_eq!(slot_one.len() + other_chunks.len(), chunks.len(), "every chunk was read{}", shared.report(&standby));
    let resumed: Vec<String> = (requests.iter())
        .filter(|request| caller(request) == "ferry-d" && read_by_victim.contains(&request.chunk))
        .map(|request| format!("{} from {:?}", request.chunk, request.cursor))
        .collect();
    eprintln!("{victim} killed after reading {read_by_victim:?}; d read {by_d:?}, resuming {resumed:?}; duplicates {duplicates}");

    let Ok([mut one, mut two]) = <[Running; 2]>::try_from(instances.into_values().collect::<Vec<_>>()) else {
        panic!("two instances besides d are left")
    };
    stop_cleanly(&shared.sandbox, [&mut one, &mut two, &mut standby]);
}

/// A deployment of one slot, stopped mid-export, comes back with three: the
/// new slots start from slot 0's dates with the chunks it read or was
/// reading counted as done, and slot 0 finishes its partial ones, so every
/// chunk is started once and every event arrives once.
#[test]
fn more_slots_later_start_no_chunk_twice() {
    let shared =
        Shared::set_up("shared-export-more", "more", (600, 20, Duration::from_millis(500)), 1, |config| config.set("concurrency", 2));
    let mut alone = shared.start("a");
    util::wait_for(
        "a third of the events, by the one slot",
        DEADLINE,
        || ids(&shared.logstash.events()).len() >= 200,
        || shared.report(&alone),
    );
    stop_cleanly(&shared.sandbox, [&mut alone]);
    let before = ids(&shared.logstash.events()).len();
    assert!(before < 600, "stopped mid-export ({before} of 600 arrived)");
    // What slot 0 committed: the chunks it finished, and where it is in the others.
    let position = shared.server.sql(shared.database, &format!("SELECT position FROM cursors WHERE source = '{CURSOR}'"));
    let position: serde_json::Value = serde_json::from_str(position.trim()).expect("slot 0's cursor is JSON");
    let date = &position["audit"]["dates"][0];
    let done: BTreeSet<String> =
        date["done"].as_array().expect("done chunks").iter().filter_map(|c| c.as_str().map(String::from)).collect();
    let partial: BTreeMap<String, String> = serde_json::from_value(date["partial"].clone()).unwrap_or_default();
    assert!(!done.is_empty(), "slot 0 finished chunks before it stopped: {position}");
    let asked_before = shared.requests().len();

    let three = |config: Config| config.set("leadership.slots", util::count(3));
    let mut instances = [shared.start_with("a", three), shared.start_with("b", three), shared.start_with("c", three)];
    shared.wait_for_holders(3, &instances[0]);
    shared.wait_delivered(600, &instances[0]);
    let got = ids(&shared.logstash.events());
    let twice: Vec<_> = got.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "no event twice across the change of slots: {twice:?}{}", shared.report(&instances[0]));
    // After the change: no finished chunk is asked for again, and a partial
    // one only from where slot 0 was, by slot 0's holder alone.
    let slot_zero = format!("ferry-{}", shared.leases()["active"].0);
    for request in &shared.requests()[asked_before..] {
        assert!(
            !done.contains(&request.chunk),
            "{} was finished before, yet asked for again{}",
            request.chunk,
            shared.report(&instances[0])
        );
        if let Some(cursor) = partial.get(&request.chunk) {
            assert_eq!(
                (&request.cursor, caller(request)),
                (cursor, slot_zero.clone()),
                "{} resumed by slot 0 from its cursor",
                request.chunk
            );
        }
    }
    util::wait_for(
        "the three slots' cursor rows",
        DEADLINE,
        || shared.slot_cursor_rows() == slot_cursors(3),
        || format!("cursor rows: {:?}{}", shared.slot_cursor_rows(), shared.report(&instances[0])),
    );
    let [one, two, three] = &mut instances;
    stop_cleanly(&shared.sandbox, [one, two, three]);
}

/// `ferry check` and `ferry start` with `slots` above one where they cannot
/// work: each fails with one line naming `leadership.slots`. The same slots
/// on PostgreSQL with the export engine check ok.
#[test]
fn slots_above_one_need_postgres_and_the_export_engine() {
    let shared = Shared::set_up("shared-export-config", "config", (20, 10, Duration::ZERO), 2, |config| config);
    let with_password = |mut command: Command| {
        command.env("FERRY_STORAGE_PASSWORD", shared.server.password());
        command
    };
    let good = shared.sandbox.run_command(with_password(shared.sandbox.command(&["check"])));
    good.assert_success(&shared.sandbox);

    for (case, config) in [
        ("a SQLite storage folder", shared.base.clone().set("storage", "storage")),
        ("the legacy engine", shared.base.clone().set("teleport.engine", "legacy")),
    ] {
        shared.sandbox.set_config(&config.text());
        for subcommand in ["check", "start"] {
            let run = shared.sandbox.run_command(with_password(shared.sandbox.command(&[subcommand])));
            let message = run.one_line_error(&shared.sandbox);
            assert!(
                message.contains("leadership.slots"),
                "`ferry {subcommand}` with slots = 2 and {case} names `leadership.slots`: {message}{}",
                shared.sandbox.report(Some(&run))
            );
        }
    }
    assert!(shared.logstash.events().is_empty(), "nothing was exported");
    assert!(shared.cluster.standin.export_requests().is_empty(), "no chunk was read");
}
