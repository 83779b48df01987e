//! The stand-in Auth Service misbehaving, for tests only (the `faults`
//! feature): scripted statuses, delays and cut streams per method; page
//! keys, export chunks and export cursors that expire or vanish; dropped
//! connections; a replaced server certificate; ids served as a buggy
//! backend would.

use super::{Method, Stored, TeleportStandIn, Validity, chunk_name, lock};
use ferry_proto::auditlog::{EventUnstructured, ExportUnstructuredEventsRequest};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Status;

/// A scripted misbehaviour for one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer UNAVAILABLE, as an Auth Service that is restarting.
    Unavailable,
    /// Answer with this status.
    Status(tonic::Code, String),
    /// Wait this long, then answer normally (a slow page).
    Delay(Duration),
    /// For a streaming call: send this many items, then fail with
    /// UNAVAILABLE (a stream dropped part-way). Other calls ignore it.
    DropStreamAfter(usize),
}

/// The misbehaviour asked for so far.
#[derive(Default)]
pub(super) struct Faults {
    scripted: Mutex<VecDeque<(Method, Fault)>>,
    /// Bumped to close every open connection (see `drop_connections`).
    generation: AtomicU64,
    /// Page keys carry the epoch they were issued in; keys of an older one
    /// are refused (see `expire_page_keys_after`).
    key_epoch: AtomicU64,
    /// Searches with a key still served before every key issued expires.
    keyed_until_expiry: Mutex<Option<usize>>,
    /// Export chunk names answered NOT_FOUND (see `vanish_chunk`).
    vanished: Mutex<HashSet<String>>,
    /// Export cursors are refused (see `refuse_export_cursors`).
    refuse_cursors: AtomicBool,
    /// Export chunk name → NOT_FOUND answers still to give before it is
    /// served (see `chunk_not_found`).
    not_found_left: Mutex<HashMap<String, usize>>,
    /// Export chunk name → NOT_FOUND answers given (any cause).
    not_found_served: Mutex<HashMap<String, usize>>,
    /// Export chunk names left out of every listing (see `unlist_chunk`).
    unlisted: Mutex<HashSet<String>>,
    /// Session id → what its recording's stream does instead of serving it
    /// (see `fail_recording`, `hang_recording`).
    recordings: Mutex<HashMap<String, RecordingFault>>,
    /// Session id → streams of it asked for (any answer).
    recording_asks: Mutex<HashMap<String, usize>>,
}

/// What a recording's stream does instead of serving it.
#[derive(Debug, Clone)]
pub(super) enum RecordingFault {
    /// Answer this status.
    Status(tonic::Code, String),
    /// Never answer (a backend stuck on the recording).
    Hang,
}

impl TeleportStandIn {
    /// Answers every stream of session `sid`'s recording with `code` until
    /// [`TeleportStandIn::heal_recording`], as a backend that cannot read it
    /// (an object store throttling, a corrupt upload, a role that may not).
    pub fn fail_recording(&self, sid: &str, code: tonic::Code) {
        let fault = RecordingFault::Status(code, format!("recording {sid} cannot be read (injected)"));
        lock(&self.shared.faults.recordings).insert(sid.to_owned(), fault);
    }

    /// Never answers a stream of session `sid`'s recording until healed.
    pub fn hang_recording(&self, sid: &str) {
        lock(&self.shared.faults.recordings).insert(sid.to_owned(), RecordingFault::Hang);
    }

    /// Serves session `sid`'s recording again.
    pub fn heal_recording(&self, sid: &str) {
        lock(&self.shared.faults.recordings).remove(sid);
    }

    /// How many streams of session `sid`'s recording were asked for.
    pub fn recording_asks(&self, sid: &str) -> usize {
        lock(&self.shared.faults.recording_asks).get(sid).copied().unwrap_or(0)
    }

