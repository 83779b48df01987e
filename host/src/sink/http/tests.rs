//! The HTTP sink against the stand-in Logstash, over real sockets and TLS.

use super::*;
use crate::app::FerryConfig;
use ferry_standin::logstash::{Fault, LogstashStandIn};
use ferry_standin::pki::{Pki, PkiFiles};
use std::collections::HashMap;

/// A retry loop that only the sink's own settings bound.
fn never() -> crate::retry::Retry {
    crate::retry::Retry::new(crate::retry::Backoff::default(), crate::shutdown::Shutdown::never())
}

const FIXTURES: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-events.jsonl"));

fn fixture_events() -> Vec<OutEvent> {
    FIXTURES
        .lines()
        .map(|line| {
            let event = crate::event::Event::from_json(line.as_bytes().to_vec()).expect("fixture parses");
            OutEvent { id: event.id, json: event.json, ..Default::default() }
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
    let crate::sink::SinkConfig::Logstash(http) = &config.sinks["default"] else { unreachable!("configured as logstash") };
    let metrics = Arc::new(Metrics::default());
    let sink = HttpSink::build("default", http, &config.context(), true, metrics.clone()).expect("sink builds");
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
    for event in sent {
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
        let delivery = setup.sink.deliver(&events, never()).await.expect("delivered");
        assert!(delivery.rejected.is_empty(), "{extra}: {:?}", delivery.rejected);
        assert_all_once(&standin, &events);
        let requests = standin.requests();
        assert!(requests.len() >= min_requests, "{extra}: {} requests", requests.len());
        assert!(requests.iter().all(|r| r.content_type == content_type && r.user_agent.is_none()), "{extra}: {requests:?}");
        if extra.contains("gzip") {
            assert!(requests.iter().all(|r| r.content_encoding == "gzip"));
        }
        assert!(setup.sink.buffers.kept() >= 1, "{extra}: the bodies sent come back for the next requests");
    }
}

#[tokio::test]
async fn busy_failing_and_resetting_receivers_are_retried_until_they_take_everything() {
    let (standin, _dir, files) = standin_and_files().await;
    standin.inject([Fault::TooManyRequests(0), Fault::Status(500), Fault::Reset, Fault::Status(503), Fault::Reset]);
    let setup = sink_for(&standin, &files, "max-batch-bytes = \"16KiB\"\n");
    let events = fixture_events();
    let delivery = setup.sink.deliver(&events, never()).await.expect("delivered");
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
    let delivery = setup.sink.deliver(&events[..3], never()).await.expect("delivered");
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
    let delivery = setup.sink.deliver(&events, never()).await.expect("delivered");
    assert!(delivery.rejected.is_empty());
    assert_all_once(&standin, &events);
    assert_eq!(standin.requests().len(), 3, "one refused whole, then two halves");

    standin.inject([Fault::Status(413)]);
    let delivery = setup.sink.deliver(&events[..1], never()).await.expect("delivered");
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
    let attempt = tokio::time::timeout(Duration::from_millis(300), setup.sink.deliver(&events, never())).await;
    assert!(attempt.is_err(), "delivery must not complete");
    assert_eq!(standin.event_count(), 0);
    assert!(standin.requests().is_empty(), "no request reached the receiver");
    assert!(setup.metrics.get("ferry_http_retried_total", &[("sink", "default"), ("cause", "tls")]) >= 1, "counted as a TLS failure");
}

#[tokio::test]
async fn a_client_without_a_certificate_fails_the_handshake() {
    let (standin, dir, files) = standin_and_files().await;
    let text = format!("[sinks.default]\ntype = \"logstash\"\nurl = \"{}\"\nca = \"{}\"\n", standin.url(), files.ca.display());
    let config = FerryConfig::parse(&text, &dir.path().join("ferry.toml")).expect("valid");
    let crate::sink::SinkConfig::Logstash(http) = &config.sinks["default"] else { unreachable!("logstash") };
    let sink = HttpSink::build("default", http, &config.context(), true, Arc::new(Metrics::default())).expect("builds");
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
async fn per_session_sinks_post_each_session_to_its_own_url() {
    let (standin, dir, files) = standin_and_files().await;
    let text = format!(
        "[sinks.sessions]\ntype = \"http\"\nurl = \"{}session\"\nper-session = true\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        standin.url(),
        files.ca.display(),
        files.client_cert.display(),
        files.client_key.display()
    );
    let config = FerryConfig::parse(&text, &dir.path().join("ferry.toml")).expect("valid");
    let crate::sink::SinkConfig::Http(http) = &config.sinks["sessions"] else { unreachable!("http") };
    let sink = HttpSink::build("sessions", http, &config.context(), false, Arc::new(Metrics::default())).expect("builds");
    let event = |i: usize, sid: &str| OutEvent { id: i.to_string(), session_id: sid.into(), json: format!("{{\"i\":{i}}}").into_bytes() };
    let events = vec![event(0, "s-1"), event(1, "s-1"), event(2, "s-2"), event(3, ""), event(4, "bad id")];
    let delivery = sink.deliver(&events, never()).await.expect("delivered");
    assert_eq!(delivery.rejected.len(), 1, "{:?}", delivery.rejected);
    assert_eq!(delivery.rejected[0].0, 4);
    assert!(delivery.rejected[0].1.contains("makes no valid URL"), "{}", delivery.rejected[0].1);
    let mut paths: Vec<String> = standin.requests().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(paths, ["/session", "/session.s-1.log", "/session.s-1.log", "/session.s-2.log"]);
}

#[tokio::test]
async fn bad_urls_and_half_tls_settings_are_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (settings, expected) in [
        ("url = \"ftp://x/\"\n", "must start with https://"),
        ("url = \"https://x/\"\ncert = \"c.pem\"\n", "needs its `key`"),
        ("url = \"https://x/\"\nca = \"missing.pem\"\n", "cannot read"),
        ("url = \"https://x/\"\nmax-connections = 0\n", "max-connections"),
        (
            "url = \"https://x/\"\nretry-statuses = [400, 409]\ndead-letter-statuses = [409]\n",
            "sinks.out.dead-letter-statuses`: 409 is also in `retry-statuses`",
        ),
        ("url = \"https://x/\"\nretry-statuses = [40]\n", "sinks.out.retry-statuses`: 40 is not an HTTP status"),
        ("url = \"https://x/\"\ndead-letter-statuses = [204]\n", "sinks.out.dead-letter-statuses`: 204 acknowledges a request"),
        ("url = \"https://x/\"\nsuccess-statuses = [200, 299]\nretry-statuses = [299]\n", "sinks.out.retry-statuses`: 299 acknowledges"),
    ] {
        let text = format!("[sinks.out]\ntype = \"logstash\"\n{settings}");
        let config = FerryConfig::parse(&text, &dir.path().join("ferry.toml")).expect("parses");
        let crate::sink::SinkConfig::Logstash(http) = &config.sinks["out"] else { unreachable!("logstash") };
        let err = HttpSink::build("out", http, &config.context(), true, Arc::new(Metrics::default())).err().expect("refused");
        let text = err.to_string();
        assert!(text.contains(expected) && text.contains("sinks.out"), "{settings}: {text}");
    }
}

/// nginx from Debian as a real, independent TLS peer: OpenSSL verifying our
/// client certificate, request bodies recorded in its access log.
mod nginx {
    use super::*;
    use ferry_standin::nginx::{Nginx, NginxTls};
    use std::path::Path;

    /// nginx with `ssl_verify_client on` against the PKI's CA, its folder
    /// in `dir`.
    fn start(pki: &PkiFiles, binary: &str, dir: &Path) -> Nginx {
        let tls = NginxTls { cert: pki.server_cert.clone(), key: pki.server_key.clone(), password_file: None, ca: pki.ca.clone() };
        Nginx::start(binary, &dir.join("nginx"), &tls).expect("nginx starts")
    }

    /// The events of each request nginx took, once it logged `events` of
    /// them (it logs a request after answering it), each checked to be
    /// taken over mutual TLS with a JSON body; a body that is one object
    /// counts as one event.
    async fn requests(nginx: &Nginx, events: usize) -> Vec<Vec<serde_json::Value>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut requests = Vec::new();
            for line in nginx.logged() {
                assert_eq!(line["status"], 200, "{line}");
                assert_eq!(line["verify"], "SUCCESS", "{line}");
                assert_eq!(line["content_type"], "application/json");
                let body: serde_json::Value = serde_json::from_str(line["body"].as_str().expect("body")).expect("a JSON body");
                requests.push(match body {
                    serde_json::Value::Array(events) => events,
                    event => vec![event],
                });
            }
            if requests.iter().map(Vec::len).sum::<usize>() >= events || std::time::Instant::now() > deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The sink the event handler's `[forward.fluentd]` table stands for.
    fn fluentd_sink(url: &str, pki: &PkiFiles, extra: &str, dir: &Path) -> HttpSink {
        let text = format!(
            "[forward.fluentd]\nurl = \"{url}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        );
        let config = FerryConfig::parse(&text, &dir.join("ferry.toml")).expect("valid");
        let crate::sink::SinkConfig::Http(http) = &config.sinks["default"] else { unreachable!("[forward.fluentd] is an http sink") };
        HttpSink::build("default", http, &config.context(), false, Arc::new(Metrics::default())).expect("builds")
    }

    fn sink(url: &str, pki: &PkiFiles, with_cert: bool, dir: &Path) -> HttpSink {
        let mut text = format!("[sinks.default]\ntype = \"logstash\"\nurl = \"{url}\"\nca = \"{}\"\n", pki.ca.display());
        if with_cert {
            text.push_str(&format!("cert = \"{}\"\nkey = \"{}\"\n", pki.client_cert.display(), pki.client_key.display()));
        }
        text.push_str("max-batch-bytes = \"64KiB\"\n");
        let config = FerryConfig::parse(&text, &dir.join("ferry.toml")).expect("valid");
        let crate::sink::SinkConfig::Logstash(http) = &config.sinks["default"] else { unreachable!("logstash") };
        HttpSink::build("default", http, &config.context(), true, Arc::new(Metrics::default())).expect("builds")
    }

    #[tokio::test]
    async fn fixtures_reach_nginx_over_mutual_tls_and_a_client_without_certificate_is_refused() {
        let binary = Nginx::binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::generate("nginx").expect("pki").write(dir.path()).expect("files");
        let nginx = start(&pki, binary, dir.path());
        let url = nginx.url();

        let events = fixture_events();
        let delivery = sink(&url, &pki, true, dir.path()).deliver(&events, never()).await.expect("delivered");
        assert!(delivery.rejected.is_empty(), "{:?}", delivery.rejected);
        let sent: Vec<serde_json::Value> = events.iter().map(|e| serde_json::from_slice(&e.json).expect("json")).collect();
        let received: Vec<serde_json::Value> = requests(&nginx, sent.len()).await.into_iter().flatten().collect();
        assert_eq!(received.len(), sent.len(), "nginx recorded {} of {} events", received.len(), sent.len());
        let first_difference = received.iter().zip(&sent).position(|(got, want)| got != want);
        assert_eq!(first_difference, None, "nginx got every event once, unchanged, in order");

        let without = sink(&url, &pki, false, dir.path());
        let refused = without.probe().await.expect_err("no client certificate");
        assert!(refused.contains("HTTP 400") && refused.starts_with(&url), "{refused}");
        assert!(refused.contains("No required SSL certificate was sent") && !refused.contains('<'), "{refused}");
        // nginx's 400 for a missing certificate is about the connection,
        // not the events: retried until a certificate comes, never refused.
        let delivery = tokio::time::timeout(Duration::from_secs(1), without.deliver(&events[..2], never())).await;
        assert!(delivery.is_err(), "a delivery without a client certificate is retried, not settled: {delivery:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while nginx.logged().last().is_some_and(|line| line["verify"] == "SUCCESS") {
            assert!(std::time::Instant::now() < deadline, "nginx never logged the refused request");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let last = nginx.logged().pop().expect("the refused request is logged");
        assert_eq!(last["verify"], "NONE");
        assert_eq!(last["body"], "", "nothing was taken from a client without a certificate");
    }

    /// The event handler's own config sends nginx each batch as one JSON
    /// array, not one request per event; `format = "single"` restores one.
    #[tokio::test]
    async fn the_drop_in_config_posts_arrays_to_nginx_and_single_posts_one_event_each() {
        let binary = Nginx::binary();
        let events: Vec<OutEvent> = fixture_events().into_iter().take(40).collect();
        let sent: Vec<serde_json::Value> = events.iter().map(|e| serde_json::from_slice(&e.json).expect("json")).collect();
        for (extra, single) in [("", false), ("format = \"single\"\n", true)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let pki = Pki::generate("nginx").expect("pki").write(dir.path()).expect("files");
            let nginx = start(&pki, binary, dir.path());
            let url = nginx.url();
            let delivery = fluentd_sink(&url, &pki, extra, dir.path()).deliver(&events, never()).await.expect("delivered");
            assert!(delivery.rejected.is_empty(), "{:?}", delivery.rejected);
            let requests = requests(&nginx, sent.len()).await;
            // One event per request goes out up to `max-connections` at once,
            // so nginx may log them in another order.
            let sorted = |events: Vec<&serde_json::Value>| {
                let mut texts: Vec<String> = events.into_iter().map(serde_json::Value::to_string).collect();
                texts.sort();
                texts
            };
            assert!(
                sorted(requests.iter().flatten().collect()) == sorted(sent.iter().collect()),
                "nginx got every event once, unchanged ({extra:?})"
            );
            if single {
                assert_eq!(requests.len(), events.len(), "one request per event");
            } else {
                assert_eq!(requests.len(), 1, "the batch as one JSON array");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_body_is_read_within_bounds_of_size_and_time() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    // A body that streams as fast as it is read: cut at the size bound.
    let endless = StreamBody::new(futures_util::stream::repeat_with(|| {
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"0123456789")))
    }));
    let kept = read_excerpt(endless, Duration::from_secs(3600)).await;
    assert_eq!(kept.len(), RESPONSE_EXCERPT, "an excerpt is kept");
    // A body that trickles for ever: cut at the time bound.
    let started = tokio::time::Instant::now();
    let trickle = StreamBody::new(futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"."))), ()))
    }));
    let kept = read_excerpt(Box::pin(trickle), RESPONSE_READ_TIME).await;
    assert_eq!(started.elapsed(), RESPONSE_READ_TIME, "the read stops at its deadline");
    assert!(kept.len() >= 10 && kept.len() < 30, "{} bytes kept", kept.len());
}

#[tokio::test]
async fn shutdown_ends_a_delivery_waiting_for_a_free_connection() {
    let (standin, _dir, files) = standin_and_files().await;
    standin.set_stalled(true);
    // One connection, two requests: the first is held by Logstash, the second waits for the connection.
    let setup = sink_for(&standin, &files, "format = \"single\"\nmax-connections = 1\n");
    let events = fixture_events();
    let (trigger, shutdown) = crate::shutdown::channel();
    let mut delivery = setup.sink.deliver(&events[..2], Retry::new(Backoff::default(), shutdown));
    tokio::select! {
        _ = &mut delivery => panic!("a delivery cannot end while Logstash holds its request"),
        () = async { while standin.held_requests() < 1 { tokio::time::sleep(Duration::from_millis(10)).await } } => {}
    }
    trigger.fire();
    let ended = tokio::time::timeout(Duration::from_secs(2), delivery).await.expect("shutdown ends the delivery");
    assert!(ended.is_err(), "a delivery cut by shutdown acknowledges nothing");
    standin.set_stalled(false);
}
