//! A Logstash-compatible `http` input: HTTPS that requires a client
//! certificate signed by its CA (a missing one fails the handshake, as in
//! Logstash with `ssl_client_authentication => "required"`), decodes bodies
//! as Logstash's `json` codec does, answers `200 ok`, and records every
//! event. With the `faults` feature, faults can be scripted per request: a
//! status, a slow answer, or a dropped connection; or drawn at random for a
//! share of all requests (`Chaos`, for the torture test); and the input can
//! stall as a blocked Logstash queue does.
//!
//! For `ferry bench`, which sends it hundreds of thousands of events a
//! second, it can also count instead of record ([`LogstashStandIn::start_counting`]:
//! events and distinct events, without keeping any), and refuse or leave
//! unanswered every request without the `faults` feature ([`Refusal`]), as
//! a Logstash whose pipeline is down does.

use crate::pki::Pki;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Logstash's default `max_content_length`: 100 MiB.
const MAX_CONTENT_LENGTH: usize = 100 << 20;

#[cfg(feature = "faults")]
mod faults;
#[cfg(feature = "faults")]
pub use faults::{Chaos, ChaosCount, Fault};

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
    /// When its head arrived; with `took`, what `ferry bench` reports as
    /// the time a request spends at the receiver.
    pub arrived: std::time::Instant,
    /// From its head arriving to its events being recorded (or its answer;
    /// zero when a scripted fault answered).
    pub took: std::time::Duration,
}

/// How the stand-in answers every request, whatever it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It decodes and records the events and answers `200 ok`.
    None,
    /// It answers `503 Service Unavailable`, as a Logstash whose queue is
    /// full does, without decoding the body.
    ServiceUnavailable,
    /// It reads the request and never answers.
    NoAnswer,
}

/// What a counting stand-in saw since the last [`LogstashStandIn::take_tally`].
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Events decoded.
    pub events: usize,
    /// Events with distinct content (told apart by a 64-bit hash of their
    /// keys and values, in order: a collision among a million events has a
    /// chance of about one in 10^7).
    pub distinct: usize,
    /// Every request seen.
    pub requests: Vec<SeenRequest>,
}

#[derive(Default)]
struct Counts {
    events: usize,
    distinct: HashSet<u64>,
}

