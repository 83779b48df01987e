//! A Teleport-compatible Auth Service: real gRPC (tonic) over mutual TLS,
//! speaking Teleport's own protocol (`teleport.auditlog.v1.AuditLogService`
//! and `proto.AuthService/UpsertLock`) and serving events from fixtures.
//!
//! What it keeps of Teleport's behaviour:
//! - its own cluster CA (common name and organisation = the cluster name,
//!   as Teleport's), a server certificate for `teleport.cluster.local`, and
//!   identity files for clients in `tctl auth sign --format=file` layout
//!   (private key, SSH certificate, TLS certificate, SSH CA line, TLS CA);
//! - clients must present a certificate signed by that CA;
//! - `GetUnstructuredEvents`: events with `start_date <= time < end_date`,
//!   of `event_types` (all when empty), oldest first with `ORDER_ASCENDING`
//!   (newest first otherwise), at most `limit` (500 when 0), `start_key` to
//!   resume after a page; `last_key` is set whenever a page is full, so a
//!   client must expect a last page that is empty, as with DynamoDB;
//! - `StreamUnstructuredSessionEvents`: the session's events whose index is
//!   at least `start_index`; `print` events get a base64 `data` field, as
//!   Teleport adds server-side; an unknown session is NOT_FOUND;
//! - the bulk export API: per UTC date, chunks of events in no order
//!   (`GetEventExportChunks`), each streamed with a resume cursor after every
//!   event (`ExportUnstructuredEvents`); or UNIMPLEMENTED for both, like the
//!   FileLog, DynamoDB and Firestore backends, to force the legacy engine;
//! - `UpsertLock` is recorded (see [`TeleportStandIn::locks`]).
//!
//! With the `faults` feature (tests only), faults are scripted per method:
//! UNAVAILABLE or any status, a delay, a stream that fails part-way; page
//! keys can be made to expire (every key issued so far answers
//! INVALID_ARGUMENT for good, as a backend whose keys timed out); an export
//! chunk can vanish between its listing and its reading (NOT_FOUND, as
//! retention removes it); events can be served with the ids they carry, even
//! empty or repeated; the server certificate can be made to expire; open
//! connections can be dropped. Always: identities can be issued expired or
//! by a foreign CA, and it records every connection (SNI, offered ALPN,
//! client certificate) and every call.
//!
//! Teleport's side of the identity file, the TLS names and ALPN routing is
//! written here from Teleport's definitions, not taken from ferry's reader,
//! so that a mistake in one shows as a failure against the other.

use crate::tls::write_private;
use base64::Engine as _;
use ferry_proto::auditlog::audit_log_service_server::{AuditLogService, AuditLogServiceServer};
use ferry_proto::auditlog::{
    EventExportChunk, EventUnstructured, EventsUnstructured, ExportEventUnstructured, ExportUnstructuredEventsRequest,
    GetEventExportChunksRequest, GetUnstructuredEventsRequest, Order, StreamUnstructuredSessionEventsRequest,
};
use ferry_proto::auth::auth_service_server::{AuthService, AuthServiceServer};
use ferry_proto::rawstruct::RawStruct;
use ferry_proto::structjson::json_to_struct;
use ferry_proto::types::LockV2;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::ServerConfig;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The audit events ferry's demo and tests serve by default.
const FIXTURE_EVENTS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-events.jsonl"));
/// One recorded SSH session (160 events).
const FIXTURE_SESSION: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-session-events.jsonl"));

/// Teleport's page size when a search asks for none.
const DEFAULT_LIMIT: usize = 500;
/// The largest page served.
const MAX_LIMIT: usize = 10_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// The server name on every certificate Teleport issues to its services
/// (`constants.APIDomain`).
const API_DOMAIN: &str = "teleport.cluster.local";
/// Prefix of the ALPN protocol that asks a Proxy with TLS routing for a
/// cluster's Auth Service (`constants.ALPNSNIAuthProtocol`).
const ALPN_AUTH_PREFIX: &str = "teleport-auth@";
/// HTTP/2 over TLS, which gRPC needs.
const ALPN_H2: &[u8] = b"h2";

#[cfg(feature = "faults")]
mod faults;
#[cfg(feature = "faults")]
pub use faults::Fault;

// === Options ===

/// How long a certificate the stand-in issues is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From five minutes ago (clock skew) until this long from now.
    For(Duration),
    /// From two hours ago until one hour ago.
    Expired,
}

/// What the stand-in serves and how.
#[derive(Debug, Clone)]
pub struct StandInOptions {
    /// The cluster name: the CA's common name, and the name TLS routing
    /// expects in ALPN. Default `ferry.test`.
    pub cluster_name: String,
    /// The audit log, in any order (served oldest first by `time`). Default:
    /// the 183 fixture events.
    pub events: Vec<Value>,
    /// Recorded sessions by session id. Default: the fixture session under
    /// its own `sid`.
    pub sessions: BTreeMap<String, Vec<Value>>,
    /// Add a `session.upload` audit event for each session, just after its
    /// last event, as Teleport does when a recording is uploaded. Default off
    /// (the audit log is exactly `events`).
    pub announce_sessions: bool,
    /// Implement the bulk export API; when off, both export methods answer
    /// UNIMPLEMENTED. Default on.
    pub export_api: bool,
    /// Events per export chunk. Default 50.
    pub chunk_size: usize,
    /// How long each export chunk stream waits before it is answered, as a
    /// backend that fetches the chunk first: reading chunks one after
    /// another pays it per chunk, reading them at once pays it once per
    /// round. Default none.
    pub export_stream_delay: Duration,
    /// Act as a Proxy with TLS routing: refuse connections that do not offer
    /// ALPN `teleport-auth@<hex(cluster)>.teleport.cluster.local`. Default off.
    pub tls_routing: bool,
    /// The server certificate's validity. Default 24 hours.
    pub server_validity: Validity,
    /// Where to listen. Default: `127.0.0.1` at a free port.
    pub listen: Option<SocketAddr>,
    /// Serve an audit event only once the clock has passed its `time`, as a
    /// cluster that writes its log as things happen: `events` timed in the
    /// next hour are a log that grows for an hour (the soak run's Teleport).
    /// Default off: the whole log from the start.
    pub live: bool,
    /// Serve each audit event's `uid` as its id as it is, empty when it has
    /// none, as a backend with a bug would; default off: Teleport's
    /// `computeEventID` (the SHA-256 of the JSON for an event without one).
    #[cfg(feature = "faults")]
    pub raw_ids: bool,
    /// Serve the audit events with these `uid`s with a Struct that holds a
    /// string that is not UTF-8, as a backend with a bug might; default
    /// none.
    #[cfg(feature = "faults")]
    pub malformed_uids: Vec<String>,
    /// Serve the audit events with these `uid`s with this `time` in the
    /// page (before 1970, after 9999, nanos out of range), as a backend
    /// whose index and event disagree might; they are still searched and
    /// ordered by their JSON `time`. Default none.
    #[cfg(feature = "faults")]
    pub odd_times: Vec<(String, prost_types::Timestamp)>,
}

