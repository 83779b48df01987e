//! The HTTP client side: a pooled hyper client over rustls, and the request
//! loop that retries each request until the receiver settles it.

use super::classify::{Verdict, classify};
use super::encode;
use super::{BodyFormat, HttpSinkConfig};
use crate::config::{ConfigError, FerryConfig};
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::sink::{DeliverFuture, Delivery, OutEvent, Sink};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Bytes of a response body kept for error messages and dead letters.
const RESPONSE_EXCERPT: usize = 1024;

/// A sink that POSTs events to an HTTP(S) receiver.
pub struct HttpSink {
    name: String,
    url: Uri,
    per_session: bool,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    format: BodyFormat,
    gzip: bool,
    max_bytes: usize,
    timeout: Duration,
    success: Vec<u16>,
    backoff: Backoff,
    connections: Arc<Semaphore>,
    max_connections: usize,
    metrics: Arc<Metrics>,
}

/// How one request ended.
enum Settled {
    Acknowledged,
    TooLarge(String),
    Refused(String),
}

impl HttpSink {
    /// Checks the settings and loads the TLS files. `logstash` picks the
    /// Logstash defaults (JSON array bodies) over plain HTTP ones (one
    /// event per request).
    pub fn build(name: &str, config: &HttpSinkConfig, ferry: &FerryConfig, logstash: bool, metrics: Arc<Metrics>) -> Result<HttpSink, ConfigError> {
        let key = |field: &str| format!("sinks.{name}.{field}");
        let invalid = |field: &str, message: String| ConfigError::invalid(&ferry.file, key(field), message);
        let url: Uri = config.url.parse().map_err(|err| invalid("url", format!("`{}` is not a URL: {err}", config.url)))?;
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("url", format!("`{}` must start with https:// (or http:// for a receiver without TLS)", config.url))),
        };
        if url.host().is_none() {
            return Err(invalid("url", format!("`{}` has no host", config.url)));
        }
        let files = crate::tls::ClientFiles {
            ca: config.ca.as_ref().map(|p| ferry.resolve(p)),
            cert: config.cert.as_ref().map(|p| ferry.resolve(p)),
            key: config.key.as_ref().map(|p| ferry.resolve(p)),
        };
        // hyper-rustls sets ALPN itself from the enabled HTTP versions.
        let tls = crate::tls::client_config(&files, &[]).map_err(|err| ConfigError::invalid(&ferry.file, format!("sinks.{name}"), err.to_string()))?;
        let max_connections = config.max_connections.unwrap_or(10);
        if max_connections == 0 {
            return Err(invalid("max-connections", "must be at least 1".into()));
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_nodelay(true);
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let connector = if https { builder.https_only() } else { builder.https_or_http() }.enable_http1().enable_http2().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(max_connections)
            .build(connector);
        let headers = config
            .headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::try_from(k.as_str()).map_err(|_| invalid("headers", format!("`{k}` is not a header name")))?;
                let mut value = HeaderValue::try_from(v.as_str()).map_err(|_| invalid("headers", format!("the value of `{k}` is not a valid header value")))?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let max_bytes = config.max_batch_bytes.map_or(10 << 20, |b| b.0);
        Ok(HttpSink {
            name: name.to_owned(),
            url,
            per_session: config.per_session,
            client,
            headers,
            format: config.format.unwrap_or(if logstash { BodyFormat::JsonArray } else { BodyFormat::Single }),
            gzip: config.gzip,
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX).max(1),
            timeout: config.timeout.map_or(Duration::from_secs(60), |d| d.0),
            success: config.success_statuses.clone().unwrap_or_default(),
            backoff: Backoff {
                initial: config.retry_initial.map_or(Duration::from_millis(500), |d| d.0),
                max: config.retry_max.map_or(Duration::from_secs(30), |d| d.0),
            },
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            metrics,
        })
    }

    /// Checks that the receiver can be reached and takes our TLS: POSTs an
    /// empty JSON body, which Logstash acknowledges without creating an
    /// event. The error names the URL and says what failed.
    pub async fn probe(&self) -> Result<(), String> {
        match self.send_once(&self.url, Bytes::new(), "application/json", None).await {
            Verdict::Acknowledged => Ok(()),
            Verdict::Retry { reason, .. } | Verdict::Refused { reason } => Err(format!("{}: {reason}", self.url)),
            Verdict::TooLarge => Err(format!("{}: HTTP 413 for an empty body", self.url)),
        }
    }

    /// Sends every request of a batch (concurrently, within the connection
    /// limit) and collects the events refused for good.
    async fn send_batch(&self, events: &[OutEvent]) -> Delivery {
        let mut sends = Vec::new();
        let mut refused = Vec::new();
        for (url, group) in self.destinations(events) {
            let url = match url {
                Ok(url) => url,
                Err(reason) => {
                    refused.extend(group.map(|i| (i, reason.clone())));
                    continue;
                }
            };
            for request in encode::plan_requests(&events[group.clone()], self.format, self.max_bytes) {
                let range = group.start + request.events.start..group.start + request.events.end;
                sends.push(self.send_range(url.clone(), events, range));
            }
        }
        let settled = futures_util::future::join_all(sends).await;
        refused.extend(settled.into_iter().flatten());
        Delivery { rejected: refused }
    }

    /// Where each run of events goes: `url`, or with `per-session`, one URL
    /// per run of events of the same session.
    fn destinations(&self, events: &[OutEvent]) -> Vec<(Result<Uri, String>, Range<usize>)> {
        if !self.per_session {
            return vec![(Ok(self.url.clone()), 0..events.len())];
        }
        let mut runs: Vec<(Result<Uri, String>, Range<usize>)> = Vec::new();
        for (i, event) in events.iter().enumerate() {
            match runs.last_mut() {
                Some((_, run)) if events[run.start].session_id == event.session_id => run.end = i + 1,
                _ => runs.push((self.session_url(&event.session_id), i..i + 1)),
            }
        }
        runs
    }

    /// `<url>.<session id>.log`, as teleport-event-handler builds it.
    fn session_url(&self, session_id: &str) -> Result<Uri, String> {
        if session_id.is_empty() {
            return Ok(self.url.clone());
        }
        let text = format!("{}.{session_id}.log", self.url);
        text.parse().map_err(|err| format!("session id `{session_id}` makes no valid URL: {err}"))
    }

    /// Sends the events in `range`, splitting on 413, until every one is
    /// acknowledged or refused. Returns the refused ones.
    async fn send_range(&self, url: Uri, events: &[OutEvent], range: Range<usize>) -> Vec<(usize, String)> {
        let mut pending = vec![range];
        let mut refused = Vec::new();
        while let Some(range) = pending.pop() {
            match self.send_until_settled(&url, &events[range.clone()]).await {
                Settled::Acknowledged => {}
                Settled::TooLarge(_) if range.len() > 1 => {
                    let middle = range.start + range.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
                Settled::TooLarge(reason) | Settled::Refused(reason) => {
                    tracing::warn!(sink = %self.name, %url, %reason, events = range.len(), "Receiver refused events; dead-lettering them.");
                    refused.extend(range.map(|i| (i, format!("{url}: {reason}"))));
                }
            }
        }
        refused
    }

    /// One request, retried with backoff until the receiver acknowledges,
    /// refuses it, or finds it too large.
    async fn send_until_settled(&self, url: &Uri, events: &[OutEvent]) -> Settled {
        let (body, content_type) = encode::body(events, self.format);
        let (body, encoding) = match self.gzip {
            true => match encode::gzip(&body) {
                Ok(packed) => (packed, Some("gzip")),
                Err(_) => (body, None),
            },
            false => (body, None),
        };
        let body = Bytes::from(body);
        let mut attempt = 0;
        loop {
            let verdict = {
                let _slot = self.connections.acquire().await;
                self.send_once(url, body.clone(), content_type, encoding).await
            };
            match verdict {
                Verdict::Acknowledged => return Settled::Acknowledged,
                Verdict::TooLarge => return Settled::TooLarge("HTTP 413 Payload Too Large".into()),
                Verdict::Refused { reason } => return Settled::Refused(reason),
                Verdict::Retry { reason, after } => {
                    let delay = after.unwrap_or_else(|| self.backoff.delay(attempt));
                    self.metrics.add("ferry_sink_retries_total", &[("sink", &self.name)], 1);
                    tracing::warn!(sink = %self.name, %url, error = %reason, attempt = attempt + 1, retry_in = ?delay, "Delivery failed; retrying.");
                    tokio::time::sleep(delay).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    async fn send_once(&self, url: &Uri, body: Bytes, content_type: &'static str, encoding: Option<&'static str>) -> Verdict {
        let mut request = hyper::Request::builder().method(Method::POST).uri(url.clone()).header(CONTENT_TYPE, content_type);
        if let Some(encoding) = encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = match request.body(Full::new(body)) {
            Ok(request) => request,
            Err(err) => return Verdict::Refused { reason: format!("cannot build the request: {err}") },
        };
        let answer = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let bytes = read_excerpt(body).await;
            Ok::<_, hyper_util::client::legacy::Error>((parts.status, parts.headers, bytes))
        })
        .await;
        let verdict = match answer {
            Ok(Ok((status, headers, body))) => classify(status, &headers, &body, &self.success),
            Ok(Err(err)) => Verdict::Retry { reason: error_chain(&err), after: None },
            Err(_) => Verdict::Retry { reason: format!("no response within {:?} (timeout)", self.timeout), after: None },
        };
        let outcome = match &verdict {
            Verdict::Acknowledged => "acknowledged",
            Verdict::Retry { .. } => "retry",
            Verdict::TooLarge => "too-large",
            Verdict::Refused { .. } => "refused",
        };
        self.metrics.add("ferry_http_requests_total", &[("sink", &self.name), ("outcome", outcome)], 1);
        verdict
    }
}

/// Reads at most [`RESPONSE_EXCERPT`] bytes of a response body, draining the
/// rest so that the connection can be reused.
async fn read_excerpt(mut body: hyper::body::Incoming) -> Vec<u8> {
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            let room = RESPONSE_EXCERPT.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    kept
}

/// An error and its causes on one line ("client error (Connect): tcp
/// connect error: Connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

impl Sink for HttpSink {
    fn deliver<'a>(&'a self, events: &'a [OutEvent]) -> DeliverFuture<'a> {
        Box::pin(async move { Ok(self.send_batch(events).await) })
    }

    fn concurrency(&self) -> usize {
        self.max_connections
    }
}
