//! The torture test: ferry reads a few thousand events (each with its own
//! uid) and delivers them in small batches to the stand-in Logstash, which
//! fails a tenth of all requests at random (500, 503, 429 with
//! `Retry-After: 1`, reset connections, acknowledgements lost after the
//! events were stored), while the test kills ferry with SIGKILL at random
//! instants and starts it again, at least 20 times. Afterwards every event
//! has arrived, the duplicates stay within what the kills and the lost
//! acknowledgements can explain, and SQLite finds the state database intact.
//!
//! The second test shows that this can fail: with
//! `FERRY_TEST_COMMIT_BEFORE_ACK=1` ferry commits its cursor before the
//! sink acknowledges, and the same torture must then find events missing.
//!
//! Everything random comes from one seed (`FERRY_TORTURE_SEED`, default
//! [`SEED`]) printed in every failure, so a failure can be replayed (as far
//! as the machine's timing repeats).

use crate::util::{self, Config, DEADLINE, IN, Output, Running, Sandbox};
use ferry_standin::logstash::{Chaos, ChaosCount, LogstashStandIn};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The seed when `FERRY_TORTURE_SEED` is not set.
const SEED: u64 = 0x5EED_F022;
/// Events per batch and per request.
const BATCH: usize = 10;
/// Batches between the source and the committed cursor.
const IN_FLIGHT: usize = 4;
/// SIGKILLs per run.
const KILLS: usize = 22;
/// Copies of the 183 fixtures, each copy with its own uids.
const COPIES: usize = 30;
/// Share of requests the stand-in fails.
const FAILURE_RATE: f64 = 0.10;

fn seed() -> u64 {
    std::env::var("FERRY_TORTURE_SEED").ok().and_then(|text| text.parse().ok()).unwrap_or(SEED)
}

/// The fixtures repeated with a suffix on every uid (and a uid given to the
/// events that have none), so that every line has its own uid.
fn unique_events() -> Vec<(String, String)> {
    let fixtures = util::fixtures();
    let mut events = Vec::new();
    for copy in 0..COPIES {
        for (line, event) in fixtures.iter().enumerate() {
            let mut value = event.value.clone();
            let base = value.get("uid").and_then(Value::as_str).map_or_else(|| format!("no-uid-{line}"), str::to_owned);
            let uid = format!("{base}-torture{copy}");
            value["uid"] = Value::from(uid.clone());
            events.push((uid, format!("{value}\n")));
        }
    }
    events
}

fn config(logstash: &LogstashStandIn, pki: &ferry_standin::pki::PkiFiles) -> String {
    Config::logstash_job(false, &logstash.url(), &pki.ca, &pki.client_cert, &pki.client_key)
        .pipeline(BATCH, "10ms")
        .set("pipeline.batches-in-flight", util::count(IN_FLIGHT))
        .set("sinks.default.timeout", "10s")
        .set("sinks.default.retry-initial", "20ms")
        .set("sinks.default.retry-max", "200ms")
        .text()
}

/// What one torture run found.
struct Outcome {
    /// Uids written but never received.
    missing: Vec<String>,
    /// Deliveries beyond the first of each uid.
    duplicates: usize,
    /// The most duplicates the kills and lost acknowledgements explain.
    bound: usize,
    /// `PRAGMA integrity_check` right after the last kill, and at the end.
    integrity: [String; 2],
    /// Kills done.
    kills: usize,
    /// Events received (duplicates included) before the last run.
    before_last_run: usize,
    /// What the stand-in's random faults did.
    faults: ChaosCount,
    /// Seed, counts and timings, and the last run's report, for failures.
    report: String,
}

