//! What a receiver's status means for the events (issue 20, item 3).
//!
//! A proxy in front of Logstash that answers 403 for a while (a wrong client
//! certificate, an expired token, a moved path) says the *request* cannot be
//! taken: ferry retries, `/readyz` names the sink, one ERROR line a minute
//! says why, and every event arrives once the proxy recovers, none of them
//! dead-lettered. Only a status about the *events* (422 here) dead-letters
//! them; `retry-statuses` and `dead-letter-statuses` move a status per sink,
//! and a status in both is a config error naming the key and the file.

use crate::util::{self, Config, FixtureEvent, IN, Sandbox, http_get, served_addr, wait_for};
use ferry_standin::logstash::{Fault, LogstashStandIn};
use std::time::Duration;

/// nginx's own 403 page, as a `deny` rule answers.
const NGINX_403: &str = "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// 300 events `ev-0`…, as in the probe that found the defect.
fn events() -> Vec<FixtureEvent> {
    (0..300)
        .map(|i| FixtureEvent::new(&format!(r#"{{"event":"app.check","uid":"ev-{i}","time":"2026-11-30T10:00:00Z","n":{i}}}"#)))
        .collect()
}

struct Setup {
    _runtime: tokio::runtime::Runtime,
    standin: LogstashStandIn,
    sandbox: Sandbox,
    events: Vec<FixtureEvent>,
}

/// The events into one Logstash sink, in batches of 50, retrying quickly;
/// `extra` adds sink settings (key, TOML value).
fn setup(name: &str, follow: bool, extra: &[(&str, toml::Value)]) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let standin = runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let events = events();
    let sandbox = Sandbox::new(name, "");
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let pki = standin.pki.write(&sandbox.path("pki")).expect("certificates written");
    let mut config = Config::logstash_job(follow, &standin.url(), &pki.ca, &pki.client_cert, &pki.client_key)
        .pipeline(50, "20ms")
        .set("sinks.default.retry-initial", "50ms")
        .set("sinks.default.retry-max", "200ms");
    for (key, value) in extra {
        config = config.set(&format!("sinks.default.{key}"), value.clone());
    }
    sandbox.set_config(&config.text());
    Setup { _runtime: runtime, standin, sandbox, events }
}

/// How many times each event arrived, by `uid`.
fn arrivals(setup: &Setup) -> Vec<usize> {
    let received = setup.standin.events();
    setup.events.iter().map(|event| received.iter().filter(|r| **r == event.value).count()).collect()
}

fn statuses(list: &[i64]) -> toml::Value {
    toml::Value::Array(list.iter().map(|&s| toml::Value::Integer(s)).collect())
}

/// The stderr lines at ERROR level that mention `text`.
fn errors_with(stderr: &str, text: &str) -> Vec<String> {
    stderr.lines().filter(|line| line.contains("ERROR") && line.contains(text)).map(str::to_owned).collect()
}

#[test]
fn a_proxy_answering_403_for_a_while_holds_delivery_and_nothing_is_dead_lettered() {
    let setup = setup("sink-status-403-spell", true, &[]);
    let sandbox = &setup.sandbox;
    setup.standin.refuse_for(403, NGINX_403, Duration::from_secs(3600));
    let mut running = sandbox.spawn_command(sandbox.command(&["start", "--http-addr", "127.0.0.1:0"]));
    let addr = served_addr(&running, sandbox);
    let report = || format!("{}\nreceived {} events", sandbox.report(Some(&running.snapshot())), setup.standin.event_count());

    let mut ready = None;
    wait_for(
        "/readyz to name the refusing sink",
        Duration::from_secs(30),
        || {
            ready = http_get(&addr, "/readyz");
            ready.as_ref().is_some_and(|answer| answer.status == 503 && answer.body.contains("sink `default`"))
        },
        report,
    );
    let body = ready.map(|answer| answer.body).unwrap_or_default();
    assert!(body.contains("403") && body.lines().count() == 1 && !body.contains('<'), "{body}");
    let refused = || setup.standin.requests().iter().filter(|r| r.status == 403).count();
    wait_for("ferry to try again and again", Duration::from_secs(30), || refused() >= 15, report);
    assert_eq!(setup.standin.event_count(), 0, "nothing got past the proxy{}", report());

    let errors = errors_with(&running.stderr(), "403");
    assert_eq!(errors.len(), 1, "one ERROR line for {} refusals, not one per request: {errors:#?}{}", refused(), report());
    eprintln!("the ERROR line: {}", errors[0]);
    assert!(errors[0].contains("403 Forbidden") && errors[0].contains("nginx") && !errors[0].contains('<'), "{}", errors[0]);

    setup.standin.stop_refusing();
    wait_for("every event to arrive", Duration::from_secs(30), || setup.standin.event_count() >= setup.events.len(), report);
    wait_for(
        "/readyz to recover",
        Duration::from_secs(20),
        || http_get(&addr, "/readyz").is_some_and(|answer| answer.status == 200),
        report,
    );
    running.terminate();
    let output = running.wait(sandbox, Duration::from_secs(30));
    output.assert_success(sandbox);

    let counts = arrivals(&setup);
    assert!(counts.iter().all(|&c| c == 1), "every event arrived exactly once: {counts:?}\n{}", sandbox.report(Some(&output)));
    let letters = sandbox.dead_letters();
    assert!(letters.is_empty(), "nothing dead-lettered: {letters:#?}\n{}", sandbox.report(Some(&output)));
    assert_eq!(errors_with(&output.stderr, "403").len(), 1, "still one ERROR line{}", sandbox.report(Some(&output)));
}

#[test]
fn a_400_with_nginx_s_client_certificate_page_is_retried_not_dead_lettered() {
    let setup = setup("sink-status-nginx-400", false, &[]);
    let sandbox = &setup.sandbox;
    let page = "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    setup.standin.inject((0..4).map(|_| Fault::Answer(400, page.to_owned())));
    let output = sandbox.spawn_start().wait(sandbox, Duration::from_secs(60));
    output.assert_success(sandbox);
    let counts = arrivals(&setup);
    assert!(counts.iter().all(|&c| c == 1), "every event arrived exactly once: {counts:?}\n{}", sandbox.report(Some(&output)));
    assert!(sandbox.dead_letters().is_empty(), "nothing dead-lettered{}", sandbox.report(Some(&output)));
    let errors = errors_with(&output.stderr, "No required SSL certificate was sent");
    assert_eq!(errors.len(), 1, "one ERROR line quotes nginx: {errors:#?}{}", sandbox.report(Some(&output)));
}

#[test]
fn a_422_dead_letters_that_requests_events_and_nothing_else() {
    let setup = setup("sink-status-422", false, &[]);
    let sandbox = &setup.sandbox;
    setup.standin.inject([Fault::Answer(422, "field [n] cannot be indexed".into())]);
    let output = sandbox.spawn_start().wait(sandbox, Duration::from_secs(60));
    output.assert_success(sandbox);
    let letters = sandbox.dead_letters();
    assert_eq!(letters.len(), 50, "the refused request's batch{}", sandbox.report(Some(&output)));
    assert!(
        letters.iter().all(|l| l["reason"].as_str().is_some_and(|r| r.contains("HTTP 422") && r.contains("cannot be indexed"))),
        "{letters:#?}"
    );
    let counts = arrivals(&setup);
    assert_eq!(counts.iter().filter(|&&c| c == 1).count(), 250, "the rest arrived once: {counts:?}");
    assert!(counts.iter().all(|&c| c <= 1), "{counts:?}");
}

#[test]
fn a_sink_can_retry_a_422_or_dead_letter_a_403() {
    let retried = setup("sink-status-retry-422", false, &[("retry-statuses", statuses(&[422]))]);
    retried.standin.inject((0..3).map(|_| Fault::Status(422)));
    let output = retried.sandbox.spawn_start().wait(&retried.sandbox, Duration::from_secs(60));
    output.assert_success(&retried.sandbox);
    let counts = arrivals(&retried);
    assert!(counts.iter().all(|&c| c == 1), "every event arrived exactly once: {counts:?}\n{}", retried.sandbox.report(Some(&output)));
    assert!(retried.sandbox.dead_letters().is_empty(), "nothing dead-lettered{}", retried.sandbox.report(Some(&output)));

    let dead = setup("sink-status-dead-letter-403", false, &[("dead-letter-statuses", statuses(&[403]))]);
    dead.standin.refuse_for(403, "token expired", Duration::from_secs(3600));
    let output = dead.sandbox.spawn_start().wait(&dead.sandbox, Duration::from_secs(60));
    output.assert_success(&dead.sandbox);
    let letters = dead.sandbox.dead_letters();
    assert_eq!(letters.len(), 300, "a 403 dead-letters as configured{}", dead.sandbox.report(Some(&output)));
    assert!(letters.iter().all(|l| l["reason"].as_str().is_some_and(|r| r.contains("HTTP 403"))), "{:#?}", letters[0]);
}

#[test]
fn a_status_in_both_lists_is_a_config_error_naming_key_and_file() {
    let setup = setup(
        "sink-status-both-lists",
        false,
        &[("retry-statuses", statuses(&[400, 409])), ("dead-letter-statuses", statuses(&[409, 422]))],
    );
    let sandbox = &setup.sandbox;
    let error = sandbox.run("check").one_line_error(sandbox);
    assert!(error.contains("ferry.toml") && error.contains("sinks.default.dead-letter-statuses") && error.contains("409"), "{error}");
}