impl Default for StandInOptions {
    fn default() -> Self {
        StandInOptions {
            cluster_name: "ferry.test".into(),
            events: fixture_events(),
            sessions: fixture_sessions(),
            announce_sessions: false,
            export_api: true,
            chunk_size: 50,
            export_stream_delay: Duration::ZERO,
            tls_routing: false,
            server_validity: Validity::For(Duration::from_secs(24 * 3600)),
            listen: None,
            live: false,
            #[cfg(feature = "faults")]
            raw_ids: false,
            #[cfg(feature = "faults")]
            malformed_uids: Vec::new(),
            #[cfg(feature = "faults")]
            odd_times: Vec::new(),
        }
    }
}

/// The fixture audit events (`fixtures/teleport-events.jsonl`).
pub fn fixture_events() -> Vec<Value> {
    json_lines(FIXTURE_EVENTS)
}

/// The fixture session (`fixtures/teleport-session-events.jsonl`) under its `sid`.
pub fn fixture_sessions() -> BTreeMap<String, Vec<Value>> {
    let events = json_lines(FIXTURE_SESSION);
    let sid = events.iter().find_map(|event| event.get("sid").and_then(Value::as_str)).unwrap_or("fixture-session").to_owned();
    BTreeMap::from([(sid, events)])
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|line| !line.trim().is_empty()).filter_map(|line| serde_json::from_str(line).ok()).collect()
}

// === Records ===

/// A method of the Auth Service: what a recorded call was (and, with the
/// `faults` feature, which calls a fault is for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Whichever call comes next.
    Any,
    /// `AuditLogService/GetUnstructuredEvents`.
    GetUnstructuredEvents,
    /// `AuditLogService/StreamUnstructuredSessionEvents`.
    StreamUnstructuredSessionEvents,
    /// `AuditLogService/GetEventExportChunks`.
    GetEventExportChunks,
    /// `AuditLogService/ExportUnstructuredEvents`.
    ExportUnstructuredEvents,
    /// `AuthService/UpsertLock`.
    UpsertLock,
}

/// A TLS connection as the stand-in saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The server name the client sent (SNI).
    pub sni: Option<String>,
    /// The ALPN protocols the client offered, in its order.
    pub alpn: Vec<String>,
    /// The client certificate's subject common name.
    pub common_name: String,
    /// The client certificate's serial number, lowercase hex.
    pub serial: String,
}

/// One call as the stand-in saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCall {
    /// The method called.
    pub method: Method,
    /// The connection it came on.
    pub peer: Option<PeerInfo>,
}

/// One `ExportUnstructuredEvents` request as the stand-in saw it: which
/// chunk of which date, from which cursor, and who asked (each instance of
/// a shared export has its own identity, so a test can tell them apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// The UTC date asked for, `YYYY-MM-DD`.
    pub date: String,
    /// The chunk's name.
    pub chunk: String,
    /// The cursor to resume after; empty from the chunk's start.
    pub cursor: String,
    /// The connection it came on.
    pub peer: Option<PeerInfo>,
}

/// An identity the stand-in wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedIdentity {
    /// The TLS client certificate's common name (the user).
    pub common_name: String,
    /// Its serial number, lowercase hex (as [`PeerInfo::serial`]).
    pub serial: String,
    /// When it expires.
    pub not_after: SystemTime,
}

/// What identity to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySpec {
    /// The Teleport user (certificate common name). Default `ferry`.
    pub user: String,
    /// Validity. Default one hour.
    pub validity: Validity,
    /// Sign the TLS certificate with a throw-away CA instead of the
    /// cluster's, so the stand-in refuses it. Default off.
    pub foreign_ca: bool,
}

impl Default for IdentitySpec {
    fn default() -> Self {
        IdentitySpec { user: "ferry".into(), validity: Validity::For(Duration::from_secs(3600)), foreign_ca: false }
    }
}

// === The stand-in ===

/// A running stand-in Auth Service. Stops when dropped.
pub struct TeleportStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TeleportStandIn {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Shared {
    cluster_name: String,
    tls_routing: bool,
    /// See [`StandInOptions::live`].
    live: bool,
    audit: Vec<Stored>,
    sessions: HashMap<String, Vec<EventUnstructured>>,
    export: Option<Export>,
    export_stream_delay: Duration,
    /// Export chunk streams open now, and the most ever open at once.
    export_streams: Mutex<(usize, usize)>,
    locks: Mutex<Vec<LockV2>>,
    calls: Mutex<Vec<SeenCall>>,
    export_requests: Mutex<Vec<ExportRequest>>,
    /// Audit events served in pages, repeats included.
    served: std::sync::atomic::AtomicU64,
    connections: Mutex<Vec<PeerInfo>>,
    handshake_errors: Mutex<Vec<String>>,
    refusals: tokio::sync::watch::Sender<usize>,
    server_tls: RwLock<Arc<ServerConfig>>,
    ca: Mutex<ClusterCa>,
    #[cfg(feature = "faults")]
    faults: faults::Faults,
}

/// Now, in nanoseconds since 1970, as [`Stored::position`] counts.
fn now_nanos() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| i128::try_from(since.as_nanos()).unwrap_or(i128::MAX))
}

/// An audit event and its place in the log: (time in ns, arrival number).
struct Stored {
    position: (i128, u64),
    event: EventUnstructured,
}

/// One date of the export as served: `YYYY-MM-DD`, and each chunk's name
/// with the ids of its events (see [`TeleportStandIn::export_layout`]).
pub type ExportDate = (String, Vec<(String, Vec<String>)>);

/// Export chunks: UTC day number → chunks → indices into `Shared::audit`.
struct Export {
    days: BTreeMap<i64, Vec<Vec<usize>>>,
}