/// Kills ferry `KILLS` times while it delivers to a stand-in failing 10 %
/// of requests, then lets one run finish, and sees what arrived.
/// `commit_before_ack` sets the test-only switch that breaks ferry on purpose.
fn torture(name: &str, commit_before_ack: bool) -> Outcome {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let logstash = runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    logstash.set_chaos(Some(Chaos { rate: FAILURE_RATE, seed }));
    let sandbox = Sandbox::new(name, "");
    let pki = logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
    sandbox.set_config(&config(&logstash, &pki));
    let events = unique_events();
    sandbox.write(IN, events.iter().map(|(_, line)| line.as_str()).collect::<String>().as_bytes());
    let start = || {
        let mut command = sandbox.command(&["start"]);
        if commit_before_ack {
            command.env("FERRY_TEST_COMMIT_BEFORE_ACK", "1");
        }
        command.env("FERRY_LOG", "warn");
        sandbox.spawn_command(command)
    };
    let context = |running: Option<&Output>, kills: usize| {
        format!(
            "\ntorture seed {seed} (replay: FERRY_TORTURE_SEED={seed}), {kills} kills, {} events received, faults {:?}, {:.1?} in{}",
            logstash.event_count(),
            logstash.chaos_count(),
            started.elapsed(),
            sandbox.report(running)
        )
    };

    let mut kills = 0;
    while kills < KILLS {
        let mut ferry: Running = start();
        // Half the kills at a random instant after the start (perhaps while
        // ferry opens its database), half once a random number of events
        // more has arrived (in the middle of deliveries). Either way a run
        // gets at most a few windows of events, so that on a fast machine
        // too every kill comes before the end of the input.
        if rng.bool() {
            let deadline = Instant::now() + Duration::from_millis(rng.u64(0..300));
            let most = logstash.event_count() + 3 * BATCH * IN_FLIGHT;
            // The random instant is the point: this waits out the time, not
            // a result (cut short if the events or ferry's exit come first).
            while Instant::now() < deadline && logstash.event_count() < most && !ferry.has_exited() {
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            // `util::wait_for`, by hand: the condition needs ferry mutably.
            let target = logstash.event_count() + rng.usize(1..=BATCH * IN_FLIGHT);
            let deadline = Instant::now() + DEADLINE;
            while logstash.event_count() < target && !ferry.has_exited() {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {target} events before the next kill{}",
                    context(Some(&ferry.snapshot()), kills)
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if ferry.has_exited() {
            // It stopped before this kill: at the end of its input (give it
            // more events) or on an error.
            let output = ferry.wait(&sandbox, DEADLINE);
            panic!("ferry exited by itself after {kills} kills{}", context(Some(&output), kills));
        }
        ferry.kill(&sandbox);
        kills += 1;
    }
    let after_kills = runtime.block_on(integrity_check(&sandbox));
    let before_last_run = logstash.event_count();

    // One last run, to the end of the input.
    let mut ferry = start();
    let output = ferry.wait(&sandbox, DEADLINE);
    let report = context(Some(&output), kills);
    assert!(output.success(), "the last run should reach the end of the input and exit 0{report}");
    let at_end = runtime.block_on(integrity_check(&sandbox));

    let received: Vec<String> = logstash
        .events()
        .iter()
        .map(|event| {
            event
                .get("uid")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("an event without a uid arrived: {event}{report}"))
        })
        .collect();
    let counts = util::tally(received.iter().map(String::as_str));
    let wanted: BTreeSet<&str> = events.iter().map(|(uid, _)| uid.as_str()).collect();
    let unknown: Vec<&&str> = counts.keys().filter(|uid| !wanted.contains(**uid)).take(10).collect();
    assert!(unknown.is_empty(), "uids arrived that were never written: {unknown:?}{report}");
    let missing: Vec<String> = wanted.iter().filter(|uid| !counts.contains_key(**uid)).map(|uid| (*uid).to_owned()).collect();
    let faults = logstash.chaos_count();
    let lost_ack_events = usize::try_from(faults.lost_ack_events).unwrap_or(usize::MAX);
    Outcome {
        missing,
        duplicates: received.len() - counts.len(),
        bound: kills * IN_FLIGHT * BATCH + lost_ack_events,
        integrity: [after_kills, at_end],
        kills,
        before_last_run,
        faults,
        report,
    }
}

/// `PRAGMA integrity_check` on the state database, opened as ferry opens it
/// (so a write-ahead log left by a kill is recovered first); every line it
/// printed, joined.
async fn integrity_check(sandbox: &Sandbox) -> String {
    use sqlx::Connection as _;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(sandbox.path("storage/ferry.db")).create_if_missing(false);
    let mut connection =
        sqlx::SqliteConnection::connect_with(&options).await.unwrap_or_else(|err| panic!("cannot open the state database: {err}"));
    let lines: Vec<String> = sqlx::query_scalar::<sqlx::Sqlite, String>("PRAGMA integrity_check")
        .fetch_all(&mut connection)
        .await
        .unwrap_or_else(|err| panic!("integrity_check failed to run: {err}"));
    let _ = connection.close().await;
    lines.join("; ")
}

#[test]
fn killed_22_times_against_a_failing_logstash_nothing_is_lost() {
    let outcome = torture("torture", false);
    let report = &outcome.report;
    assert!(outcome.kills >= 20, "{report}");
    assert!(
        outcome.faults.statuses + outcome.faults.throttled + outcome.faults.resets + outcome.faults.lost_acks >= 10,
        "the stand-in failed too few requests to test anything{report}"
    );
    assert!(
        outcome.missing.is_empty(),
        "{} events never arrived, e.g. {:?}{report}",
        outcome.missing.len(),
        &outcome.missing[..outcome.missing.len().min(10)]
    );
    assert!(
        outcome.duplicates <= outcome.bound,
        "{} duplicates, more than {} kills × {IN_FLIGHT} batches in flight × {BATCH} events + {} events of lost acknowledgements = {}{report}",
        outcome.duplicates,
        outcome.kills,
        outcome.faults.lost_ack_events,
        outcome.bound
    );
    assert_eq!(outcome.integrity, ["ok".to_owned(), "ok".to_owned()], "PRAGMA integrity_check after the last kill and at the end{report}");
    eprintln!(
        "torture: {} kills ({} events received before the last run), faults {:?}, {} duplicates (bound {})",
        outcome.kills, outcome.before_last_run, outcome.faults, outcome.duplicates, outcome.bound
    );
}

/// Needs `FERRY_TEST_COMMIT_BEFORE_ACK` in ferry (added on another branch):
/// without it ferry loses nothing, and this test fails.
#[test]
fn committing_before_the_acknowledgement_is_caught_as_loss() {
    let outcome = torture("torture_commit_before_ack", true);
    assert!(
        !outcome.missing.is_empty(),
        "with the cursor committed before the acknowledgement, the torture should find events missing, but all arrived \
         ({} duplicates; does this ferry honour FERRY_TEST_COMMIT_BEFORE_ACK?){}",
        outcome.duplicates,
        outcome.report
    );
    eprintln!("torture with the cursor committed before the acknowledgement: {} events lost, as it should find", outcome.missing.len());
}
