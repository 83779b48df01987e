//! The HTTP client side: a pooled hyper client over rustls, and the request
//! loop that retries each request until the receiver settles it.

use super::classify::{Attempt, StatusTable, classify};
use super::encode;
use super::{BodyFormat, HttpSinkConfig};
use crate::config::{ConfigError, Context};
use crate::error::one_line;
use crate::metrics::Metrics;
use crate::retry::{Backoff, DEFAULT_MAX_RETRY_AFTER, Retry};
use crate::shutdown::Stopped;
use crate::sink::{DeliverFuture, Delivery, OutEvent, RetryableError, Sink, retry_until};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Bytes of a response body kept for error messages and dead letters.
const RESPONSE_EXCERPT: usize = 1024;

/// Most bytes of a response body read (the rest is dropped with the
/// connection). The status has already settled the request; the body only
/// gives a reason, and a receiver whose body never ends must not hold a
/// delivery, or turn an acknowledgement into a re-send.
const RESPONSE_READ_BYTES: usize = 64 << 10;

/// Longest time spent reading a response body once the status arrived, for
/// the same reason.
const RESPONSE_READ_TIME: Duration = Duration::from_secs(2);

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
    statuses: StatusTable,
    /// When each cause of retries was last reported at ERROR.
    reported: Mutex<HashMap<String, Instant>>,
    backoff: Backoff,
    max_retry_after: Duration,
    connections: Arc<Semaphore>,
    max_connections: usize,
    metrics: Arc<Metrics>,
    /// Request bodies for reuse.
    buffers: encode::Buffers,
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
    pub fn build(
        name: &str,
        config: &HttpSinkConfig,
        ctx: &Context,
        logstash: bool,
        metrics: Arc<Metrics>,
    ) -> Result<HttpSink, ConfigError> {
        let key = |field: &str| format!("sinks.{name}.{field}");
        let invalid = |field: &str, message: String| ctx.invalid(key(field), message);
        let url: Uri = config.url.parse().map_err(|err| invalid("url", format!("`{}` is not a URL: {err}", config.url)))?;
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("url", format!("`{}` must start with https:// (or http:// for a receiver without TLS)", config.url))),
        };
        if url.host().is_none() {
            return Err(invalid("url", format!("`{}` has no host", config.url)));
        }
        if !https && (config.cert.is_some() || config.key.is_some()) {
            tracing::warn!(sink = name, url = %config.url, "The sink's URL is http://, so its client certificate (cert, key) is never sent; use https:// for mutual TLS.");
        }
        let files = crate::tls::ClientFiles {
            ca: config.ca.as_ref().map(|p| ctx.resolve(p)),
            cert: config.cert.as_ref().map(|p| ctx.resolve(p)),
            key: config.key.as_ref().map(|p| ctx.resolve(p)),
        };
        // hyper-rustls sets ALPN itself from the enabled HTTP versions.
        let tls = crate::tls::client_config(&files, &[]).map_err(|err| ctx.invalid(format!("sinks.{name}"), err.to_string()))?;
        let max_connections = config.max_connections.unwrap_or(10);
        if max_connections == 0 {
            return Err(invalid("max-connections", "must be at least 1".into()));
        }
        if max_connections > Semaphore::MAX_PERMITS {
            return Err(invalid(
                "max-connections",
                format!("{max_connections} is more than the most ferry can track ({})", Semaphore::MAX_PERMITS),
            ));
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_nodelay(true);
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let connector =
            if https { builder.https_only() } else { builder.https_or_http() }.enable_http1().enable_http2().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(max_connections)
            .build(connector);
        let headers = config
            .headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::try_from(k.as_str()).map_err(|_| invalid("headers", format!("`{k}` is not a header name")))?;
                let mut value = HeaderValue::try_from(v.as_str())
                    .map_err(|_| invalid("headers", format!("the value of `{k}` is not a valid header value")))?;
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
            statuses: status_table(config, &invalid)?,
            reported: Mutex::new(HashMap::new()),
            backoff: Backoff {
                initial: config.retry_initial.map_or(Duration::from_millis(500), |d| d.0),
                max: config.retry_max.map_or(Duration::from_secs(30), |d| d.0),
            },
            max_retry_after: config.max_retry_after.map_or(DEFAULT_MAX_RETRY_AFTER, |d| d.0),
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            metrics,
            buffers: encode::Buffers::new(max_connections.min(4)),
        })
    }

    /// Checks that the receiver can be reached and takes our TLS: POSTs an
    /// empty JSON array, which Logstash's json codec decodes as zero events
    /// (as Fluentd's in_http does). The error names the URL and says what failed.
    pub async fn probe(&self) -> Result<(), String> {
        match self.send_once(&self.url, Bytes::from_static(b"[]"), "application/json", None).await.0 {
            Attempt::Acknowledged => Ok(()),
            Attempt::Retry { reason, .. } | Attempt::Refused { reason } => Err(format!("{}: {reason}", self.url)),
            Attempt::TooLarge => Err(format!("{}: HTTP 413 for an empty body", self.url)),
        }
    }

    /// Sends every request of a batch (concurrently, within the connection
    /// limit) and collects the events refused for good; [`Stopped`] as soon
    /// as shutdown cuts the retry wait of any request.
    async fn send_batch(&self, events: &[OutEvent], retry: Retry) -> Result<Delivery, Stopped> {
        let retry = retry.with_backoff(self.backoff).max_retry_after(self.max_retry_after);
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
                sends.push(self.send_range(url.clone(), events, range, retry.clone()));
            }
        }
        let settled = futures_util::future::try_join_all(sends).await?;
        refused.extend(settled.into_iter().flatten());
        Ok(Delivery { rejected: refused })
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
    async fn send_range(
        &self,
        url: Uri,
        events: &[OutEvent],
        range: Range<usize>,
        mut retry: Retry,
    ) -> Result<Vec<(usize, String)>, Stopped> {
        let mut pending = vec![range];
        let mut refused = Vec::new();
        while let Some(range) = pending.pop() {
            retry.reset();
            match self.send_until_settled(&url, &events[range.clone()], &mut retry).await? {
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
        Ok(refused)
    }

    /// One request, retried through `retry` (the one retry loop of this
    /// request) until the receiver acknowledges, refuses it, or finds it too
    /// large; [`Stopped`] when shutdown cuts a wait.
    async fn send_until_settled(&self, url: &Uri, events: &[OutEvent], retry: &mut Retry) -> Result<Settled, Stopped> {
        let mut body = self.buffers.take();
        let content_type = encode::write_body(events, self.format, &mut body);
        let (body, encoding) = match self.gzip {
            true => match encode::gzip(&body, self.buffers.take()) {
                Ok(packed) => {
                    self.buffers.put(body);
                    (packed, Some("gzip"))
                }
                Err(_) => (body, None),
            },
            false => (body, None),
        };
        let body = Bytes::from(body);
        let shutdown = retry.shutdown().clone();
        let settled = retry_until(&self.name, url, retry, &self.metrics, || {
            let body = body.clone();
            let mut shutdown = shutdown.clone();
            async move {
                let (attempt, cause) = {
                    // Waiting for a free connection is a wait like any
                    // other: shutdown ends it. (The semaphore is never
                    // closed, so acquiring only waits.)
                    let Ok(_slot) = shutdown.until(self.connections.acquire()).await else { return Ok(Err(Stopped)) };
                    self.send_once(url, body, content_type, encoding).await
                };
                if let Attempt::Retry { reason, .. } = &attempt {
                    self.metrics.add("ferry_http_retried_total", &[("sink", &self.name), ("cause", &cause)], 1);
                    self.report_retry(url, &cause, reason);
                }
                match attempt {
                    Attempt::Acknowledged => Ok(Ok(Settled::Acknowledged)),
                    Attempt::TooLarge => Ok(Ok(Settled::TooLarge("HTTP 413 Payload Too Large".into()))),
                    Attempt::Refused { reason } => Ok(Ok(Settled::Refused(reason))),
                    Attempt::Retry { reason, after } => Err(RetryableError { message: reason, retry_after: after }),
                }
            }
        })
        .await;
        self.buffers.recover(body);
        settled?
    }

    /// One attempt, and its cause for [`HttpSink::report_retry`]: the status,
    /// or `tls`, `connect` or `timeout` when none came.
    async fn send_once(&self, url: &Uri, body: Bytes, content_type: &'static str, encoding: Option<&'static str>) -> (Attempt, String) {
        let mut request = hyper::Request::builder().method(Method::POST).uri(url.clone()).header(CONTENT_TYPE, content_type);
        if let Some(encoding) = encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = match request.body(Full::new(body)) {
            Ok(request) => request,
            Err(err) => return (Attempt::Refused { reason: format!("cannot build the request: {err}") }, "request".to_owned()),
        };
        // The timeout bounds the wait for the status; the body is read
        // under its own bounds, since the status already settled the request.
        let started = std::time::Instant::now();
        let answer = match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                let read_time = self.timeout.min(RESPONSE_READ_TIME);
                Ok(Ok((parts.status, parts.headers, read_excerpt(body, read_time).await)))
            }
            Ok(Err(err)) => Ok(Err(err)),
            Err(elapsed) => Err(elapsed),
        };
        let (attempt, cause) = match answer {
            Ok(Ok((status, headers, body))) => (classify(status, &headers, &body, &self.statuses), status.as_u16().to_string()),
            Ok(Err(err)) => {
                let cause = if is_tls_failure(&err) { "tls" } else { "connect" };
                let reason = match crate::tls::Unreached::of(&err) {
                    Some(unreached) => unreached.at(&authority(url)),
                    None => one_line(&err),
                };
                (Attempt::Retry { reason, after: None }, cause.to_owned())
            }
            Err(_) => {
                (Attempt::Retry { reason: format!("no response within {:?} (timeout)", self.timeout), after: None }, "timeout".to_owned())
            }
        };
        let outcome = match &attempt {
            Attempt::Acknowledged => "acknowledged",
            Attempt::Retry { .. } => "retry",
            Attempt::TooLarge => "too-large",
            Attempt::Refused { .. } => "refused",
        };
        self.metrics.add("ferry_http_requests_total", &[("sink", &self.name), ("outcome", outcome)], 1);
        self.metrics.observe_sink_request(&self.name, started.elapsed());
        (attempt, cause)
    }
}