    /// Closes every open connection the next time it is read from, as an
    /// Auth Service restart would: clients must connect again.
    pub fn drop_connections(&self) {
        self.shared.faults.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Replaces the server certificate; new connections get the new one
    /// (`Validity::Expired` makes every new handshake fail).
    pub fn set_server_validity(&self, validity: Validity) -> io::Result<()> {
        let config = lock(&self.shared.ca).server_config(validity)?;
        *self.shared.server_tls.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// Queues a fault for the next call of `method` (or of any method).
    /// Faults for the same method apply in order, one per call.
    pub fn inject(&self, method: Method, fault: Fault) {
        lock(&self.shared.faults.scripted).push_back((method, fault));
    }

    /// The next `n` calls of `method` answer UNAVAILABLE.
    pub fn fail_next(&self, method: Method, n: usize) {
        lock(&self.shared.faults.scripted).extend(std::iter::repeat_n((method, Fault::Unavailable), n));
    }

    /// After `n` more searches with a page key are served, every key issued
    /// until then is refused for good with INVALID_ARGUMENT, as a backend
    /// whose keys timed out: a client must search again without a key.
    pub fn expire_page_keys_after(&self, n: usize) {
        *lock(&self.shared.faults.keyed_until_expiry) = Some(n);
    }

    /// Export chunk `name` (of any date) stays listed but answers NOT_FOUND
    /// when read, as a chunk removed by retention after it was listed.
    /// Returns the events it held.
    pub fn vanish_chunk(&self, name: &str) -> Vec<EventUnstructured> {
        lock(&self.shared.faults.vanished).insert(name.to_owned());
        let Some(export) = &self.shared.export else { return Vec::new() };
        let held = export
            .days
            .values()
            .flat_map(|chunks| chunks.iter().enumerate().filter(|(number, _)| chunk_name(*number) == name).map(|(_, chunk)| chunk));
        held.flatten().map(|&at| self.shared.audit[at].event.clone()).collect()
    }

    /// Export chunk `name` (of any date) answers NOT_FOUND to the next
    /// `times` reads, then is served (`usize::MAX`: for good), as a backend
    /// that lists a chunk before it can be read.
    pub fn chunk_not_found(&self, name: &str, times: usize) {
        lock(&self.shared.faults.not_found_left).insert(name.to_owned(), times);
    }

    /// Export chunk `name` (of any date) is left out of every listing from
    /// now on and answers NOT_FOUND when read, as a chunk removed by
    /// retention.
    pub fn unlist_chunk(&self, name: &str) {
        lock(&self.shared.faults.unlisted).insert(name.to_owned());
        self.chunk_not_found(name, usize::MAX);
    }

    /// How often a read of export chunk `name` was answered NOT_FOUND.
    pub fn chunk_not_found_answers(&self, name: &str) -> usize {
        lock(&self.shared.faults.not_found_served).get(name).copied().unwrap_or(0)
    }

    /// From now on every export request that resumes inside a chunk (a
    /// non-empty `cursor`) answers INVALID_ARGUMENT, as a backend whose
    /// cursors expired: a client must read the chunk from its start.
    pub fn refuse_export_cursors(&self) {
        self.shared.faults.refuse_cursors.store(true, Ordering::SeqCst);
    }
}

impl Faults {
    /// Takes the next fault scripted for `method` and applies it;
    /// `Ok(Some(n))` cuts a stream after n items.
    pub(super) async fn apply(&self, method: Method) -> Result<Option<usize>, Status> {
        let fault = {
            let mut scripted = lock(&self.scripted);
            let at = scripted.iter().position(|(target, _)| *target == method || *target == Method::Any);
            at.and_then(|at| scripted.remove(at)).map(|(_, fault)| fault)
        };
        match fault {
            None => Ok(None),
            Some(Fault::Unavailable) => Err(Status::unavailable("stand-in: the Auth Service is unavailable (injected)")),
            Some(Fault::Status(code, message)) => Err(Status::new(code, message)),
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(None)
            }
            Some(Fault::DropStreamAfter(n)) => Ok(Some(n)),
        }
    }

    /// The epoch of the page keys a search may use and issues; a search
    /// with a key (`keyed`) counts down to their expiry.
    pub(super) fn page_key_epoch(&self, keyed: bool) -> u64 {
        if keyed {
            let mut countdown = lock(&self.keyed_until_expiry);
            match *countdown {
                Some(0) => {
                    self.key_epoch.fetch_add(1, Ordering::SeqCst);
                    *countdown = None;
                }
                Some(n) => *countdown = Some(n - 1),
                None => {}
            }
        }
        self.key_epoch.load(Ordering::SeqCst)
    }

    /// Refuses an export request for a vanished chunk or with a refused cursor.
    pub(super) fn check_export(&self, request: &ExportUnstructuredEventsRequest) -> Result<(), Status> {
        if lock(&self.vanished).contains(&request.chunk) || self.take_not_found(&request.chunk) {
            *lock(&self.not_found_served).entry(request.chunk.clone()).or_default() += 1;
            return Err(Status::not_found(format!("export chunk {:?} not found: removed by retention (injected)", request.chunk)));
        }
        if !request.cursor.is_empty() && self.refuse_cursors.load(Ordering::SeqCst) {
            return Err(Status::invalid_argument(format!("cursor {:?} has expired (injected)", request.cursor)));
        }
        Ok(())
    }

    /// Whether a read of `chunk` is to answer NOT_FOUND, counting it down.
    fn take_not_found(&self, chunk: &str) -> bool {
        let mut left = lock(&self.not_found_left);
        match left.get_mut(chunk) {
            Some(0) | None => false,
            Some(n) => {
                *n = n.saturating_sub(usize::from(*n != usize::MAX));
                true
            }
        }
    }

    /// Counts a stream of `sid`'s recording and answers it as its fault says:
    /// an error, a wait until it is healed, or nothing to do.
    pub(super) async fn check_recording(&self, sid: &str) -> Result<(), Status> {
        *lock(&self.recording_asks).entry(sid.to_owned()).or_default() += 1;
        loop {
            let fault = lock(&self.recordings).get(sid).cloned();
            match fault {
                None => return Ok(()),
                Some(RecordingFault::Status(code, message)) => return Err(Status::new(code, message)),
                Some(RecordingFault::Hang) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Whether export chunk `name` is left out of listings.
    pub(super) fn unlisted(&self, name: &str) -> bool {
        lock(&self.unlisted).contains(name)
    }

    /// The connection generation now; a connection of an older one closes.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// Serves each event's `uid` as its id as it is, empty when it has none.
pub(super) fn raw_ids(mut audit: Vec<Stored>) -> Vec<Stored> {
    for stored in &mut audit {
        let fields = stored.event.unstructured.as_ref().and_then(|raw| raw.to_struct().ok()).unwrap_or_default();
        stored.event.id = fields
            .fields
            .get("uid")
            .and_then(|uid| match &uid.kind {
                Some(prost_types::value::Kind::StringValue(uid)) => Some(uid.clone()),
                _ => None,
            })
            .unwrap_or_default();
    }
    audit
}

/// Gives each audit event whose `uid` is listed in `times` its time there,
/// in the page only: where it is searched and ordered stays.
pub(super) fn odd_times(mut audit: Vec<Stored>, times: &[(String, prost_types::Timestamp)]) -> Vec<Stored> {
    for stored in &mut audit {
        let uid = stored.event.unstructured.as_ref().and_then(|raw| raw.to_struct().ok()).and_then(|tree| {
            match tree.fields.get("uid").and_then(|uid| uid.kind.clone()) {
                Some(prost_types::value::Kind::StringValue(uid)) => Some(uid),
                _ => None,
            }
        });
        if let Some((_, time)) = times.iter().find(|(listed, _)| uid.as_deref() == Some(listed.as_str())) {
            stored.event.time = Some(*time);
        }
    }
    audit
}

/// Adds to the Struct of each audit event whose `uid` is in `uids` an entry
/// `"broken"` whose string is not UTF-8: bytes no JSON can carry.
pub(super) fn malform(mut audit: Vec<Stored>, uids: &[String]) -> Vec<Stored> {
    for stored in &mut audit {
        let Some(fields) = &stored.event.unstructured else { continue };
        let uid = fields.to_struct().ok().and_then(|tree| match tree.fields.get("uid").and_then(|uid| uid.kind.clone()) {
            Some(prost_types::value::Kind::StringValue(uid)) => Some(uid),
            _ => None,
        });
        if !uid.is_some_and(|uid| uids.contains(&uid)) {
            continue;
        }
        // Entry {1: "broken", 2: Value {3: 0xff 0xfe}}, as field 1 of the Struct.
        let broken: &[u8] = &[0x0a, 0x0e, 0x0a, 0x06, b'b', b'r', b'o', b'k', b'e', b'n', 0x12, 0x04, 0x1a, 0x02, 0xff, 0xfe];
        let wire = [fields.wire(), broken].concat();
        stored.event.unstructured = Some(ferry_proto::rawstruct::RawStruct::from_wire(wire));
    }
    audit
}