impl TeleportStandIn {
    /// Starts on `options.listen`, by default `127.0.0.1` at a free port.
    pub async fn start(mut options: StandInOptions) -> io::Result<TeleportStandIn> {
        let mut ca = ClusterCa::generate(&options.cluster_name)?;
        let server_tls = ca.server_config(options.server_validity)?;
        let audit = audit_log(&mut options)?;
        #[cfg(feature = "faults")]
        let audit = if options.raw_ids { faults::raw_ids(audit) } else { audit };
        #[cfg(feature = "faults")]
        let audit = faults::malform(audit, &options.malformed_uids);
        let sessions =
            options.sessions.iter().map(|(sid, events)| Ok((sid.clone(), session_events(sid, events)?))).collect::<io::Result<_>>()?;
        let export = options.export_api.then(|| Export::of(&audit, options.chunk_size.max(1)));
        #[cfg(feature = "faults")]
        let audit = faults::odd_times(audit, &options.odd_times);
        let shared = Arc::new(Shared {
            cluster_name: options.cluster_name,
            tls_routing: options.tls_routing,
            live: options.live,
            audit,
            sessions,
            export,
            export_stream_delay: options.export_stream_delay,
            export_streams: Mutex::default(),
            locks: Mutex::default(),
            calls: Mutex::default(),
            export_requests: Mutex::default(),
            served: std::sync::atomic::AtomicU64::new(0),
            connections: Mutex::default(),
            handshake_errors: Mutex::default(),
            refusals: tokio::sync::watch::channel(0).0,
            server_tls: RwLock::new(Arc::new(server_tls)),
            ca: Mutex::new(ca),
            #[cfg(feature = "faults")]
            faults: faults::Faults::default(),
        });
        let listener = match options.listen {
            Some(addr) => TcpListener::bind(addr).await?,
            None => TcpListener::bind("127.0.0.1:0").await?,
        };
        let addr = listener.local_addr()?;
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), incoming_tx));
        let service = Service { shared: shared.clone() };
        let serve = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(AuditLogServiceServer::new(service.clone()))
                .add_service(AuthServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(incoming_rx))
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "The Teleport stand-in stopped.");
            }
        });
        Ok(TeleportStandIn { addr, shared, tasks: vec![accept, serve] })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The most export chunk streams that were open at the same time
    /// (from the request until the stream is dropped).
    pub fn most_export_streams_at_once(&self) -> usize {
        lock(&self.shared.export_streams).1
    }

    /// The address as ferry's `teleport.addr` takes it (`127.0.0.1:PORT`).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The cluster name.
    pub fn cluster_name(&self) -> &str {
        &self.shared.cluster_name
    }

    /// The cluster CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        lock(&self.shared.ca).cert_pem.clone()
    }

    /// Issues a fresh identity (new key, new serial) for user `ferry`, valid
    /// one hour, and writes it to `path` in Teleport's identity file layout.
    /// Call again to rotate it.
    pub fn write_identity(&self, path: &Path) -> io::Result<IssuedIdentity> {
        self.write_identity_with(path, &IdentitySpec::default())
    }

    /// Issues an identity as `spec` says and writes it to `path` (mode 0600,
    /// replaced atomically, as a reader polling the file expects).
    pub fn write_identity_with(&self, path: &Path, spec: &IdentitySpec) -> io::Result<IssuedIdentity> {
        let (file, issued) = lock(&self.shared.ca).identity(spec)?;
        write_private(path, &file.encode())?;
        Ok(issued)
    }

    /// Issues an identity and writes it as a `cert`/`key`/`ca` triple into
    /// `dir` (`tls.crt`, `tls.key`, `tls.cas`).
    pub fn write_key_pair(&self, dir: &Path, spec: &IdentitySpec) -> io::Result<IssuedIdentity> {
        let (file, issued) = lock(&self.shared.ca).identity(spec)?;
        std::fs::create_dir_all(dir)?;
        write_private(&dir.join("tls.crt"), &file.tls_cert)?;
        write_private(&dir.join("tls.key"), &file.private_key)?;
        write_private(&dir.join("tls.cas"), &file.tls_ca)?;
        Ok(issued)
    }

    /// Every lock upserted so far, in order.
    pub fn locks(&self) -> Vec<LockV2> {
        lock(&self.shared.locks).clone()
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<SeenCall> {
        lock(&self.shared.calls).clone()
    }

    /// Every `ExportUnstructuredEvents` request so far, in arrival order,
    /// refused ones (a fault, an unknown chunk) included.
    pub fn export_requests(&self) -> Vec<ExportRequest> {
        lock(&self.shared.export_requests).clone()
    }

    /// Every TLS connection established so far.
    pub fn connections(&self) -> Vec<PeerInfo> {
        lock(&self.shared.connections).clone()
    }

    /// Why each refused handshake failed, in order.
    pub fn handshake_errors(&self) -> Vec<String> {
        lock(&self.shared.handshake_errors).clone()
    }

    /// Waits (up to 10 s) until at least `n` handshakes have been refused,
    /// then returns why each was. A client may see the connection fail just
    /// before the stand-in has recorded it; this closes that gap without sleeping.
    pub async fn refusals(&self, n: usize) -> Vec<String> {
        let mut count = self.shared.refusals.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(10), count.wait_for(|&count| count >= n)).await;
        self.handshake_errors()
    }

    /// How many audit events `GetUnstructuredEvents` has served so far,
    /// counting an event again each time a page holds it: how far ahead of
    /// its sink a client has read.
    pub fn events_served(&self) -> u64 {
        self.shared.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The audit log as served: oldest first, as `EventUnstructured`.
    pub fn audit_events(&self) -> Vec<EventUnstructured> {
        self.shared.audit.iter().map(|stored| stored.event.clone()).collect()
    }

    /// A recorded session as served, `print` events with their `data`.
    pub fn session_events(&self, session_id: &str) -> Option<Vec<EventUnstructured>> {
        self.shared.sessions.get(session_id).cloned()
    }

    /// The `last_key` this stand-in gives a full page whose last event is
    /// the audit event `id` (the `start_key` of the page after it), as a
    /// client that read that page saved it; `None` for an id not in the log.
    /// Keys of the current epoch (faults can expire keys).
    pub fn page_key_after(&self, id: &str) -> Option<String> {
        let stored = self.shared.audit.iter().find(|stored| stored.event.id == id)?;
        #[cfg(feature = "faults")]
        let epoch = self.shared.faults.page_key_epoch(false);
        #[cfg(not(feature = "faults"))]
        let epoch = 0;
        Some(page_key(epoch, stored.position))
    }

    /// The export chunks as served: per UTC date (`YYYY-MM-DD`), oldest
    /// first, each chunk's name and the ids of its events in the order a
    /// chunk streams them. Empty without the export API.
    pub fn export_layout(&self) -> Vec<ExportDate> {
        let Some(export) = &self.shared.export else { return Vec::new() };
        let chunk = |number: usize, events: &Vec<usize>| {
            (chunk_name(number), events.iter().map(|&at| self.shared.audit[at].event.id.clone()).collect())
        };
        export
            .days
            .iter()
            .map(|(&day, chunks)| (date_text(day), chunks.iter().enumerate().map(|(n, events)| chunk(n, events)).collect()))
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// === Events ===

/// The audit log, sorted by position. Takes the events out of `options`
/// rather than copying them: a benchmark's log can be a million events.
fn audit_log(options: &mut StandInOptions) -> io::Result<Vec<Stored>> {
    let mut events = std::mem::take(&mut options.events);
    if options.announce_sessions {
        events.extend(options.sessions.iter().map(|(sid, recording)| upload_event(sid, recording)));
    }
    let mut stored = events
        .iter()
        .enumerate()
        .map(|(number, json)| {
            let event = unstructured(json).map_err(|reason| io::Error::other(format!("audit event {}: {reason}", number + 1)))?;
            Ok(Stored { position: (nanos(event.time.as_ref()), number as u64), event })
        })
        .collect::<io::Result<Vec<_>>>()?;
    stored.sort_by_key(|stored| stored.position);
    Ok(stored)
}

/// The `session.upload` event Teleport emits when a recording is uploaded.
fn upload_event(sid: &str, recording: &[Value]) -> Value {
    let last =
        recording.iter().filter_map(|event| event.get("time")?.as_str()).filter_map(|time| humantime::parse_rfc3339(time).ok()).max();
    let time = last.unwrap_or(UNIX_EPOCH) + Duration::from_millis(1);
    serde_json::json!({
        "code": "T2005I",
        "event": "session.upload",
        "sid": sid,
        "time": humantime::format_rfc3339_millis(time).to_string(),
        "uid": format!("upload-{sid}"),
        "url": format!("file:///var/lib/teleport/log/upload/streaming/default/{sid}.tar"),
    })
}

fn session_events(sid: &str, recording: &[Value]) -> io::Result<Vec<EventUnstructured>> {
    let mut events = recording
        .iter()
        .enumerate()
        .map(|(number, json)| {
            let mut json = json.clone();
            add_print_data(&mut json);
            unstructured(&json).map_err(|reason| io::Error::other(format!("session {sid}, event {}: {reason}", number + 1)))
        })
        .collect::<io::Result<Vec<_>>>()?;
    events.sort_by_key(|event| event.index);
    Ok(events)
}

/// Teleport adds the printed bytes to `print` events as base64 `data`. The
/// fixtures only say how many bytes there were, so the stand-in makes them
/// up, the same every time.
fn add_print_data(json: &mut Value) {
    let Some(object) = json.as_object_mut() else { return };
    if object.get("event").and_then(Value::as_str) != Some("print") || object.contains_key("data") {
        return;
    }
    let length = object.get("bytes").and_then(Value::as_u64).unwrap_or(0).min(1 << 20) as usize;
    let offset = object.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    const TEXT: &[u8] = b"ferry stand-in terminal output\r\n";
    let bytes: Vec<u8> = (0..length).map(|i| TEXT[(offset + i) % TEXT.len()]).collect();
    object.insert("data".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)));
}

