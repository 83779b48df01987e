//! A receiver that misbehaves cannot stall delivery.
//!
//! A 503 asking for `Retry-After: 86400` is obeyed only up to the sink's
//! `max-retry-after`; a 2xx whose body never ends acknowledges its events
//! once (ferry stops reading the body), and the cursor moves past them.

use crate::util::{self, Config, IN, Sandbox};
use ferry_standin::logstash::{Fault, LogstashStandIn};
use ferry_standin::pki::PkiFiles;
use std::time::{Duration, Instant};

/// A job over the fixtures (to their end, one batch) into one Logstash sink;
/// `extra` adds a sink setting (key and value).
fn config(url: &str, pki: &PkiFiles, (key, value): (&str, &str)) -> String {
    Config::logstash_job(false, url, &pki.ca, &pki.client_cert, &pki.client_key)
        .pipeline(256, "20ms")
        .set("sinks.default.retry-initial", "50ms")
        .set("sinks.default.retry-max", "200ms")
        .set(&format!("sinks.default.{key}"), value)
        .text()
}

struct Setup {
    _runtime: tokio::runtime::Runtime,
    standin: LogstashStandIn,
    sandbox: Sandbox,
    fixtures: Vec<util::FixtureEvent>,
}

fn setup(name: &str, extra: (&str, &str), faults: Vec<Fault>) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let standin = runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    standin.inject(faults);
    let fixtures = util::fixtures();
    let sandbox = Sandbox::new(name, "");
    sandbox.write(IN, util::jsonl(&fixtures).as_bytes());
    let files = standin.pki.write(&sandbox.path("pki")).expect("certificates written");
    sandbox.set_config(&config(&standin.url(), &files, extra));
    Setup { _runtime: runtime, standin, sandbox, fixtures }
}

/// How many times each fixture arrived, and the largest count.
fn arrivals(setup: &Setup) -> (usize, usize) {
    let received = setup.standin.events();
    let counts: Vec<usize> = setup.fixtures.iter().map(|f| received.iter().filter(|r| **r == f.value).count()).collect();
    (counts.iter().filter(|&&c| c > 0).count(), counts.into_iter().max().unwrap_or(0))
}

#[test]
fn a_retry_after_of_a_day_is_capped_by_max_retry_after() {
    let setup = setup("sink-retry-after-day", ("max-retry-after", "1s"), vec![Fault::Unavailable(86_400)]);
    let sandbox = &setup.sandbox;
    let started = Instant::now();
    let mut running = sandbox.spawn_start();
    let output = running.wait(sandbox, Duration::from_secs(20));
    let took = started.elapsed();
    output.assert_success(sandbox);
    let (arrived, most) = arrivals(&setup);
    assert_eq!(arrived, setup.fixtures.len(), "every event arrived\n{}", sandbox.report(Some(&output)));
    assert_eq!(most, 1, "no event arrived twice\n{}", sandbox.report(Some(&output)));
    assert!(setup.standin.requests().iter().any(|r| r.status == 503), "Logstash answered 503 first\n{}", sandbox.report(Some(&output)));
    assert!(output.stderr.contains("retry_in=1s"), "the day asked for was cut to max-retry-after\n{}", sandbox.report(Some(&output)));
    assert!(took < Duration::from_secs(10), "delivery took {took:?}\n{}", sandbox.report(Some(&output)));
}

#[test]
fn a_2xx_whose_body_never_ends_acknowledges_its_events_once_and_the_cursor_moves() {
    // With a 5 s response timeout, a body read to its end would time out and
    // the request be sent again, for ever.
    let setup = setup("sink-endless-body", ("timeout", "5s"), vec![Fault::EndlessBody]);
    let sandbox = &setup.sandbox;
    let mut running = sandbox.spawn_start();
    let output = running.wait(sandbox, Duration::from_secs(30));
    output.assert_success(sandbox);
    let (arrived, most) = arrivals(&setup);
    assert_eq!(arrived, setup.fixtures.len(), "every event arrived\n{}", sandbox.report(Some(&output)));
    assert_eq!(most, 1, "no event was sent again\n{}", sandbox.report(Some(&output)));
    assert_eq!(setup.standin.requests().len(), 1, "one request, acknowledged\n{}", sandbox.report(Some(&output)));
    assert!(!output.stderr.contains("Delivery failed"), "nothing was retried\n{}", sandbox.report(Some(&output)));

    // The cursor moved past the events: a second run sends nothing.
    let again = sandbox.run("start");
    again.assert_success(sandbox);
    assert_eq!(setup.standin.event_count(), setup.fixtures.len(), "the second run sent nothing again\n{}", sandbox.report(Some(&again)));
}
