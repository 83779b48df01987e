//! SIGTERM finishes within `shutdown-timeout` whatever the sink is doing,
//! and a second signal exits at once.
//!
//! With Logstash unreachable, ferry retries its deliveries; SIGTERM must
//! still end it within `shutdown-timeout` (systemd would SIGKILL it
//! otherwise), committing nothing that was not acknowledged, so that a
//! restart with Logstash up delivers every event. While ferry drains (a
//! stalled Logstash holding a request), a second SIGTERM ends it at once.

use crate::util::{self, Config, DEADLINE, FixtureEvent, IN, Sandbox};
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::pki::{Pki, PkiFiles};
use std::time::{Duration, Instant};

/// A job over the fixtures into one Logstash sink at `url`, in batches of 10
/// with 2 in flight (so that a stuck sink soon blocks the source too);
/// `follow` keeps reading past the end.
fn config(url: &str, pki: &PkiFiles, shutdown_timeout: &str, follow: bool) -> String {
    Config::logstash_job(follow, url, &pki.ca, &pki.client_cert, &pki.client_key)
        .pipeline(10, "20ms")
        .set("pipeline.batches-in-flight", 2)
        .set("pipeline.shutdown-timeout", shutdown_timeout)
        .set("sinks.default.retry-initial", "50ms")
        .set("sinks.default.retry-max", "200ms")
        .text()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

/// A URL where nothing listens: a port just freed.
fn unreachable_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    format!("https://localhost:{port}/")
}

/// Every fixture arrived at least once.
fn assert_every_fixture_arrived(fixtures: &[FixtureEvent], standin: &LogstashStandIn, sandbox: &Sandbox, output: &util::Output) {
    let received = standin.events();
    let missing: Vec<&str> = fixtures.iter().filter(|f| !received.contains(&f.value)).map(|f| f.id.as_str()).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never arrived (first: {:?})\n{}",
        missing.len(),
        fixtures.len(),
        missing.first(),
        sandbox.report(Some(output))
    );
}

#[test]
fn sigterm_with_logstash_down_exits_within_the_timeout_and_a_restart_delivers_everything() {
    let runtime = runtime();
    let fixtures = util::fixtures();
    let sandbox = Sandbox::new("shutdown-sink-down", "");
    sandbox.write(IN, util::jsonl(&fixtures).as_bytes());
    let pki = Pki::generate("logstash").expect("a PKI");
    let files = pki.write(&sandbox.path("pki")).expect("certificates written");
    sandbox.set_config(&config(&unreachable_url(), &files, "2s", true));

    let mut running = sandbox.spawn_start();
    util::wait_for(
        "failed deliveries",
        DEADLINE,
        || running.stderr_count("Delivery failed; retrying.") >= 3,
        || sandbox.report(Some(&running.snapshot())),
    );
    running.terminate();
    let signalled = Instant::now();
    let stopped = running.wait(&sandbox, Duration::from_secs(10));
    let took = signalled.elapsed();
    eprintln!("ferry stopped {took:?} after SIGTERM (shutdown-timeout 2s, Logstash down)");
    // 2 s of shutdown-timeout, and a little for the process to wind down.
    assert!(
        took < Duration::from_millis(3000),
        "ferry took {took:?} to stop after SIGTERM with shutdown-timeout = \"2s\"\n{}",
        sandbox.report(Some(&stopped))
    );
    stopped.assert_success(&sandbox);

    let standin = runtime.block_on(LogstashStandIn::start_with(pki, None)).expect("the stand-in Logstash starts");
    sandbox.set_config(&config(&standin.url(), &files, "2s", false));
    let restarted = sandbox.run("start");
    restarted.assert_success(&sandbox);
    assert_every_fixture_arrived(&fixtures, &standin, &sandbox, &restarted);
}

#[test]
fn a_second_sigterm_while_draining_exits_at_once() {
    let runtime = runtime();
    let fixtures = util::fixtures();
    let sandbox = Sandbox::new("shutdown-second-signal", "");
    sandbox.write(IN, util::jsonl(&fixtures).as_bytes());
    let standin = runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let files = standin.pki.write(&sandbox.path("pki")).expect("certificates written");
    sandbox.set_config(&config(&standin.url(), &files, "60s", true));
    // Logstash holds every request unanswered, so a drain would take the whole minute.
    standin.set_stalled(true);

    let mut running = sandbox.spawn_start();
    util::wait_for("a request held by Logstash", DEADLINE, || standin.held_requests() >= 1, || sandbox.report(Some(&running.snapshot())));
    running.terminate();
    util::wait_for(
        "the shutdown to begin",
        DEADLINE,
        || running.stderr_count("Shutting down") >= 1,
        || sandbox.report(Some(&running.snapshot())),
    );
    assert!(!running.has_exited(), "ferry drains while Logstash holds a request\n{}", sandbox.report(Some(&running.snapshot())));
    running.terminate();
    let signalled = Instant::now();
    let stopped = running.wait(&sandbox, Duration::from_secs(10));
    let took = signalled.elapsed();
    eprintln!("ferry exited {took:?} after the second SIGTERM");
    assert!(took < Duration::from_secs(1), "ferry took {took:?} to exit after a second SIGTERM\n{}", sandbox.report(Some(&stopped)));
    assert!(!stopped.success(), "an interrupted drain is not a success\n{}", sandbox.report(Some(&stopped)));
    assert!(stopped.stderr.contains("Second signal"), "ferry says why it exits at once\n{}", sandbox.report(Some(&stopped)));
    assert_eq!(stopped.status.and_then(|s| s.code()), Some(143), "exit status 128 + SIGTERM\n{}", sandbox.report(Some(&stopped)));
    standin.set_stalled(false);
}

