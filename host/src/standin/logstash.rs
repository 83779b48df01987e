//! A Logstash-compatible `http` input: HTTPS that requires a client
//! certificate signed by its CA (a missing one fails the handshake, as in
//! Logstash with `ssl_client_authentication => "required"`), decodes bodies
//! as Logstash's `json` codec does, answers `200 ok`, and records every
//! event. Faults can be scripted per request: a status, a slow answer, or a
//! dropped connection; or drawn at random for a share of all requests
//! ([`Chaos`], for the torture test).

use crate::tls::testpki::Pki;
use rustls::pki_types::pem::PemObject;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Logstash's default `max_content_length`: 100 MiB.
const MAX_CONTENT_LENGTH: usize = 100 << 20;

/// A scripted answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and no events recorded).
    Status(u16),
    /// Answer 429 with a `Retry-After` of this many seconds.
    TooManyRequests(u64),
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Drop the connection without an answer.
    Reset,
    /// Refuse with 400 and this body.
    BadRequest(String),
    /// Answer 503 with a `Retry-After` of this many seconds.
    Unavailable(u64),
    /// Take the events (they are recorded), answer 200, then send a body
    /// that never ends.
    EndlessBody,
    /// Record the events, then drop the connection without answering: the
    /// acknowledgement is lost after the events were stored, so the sender
    /// must send them again.
    AckLost,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Request path.
    pub path: String,
    /// `Content-Type` header.
    pub content_type: String,
    /// `Content-Encoding` header.
    pub content_encoding: String,
    /// `User-Agent` header, if one was sent.
    pub user_agent: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// Events decoded and recorded from it.
    pub events: usize,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<VecDeque<Fault>>,
    events: Mutex<Vec<Value>>,
    requests: Mutex<Vec<SeenRequest>>,
    handshake_failures: AtomicU64,
    record_to: Option<std::path::PathBuf>,
    stalled: tokio::sync::watch::Sender<bool>,
    waiting: AtomicU64,
    chaos: Mutex<Option<(Chaos, fastrand::Rng)>>,
    chaos_count: Mutex<ChaosCount>,
}