/// How often one cause of retries (a status, a TLS failure) is reported at
/// ERROR per sink: the first time, then once a minute while it lasts. Every
/// attempt is still logged at WARN by the retry loop.
const REPORT_EVERY: Duration = Duration::from_secs(60);

impl HttpSink {
    /// Reports a request the receiver did not take and that is retried, at
    /// ERROR, at most once per [`REPORT_EVERY`] per cause: a status or a TLS
    /// failure says the sink or a proxy before it is misconfigured or down,
    /// which an operator must hear of while the events wait. Connect errors
    /// and timeouts are left to the retry loop's WARN lines.
    fn report_retry(&self, url: &Uri, cause: &str, reason: &str) {
        if cause == "connect" || cause == "timeout" {
            return;
        }
        let now = Instant::now();
        {
            let mut reported = self.reported.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match reported.get(cause) {
                Some(last) if now.saturating_duration_since(*last) < REPORT_EVERY => return,
                _ => reported.insert(cause.to_owned(), now),
            };
        }
        let what = match cause.parse::<u16>() {
            Ok(408 | 429) => "The receiver is too busy to take ferry's requests",
            Ok(status) if status >= 500 => "The receiver (or a proxy in front of it) is down or failing",
            _ => "The receiver (or a proxy in front of it) refuses ferry's requests; check the sink's url, certificate and credentials",
        };
        tracing::error!(
            sink = %self.name,
            %url,
            cause,
            "{what}: {reason}. Its events wait and are retried, none is dead-lettered; reported once a minute while it lasts."
        );
    }
}