#[test]
fn sigterm_while_logstash_holds_a_request_exits_at_the_timeout_and_a_restart_delivers_everything() {
    let runtime = runtime();
    let fixtures = util::fixtures();
    let sandbox = Sandbox::new("shutdown-held-request", "");
    sandbox.write(IN, util::jsonl(&fixtures).as_bytes());
    let standin = runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let files = standin.pki.write(&sandbox.path("pki")).expect("certificates written");
    sandbox.set_config(&config(&standin.url(), &files, "2s", true));
    // Logstash holds every request unanswered: an attempt is under way when SIGTERM comes.
    standin.set_stalled(true);

    let mut running = sandbox.spawn_start();
    util::wait_for("a request held by Logstash", DEADLINE, || standin.held_requests() >= 1, || sandbox.report(Some(&running.snapshot())));
    running.terminate();
    let signalled = Instant::now();
    let stopped = running.wait(&sandbox, Duration::from_secs(10));
    let took = signalled.elapsed();
    eprintln!("ferry stopped {took:?} after SIGTERM (shutdown-timeout 2s, a request held)");
    assert!(took >= Duration::from_millis(1400), "ferry waited for the request in flight ({took:?})\n{}", sandbox.report(Some(&stopped)));
    assert!(
        took < Duration::from_millis(3000),
        "ferry took {took:?} to stop with shutdown-timeout = \"2s\"\n{}",
        sandbox.report(Some(&stopped))
    );
    stopped.assert_success(&sandbox);
    assert!(
        stopped.stderr.contains("Shutdown deadline passed"),
        "ferry says it gave up on the batches in flight\n{}",
        sandbox.report(Some(&stopped))
    );

    standin.set_stalled(false);
    sandbox.set_config(&config(&standin.url(), &files, "2s", false));
    let restarted = sandbox.run("start");
    restarted.assert_success(&sandbox);
    assert_every_fixture_arrived(&fixtures, &standin, &sandbox, &restarted);
}

#[test]
fn the_test_only_commit_before_ack_switch_loses_events_and_says_so() {
    let runtime = runtime();
    let fixtures = util::fixtures();
    let sandbox = Sandbox::new("shutdown-commit-before-ack", "");
    sandbox.write(IN, util::jsonl(&fixtures).as_bytes());
    let pki = Pki::generate("logstash").expect("a PKI");
    let files = pki.write(&sandbox.path("pki")).expect("certificates written");
    sandbox.set_config(&config(&unreachable_url(), &files, "2s", true));

    let mut command = sandbox.command(&["start"]);
    command.env("FERRY_TEST_COMMIT_BEFORE_ACK", "1");
    let mut running = sandbox.spawn_command(command);
    util::wait_for(
        "failed deliveries",
        DEADLINE,
        || running.stderr_count("Delivery failed; retrying.") >= 5,
        || sandbox.report(Some(&running.snapshot())),
    );
    running.terminate();
    let stopped = running.wait(&sandbox, Duration::from_secs(10));
    let warned = stopped.stderr.lines().filter(|line| line.contains("WARN") && line.contains("Test-only switch on")).count();
    assert_eq!(warned, 1, "the switch is announced at WARN\n{}", sandbox.report(Some(&stopped)));

    // Without the switch, a restart with Logstash up cannot bring back what was committed unsent.
    let standin = runtime.block_on(LogstashStandIn::start_with(pki, None)).expect("the stand-in Logstash starts");
    sandbox.set_config(&config(&standin.url(), &files, "2s", false));
    let restarted = sandbox.run("start");
    restarted.assert_success(&sandbox);
    let received = standin.events();
    let missing = fixtures.iter().filter(|f| !received.contains(&f.value)).count();
    assert!(missing > 0, "committing before the acknowledgement lost nothing?\n{}", sandbox.report(Some(&restarted)));
}

/// SIGTERM while the plugins still compile (a large Python component takes
/// seconds): ferry stops within its shutdown timeout, not after the
/// compile, and has delivered nothing it could lose.
#[test]
fn sigterm_while_the_plugins_compile_stops_within_the_timeout() {
    let fixtures = util::fixtures();
    let config = util::plugins_dir_job(64).set("pipeline.shutdown-timeout", "2s").text();
    let sandbox = Sandbox::new("shutdown-compiling", &config);
    sandbox.write(IN, util::jsonl(&fixtures).as_bytes());
    let wasm = std::fs::read(util::plugin("tag")).expect("the tag plugin is built by ferry-test-plugins");
    sandbox.write("plugins/tag.wasm", &wasm);
    sandbox.write("plugins/tag.toml", b"[config]\ntags = { pipeline = \"ferry\" }\n");

    let mut running = sandbox.spawn_start();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!running.has_exited(), "ferry is still compiling the plugin{}", sandbox.report(Some(&running.snapshot())));
    running.terminate();
    let signalled = Instant::now();
    let stopped = running.wait(&sandbox, Duration::from_secs(60));
    let took = signalled.elapsed();
    eprintln!("ferry stopped {took:?} after SIGTERM while compiling (shutdown-timeout 2s)");
    assert!(took < Duration::from_secs(4), "ferry took {took:?} to stop after SIGTERM during start-up\n{}", sandbox.report(Some(&stopped)));
    assert_eq!(sandbox.out_count(), 0, "nothing delivered before the plugins ran{}", sandbox.report(Some(&stopped)));
}