/// A running stand-in. Stops when dropped.
pub struct LogstashStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The PKI whose CA signed the server certificate and must sign clients'.
    pub pki: Pki,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LogstashStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LogstashStandIn {
    /// Starts on `127.0.0.1` at a free port, with a fresh PKI. Events are
    /// also appended to `record_to` as JSON Lines when given.
    pub async fn start(record_to: Option<std::path::PathBuf>) -> std::io::Result<LogstashStandIn> {
        let pki = Pki::generate("logstash").map_err(std::io::Error::other)?;
        Self::start_with(pki, record_to).await
    }

    /// Starts with a given PKI (to share one CA between peers).
    pub async fn start_with(pki: Pki, record_to: Option<std::path::PathBuf>) -> std::io::Result<LogstashStandIn> {
        let certs = crate::tls::certs_from_pem(pki.server.cert.as_bytes()).ok_or_else(|| std::io::Error::other("no server certificate"))?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.server.key.as_bytes()).map_err(std::io::Error::other)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(crate::tls::certs_from_pem(pki.ca.cert.as_bytes()).unwrap_or_default());
        let tls = crate::tls::server_config(certs, key, Some(roots), &[b"h2", b"http/1.1"]).map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { record_to, ..Shared::default() });
        let task = tokio::spawn(serve(listener, acceptor, shared.clone()));
        Ok(LogstashStandIn { addr, shared, pki, task })
    }

    /// The URL to send events to.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.addr.port())
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues scripted answers for the next requests, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.shared.faults).extend(faults);
    }

    /// Every event recorded so far, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.shared.events).clone()
    }

    /// How many events were recorded.
    pub fn event_count(&self) -> usize {
        lock(&self.shared.events).len()
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.shared.requests).clone()
    }

    /// TLS handshakes that failed (for example a client without a certificate).
    pub fn handshake_failures(&self) -> u64 {
        self.shared.handshake_failures.load(Ordering::Relaxed)
    }

    /// While stalled, requests are held unanswered, as Logstash does when its
    /// queue is blocked.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stalled.send_replace(stalled);
    }

    /// Requests being held by a stall right now.
    pub fn held_requests(&self) -> u64 {
        self.shared.waiting.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(_) => {
                    shared.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| handle(request, shared.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// The error that makes hyper drop a connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("connection reset on purpose")]
struct ResetOnPurpose;

async fn handle(request: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<BoxBody<Bytes, std::convert::Infallible>>, ResetOnPurpose> {
    let mut stalled = shared.stalled.subscribe();
    if *stalled.borrow() {
        shared.waiting.fetch_add(1, Ordering::Relaxed);
        let _ = stalled.wait_for(|stalled| !*stalled).await;
        shared.waiting.fetch_sub(1, Ordering::Relaxed);
    }
    let fault = lock(&shared.faults).pop_front().or_else(|| chaos_fault(&shared));
    let header = |name: hyper::header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut seen = SeenRequest {
        path: request.uri().path().to_owned(),
        content_type: header(hyper::header::CONTENT_TYPE).unwrap_or_default(),
        content_encoding: header(hyper::header::CONTENT_ENCODING).unwrap_or_default(),
        user_agent: header(hyper::header::USER_AGENT),
        status: 200,
        events: 0,
    };
    let body = Limited::new(request.into_body(), MAX_CONTENT_LENGTH).collect().await;
    let response = match (fault, body) {
        (Some(Fault::Reset), _) => return Err(ResetOnPurpose),
        (Some(Fault::AckLost), Ok(collected)) => {
            if let Ok(events) = decode(&seen.content_type, &seen.content_encoding, &collected.to_bytes()) {
                lock(&shared.chaos_count).lost_ack_events += events.len() as u64;
                record(&shared, events);
            }
            return Err(ResetOnPurpose);
        }
        (Some(Fault::Status(code)), _) => answer(code, ""),
        (Some(Fault::TooManyRequests(seconds)), _) => {
            let mut response = answer(429, "");
            if let Ok(value) = seconds.to_string().parse() {
                response.headers_mut().insert(hyper::header::RETRY_AFTER, value);
            }
            response
        }
        (Some(Fault::BadRequest(text)), _) => answer(400, &text),
        (Some(Fault::Unavailable(seconds)), _) => {
            let mut response = answer(503, "");
            if let Ok(value) = seconds.to_string().parse() {
                response.headers_mut().insert(hyper::header::RETRY_AFTER, value);
            }
            response
        }
        (Some(Fault::EndlessBody), Ok(collected)) => {
            if let Ok(events) = decode(&seen.content_type, &seen.content_encoding, &collected.to_bytes()) {
                seen.events = events.len();
                record(&shared, events);
            }
            lock(&shared.requests).push(seen);
            // "ok", then a byte every 100 ms, for ever.
            let chunks = futures_util::stream::unfold(true, |first| async move {
                if !first {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let data = Bytes::from_static(if first { b"ok" } else { b" " });
                Some((Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(data)), false))
            });
            return Ok(Response::new(http_body_util::StreamBody::new(chunks).boxed()));
        }
        (_, Err(_)) => answer(413, ""),
        (fault, Ok(collected)) => {
            if let Some(Fault::Delay(delay)) = fault {
                tokio::time::sleep(delay).await;
            }
            match decode(&seen.content_type, &seen.content_encoding, &collected.to_bytes()) {
                Ok(events) => {
                    seen.events = events.len();
                    record(&shared, events);
                    answer(200, "ok")
                }
                Err(message) => answer(400, &message),
            }
        }
    };
    seen.status = response.status().as_u16();
    lock(&shared.requests).push(seen);
    Ok(response.map(BodyExt::boxed))
}

fn answer(code: u16, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !text.is_empty()
        && let Ok(value) = "text/plain".parse() {
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
    response
}

fn record(shared: &Shared, events: Vec<Value>) {
    if let Some(path) = &shared.record_to {
        let mut lines = Vec::new();
        for event in &events {
            lines.extend_from_slice(event.to_string().as_bytes());
            lines.push(b'\n');
        }
        let written = std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().create(true).append(true), 0o600).open(path).and_then(|mut f| std::io::Write::write_all(&mut f, &lines));
        if let Err(err) = written {
            tracing::warn!(path = %path.display(), error = %err, "Stand-in Logstash cannot record events.");
        }
    }
    lock(&shared.events).extend(events);
}

/// Decodes a body the way Logstash's http input does with its default codec
/// mapping (`application/json` → `json`), plus `application/x-ndjson` →
/// `json_lines` as a pipeline would configure it. A bad gzip/deflate body is
/// a 400; JSON that does not decode becomes one `_jsonparsefailure` event.
pub fn decode(content_type: &str, content_encoding: &str, body: &[u8]) -> Result<Vec<Value>, String> {
    let plain = match content_encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => body.to_vec(),
        "gzip" => inflate(flate2::read::GzDecoder::new(body))?,
        "deflate" => inflate(flate2::read::ZlibDecoder::new(body))?,
        other => return Err(format!("unsupported content encoding `{other}`")),
    };
    let text = String::from_utf8_lossy(&plain);
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Ok(match mime.as_str() {
        "application/json" => json_codec(&text),
        "application/x-ndjson" => text.lines().flat_map(json_codec).collect(),
        _ => vec![serde_json::json!({ "message": text })],
    })
}

fn inflate(mut reader: impl Read) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(|err| format!("cannot decompress the body: {err}"))?;
    Ok(out)
}

/// Logstash's `json` codec: blank → nothing; an object → one event; an
/// array of objects → one event each; anything else → one failure event.
fn json_codec(text: &str) -> Vec<Value> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    let failure = || vec![serde_json::json!({ "message": text, "tags": ["_jsonparsefailure"] })];
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => vec![Value::Object(object)],
        Ok(Value::Array(items)) if items.iter().all(Value::is_object) => items,
        _ => failure(),
    }
}