/// An event as Teleport's `ToUnstructured` makes it.
fn unstructured(json: &Value) -> Result<EventUnstructured, String> {
    let fields = json_to_struct(json).map_err(|err| err.to_string())?;
    let text = |key: &str| json.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let time =
        json.get("time").and_then(Value::as_str).map(humantime::parse_rfc3339).transpose().map_err(|err| format!("bad `time`: {err}"))?;
    let id = match json.get("uid").and_then(Value::as_str) {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        // Teleport's computeEventID: the SHA-256 of the event's JSON.
        _ => ferry_event::content_id(&serde_json::to_vec(json).unwrap_or_default()),
    };
    Ok(EventUnstructured {
        r#type: text("event"),
        id,
        time: Some(time.unwrap_or(UNIX_EPOCH).into()),
        index: json.get("ei").and_then(Value::as_i64).unwrap_or(0),
        unstructured: Some(RawStruct::from_struct(&fields)),
    })
}

fn nanos(time: Option<&prost_types::Timestamp>) -> i128 {
    time.map_or(0, |t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
}

impl Export {
    fn of(audit: &[Stored], chunk_size: usize) -> Export {
        let mut by_day: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (at, stored) in audit.iter().enumerate() {
            let seconds = stored.event.time.as_ref().map_or(0, |t| t.seconds);
            by_day.entry(seconds.div_euclid(SECONDS_PER_DAY)).or_default().push(at);
        }
        let days = by_day.into_iter().map(|(day, events)| (day, events.chunks(chunk_size).map(<[usize]>::to_vec).collect())).collect();
        Export { days }
    }

    fn chunks(&self, date: Option<&prost_types::Timestamp>) -> &[Vec<usize>] {
        self.days.get(&day_of(date)).map_or(&[], Vec::as_slice)
    }
}

/// The UTC day number of an export request's date (day 0 without one).
fn day_of(date: Option<&prost_types::Timestamp>) -> i64 {
    date.map_or(0, |t| t.seconds.div_euclid(SECONDS_PER_DAY))
}

/// A UTC day number as `YYYY-MM-DD`.
fn date_text(day: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(day * SECONDS_PER_DAY).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()[..10].to_owned()
}

fn chunk_name(number: usize) -> String {
    format!("chunk-{number:04}")
}

// === Paging keys ===

fn page_key(epoch: u64, position: (i128, u64)) -> String {
    format!("{epoch}:{}:{}", position.0, position.1)
}

/// The position a key names; a key of an epoch before `epoch` has expired.
fn parse_page_key(key: &str, epoch: u64) -> Result<Option<(i128, u64)>, Status> {
    if key.is_empty() {
        return Ok(None);
    }
    let invalid = || Status::invalid_argument(format!("start_key {key:?} is not a key this server issued"));
    let mut parts = key.splitn(3, ':');
    let (Some(issued), Some(time), Some(number)) = (parts.next(), parts.next(), parts.next()) else { return Err(invalid()) };
    let issued: u64 = issued.parse().map_err(|_| invalid())?;
    if issued != epoch {
        return Err(Status::invalid_argument(format!("start_key {key:?} has expired")));
    }
    Ok(Some((time.parse().map_err(|_| invalid())?, number.parse().map_err(|_| invalid())?)))
}

// === The services ===

#[derive(Clone)]
struct Service {
    shared: Arc<Shared>,
}

type ItemStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Service {
    /// Records the call and applies its fault, if any; `Ok(Some(n))` cuts a
    /// stream after n items.
    async fn begin<T>(&self, method: Method, request: &Request<T>) -> Result<Option<usize>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        lock(&self.shared.calls).push(SeenCall { method, peer });
        #[cfg(feature = "faults")]
        return self.shared.faults.apply(method).await;
        #[cfg(not(feature = "faults"))]
        Ok(None)
    }

    /// One page of the audit log. The log is sorted by position, so the
    /// search window and the page key are found by binary search and a page
    /// costs what its events cost, not what the whole log does: a benchmark
    /// pages a log of a million events without the stand-in being the limit.
    fn page(&self, request: &GetUnstructuredEventsRequest) -> Result<EventsUnstructured, Status> {
        let from = request.start_date.as_ref().map_or(i128::MIN, |t| nanos(Some(t)));
        let to = request.end_date.as_ref().map_or(i128::MAX, |t| nanos(Some(t)));
        let to = if self.shared.live { to.min(now_nanos()) } else { to };
        let types: HashSet<&str> = request.event_types.iter().map(String::as_str).collect();
        let audit = &self.shared.audit;
        let window = &audit[audit.partition_point(|s| s.position.0 < from)..audit.partition_point(|s| s.position.0 < to)];
        let ascending = request.order == Order::Ascending as i32;
        // Keys carry an epoch; only faults move it on, expiring every key.
        #[cfg(feature = "faults")]
        let epoch = self.shared.faults.page_key_epoch(!request.start_key.is_empty());
        #[cfg(not(feature = "faults"))]
        let epoch = 0;
        let key = parse_page_key(&request.start_key, epoch)?;
        let limit = usize::try_from(request.limit).ok().filter(|&limit| limit > 0).map_or(DEFAULT_LIMIT, |limit| limit.min(MAX_LIMIT));
        let matches = |stored: &&Stored| types.is_empty() || types.contains(stored.event.r#type.as_str());
        let page: Vec<&Stored> = if ascending {
            let start = key.map_or(0, |key| window.partition_point(|s| s.position <= key));
            window[start..].iter().filter(matches).take(limit).collect()
        } else {
            let end = key.map_or(window.len(), |key| window.partition_point(|s| s.position < key));
            window[..end].iter().rev().filter(matches).take(limit).collect()
        };
        let last_key = match page.last() {
            Some(last) if page.len() == limit => page_key(epoch, last.position),
            _ => String::new(),
        };
        self.shared.served.fetch_add(page.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(EventsUnstructured { items: page.into_iter().map(|stored| stored.event.clone()).collect(), last_key })
    }

    fn record_export_request(&self, request: &Request<ExportUnstructuredEventsRequest>) {
        let asked = request.get_ref();
        lock(&self.shared.export_requests).push(ExportRequest {
            date: date_text(day_of(asked.date.as_ref())),
            chunk: asked.chunk.clone(),
            cursor: asked.cursor.clone(),
            peer: request.extensions().get::<PeerInfo>().cloned(),
        });
    }

    fn export(&self) -> Result<&Export, Status> {
        self.shared.export.as_ref().ok_or_else(|| Status::unimplemented("the bulk export API is not implemented by this audit log backend"))
    }
}

/// One export chunk stream counted in `Shared::export_streams` while it lives.
struct OpenExportStream {
    shared: Arc<Shared>,
}

impl OpenExportStream {
    fn new(shared: Arc<Shared>) -> OpenExportStream {
        {
            let mut streams = lock(&shared.export_streams);
            streams.0 += 1;
            streams.1 = streams.1.max(streams.0);
        }
        OpenExportStream { shared }
    }
}

impl Drop for OpenExportStream {
    fn drop(&mut self) {
        lock(&self.shared.export_streams).0 -= 1;
    }
}

fn stream_of<T: Send + 'static>(mut items: Vec<T>, cut: Option<usize>) -> ItemStream<T> {
    let mut results: Vec<Result<T, Status>> = Vec::new();
    if let Some(n) = cut {
        items.truncate(n);
        results.extend(items.into_iter().map(Ok));
        results.push(Err(Status::unavailable("stand-in: the stream was dropped (injected)")));
    } else {
        results.extend(items.into_iter().map(Ok));
    }
    Box::pin(tokio_stream::iter(results))
}

#[tonic::async_trait]
impl AuditLogService for Service {
    type StreamUnstructuredSessionEventsStream = ItemStream<EventUnstructured>;
    type ExportUnstructuredEventsStream = ItemStream<ExportEventUnstructured>;
    type GetEventExportChunksStream = ItemStream<EventExportChunk>;

    async fn get_unstructured_events(
        &self,
        request: Request<GetUnstructuredEventsRequest>,
    ) -> Result<Response<EventsUnstructured>, Status> {
        self.begin(Method::GetUnstructuredEvents, &request).await?;
        self.page(request.get_ref()).map(Response::new)
    }

    async fn stream_unstructured_session_events(
        &self,
        request: Request<StreamUnstructuredSessionEventsRequest>,
    ) -> Result<Response<Self::StreamUnstructuredSessionEventsStream>, Status> {
        let cut = self.begin(Method::StreamUnstructuredSessionEvents, &request).await?;
        let request = request.into_inner();
        #[cfg(feature = "faults")]
        self.shared.faults.check_recording(&request.session_id).await?;
        let recording = self.shared.sessions.get(&request.session_id);
        let recording = recording.ok_or_else(|| Status::not_found(format!("session {:?} not found", request.session_id)))?;
        let items = recording.iter().filter(|event| event.index >= i64::from(request.start_index)).cloned().collect();
        Ok(Response::new(stream_of(items, cut)))
    }

    async fn get_event_export_chunks(
        &self,
        request: Request<GetEventExportChunksRequest>,
    ) -> Result<Response<Self::GetEventExportChunksStream>, Status> {
        let cut = self.begin(Method::GetEventExportChunks, &request).await?;
        let chunks = self.export()?.chunks(request.get_ref().date.as_ref());
        // Teleport promises no order; serve the newest first to show it.
        let names = (0..chunks.len()).rev().map(|number| EventExportChunk { chunk: chunk_name(number) });
        #[cfg(feature = "faults")]
        let names = names.filter(|name| !self.shared.faults.unlisted(&name.chunk));
        let names = names.collect();
        Ok(Response::new(stream_of(names, cut)))
    }

    async fn export_unstructured_events(
        &self,
        request: Request<ExportUnstructuredEventsRequest>,
    ) -> Result<Response<Self::ExportUnstructuredEventsStream>, Status> {
        let open = OpenExportStream::new(self.shared.clone());
        self.record_export_request(&request);
        let cut = self.begin(Method::ExportUnstructuredEvents, &request).await?;
        if !self.shared.export_stream_delay.is_zero() {
            tokio::time::sleep(self.shared.export_stream_delay).await;
        }
        let request = request.into_inner();
        let chunks = self.export()?.chunks(request.date.as_ref());
        let chunk = (0..chunks.len()).find(|&number| chunk_name(number) == request.chunk).map(|number| &chunks[number]);
        let chunk = chunk.ok_or_else(|| Status::not_found(format!("export chunk {:?} not found for that date", request.chunk)))?;
        #[cfg(feature = "faults")]
        self.shared.faults.check_export(&request)?;
        let done = match request.cursor.as_str() {
            "" => 0,
            cursor => cursor
                .parse::<usize>()
                .ok()
                .filter(|&done| done <= chunk.len())
                .ok_or_else(|| Status::invalid_argument(format!("cursor {cursor:?} is not valid for this chunk")))?,
        };
        let items = (chunk.iter().enumerate().skip(done))
            .map(|(at, &event)| ExportEventUnstructured {
                event: Some(self.shared.audit[event].event.clone()),
                cursor: (at + 1).to_string(),
            })
            .collect();
        // Counted as open until the stream is dropped (sent or abandoned).
        let stream = tokio_stream::StreamExt::map(stream_of(items, cut), move |item| {
            let _open = &open;
            item
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl AuthService for Service {
    async fn upsert_lock(&self, request: Request<LockV2>) -> Result<Response<()>, Status> {
        self.begin(Method::UpsertLock, &request).await?;
        let lock_resource = request.into_inner();
        // As Teleport's CheckAndSetDefaults: a name and a target are required.
        if lock_resource.metadata.as_ref().is_none_or(|metadata| metadata.name.is_empty()) {
            return Err(Status::invalid_argument("missing parameter Name"));
        }
        let target = lock_resource.spec.as_ref().and_then(|spec| spec.target.as_ref());
        if target.is_none_or(|target| target.user.is_empty() && target.role.is_empty() && target.login.is_empty()) {
            return Err(Status::invalid_argument("at least one target field must be set"));
        }
        lock(&self.shared.locks).push(lock_resource);
        Ok(Response::new(()))
    }
}

// === TLS: accepting connections ===

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, incoming: mpsc::Sender<io::Result<PeerStream>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        // Without it a page's last segment waits for the client's delayed
        // acknowledgement (Nagle's algorithm): about 40 ms a page.
        let _ = tcp.set_nodelay(true);
        let (shared, incoming) = (shared.clone(), incoming.clone());
        tokio::spawn(async move {
            match handshake(tcp, &shared).await {
                Ok(stream) => {
                    #[cfg(feature = "faults")]
                    let stream = PeerStream { shared: Some(shared.clone()), ..stream };
                    lock(&shared.connections).push(stream.peer.clone());
                    let _ = incoming.send(Ok(stream)).await;
                }
                Err(reason) => {
                    lock(&shared.handshake_errors).push(reason);
                    shared.refusals.send_modify(|count| *count += 1);
                }
            }
        });
    }
}

async fn handshake(tcp: TcpStream, shared: &Shared) -> Result<PeerStream, String> {
    let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await.map_err(|err| err.to_string())?;
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_owned);
    let alpn: Vec<String> =
        hello.alpn().map(|offered| offered.map(|p| String::from_utf8_lossy(p).into_owned()).collect()).unwrap_or_default();
    if shared.tls_routing {
        let route = format!("{ALPN_AUTH_PREFIX}{}", encode_cluster_name(&shared.cluster_name));
        if !alpn.contains(&route) {
            return Err(format!("TLS routing: ALPN {alpn:?} does not ask for {route}"));
        }
    }
    let config = shared.server_tls.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let tls = start.into_stream(config).await.map_err(|err| err.to_string())?;
    let client = tls.get_ref().1.peer_certificates().and_then(<[_]>::first).and_then(|cert| certificate_info(cert).ok());
    let (common_name, serial) = client.map(|info| (info.common_name, info.serial)).unwrap_or_default();
    Ok(PeerStream {
        inner: tls,
        peer: PeerInfo { sni, alpn, common_name, serial },
        #[cfg(feature = "faults")]
        generation: shared.faults.generation(),
        #[cfg(feature = "faults")]
        shared: None,
    })
}

/// A TLS connection that tells tonic who is on the other end.
struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerInfo,
    /// The generation this connection belongs to; once the stand-in's
    /// moves on (`drop_connections`), the connection reads end-of-file and
    /// closes.
    #[cfg(feature = "faults")]
    generation: u64,
    #[cfg(feature = "faults")]
    shared: Option<Arc<Shared>>,
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        #[cfg(feature = "faults")]
        if this.shared.as_ref().is_some_and(|shared| shared.faults.generation() != this.generation) {
            return Poll::Ready(Ok(())); // End of file: hyper closes the connection.
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// === The cluster CA ===

/// The cluster's TLS CA (and an SSH CA for the identity's SSH parts).
struct ClusterCa {
    cluster_name: String,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    ssh: SshCa,
    next_serial: u64,
}

impl ClusterCa {
    fn generate(cluster_name: &str) -> io::Result<ClusterCa> {
        let (issuer, cert_pem) = new_ca(cluster_name)?;
        Ok(ClusterCa { cluster_name: cluster_name.to_owned(), issuer, cert_pem, ssh: SshCa::generate()?, next_serial: 4096 })
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// The Auth Service's TLS config: a certificate for `teleport.cluster.local`,
    /// client certificates required and verified against the cluster CA.
    fn server_config(&mut self, validity: Validity) -> io::Result<ServerConfig> {
        let key = KeyPair::generate().map_err(io::Error::other)?;
        let mut params = leaf_params("auth.ferry.test", validity, self.serial())?;
        for name in [API_DOMAIN.to_owned(), format!("*.{API_DOMAIN}"), encode_cluster_name(&self.cluster_name), "localhost".into()] {
            params.subject_alt_names.push(SanType::DnsName(name.try_into().map_err(io::Error::other)?));
        }
        params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(io::Error::other)?;
        crate::tls::server_config(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), self.cert_pem.as_bytes(), &[ALPN_H2])
    }

    /// A client identity as `tctl auth sign --format=file` lays it out.
    fn identity(&mut self, spec: &IdentitySpec) -> io::Result<(IdentityFile, IssuedIdentity)> {
        let key = KeyPair::generate().map_err(io::Error::other)?;
        let serial = self.serial();
        let mut params = leaf_params(&spec.user, spec.validity, serial)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = if spec.foreign_ca {
            let (foreign, _) = new_ca("foreign.test")?;
            params.signed_by(&key, &foreign)
        } else {
            params.signed_by(&key, &self.issuer)
        }
        .map_err(io::Error::other)?;
        let info = certificate_info(cert.der()).map_err(io::Error::other)?;
        let (valid_after, valid_before) = unix_window(spec.validity);
        let file = IdentityFile {
            private_key: key.serialize_pem().into_bytes(),
            ssh_cert: self.ssh.user_certificate(&key, serial, &spec.user, (valid_after, valid_before))?,
            tls_cert: cert.pem().into_bytes(),
            ssh_ca: self.ssh.known_hosts_line(&self.cluster_name),
            tls_ca: self.cert_pem.clone().into_bytes(),
        };
        Ok((file, IssuedIdentity { common_name: info.common_name, serial: info.serial, not_after: info.not_after }))
    }
}

/// An identity file's parts, PEM blocks or text lines.
struct IdentityFile {
    private_key: Vec<u8>,
    ssh_cert: Vec<u8>,
    tls_cert: Vec<u8>,
    ssh_ca: Vec<u8>,
    tls_ca: Vec<u8>,
}

impl IdentityFile {
    /// The file's text, in the order `tctl auth sign --format=file` writes
    /// it (`api/identityfile`, `encodeIdentityFile`): key, SSH certificate,
    /// TLS certificate, SSH CA lines, TLS CA certificates.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [&self.private_key, &self.ssh_cert, &self.tls_cert, &self.ssh_ca, &self.tls_ca] {
            out.extend_from_slice(part);
            if !part.ends_with(b"\n") {
                out.push(b'\n');
            }
        }
        out
    }
}

/// What the stand-in reports of a certificate.
struct CertInfo {
    common_name: String,
    serial: String,
    not_after: SystemTime,
}

/// The subject common name, serial (lowercase hex, no leading zero bytes,
/// as ferry prints it) and end of validity of a DER certificate.
fn certificate_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|err| format!("not an X.509 certificate ({err})"))?;
    let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_owned();
    let serial = cert.raw_serial();
    let serial = &serial[serial.iter().position(|&b| b != 0).unwrap_or(serial.len().saturating_sub(1))..];
    let not_after =
        u64::try_from(cert.validity().not_after.timestamp()).map_or(UNIX_EPOCH, |seconds| UNIX_EPOCH + Duration::from_secs(seconds));
    Ok(CertInfo { common_name, serial: hex(serial), not_after })
}

