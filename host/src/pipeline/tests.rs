//! The whole pipeline against the stand-in Logstash: flow control while the
//! receiver stalls, and a cursor that never runs ahead of acknowledgements.

use crate::app::FerryConfig;
use crate::metrics::Metrics;
use ferry_standin::logstash::{Fault, LogstashStandIn};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes `count` events with distinct uids; returns (uid, end offset) per line.
fn write_events(path: &Path, count: usize) -> Vec<(String, u64)> {
    let mut text = String::new();
    let mut ends = Vec::with_capacity(count);
    for i in 0..count {
        let uid = format!("ev-{i:06}");
        text.push_str(&format!(
            "{{\"event\":\"user.login\",\"uid\":\"{uid}\",\"time\":\"2026-01-01T00:00:00Z\",\"ei\":{i},\"pad\":\"{}\"}}\n",
            "x".repeat(200)
        ));
        ends.push((uid, text.len() as u64));
    }
    std::fs::write(path, text).expect("write input");
    ends
}

async fn pipeline_for(
    dir: &Path,
    standin: &LogstashStandIn,
    pipeline: &str,
    sink: &str,
) -> (crate::pipeline::Pipeline, Arc<Metrics>, FerryConfig) {
    let pki = standin.pki.write(&dir.join("pki")).expect("pki");
    let text = format!(
        "storage = \"storage\"\n[pipeline]\n{pipeline}\n[source.file]\npath = \"in.jsonl\"\nfollow = false\n\
         [sinks.default]\ntype = \"logstash\"\nurl = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nretry-initial = \"20ms\"\nretry-max = \"100ms\"\n{sink}\n",
        standin.url(),
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let config = FerryConfig::parse(&text, &dir.join("ferry.toml")).expect("config");
    let metrics = Arc::new(Metrics::default());
    let (pipeline, _runtime, _plugins) = crate::app::build_pipeline(&config, metrics.clone()).await.expect("pipeline");
    (pipeline, metrics, config)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_receiver_pauses_the_source_instead_of_buffering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let total = 20_000;
    write_events(&dir.path().join("in.jsonl"), total);
    let standin = LogstashStandIn::start(None).await.expect("stand-in");
    standin.set_stalled(true);
    let (pipeline, metrics, _config) =
        pipeline_for(dir.path(), &standin, "batch-size = 100\nlinger = \"10ms\"\nbatches-in-flight = 2", "max-connections = 2").await;
    let run = tokio::spawn(pipeline.run(crate::shutdown::Shutdown::never()));

    wait_for("requests to be held by the stall", || standin.held_requests() >= 2).await;
    // Give the source every chance to run ahead, then look at what it read.
    let mut previous = u64::MAX;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let now = metrics.total("ferry_events_received_total");
        if now == previous {
            break;
        }
        previous = now;
    }
    let read = metrics.total("ferry_events_received_total");
    // In flight: 2 batches of 100, plus one batch being filled and the
    // source channel of one batch: far below the 20 000 waiting.
    assert!(read <= 400, "the source read {read} events while the receiver was stalled");
    assert_eq!(standin.event_count(), 0);

    standin.set_stalled(false);
    let summary = run.await.expect("joined").expect("ran");
    assert_eq!(summary.delivered, total as u64);
    assert_eq!(standin.event_count(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_faults_the_cursor_never_passes_an_unacknowledged_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = write_events(&dir.path().join("in.jsonl"), 3_000);
    let standin = LogstashStandIn::start(None).await.expect("stand-in");
    let mut faults = Vec::new();
    for _ in 0..6 {
        faults.extend([Fault::Status(500), Fault::Reset, Fault::TooManyRequests(0), Fault::Delay(Duration::from_millis(30))]);
    }
    standin.inject(faults);
    let (pipeline, _metrics, config) =
        pipeline_for(dir.path(), &standin, "batch-size = 50\nlinger = \"5ms\"\nbatches-in-flight = 4", "max-connections = 2").await;
    let state = crate::state::State::open(&config.database_path()).await.expect("state");
    let source = format!("file:{}", dir.path().join("in.jsonl").display());
    let run = tokio::spawn(pipeline.run(crate::shutdown::Shutdown::never()));

    let mut checks = 0;
    while !run.is_finished() {
        if let Some(position) = state.cursor(&source).await.expect("cursor") {
            let offset = crate::source::file::offset_of(&position).expect("offset");
            let received: HashSet<String> =
                standin.events().iter().filter_map(|e| e.get("uid").and_then(|v| v.as_str()).map(str::to_owned)).collect();
            for (uid, end) in &lines {
                if *end <= offset {
                    assert!(received.contains(uid), "cursor {offset} passed {uid}, which the receiver never acknowledged");
                }
            }
            checks += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let summary = run.await.expect("joined").expect("ran");
    assert_eq!(summary.delivered, 3_000);
    let received: HashSet<String> =
        standin.events().iter().filter_map(|e| e.get("uid").and_then(|v| v.as_str()).map(str::to_owned)).collect();
    assert_eq!(received.len(), 3_000, "every event arrived");
    let cursor = state.cursor(&source).await.expect("cursor").and_then(|position| crate::source::file::offset_of(&position));
    assert_eq!(cursor, lines.last().map(|(_, end)| *end));
    eprintln!("checked the cursor {checks} times while faults were injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_receiver_refuses_are_dead_lettered_with_the_status_and_the_rest_flows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = write_events(&dir.path().join("in.jsonl"), 20);
    let standin = LogstashStandIn::start(None).await.expect("stand-in");
    standin.inject([Fault::BadRequest("cannot index event".into())]);
    // One event per request, so that the refusal hits exactly one event.
    let sink = "max-connections = 1\nformat = \"single\"";
    let (pipeline, _metrics, config) =
        pipeline_for(dir.path(), &standin, "batch-size = 5\nlinger = \"5ms\"\nbatches-in-flight = 1", sink).await;
    let summary = pipeline.run(crate::shutdown::Shutdown::never()).await.expect("ran");
    assert_eq!((summary.delivered, summary.dead_lettered), (19, 1), "{summary}");
    let state = crate::state::State::open(&config.database_path()).await.expect("state");
    let letters = state.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!((letter.stage.as_str(), letter.component.as_str()), ("sink", "default"));
    assert!(letter.reason.contains("HTTP 400 Bad Request: cannot index event"), "{}", letter.reason);
    assert_eq!(letter.event_id.as_deref(), Some(lines[0].0.as_str()));
    assert_eq!(standin.event_count(), 19);
    let source = format!("file:{}", dir.path().join("in.jsonl").display());
    let cursor = state.cursor(&source).await.expect("cursor").and_then(|position| crate::source::file::offset_of(&position));
    assert_eq!(cursor, lines.last().map(|(_, end)| *end), "the cursor moved past the dead letter");
}
