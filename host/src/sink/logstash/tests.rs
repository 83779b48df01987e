//! The HTTP sink against the stand-in Logstash, over real sockets and TLS.

use super::*;
use crate::standin::logstash::{Fault, LogstashStandIn};
use crate::tls::testpki::{Pki, PkiFiles};
use std::collections::HashMap;

const FIXTURES: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/teleport-events.jsonl"));

fn fixture_events() -> Vec<OutEvent> {
    FIXTURES
        .lines()
        .map(|line| {
            let event = crate::event::Event::from_json(line.as_bytes().to_vec()).expect("fixture parses");
            OutEvent { id: event.id, json: event.json }
        })
        .collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    sink: HttpSink,
    metrics: Arc<Metrics>,
}

/// An HTTP sink for `standin` using `pki` files; `extra` adds sink settings.
fn sink_for(standin: &LogstashStandIn, pki: &PkiFiles, extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[sinks.default]\ntype = \"logstash\"\nurl = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nretry-initial = \"10ms\"\nretry-max = \"50ms\"\n{extra}",
        standin.url(),
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let config = FerryConfig::parse(&text, &dir.path().join("ferry.toml")).expect("valid config");
    let crate::config::SinkConfig::Logstash(http) = &config.sinks["default"] else { unreachable!("configured as logstash") };
    let metrics = Arc::new(Metrics::default());
    let sink = HttpSink::build("default", http, &config, true, metrics.clone()).expect("sink builds");
    Setup { _dir: dir, sink, metrics }
}

