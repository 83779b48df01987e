//! What an operator watches: `/metrics` counts exactly what the receiver
//! got (and what plugins dropped or dead-lettered), `/readyz` follows the
//! sink, `/healthz` answers, `--log-format json` keeps every stderr line
//! JSON, and a taken port stops `ferry start` with one line.

use crate::util::{self, Config, FixtureEvent, HttpAnswer, IN, Plugin, Sandbox, http_get, served_addr, wait_for};
use ferry_standin::logstash::{Chaos, LogstashStandIn};
use std::time::Duration;

/// The value of the series `series` (name and labels, as rendered) in a
/// `/metrics` body; 0 when it is not there.
fn value(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// `n` events `ev-0`… of type `app.check`, every fifth of type `noise`
/// instead; `ev-37` carries the marker `hostile`'s `poison` mode traps on.
fn events(n: usize) -> Vec<FixtureEvent> {
    (0..n)
        .map(|i| {
            let kind = if i % 5 == 0 { "noise" } else { "app.check" };
            let note = if i == 37 { "hostile-poison" } else { "fine" };
            FixtureEvent::new(&format!(r#"{{"event":"{kind}","uid":"ev-{i}","time":"2026-11-30T10:00:00Z","note":"{note}"}}"#))
        })
        .collect()
}

struct Setup {
    _runtime: tokio::runtime::Runtime,
    standin: LogstashStandIn,
    sandbox: Sandbox,
}

/// A following job over `events` into the Logstash stand-in, through the
/// filter plugin (drops `noise`) and `hostile` in `poison` mode as `taster`.
fn setup(name: &str, events: &[FixtureEvent]) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let standin = runtime.block_on(LogstashStandIn::start(None)).expect("the stand-in Logstash starts");
    let sandbox = Sandbox::new(name, "");
    sandbox.write(IN, util::jsonl(events).as_bytes());
    let pki = standin.pki.write(&sandbox.path("pki")).expect("certificates written");
    let config = Config::logstash_job(true, &standin.url(), &pki.ca, &pki.client_cert, &pki.client_key)
        .pipeline(16, "20ms")
        .set("sinks.default.retry-initial", "50ms")
        .set("sinks.default.retry-max", "200ms")
        .plugin(Plugin::built("filter").set("config.exclude", util::toml_value(r#"[{ type = "noise" }]"#)))
        .plugin(Plugin::built("hostile").set("name", "taster").set("config.mode", "poison"));
    sandbox.set_config(&config.text());
    Setup { _runtime: runtime, standin, sandbox }
}

#[test]
fn metrics_count_what_logstash_received_dropped_and_dead_lettered() {
    let events = events(60);
    let setup = setup("observe_metrics", &events);
    let sandbox = &setup.sandbox;
    let running = sandbox.spawn_command(sandbox.command(&["start", "--http-addr", "127.0.0.1:0", "--progress-every", "200ms"]));
    let addr = served_addr(&running, sandbox);
    // 12 of type noise dropped, ev-37 dead-lettered.
    let expected = 60 - 12 - 1;
    let report = || format!("{}\nreceived {}", sandbox.report(Some(&running.snapshot())), setup.standin.event_count());
    wait_for("Logstash to receive every kept event", Duration::from_secs(30), || setup.standin.event_count() >= expected, report);
    let mut metrics = String::new();
    wait_for(
        "the dead letter to be counted",
        Duration::from_secs(10),
        || {
            metrics = http_get(&addr, "/metrics").map(|answer| answer.body).unwrap_or_default();
            value(&metrics, "ferry_events_dead_lettered_total{stage=\"plugin\",component=\"taster\"}") == 1
                && value(&metrics, "ferry_sink_events_sent_total{sink=\"default\"}") as usize >= expected
        },
        report,
    );
    let received = setup.standin.event_count();
    assert_eq!(received, expected, "{}", report());
    assert_eq!(value(&metrics, "ferry_sink_events_sent_total{sink=\"default\"}") as usize, received, "{metrics}");
    assert_eq!(value(&metrics, "ferry_sink_events_failed_total{sink=\"default\"}"), 0, "{metrics}");
    assert_eq!(value(&metrics, "ferry_events_received_total"), 60, "{metrics}");
    assert_eq!(value(&metrics, "ferry_plugin_events_in_total{plugin=\"filter\"}"), 60, "{metrics}");
    assert_eq!(value(&metrics, "ferry_plugin_events_out_total{plugin=\"filter\"}"), 48, "{metrics}");
    assert_eq!(value(&metrics, "ferry_plugin_events_dropped_total{plugin=\"filter\"}"), 12, "{metrics}");
    assert_eq!(value(&metrics, "ferry_plugin_events_out_total{plugin=\"taster\"}"), 47, "{metrics}");
    assert!(value(&metrics, "ferry_plugin_failures_total{plugin=\"taster\"}") >= 1, "{metrics}");
    assert!(value(&metrics, "ferry_sink_request_seconds_count{sink=\"default\"}") >= 1, "{metrics}");
    assert!(value(&metrics, "ferry_plugin_call_seconds_count{plugin=\"filter\"}") >= 1, "{metrics}");
    assert!(metrics.contains("\nferry_lag_seconds "), "{metrics}");
    assert_eq!(value(&metrics, "ferry_newest_delivered_event_timestamp_seconds"), 1_796_032_800, "{metrics}");

    let HttpAnswer { status, content_type, .. } = http_get(&addr, "/metrics").expect("an answer");
    assert_eq!((status, content_type.as_str()), (200, "application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert_eq!(http_get(&addr, "/healthz").map(|answer| (answer.status, answer.body)), Some((200, "ok\n".to_owned())));
    assert_eq!(http_get(&addr, "/readyz").map(|answer| (answer.status, answer.body)), Some((200, "ok\n".to_owned())));
    // Not a terminal: progress comes as log lines.
    wait_for("a progress line", Duration::from_secs(10), || running.stderr().contains("read=60"), report);
    running.terminate();
}

#[test]
fn readyz_fails_while_the_sink_refuses_and_recovers() {
    let events = events(20);
    let setup = setup("observe_readyz", &events);
    let sandbox = &setup.sandbox;
    setup.standin.set_chaos(Some(Chaos { rate: 1.0, seed: 7 }));
    let running = sandbox.spawn_command(sandbox.command(&["start", "--http-addr", "127.0.0.1:0"]));
    let addr = served_addr(&running, sandbox);
    let report = || sandbox.report(Some(&running.snapshot()));
    let mut answer = None;
    wait_for(
        "/readyz to say the sink is down",
        Duration::from_secs(20),
        || {
            answer = http_get(&addr, "/readyz");
            // Until the plugins are compiled it says the pipeline is not running.
            answer.as_ref().is_some_and(|answer| answer.status == 503 && answer.body.contains("sink"))
        },
        report,
    );
    let body = answer.map(|answer| answer.body).unwrap_or_default();
    assert!(body.starts_with("sink `default` unreachable: ") && body.lines().count() == 1, "{body}");
    assert_eq!(http_get(&addr, "/healthz").map(|answer| answer.status), Some(200), "a sink outage is not a reason to restart ferry");

    setup.standin.set_chaos(None);
    wait_for(
        "/readyz to recover",
        Duration::from_secs(20),
        || http_get(&addr, "/readyz").is_some_and(|answer| answer.status == 200),
        report,
    );
    wait_for("the events to arrive", Duration::from_secs(20), || setup.standin.event_count() >= 15, report);
    running.terminate();
}

#[test]
fn log_format_json_makes_every_stderr_line_a_json_object() {
    let sandbox = Sandbox::new("observe_json_logs", &Config::file_job(false).text());
    sandbox.write(IN, util::jsonl(&util::fixtures()).as_bytes());
    let output = sandbox.run_command(sandbox.command(&["--log-format", "json", "start"]));
    output.assert_success(&sandbox);
    let lines = output.stderr_lines();
    assert!(lines.len() >= 2, "{}", sandbox.report(Some(&output)));
    for line in lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}\n{}", sandbox.report(Some(&output))));
        assert!(object["level"].is_string() && object["message"].is_string(), "{line}");
    }

    // From the config too, to the last line: an error stays JSON.
    sandbox.set_config(&Config::file_job(false).set("log-format", "json").set("http-addr", "9090").text());
    let output = sandbox.run("start");
    assert!(!output.success(), "{}", sandbox.report(Some(&output)));
    let lines = output.stderr_lines();
    assert_eq!(lines.len(), 1, "{}", sandbox.report(Some(&output)));
    let object: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_else(|err| panic!("not JSON ({err}): {}", lines[0]));
    assert_eq!(object["level"], "ERROR", "{}", lines[0]);
    assert!(
        object["error"].as_str().is_some_and(|error| error.contains("http-addr in ") && error.contains("expected HOST:PORT")),
        "{}",
        lines[0]
    );
}

#[test]
fn a_taken_port_fails_start_with_one_line_naming_the_flag() {
    let sandbox = Sandbox::new("observe_taken_port", &Config::file_job(true).text());
    sandbox.write(IN, b"");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = taken.local_addr().expect("an address").to_string();
    let output = sandbox.run_command(sandbox.command(&["start", "--http-addr", &addr]));
    let error = output.one_line_error(&sandbox);
    assert!(error.starts_with(&format!("cannot serve HTTP on --http-addr = \"{addr}\": ")), "{error}");
}