/// `<hex(cluster)>.teleport.cluster.local`, as Teleport's `EncodeClusterName`.
fn encode_cluster_name(cluster: &str) -> String {
    format!("{}.{API_DOMAIN}", hex(cluster.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A CA whose subject is the cluster name, as Teleport's (CN and O).
fn new_ca(cluster_name: &str) -> io::Result<(Issuer<'static, KeyPair>, String)> {
    let key = KeyPair::generate().map_err(io::Error::other)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
    params.distinguished_name.push(DnType::CommonName, cluster_name);
    params.distinguished_name.push(DnType::OrganizationName, cluster_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let (not_before, not_after) = offset_window(Validity::For(Duration::from_secs(10 * 365 * 24 * 3600)));
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.self_signed(&key).map_err(io::Error::other)?;
    Ok((Issuer::new(params, key), cert.pem()))
}

fn leaf_params(common_name: &str, validity: Validity, serial: u64) -> io::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.serial_number = Some(serial.into());
    let (not_before, not_after) = offset_window(validity);
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// Validity as Unix seconds (not before, not after).
fn unix_window(validity: Validity) -> (u64, u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    match validity {
        Validity::For(duration) => (now.saturating_sub(300), now.saturating_add(duration.as_secs())),
        Validity::Expired => (now.saturating_sub(7200), now.saturating_sub(3600)),
    }
}

fn offset_window(validity: Validity) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let (before, after) = unix_window(validity);
    let at = |seconds: u64| time::OffsetDateTime::from_unix_timestamp(seconds as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (at(before), at(after))
}

// === SSH parts of the identity ===

/// An Ed25519 SSH CA that signs OpenSSH user certificates for the identity
/// file, so the file has every part a real one has.
struct SshCa {
    key: ring::signature::Ed25519KeyPair,
}

impl SshCa {
    fn generate() -> io::Result<SshCa> {
        let random = ring::rand::SystemRandom::new();
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&random).map_err(|_| io::Error::other("cannot generate an Ed25519 key"))?;
        let key =
            ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| io::Error::other("cannot load the Ed25519 key"))?;
        Ok(SshCa { key })
    }

    fn public_blob(&self) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        let mut blob = Vec::new();
        put_string(&mut blob, b"ssh-ed25519");
        put_string(&mut blob, self.key.public_key().as_ref());
        blob
    }

    /// `@cert-authority <cluster>,*.<cluster> ssh-ed25519 … clustername=…&type=host`,
    /// as Teleport's `MarshalKnownHost`.
    fn known_hosts_line(&self, cluster: &str) -> Vec<u8> {
        let key = base64::engine::general_purpose::STANDARD.encode(self.public_blob());
        format!("@cert-authority {cluster},*.{cluster} ssh-ed25519 {key} clustername={cluster}&type=host\n").into_bytes()
    }

    /// An `ecdsa-sha2-nistp256-cert-v01@openssh.com` user certificate for the
    /// identity's (P-256) key, in authorized_keys form.
    fn user_certificate(&self, key: &KeyPair, serial: u64, user: &str, (valid_after, valid_before): (u64, u64)) -> io::Result<Vec<u8>> {
        const CERT_TYPE: &[u8] = b"ecdsa-sha2-nistp256-cert-v01@openssh.com";
        let mut nonce = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).map_err(|_| io::Error::other("no randomness"))?;
        let mut body = Vec::new();
        put_string(&mut body, CERT_TYPE);
        put_string(&mut body, &nonce);
        put_string(&mut body, b"nistp256");
        put_string(&mut body, key.public_key_raw());
        body.extend_from_slice(&serial.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes()); // a user certificate
        put_string(&mut body, user.as_bytes()); // key id
        let mut principals = Vec::new();
        put_string(&mut principals, user.as_bytes());
        put_string(&mut body, &principals);
        body.extend_from_slice(&valid_after.to_be_bytes());
        body.extend_from_slice(&valid_before.to_be_bytes());
        put_string(&mut body, b""); // critical options
        let mut extensions = Vec::new();
        put_string(&mut extensions, b"permit-pty");
        put_string(&mut extensions, b"");
        put_string(&mut body, &extensions);
        put_string(&mut body, b""); // reserved
        put_string(&mut body, &self.public_blob());
        let mut signature = Vec::new();
        put_string(&mut signature, b"ssh-ed25519");
        put_string(&mut signature, self.key.sign(&body).as_ref());
        put_string(&mut body, &signature);
        let encoded = base64::engine::general_purpose::STANDARD.encode(body);
        Ok(format!("{} {encoded}\n", String::from_utf8_lossy(CERT_TYPE)).into_bytes())
    }
}

