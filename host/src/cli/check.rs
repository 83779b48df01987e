//! `ferry check`: validate a config and load its plugins; with `--probe`,
//! also connect to Teleport and to every sink and say what works.

use super::out::say;
use crate::app::FerryConfig;
use crate::metrics::Metrics;
use crate::sink::SinkConfig;
use crate::sink::http::HttpSink;
use crate::source::SourceConfig;
use crate::source::teleport::connect::{ClientTls, ConnectOptions, audit_log_client, connect, describe_status};
use ferry_proto::auditlog::{GetUnstructuredEventsRequest, Order};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Longest wait for one probe's connection and answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds every part of the config at `path` without forwarding anything
/// and prints what it found; with `probe`, then tries every peer and
/// prints one line per target, failing when any failed.
pub async fn run(path: &Path, config: FerryConfig, probe: bool) -> anyhow::Result<()> {
    let built = build(path, &config).await;
    if !probe {
        return say!("{}", built?).map_err(anyhow::Error::from);
    }
    // Each peer is probed even when the config does not build: a missing
    // identity must not hide that a sink is down too, and the other way round.
    let built_ok = built.is_ok();
    match &built {
        Ok(line) => say!("{line}")?,
        Err(why) => say!("{}: FAILED: {}", path.display(), crate::error::join_causes(why.chain()))?,
    }
    let results = probe_all(&config).await;
    let failed = results.iter().filter(|(_, result)| result.is_err()).count();
    for (target, result) in &results {
        match result {
            Ok(what) => say!("{target}: ok: {what}")?,
            Err(why) => say!("{target}: FAILED: {why}")?,
        }
    }
    anyhow::ensure!(built_ok, "{}: the config has an error (see above){}", path.display(), probes_failed(failed, results.len(), ", and "));
    anyhow::ensure!(failed == 0, "{}", probes_failed(failed, results.len(), ""));
    Ok(())
}

/// Builds every part of the config: the one line saying what it holds.
async fn build(path: &Path, config: &FerryConfig) -> anyhow::Result<String> {
    let parts = crate::app::build_parts(config, Arc::new(Metrics::default()), false).await?;
    let plugins: Vec<&str> = parts.plugins.iter().map(|p| p.settings().name.as_str()).collect();
    let sinks: Vec<&str> = parts.sinks.keys().map(String::as_str).collect();
    Ok(format!(
        "{}: ok: source {}, plugins [{}], sinks [{}] (default `{}`)",
        path.display(),
        parts.source.name(),
        plugins.join(", "),
        sinks.join(", "),
        parts.default_sink
    ))
}

/// "N of M probe(s) failed (see above)" after `lead`, or nothing when none did.
fn probes_failed(failed: usize, total: usize, lead: &str) -> String {
    if failed == 0 { String::new() } else { format!("{lead}{failed} of {total} probe(s) failed (see above)") }
}

/// Probes Teleport (when the source is Teleport) and every sink, one after
/// the other: `(target, what worked or why it failed)`.
pub async fn probe_all(config: &FerryConfig) -> Vec<(String, Result<String, String>)> {
    let mut results = Vec::new();
    if let Ok(location @ crate::state::Location::Postgres(_)) = config.state_location() {
        let probe = tokio::time::timeout(PROBE_TIMEOUT, crate::state::lease::probe(&location));
        let result = probe.await.unwrap_or_else(|_| Err(format!("no answer within {}", humantime::format_duration(PROBE_TIMEOUT))));
        results.push((format!("state {location}"), result));
    }
    if let Ok(SourceConfig::Teleport(teleport)) = config.source() {
        let target = format!("teleport {}", teleport.addr);
        results.push((target, probe_teleport(config, teleport).await));
    }
    let context = config.context();
    for (name, sink) in &config.sinks {
        let (http, logstash) = match sink {
            SinkConfig::Logstash(http) => (http, true),
            SinkConfig::Http(http) => (http, false),
            SinkConfig::File(_) => {
                results.push((format!("sink {name}"), Ok("a file sink, nothing to connect to".to_owned())));
                continue;
            }
            SinkConfig::Stdout(_) => {
                results.push((format!("sink {name}"), Ok("standard output, nothing to connect to".to_owned())));
                continue;
            }
        };
        let target = format!("sink {name} ({})", http.url);
        let result = match HttpSink::build(name, http, &context, logstash, Arc::new(Metrics::default())) {
            Err(err) => Err(err.to_string()),
            Ok(sink) => match tokio::time::timeout(PROBE_TIMEOUT, sink.probe()).await {
                Ok(Ok(())) => Ok("TLS handshake and an empty JSON array ([]) acknowledged".to_owned()),
                Ok(Err(why)) => Err(why),
                Err(_) => Err(format!("no answer within {}", humantime::format_duration(PROBE_TIMEOUT))),
            },
        };
        results.push((target, result));
    }
    results
}

/// Connects to Teleport with the identity (mutual TLS) and asks for one
/// event of the last minute: the cheapest call that shows the user may
/// read the audit log.
async fn probe_teleport(config: &FerryConfig, teleport: &crate::source::teleport::TeleportSourceConfig) -> Result<String, String> {
    let prefix = format!("{}.", config.source_key());
    let checked = teleport.check(&config.file, &config.base_dir, &prefix).map_err(|err| err.to_string())?;
    let material = checked.credentials.load().map_err(|err| err.to_string())?;
    let user = material.certificate().common_name.clone();
    let tls = material.shared_client_config(&checked.route).map_err(|err| err.to_string())?;
    let options = ConnectOptions { connect_timeout: PROBE_TIMEOUT, ..ConnectOptions::default() };
    let addr = teleport.addr.as_str();
    let call = async {
        let channel = connect(addr, &ClientTls::fixed(tls), &options).await.map_err(|err| err.to_string())?;
        let now = SystemTime::now();
        let request = GetUnstructuredEventsRequest {
            namespace: "default".into(),
            start_date: Some((now - Duration::from_secs(60)).into()),
            end_date: Some(now.into()),
            event_types: Vec::new(),
            limit: 1,
            start_key: String::new(),
            order: Order::Ascending.into(),
        };
        audit_log_client(channel).get_unstructured_events(request).await.map_err(|status| describe_status(addr, &status))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(format!("mutual TLS as `{user}` and the audit log answered")),
        Ok(Err(why)) => Err(why),
        Err(_) => Err(format!("no answer within {}", humantime::format_duration(PROBE_TIMEOUT))),
    }
}