/// Whether a request failed in the TLS layer (a certificate refused on
/// either side, a handshake alert), looking through the whole chain,
/// `io::Error` wrappers included (their `source()` skips what they wrap).
/// `host:port` of `url`, the port given or the scheme's.
fn authority(url: &Uri) -> String {
    let host = url.host().unwrap_or_default();
    let port = url.port_u16().unwrap_or(if url.scheme_str() == Some("http") { 80 } else { 443 });
    format!("{host}:{port}")
}

fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_tls_failure(inner)
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// The sink's [`StatusTable`] from its `success-statuses`, `retry-statuses`
/// and `dead-letter-statuses`: each a real status (100 to 599), and no
/// status in two lists, since that would leave what it means to chance.
fn status_table(config: &HttpSinkConfig, invalid: &dyn Fn(&str, String) -> ConfigError) -> Result<StatusTable, ConfigError> {
    let table = StatusTable {
        success: config.success_statuses.clone().unwrap_or_default(),
        retry: config.retry_statuses.clone().unwrap_or_default(),
        dead_letter: config.dead_letter_statuses.clone().unwrap_or_default(),
    };
    for (key, list) in
        [("success-statuses", &table.success), ("retry-statuses", &table.retry), ("dead-letter-statuses", &table.dead_letter)]
    {
        if let Some(status) = list.iter().find(|status| !(100..600).contains(*status)) {
            return Err(invalid(key, format!("{status} is not an HTTP status (100 to 599)")));
        }
    }
    if let Some(status) = table.dead_letter.iter().find(|status| table.retry.contains(status)) {
        return Err(invalid(
            "dead-letter-statuses",
            format!("{status} is also in `retry-statuses`; a status is either retried or dead-lettered, list it once"),
        ));
    }
    for (key, list) in [("retry-statuses", &table.retry), ("dead-letter-statuses", &table.dead_letter)] {
        if let Some(status) = list.iter().find(|status| table.acknowledges(**status)) {
            let success = if table.success.is_empty() {
                "every 2xx is, unless `success-statuses` says otherwise"
            } else {
                "it is in `success-statuses`"
            };
            return Err(invalid(key, format!("{status} acknowledges a request ({success}); list it once")));
        }
    }
    Ok(table)
}

/// Keeps the first [`RESPONSE_EXCERPT`] bytes of a response body. Reads on
/// (so that a short body's connection can be reused) for at most
/// [`RESPONSE_READ_BYTES`] and `within`; a body that goes on past either is
/// dropped with its connection.
async fn read_excerpt<B>(mut body: B, within: Duration) -> Vec<u8>
where
    B: hyper::body::Body + Unpin,
    B::Data: bytes::Buf,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read < RESPONSE_READ_BYTES {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            // The end, a broken body, or out of time: the status stands.
            Ok(None | Some(Err(_))) | Err(_) => break,
        };
        if let Some(data) = frame.data_ref() {
            let chunk = bytes::Buf::chunk(data);
            read = read.saturating_add(bytes::Buf::remaining(data));
            let room = RESPONSE_EXCERPT.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    kept
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

impl Sink for HttpSink {
    fn deliver<'a>(&'a self, events: &'a [OutEvent], retry: Retry) -> DeliverFuture<'a> {
        Box::pin(self.send_batch(events, retry))
    }

    fn concurrency(&self) -> usize {
        self.max_connections
    }
}