/// SSH wire `string`: a big-endian u32 length, then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_events_get_deterministic_base64_data() {
        let mut event = serde_json::json!({"event": "print", "bytes": 5, "offset": 2, "ei": 3});
        add_print_data(&mut event);
        assert_eq!(event["data"], "cnJ5IHM="); // "rry s"
        let mut other = serde_json::json!({"event": "resize"});
        add_print_data(&mut other);
        assert!(other.get("data").is_none());
    }

    #[test]
    fn events_without_uid_are_identified_by_the_hash_of_their_json() {
        let event = unstructured(&serde_json::json!({"event": "x", "time": "2020-01-01T00:00:00Z"})).expect("event");
        assert_eq!(event.id.len(), 64);
        assert_eq!(event.time, Some(prost_types::Timestamp { seconds: 1_577_836_800, nanos: 0 }));
        let with_uid = unstructured(&serde_json::json!({"event": "x", "uid": "u-1", "ei": 7})).expect("event");
        assert_eq!((with_uid.id.as_str(), with_uid.index), ("u-1", 7));
    }

    #[test]
    fn the_ssh_user_certificate_is_signed_by_the_ssh_ca() {
        use ring::signature::KeyPair as _;
        let ca = SshCa::generate().expect("ssh ca");
        let key = KeyPair::generate().expect("key");
        let line = ca.user_certificate(&key, 7, "ferry", (1, 2)).expect("certificate");
        let line = String::from_utf8(line).expect("text");
        let (kind, encoded) = line.trim_end().split_once(' ').expect("two words");
        assert_eq!(kind, "ecdsa-sha2-nistp256-cert-v01@openssh.com");
        let blob = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
        // The last field: string(string("ssh-ed25519") string(64-byte signature)).
        let (signed, signature) = blob.split_at(blob.len() - (4 + 4 + 11 + 4 + 64));
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, ca.key.public_key().as_ref());
        public.verify(signed, &signature[signature.len() - 64..]).expect("a valid CA signature");
        let known_host = String::from_utf8(ca.known_hosts_line("ferry.test")).expect("text");
        assert!(known_host.starts_with("@cert-authority ferry.test,*.ferry.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"), "{known_host}");
    }

    /// Paging through the log with the binary-searched pages gives, for
    /// every order, type filter, window and page size, exactly the events
    /// a scan of the whole log picks, in its order, each once.
    #[tokio::test]
    async fn pages_found_by_binary_search_are_what_a_scan_of_the_log_gives() {
        let events: Vec<Value> = (0..97)
            .map(|n| (n, ["a", "b", "c"][n % 3]))
            .map(|(n, kind)| serde_json::json!({"event": kind, "uid": format!("u{n}"), "time": format!("2020-01-01T00:00:{:02}Z", (n * 7) % 40)}))
            .collect();
        let stand_in =
            TeleportStandIn::start(StandInOptions { events, sessions: BTreeMap::new(), export_api: false, ..StandInOptions::default() })
                .await
                .expect("start");
        let service = Service { shared: stand_in.shared.clone() };
        let at = |second: i64| Some(prost_types::Timestamp { seconds: 1_577_836_800 + second, nanos: 0 });
        for order in [Order::Ascending, Order::DescendingUnspecified] {
            for types in [vec![], vec!["b".to_owned()], vec!["a".to_owned(), "c".to_owned()], vec!["none".to_owned()]] {
                for (from, to) in [(None, None), (at(5), at(30)), (at(39), at(40)), (at(50), at(60))] {
                    for limit in [1, 7, 33, 500] {
                        let range = |stored: &&Stored| {
                            let time = nanos(stored.event.time.as_ref());
                            from.as_ref().is_none_or(|t| time >= nanos(Some(t))) && to.as_ref().is_none_or(|t| time < nanos(Some(t)))
                        };
                        let mut expected: Vec<String> = (stand_in.shared.audit.iter())
                            .filter(range)
                            .filter(|s| types.is_empty() || types.contains(&s.event.r#type))
                            .map(|s| s.event.id.clone())
                            .collect();
                        if order == Order::DescendingUnspecified {
                            expected.reverse();
                        }
                        let mut seen = Vec::new();
                        let mut start_key = String::new();
                        loop {
                            let request = GetUnstructuredEventsRequest {
                                namespace: "default".into(),
                                start_date: from,
                                end_date: to,
                                event_types: types.clone(),
                                limit,
                                start_key,
                                order: order.into(),
                            };
                            let page = service.page(&request).expect("a page");
                            assert!(page.items.len() <= limit as usize);
                            seen.extend(page.items.into_iter().map(|event| event.id));
                            if page.last_key.is_empty() {
                                break;
                            }
                            start_key = page.last_key;
                        }
                        assert_eq!(seen, expected, "{order:?} {types:?} {from:?}..{to:?} limit {limit}");
                    }
                }
            }
        }
        assert!(stand_in.events_served() > 0);
    }

    /// Each export request is recorded with its date, chunk, cursor and
    /// caller, refused ones too, so that a test of a shared export can tell
    /// who read what from where.
    #[tokio::test]
    async fn export_requests_are_recorded_with_their_chunk_cursor_and_caller() {
        let events = (0..5).map(|n| serde_json::json!({"event": "x", "uid": format!("u{n}"), "time": "2024-05-01T10:00:00Z"})).collect();
        let options = StandInOptions { events, sessions: BTreeMap::new(), chunk_size: 2, ..StandInOptions::default() };
        let stand_in = TeleportStandIn::start(options).await.expect("start");
        let service = Service { shared: stand_in.shared.clone() };
        let peer = PeerInfo { sni: None, alpn: Vec::new(), common_name: "ferry-b".into(), serial: "1001".into() };
        let ask = |chunk: &str, cursor: &str, peer: Option<PeerInfo>| {
            let mut request = Request::new(ExportUnstructuredEventsRequest {
                date: Some(prost_types::Timestamp { seconds: 1_714_521_600, nanos: 0 }), // 2024-05-01
                chunk: chunk.into(),
                cursor: cursor.into(),
            });
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            request
        };
        assert!(stand_in.export_requests().is_empty());
        assert!(service.export_unstructured_events(ask("chunk-0001", "", Some(peer.clone()))).await.is_ok());
        assert!(service.export_unstructured_events(ask("chunk-0002", "1", None)).await.is_ok());
        let refused = service.export_unstructured_events(ask("chunk-0009", "", None)).await.err().expect("an unknown chunk");
        assert_eq!(refused.code(), tonic::Code::NotFound);
        let seen: Vec<(String, String, String, Option<String>)> = (stand_in.export_requests().into_iter())
            .map(|asked| (asked.date, asked.chunk, asked.cursor, asked.peer.map(|peer| peer.common_name)))
            .collect();
        let row = |chunk: &str, cursor: &str, who: Option<&str>| ("2024-05-01".into(), chunk.into(), cursor.into(), who.map(Into::into));
        assert_eq!(seen, [row("chunk-0001", "", Some("ferry-b")), row("chunk-0002", "1", None), row("chunk-0009", "", None)]);
        assert_eq!(stand_in.export_requests()[0].peer.as_ref().map(|peer| peer.serial.as_str()), Some("1001"));
    }

    #[test]
    fn page_keys_round_trip_and_foreign_keys_are_refused() {
        assert_eq!(parse_page_key(&page_key(2, (-5, 9)), 2).expect("ours"), Some((-5, 9)));
        assert_eq!(parse_page_key("", 0).expect("empty"), None);
        assert_eq!(parse_page_key("nope", 0).expect_err("foreign").code(), tonic::Code::InvalidArgument);
        let expired = parse_page_key(&page_key(1, (-5, 9)), 2).expect_err("expired");
        assert_eq!((expired.code(), expired.message()), (tonic::Code::InvalidArgument, "start_key \"1:-5:9\" has expired"));
    }
}