// Random faults (the torture test): kept together here, apart from the
// scripted ones, which they only feed.

/// Random faults: each request that no scripted fault answers fails with
/// probability `rate`, as one of a 500, a 503, a 429 with `Retry-After: 1`,
/// a reset connection or a lost acknowledgement ([`Fault::AckLost`]), in
/// equal shares. The draws come from `seed`, so a run can be replayed as far
/// as the requests arrive in the same order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chaos {
    /// Share of requests that fail, 0.0 to 1.0.
    pub rate: f64,
    /// Seed of the draws.
    pub seed: u64,
}

/// What the random faults did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChaosCount {
    /// Requests answered 500 or 503.
    pub statuses: u64,
    /// Requests answered 429 with `Retry-After: 1`.
    pub throttled: u64,
    /// Connections dropped before the events were stored.
    pub resets: u64,
    /// Connections dropped after the events were stored.
    pub lost_acks: u64,
    /// Events stored by requests whose acknowledgement was lost (scripted
    /// [`Fault::AckLost`] included): each may arrive again.
    pub lost_ack_events: u64,
}

impl LogstashStandIn {
    /// Fails a share of the requests from now on (none: stop failing).
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        *lock(&self.shared.chaos) = chaos.map(|chaos| (chaos, fastrand::Rng::with_seed(chaos.seed)));
    }

    /// What the random faults did so far.
    pub fn chaos_count(&self) -> ChaosCount {
        lock(&self.shared.chaos_count).clone()
    }
}

/// The random fault for one request, if it draws one.
fn chaos_fault(shared: &Shared) -> Option<Fault> {
    let fault = {
        let mut chaos = lock(&shared.chaos);
        let (settings, rng) = chaos.as_mut()?;
        if rng.f64() >= settings.rate {
            return None;
        }
        match rng.u8(0..5) {
            0 => Fault::Status(500),
            1 => Fault::Status(503),
            2 => Fault::TooManyRequests(1),
            3 => Fault::Reset,
            _ => Fault::AckLost,
        }
    };
    let mut count = lock(&shared.chaos_count);
    match fault {
        Fault::Status(_) => count.statuses += 1,
        Fault::TooManyRequests(_) => count.throttled += 1,
        Fault::Reset => count.resets += 1,
        _ => count.lost_acks += 1,
    }
    Some(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_like_logstash() {
        let json = "application/json";
        assert_eq!(decode(json, "", b"").expect("blank").len(), 0);
        assert_eq!(decode(json, "", br#"{"a":1}"#).expect("object"), vec![serde_json::json!({"a":1})]);
        assert_eq!(decode(json, "", br#"[{"a":1},{"b":2}]"#).expect("array").len(), 2);
        let failed = decode(json, "", b"[1,2]").expect("fallback");
        assert_eq!(failed[0]["tags"][0], "_jsonparsefailure");
        assert_eq!(decode("application/x-ndjson", "", b"{\"a\":1}\n{\"b\":2}\n").expect("lines").len(), 2);
        assert_eq!(decode("text/plain", "", b"hello").expect("plain")[0]["message"], "hello");
        assert!(decode(json, "gzip", b"not gzip").expect_err("bad gzip").contains("cannot decompress"));
    }

    #[test]
    fn chaos_fails_its_share_of_requests_with_every_fault_and_repeats_from_its_seed() {
        let draws = |seed: u64| {
            let shared = Shared::default();
            *lock(&shared.chaos) = Some((Chaos { rate: 0.1, seed }, fastrand::Rng::with_seed(seed)));
            let faults: Vec<Option<Fault>> = (0..10_000).map(|_| chaos_fault(&shared)).collect();
            (faults, lock(&shared.chaos_count).clone())
        };
        let (faults, count) = draws(7);
        assert_eq!(faults, draws(7).0, "the same seed draws the same faults");
        assert_ne!(faults, draws(8).0);
        let failed = faults.iter().flatten().count();
        assert!((800..=1200).contains(&failed), "{failed} of 10000 failed");
        for kind in [Fault::Status(500), Fault::Status(503), Fault::TooManyRequests(1), Fault::Reset, Fault::AckLost] {
            assert!(faults.contains(&Some(kind.clone())), "{kind:?} never drawn");
        }
        assert_eq!(count.statuses + count.throttled + count.resets + count.lost_acks, failed as u64);
        assert!(chaos_fault(&Shared::default()).is_none(), "no chaos unless asked for");
    }
}
