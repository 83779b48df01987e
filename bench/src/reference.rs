//! The reference client of `ferry-bench --teleport`: the least a forwarder
//! must do, and so the ceiling the wire allows on this machine. It pages
//! the Teleport stand-in's audit log over the same gRPC and mutual TLS as
//! ferry, turns each event's Struct into JSON, and POSTs JSON arrays of the
//! same batch size to the same Logstash stand-in over mutual TLS, with as
//! many requests in flight as ferry's default. No cursor, no plugin, no
//! retries: a failed call ends the run.
//!
//! It runs as a child process (`ferry-bench --reference-client SETTINGS`,
//! hidden) so that its CPU time and peak memory are measured as ferry's are.

use anyhow::Context;
use bytes::Bytes;
use ferry::source::teleport::connect::{self, ClientTls, ConnectOptions};
use ferry::source::teleport::identity::{Route, TlsMaterial};
use ferry_proto::auditlog::{GetUnstructuredEventsRequest, Order};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the reference client is told, as JSON in a file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Settings {
    /// The Teleport stand-in, `host:port`.
    pub addr: String,
    /// Its identity file.
    pub identity: PathBuf,
    /// The Logstash stand-in's URL.
    pub url: String,
    /// The CA that signed the Logstash stand-in's certificate.
    pub ca: PathBuf,
    /// The client certificate for the Logstash stand-in.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// Events per page and per request.
    pub batch: usize,
    /// Requests in flight at once.
    pub in_flight: usize,
    /// Where the audit log search starts.
    pub start: SystemTime,
    /// How wide one search is.
    pub window: Duration,
}

/// Runs the reference client with the settings in `path`; prints the
/// number of events sent.
pub async fn run(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let settings: Settings = serde_json::from_slice(&text).with_context(|| format!("{}: not reference client settings", path.display()))?;
    let identity = std::fs::read(&settings.identity).with_context(|| format!("cannot read {}", settings.identity.display()))?;
    let material = TlsMaterial::from_identity(&settings.identity, &identity, SystemTime::now())?;
    let tls = ClientTls::fixed(material.shared_client_config(&Route::Direct)?);
    let channel = connect::connect(&settings.addr, &tls, &ConnectOptions::default()).await?;
    let mut audit = connect::audit_log_client(channel);

    let files =
        ferry::tls::ClientFiles { ca: Some(settings.ca.clone()), cert: Some(settings.cert.clone()), key: Some(settings.key.clone()) };
    let sink_tls = ferry::tls::client_config(&files, &[])?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(sink_tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(settings.in_flight).build(connector);
    let url: hyper::Uri = settings.url.parse().with_context(|| format!("{}: not a URL", settings.url))?;

    let permits = Arc::new(tokio::sync::Semaphore::new(settings.in_flight.max(1)));
    let mut posts = tokio::task::JoinSet::new();
    let mut sent = 0usize;
    let mut from = settings.start;
    let now = SystemTime::now();
    let mut body = Vec::new();
    while from < now {
        let to = from + settings.window;
        let mut start_key = String::new();
        loop {
            let request = GetUnstructuredEventsRequest {
                namespace: "default".into(),
                start_date: Some(from.into()),
                end_date: Some(to.into()),
                event_types: Vec::new(),
                limit: i32::try_from(settings.batch).unwrap_or(i32::MAX),
                start_key: start_key.clone(),
                order: Order::Ascending.into(),
            };
            let page = audit
                .get_unstructured_events(request)
                .await
                .map_err(|status| anyhow::anyhow!(connect::describe_status(&settings.addr, &status)))?
                .into_inner();
            if !page.items.is_empty() {
                body.clear();
                body.push(b'[');
                for (i, event) in page.items.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    match &event.unstructured {
                        Some(fields) => fields.write_json(&mut body, |_, _| {}).with_context(|| format!("audit event {}", event.id))?,
                        None => body.extend_from_slice(b"{}"),
                    }
                }
                body.push(b']');
                sent += page.items.len();
                let permit = permits.clone().acquire_owned().await.context("the request limit closed")?;
                let request = hyper::Request::post(url.clone())
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::copy_from_slice(&body)))
                    .context("cannot build a request")?;
                let client = client.clone();
                posts.spawn(async move {
                    let answer = client.request(request).await;
                    drop(permit);
                    let answer = answer.map_err(|error| anyhow::anyhow!("POST failed: {error}"))?;
                    let status = answer.status();
                    let _ = answer.into_body().collect().await;
                    anyhow::ensure!(status.is_success(), "the Logstash stand-in answered {status}");
                    Ok(())
                });
                while let Some(done) = posts.try_join_next() {
                    done.context("a POST panicked")??;
                }
            }
            if page.last_key.is_empty() {
                break;
            }
            start_key = page.last_key;
        }
        from = to;
    }
    while let Some(done) = posts.join_next().await {
        done.context("a POST panicked")??;
    }
    println!("{sent}");
    Ok(())
}