#[derive(Default)]
struct Shared {
    events: Mutex<Vec<Value>>,
    requests: Mutex<Vec<SeenRequest>>,
    /// Count events instead of recording them.
    counting: bool,
    counts: Mutex<Counts>,
    /// Keys the content hashes of `counts`, the same for the stand-in's life.
    hash_keys: std::hash::RandomState,
    /// A [`Refusal`] as a number (0 = `None`).
    refusal: AtomicU8,
    handshake_failures: AtomicU64,
    record_to: Option<std::path::PathBuf>,
    #[cfg(feature = "faults")]
    faults: faults::Faults,
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
        Self::start_shared(pki, Shared { record_to, ..Shared::default() }).await
    }

    /// Starts with a fresh PKI, counting events and distinct events (see
    /// [`LogstashStandIn::take_tally`]) instead of recording them: what a
    /// benchmark needs to know, at a cost per event far below decoding it
    /// into a `Value` and keeping it. [`LogstashStandIn::events`] stays empty.
    pub async fn start_counting() -> std::io::Result<LogstashStandIn> {
        let pki = Pki::generate("logstash").map_err(std::io::Error::other)?;
        Self::start_shared(pki, Shared { counting: true, ..Shared::default() }).await
    }

    async fn start_shared(pki: Pki, shared: Shared) -> std::io::Result<LogstashStandIn> {
        let tls = crate::tls::server_config(
            pki.server.cert.as_bytes(),
            pki.server.key.as_bytes(),
            pki.ca.cert.as_bytes(),
            &[b"h2", b"http/1.1"],
        )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(shared);
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

    /// What a counting stand-in saw since it started or since this was last
    /// called, and starts afresh: requests, events and distinct events.
    pub fn take_tally(&self) -> Tally {
        let requests = std::mem::take(&mut *lock(&self.shared.requests));
        let counts = std::mem::take(&mut *lock(&self.shared.counts));
        Tally { events: counts.events, distinct: counts.distinct.len(), requests }
    }

    /// Makes the stand-in answer every request from now on as `refusal` says.
    pub fn set_refusal(&self, refusal: Refusal) {
        let code = match refusal {
            Refusal::None => 0,
            Refusal::ServiceUnavailable => 1,
            Refusal::NoAnswer => 2,
        };
        self.shared.refusal.store(code, Ordering::Relaxed);
    }

    /// TLS handshakes that failed (for example a client without a certificate).
    pub fn handshake_failures(&self) -> u64 {
        self.shared.handshake_failures.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        // An answer must not wait for the client's delayed acknowledgement.
        let _ = tcp.set_nodelay(true);
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
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// The error that makes hyper drop a connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("connection reset on purpose")]
struct ResetOnPurpose;

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<BoxBody<Bytes, std::convert::Infallible>>, ResetOnPurpose> {
    #[cfg(feature = "faults")]
    let fault = shared.faults.next().await;
    let header = |name: hyper::header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut seen = SeenRequest {
        path: request.uri().path().to_owned(),
        content_type: header(hyper::header::CONTENT_TYPE).unwrap_or_default(),
        content_encoding: header(hyper::header::CONTENT_ENCODING).unwrap_or_default(),
        user_agent: header(hyper::header::USER_AGENT),
        status: 200,
        events: 0,
        arrived: std::time::Instant::now(),
        took: std::time::Duration::ZERO,
    };
    let body = Limited::new(request.into_body(), MAX_CONTENT_LENGTH).collect().await.map(|collected| collected.to_bytes());
    #[cfg(feature = "faults")]
    if let Some(fault) = fault
        && let Some(answered) = faults::respond(fault, &mut seen, body.as_ref().ok(), &shared).await
    {
        return answered;
    }
    match shared.refusal.load(Ordering::Relaxed) {
        0 => {}
        1 => {
            let response = answer(503, "queue full");
            seen.status = 503;
            seen.took = seen.arrived.elapsed();
            lock(&shared.requests).push(seen);
            return Ok(response.map(BodyExt::boxed));
        }
        _ => {
            lock(&shared.requests).push(seen);
            return std::future::pending().await;
        }
    }
    let response = match body {
        Err(_) => answer(413, ""),
        Ok(body) if shared.counting => match count(&seen.content_type, &seen.content_encoding, &body, &shared.hash_keys) {
            Ok(hashes) => {
                seen.events = hashes.len();
                let mut counts = lock(&shared.counts);
                counts.events += hashes.len();
                counts.distinct.extend(hashes);
                answer(200, "ok")
            }
            Err(message) => answer(400, &message),
        },
        Ok(body) => match decode(&seen.content_type, &seen.content_encoding, &body) {
            Ok(events) => {
                seen.events = events.len();
                record(&shared, events);
                answer(200, "ok")
            }
            Err(message) => answer(400, &message),
        },
    };
    seen.status = response.status().as_u16();
    seen.took = seen.arrived.elapsed();
    lock(&shared.requests).push(seen);
    Ok(response.map(BodyExt::boxed))
}

fn answer(code: u16, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !text.is_empty()
        && let Ok(value) = "text/plain".parse()
    {
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
        let written = std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().create(true).append(true), 0o600)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &lines));
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

/// The content hash of each event of a body, as [`decode`] would split it
/// into events. A JSON array of objects or an object, the common case, is
/// hashed as it is parsed, building nothing; any other body is decoded.
fn count(content_type: &str, content_encoding: &str, body: &[u8], keys: &std::hash::RandomState) -> Result<Vec<u64>, String> {
    let plain = matches!(content_encoding.trim(), "" | "identity");
    let json = content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json");
    if plain && json {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let mut hashes = Vec::new();
        let parsed = serde::de::DeserializeSeed::deserialize(fingerprint::Events { keys, hashes: &mut hashes }, &mut deserializer);
        if parsed.is_ok() && deserializer.end().is_ok() {
            return Ok(hashes);
        }
    }
    let events = decode(content_type, content_encoding, body)?;
    Ok(events
        .iter()
        .map(|event| {
            let mut hasher = keys.build_hasher();
            let text = event.to_string();
            let mut deserializer = serde_json::Deserializer::from_str(&text);
            let _ = serde::de::DeserializeSeed::deserialize(fingerprint::Value(&mut hasher), &mut deserializer);
            hasher.finish()
        })
        .collect())
}

/// Hashing JSON while it is parsed: every key and value, in order, with
/// its kind, so that `{"a":"1"}` and `{"a":1}` differ.
mod fingerprint {
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::hash::{BuildHasher, Hasher};

    /// A body: one object (one event) or an array of objects (one each).
    /// Anything else is an error, and the caller decodes the body instead.
    pub(super) struct Events<'a> {
        pub keys: &'a std::hash::RandomState,
        pub hashes: &'a mut Vec<u64>,
    }

    impl<'de> DeserializeSeed<'de> for Events<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Events<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object or an array of objects")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            let mut hasher = self.keys.build_hasher();
            Value(&mut hasher).visit_map(map)?;
            self.hashes.push(hasher.finish());
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Object { keys: self.keys, hashes: &mut *self.hashes })?.is_some() {}
            Ok(())
        }
    }

    /// An array element, which must be an object.
    struct Object<'a> {
        keys: &'a std::hash::RandomState,
        hashes: &'a mut Vec<u64>,
    }

    impl<'de> DeserializeSeed<'de> for Object<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_map(Events { keys: self.keys, hashes: self.hashes })
        }
    }

    /// Any JSON value, hashed into the hasher.
    pub(super) struct Value<'a, H>(pub &'a mut H);

    impl<'de, H: Hasher> DeserializeSeed<'de> for Value<'_, H> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    /// A map key, hashed into the hasher.
    struct Key<'a, H>(&'a mut H);

    impl<'de, H: Hasher> DeserializeSeed<'de> for Key<'_, H> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_str(Value(self.0))
        }
    }

    impl<'de, H: Hasher> Visitor<'de> for Value<'_, H> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.0.write_u8(0);
            Ok(())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
            self.0.write_u8(1 + u8::from(v));
            Ok(())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
            self.0.write_u8(3);
            self.0.write_i64(v);
            Ok(())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
            self.0.write_u8(4);
            self.0.write_u64(v);
            Ok(())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
            self.0.write_u8(5);
            self.0.write_u64(v.to_bits());
            Ok(())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
            self.0.write_u8(6);
            self.0.write(v.as_bytes());
            self.0.write_u8(0xff);
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.0.write_u8(7);
            while seq.next_element_seed(Value(&mut *self.0))?.is_some() {}
            self.0.write_u8(8);
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.0.write_u8(9);
            while map.next_key_seed(Key(&mut *self.0))?.is_some() {
                map.next_value_seed(Value(&mut *self.0))?;
            }
            self.0.write_u8(10);
            Ok(())
        }
    }
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
    fn counting_splits_bodies_as_decoding_does_and_tells_events_apart_by_content() {
        let keys = std::hash::RandomState::new();
        let json = "application/json";
        let bodies: [&[u8]; 6] = [b"", br#"{"a":1}"#, br#"[{"a":1},{"b":2},{"a":1}]"#, b"[1,2]", b"{\"a\":1}\n{\"b\":2}\n", br#"[{"a":1}"#];
        for body in bodies {
            for content_type in [json, "application/x-ndjson"] {
                let counted = count(content_type, "", body, &keys).expect("counted");
                assert_eq!(counted.len(), decode(content_type, "", body).expect("decoded").len(), "{}", String::from_utf8_lossy(body));
            }
        }
        let hashes = count(
            json,
            "",
            br#"[{"a":1,"b":[true,null,"x"]},{"a":"1","b":[true,null,"x"]},{"b":[true,null,"x"],"a":1},{"a":1,"b":[true,null,"x"]}]"#,
            &keys,
        )
        .expect("counted");
        assert_ne!(hashes[0], hashes[1], "a number is not a string");
        assert_ne!(hashes[0], hashes[2], "keys in another order make another event");
        assert_eq!(hashes[0], hashes[3], "the same event twice");
        let whole = count(json, "", br#"{"a":1,"b":[true,null,"x"]}"#, &keys).expect("counted");
        assert_eq!(whole, vec![hashes[0]], "an object alone hashes as it does in an array");
        let hostile = count("application/x-ndjson", "", br#"{"a":1,"b":[true,null,"x"]}"#, &keys).expect("counted");
        assert_eq!(hostile, vec![hashes[0]], "a decoded event hashes as a parsed one");
    }
}