async fn standin_and_files() -> (LogstashStandIn, tempfile::TempDir, PkiFiles) {
    let standin = LogstashStandIn::start(None).await.expect("stand-in starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = standin.pki.write(dir.path()).expect("pki files");
    (standin, dir, files)
}

/// Every event arrived exactly once and unchanged.
fn assert_all_once(standin: &LogstashStandIn, sent: &[OutEvent]) {
    let received = standin.events();
    assert_eq!(received.len(), sent.len(), "event count");
    let mut by_id: HashMap<String, serde_json::Value> = HashMap::new();
    for event in &sent[..] {
        let value: serde_json::Value = serde_json::from_slice(&event.json).expect("json");
        by_id.insert(event.id.clone(), value);
    }
    for event in received {
        let id = match event.get("uid").and_then(|v| v.as_str()) {
            Some(uid) => uid.to_owned(),
            None => by_id.iter().find(|(_, v)| **v == event).map(|(k, _)| k.clone()).expect("an event without uid matches one sent"),
        };
        let expected = by_id.remove(&id).unwrap_or_else(|| panic!("event {id} arrived twice or was never sent"));
        assert_eq!(event, expected, "event {id} changed on the way");
    }
    assert!(by_id.is_empty(), "never arrived: {:?}", by_id.keys().collect::<Vec<_>>());
}

#[tokio::test]
async fn fixtures_arrive_once_and_unchanged_in_every_body_format() {
    for (extra, content_type, min_requests) in [
        ("format = \"json-array\"\n", "application/json", 1),
        ("format = \"ndjson\"\n", "application/x-ndjson", 1),
        ("format = \"single\"\n", "application/json", 183),
        ("format = \"json-array\"\ngzip = true\n", "application/json", 1),
        ("format = \"json-array\"\nmax-batch-bytes = \"8KiB\"\n", "application/json", 8),
    ] {
        let (standin, _dir, files) = standin_and_files().await;
        let setup = sink_for(&standin, &files, extra);
        let events = fixture_events();
        let delivery = setup.sink.deliver(&events).await.expect("delivered");
        assert!(delivery.rejected.is_empty(), "{extra}: {:?}", delivery.rejected);
        assert_all_once(&standin, &events);
        let requests = standin.requests();
        assert!(requests.len() >= min_requests, "{extra}: {} requests", requests.len());
        assert!(requests.iter().all(|r| r.content_type == content_type && r.user_agent.is_none()), "{extra}: {requests:?}");
        if extra.contains("gzip") {
            assert!(requests.iter().all(|r| r.content_encoding == "gzip"));
        }
    }
}

#[tokio::test]
async fn busy_failing_and_resetting_receivers_are_retried_until_they_take_everything() {
    let (standin, _dir, files) = standin_and_files().await;
    standin.inject([Fault::TooManyRequests(0), Fault::Status(500), Fault::Reset, Fault::Status(503), Fault::Reset]);
    let setup = sink_for(&standin, &files, "max-batch-bytes = \"16KiB\"\n");
    let events = fixture_events();
    let delivery = setup.sink.deliver(&events).await.expect("delivered");
    assert!(delivery.rejected.is_empty());
    assert_all_once(&standin, &events);
    assert!(setup.metrics.get("ferry_sink_retries_total", &[("sink", "default")]) >= 5);
}

#[tokio::test]
async fn a_refusal_rejects_that_requests_events_with_status_and_body() {
    let (standin, _dir, files) = standin_and_files().await;
    standin.inject([Fault::BadRequest("field [event] is not\nan object".into())]);
    let setup = sink_for(&standin, &files, "format = \"single\"\n");
    let events = fixture_events();
    let delivery = setup.sink.deliver(&events[..3]).await.expect("delivered");
    assert_eq!(delivery.rejected.len(), 1);
    let (index, reason) = &delivery.rejected[0];
    assert!(reason.contains("HTTP 400 Bad Request: field [event] is not an object"), "{reason}");
    assert!(reason.starts_with(&standin.url()), "{reason}");
    assert_eq!(standin.event_count(), 2);
    assert!(*index < 3);
}

#[tokio::test]
async fn a_too_large_body_is_split_and_a_single_too_large_event_rejected() {
    let (standin, _dir, files) = standin_and_files().await;
    standin.inject([Fault::Status(413)]);
    let setup = sink_for(&standin, &files, "");
    let events = fixture_events();
    let delivery = setup.sink.deliver(&events).await.expect("delivered");
    assert!(delivery.rejected.is_empty());
    assert_all_once(&standin, &events);
    assert_eq!(standin.requests().len(), 3, "one refused whole, then two halves");

    standin.inject([Fault::Status(413)]);
    let delivery = setup.sink.deliver(&events[..1]).await.expect("delivered");
    assert_eq!(delivery.rejected.len(), 1);
    assert!(delivery.rejected[0].1.contains("413"), "{}", delivery.rejected[0].1);
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_naming_the_url() {
    let (standin, dir, files) = standin_and_files().await;
    let other = Pki::generate("other").expect("pki").write(&dir.path().join("other")).expect("files");
    let mixed = PkiFiles { ca: other.ca, ..files };
    let setup = sink_for(&standin, &mixed, "");
    let err = setup.sink.probe().await.expect_err("unknown issuer");
    assert!(err.starts_with(&standin.url()), "{err}");
    assert!(err.contains("certificate") && !err.contains('\n'), "{err}");
    eprintln!("unknown CA: {err}");
    // Deliveries keep retrying rather than falling back to anything else.
    let events = fixture_events();
    let attempt = tokio::time::timeout(Duration::from_millis(300), setup.sink.deliver(&events)).await;
    assert!(attempt.is_err(), "delivery must not complete");
    assert_eq!(standin.event_count(), 0);
    assert!(standin.requests().is_empty(), "no request reached the receiver");
}

#[tokio::test]
async fn a_client_without_a_certificate_fails_the_handshake() {
    let (standin, dir, files) = standin_and_files().await;
    let text = format!("[sinks.default]\ntype = \"logstash\"\nurl = \"{}\"\nca = \"{}\"\n", standin.url(), files.ca.display());
    let config = FerryConfig::parse(&text, &dir.path().join("ferry.toml")).expect("valid");
    let crate::config::SinkConfig::Logstash(http) = &config.sinks["default"] else { unreachable!("logstash") };
    let sink = HttpSink::build("default", http, &config, true, Arc::new(Metrics::default())).expect("builds");
    let err = sink.probe().await.expect_err("refused");
    assert!(err.starts_with(&standin.url()), "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while standin.handshake_failures() == 0 {
        assert!(std::time::Instant::now() < deadline, "the stand-in never saw the refused handshake: {err}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(standin.requests().is_empty(), "no request got through: {err}");
    eprintln!("no client certificate: {err}");
    assert_eq!(standin.event_count(), 0);
}

#[tokio::test]
async fn bad_urls_and_half_tls_settings_are_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (settings, expected) in [
        ("url = \"ftp://x/\"\n", "must start with https://"),
        ("url = \"https://x/\"\ncert = \"c.pem\"\n", "needs its `key`"),
        ("url = \"https://x/\"\nca = \"missing.pem\"\n", "cannot read"),
        ("url = \"https://x/\"\nmax-connections = 0\n", "max-connections"),
    ] {
        let text = format!("[sinks.out]\ntype = \"logstash\"\n{settings}");
        let config = FerryConfig::parse(&text, &dir.path().join("ferry.toml")).expect("parses");
        let crate::config::SinkConfig::Logstash(http) = &config.sinks["out"] else { unreachable!("logstash") };
        let err = HttpSink::build("out", http, &config, true, Arc::new(Metrics::default())).err().expect("refused");
        let text = err.to_string();
        assert!(text.contains(expected) && text.contains("sinks.out"), "{settings}: {text}");
    }
}
