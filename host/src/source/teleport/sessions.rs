//! Streaming session recordings, one task per session.
//!
//! A task streams `StreamUnstructuredSessionEvents` from the session's next
//! index and sends each event, with its index, to the merge loop, which owns
//! the progress. A stream that breaks is opened again from the event after
//! the last one received. Failures are handled by their class
//! ([`super::status::classify`]) and by whom they are about:
//! - Teleport unreachable (UNAVAILABLE) or the identity refused
//!   (UNAUTHENTICATED) is about every call, not this recording: asked again
//!   (the identity slowly, with one ERROR line a minute) for as long as it
//!   lasts; the audit log reports the outage.
//! - Any other transient failure or PERMISSION_DENIED is about this
//!   recording: asked again [`TRIES_PER_ROUND`] times in a row, then the
//!   recording is handed back ([`SessionItem::Failing`]) to wait in the
//!   merge loop, which bounds the rounds and dead-letters it after the last,
//!   so that one recording Teleport cannot serve neither holds a stream for
//!   ever nor hides: it shows in `/readyz`, metrics and `ferry status`.
//! - A recording that is not there yet (NOT_FOUND) is handed back to be asked
//!   for later; any other permanent refusal is first answered by asking for
//!   the recording from its start (the events already forwarded are
//!   skipped), and only a recording that fails from its start too is
//!   reported as malformed and dead-lettered, never stopping the process.
//! - A stream that sends nothing for [`STREAM_IDLE`] failed (a backend stuck
//!   on the recording), as DEADLINE_EXCEEDED.

use super::audit::TypeFilter;
use super::connect::describe_status;
use super::status::{Class, ErrorEvery, SLOW_RETRY, classify};
use crate::event::Event;
use crate::retry::{Backoff, Retry};
use crate::shutdown::{Shutdown, Stopped};
use crate::source::Invalid;
use ferry_proto::auditlog::StreamUnstructuredSessionEventsRequest;
use ferry_proto::auditlog::audit_log_service_client::AuditLogServiceClient;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Channel;

/// Failed tries in a row, with no event between them, before a recording is
/// handed back to wait (the event handler's three tries per attempt).
pub const TRIES_PER_ROUND: u32 = 3;

/// How long a recording's stream may send nothing before it counts as
/// failed: far beyond a backend fetching a large recording first.
pub const STREAM_IDLE: Duration = Duration::from_secs(120);

/// Whether a failure is about Teleport as a whole (unreachable, the identity
/// refused), which every call meets, rather than about one recording.
pub fn about_every_call(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unauthenticated)
}

/// What a session task reports.
#[derive(Debug)]
pub enum SessionItem {
    /// An event of the recording to forward.
    Event {
        /// The session.
        sid: String,
        /// The event's index in the recording.
        index: i64,
        /// The event, its JSON written and its header read in the session's
        /// task.
        event: Event,
    },
    /// An event whose Struct is malformed: a dead letter, and the
    /// recording goes on.
    Unreadable {
        /// The session.
        sid: String,
        /// The event's index.
        index: i64,
        /// What it was, why it cannot be read, its bytes.
        invalid: Invalid,
    },
    /// An event of a skipped type went by.
    Skipped {
        /// The session.
        sid: String,
        /// The event's index.
        index: i64,
    },
    /// The recording was read to its end.
    Done {
        /// The session.
        sid: String,
    },
    /// The recording is not in Teleport's storage (yet).
    Missing {
        /// The session.
        sid: String,
        /// Teleport's answer.
        reason: String,
    },
    /// The recording failed [`TRIES_PER_ROUND`] times in a row for a reason
    /// of its own; it waits to be asked for again.
    Failing {
        /// The session.
        sid: String,
        /// Teleport's last answer.
        reason: String,
    },
    /// The recording cannot be read; it is given up.
    Malformed {
        /// The session.
        sid: String,
        /// Why.
        reason: String,
    },
}

/// What every session task needs.
#[derive(Clone)]
pub struct SessionReader {
    /// The audit log client.
    pub client: AuditLogServiceClient<Channel>,
    /// The address, for messages.
    pub addr: String,
    /// `skip-session-types` (only `skip` is used).
    pub filter: TypeFilter,
    /// Waits between failed calls.
    pub backoff: Backoff,
    /// Where reports go.
    pub out: mpsc::Sender<SessionItem>,
    /// Shared by every session task, so that a refused identity makes one
    /// ERROR line a minute, not one per recording.
    pub errors: Arc<Mutex<ErrorEvery>>,
}

impl SessionReader {
    /// Streams session `sid` from `next_index` to its end, or until stopped.
    pub async fn run(self, sid: String, mut next_index: i64, shutdown: Shutdown) {
        let mut retry = Retry::new(self.backoff, shutdown);
        let mut start_index = next_index;
        let mut tries = 0;
        loop {
            let before = next_index;
            let status = match self.stream(&sid, start_index, &mut next_index, &mut retry).await {
                Ok(Some(status)) => status,
                Ok(None) => {
                    let _ = self.out.send(SessionItem::Done { sid }).await;
                    return;
                }
                Err(Stopped) => return,
            };
            let reason = describe_status(&self.addr, &status);
            let class = classify(status.code());
            if class != Class::Permanent && !about_every_call(status.code()) {
                tries = if next_index > before { 1 } else { tries + 1 };
                if tries >= TRIES_PER_ROUND {
                    let _ = self.out.send(SessionItem::Failing { sid, reason }).await;
                    return;
                }
            }
            let delay = match class {
                Class::Transient => {
                    let delay = retry.next_delay(None);
                    tracing::warn!(session = %sid, next_index, retry_in = ?delay, "Session recording stream failed: {reason}; retrying.");
                    delay
                }
                Class::Unauthorized => {
                    let delay = retry.next_delay(Some(SLOW_RETRY));
                    if self.errors.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).due() {
                        tracing::error!(session = %sid, next_index, retry_in = ?delay, "Cannot stream the session recording: {reason}; give ferry's Teleport user `session` `list` and `read`, or renew its identity. Retrying every {}s.", SLOW_RETRY.as_secs());
                    } else {
                        tracing::debug!(session = %sid, next_index, retry_in = ?delay, "Cannot stream the session recording: {reason}; retrying.");
                    }
                    delay
                }
                Class::Permanent if status.code() == Code::NotFound => {
                    let _ = self.out.send(SessionItem::Missing { sid, reason }).await;
                    return;
                }
                Class::Permanent if start_index > 0 => {
                    // Teleport will not stream from this index (an index past
                    // a recording it re-encoded, say): ask from the start; the
                    // events already forwarded are skipped.
                    tracing::warn!(session = %sid, start_index, "Teleport refused to stream the session recording from event {start_index}: {reason}; asking for it from its start.");
                    start_index = 0;
                    continue;
                }
                Class::Permanent => {
                    let _ = self.out.send(SessionItem::Malformed { sid, reason }).await;
                    return;
                }
            };
            if retry.sleep(delay).await.is_err() {
                return;
            }
            start_index = next_index;
        }
    }

    /// One stream from `start_index`, forwarding events from `next_index`
    /// on; `Ok(None)` at its end, `Ok(Some(status))` when it failed.
    async fn stream(&self, sid: &str, start_index: i64, next_index: &mut i64, retry: &mut Retry) -> Result<Option<tonic::Status>, Stopped> {
        let request = StreamUnstructuredSessionEventsRequest {
            session_id: sid.to_owned(),
            start_index: i32::try_from(start_index).unwrap_or(i32::MAX),
        };
        let mut client = self.client.clone();
        let opened = retry.shutdown().until(within_idle(client.stream_unstructured_session_events(request))).await?;
        let mut stream = match opened.and_then(|answer| answer) {
            Ok(stream) => stream.into_inner(),
            Err(status) => return Ok(Some(status)),
        };
        // Each event's JSON is written here first: the buffer grows once.
        let mut buffer = Vec::new();
        loop {
            let next = retry.shutdown().until(within_idle(stream.message())).await?;
            let event = match next.and_then(|answer| answer) {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(None),
                Err(status) => return Ok(Some(status)),
            };
            retry.reset();
            if event.index < *next_index {
                continue; // Already forwarded before the stream was reopened.
            }
            *next_index = event.index.saturating_add(1);
            let item = if self.filter.skip.contains(&event.r#type) {
                SessionItem::Skipped { sid: sid.to_owned(), index: event.index }
            } else {
                let index = event.index;
                match super::read_event(event, &mut buffer, Some(sid)) {
                    Ok(built) => SessionItem::Event { sid: sid.to_owned(), index, event: built },
                    Err(invalid) => SessionItem::Unreadable { sid: sid.to_owned(), index, invalid },
                }
            };
            self.out.send(item).await.map_err(|_| Stopped)?;
        }
    }
}

/// A recording given up on, as its dead letter names it (see the merge
/// loop's `give_up`): `dead-letters replay` streams it again from there.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RecordingLetter {
    /// The session.
    pub sid: String,
    /// The first event not delivered.
    pub next_index: i64,
    /// When the recording was announced.
    #[serde(default)]
    pub upload_time: String,
}

impl RecordingLetter {
    /// The recording a dead letter's payload names; `None` for any other
    /// payload (an export chunk, an event whose Struct is malformed).
    pub fn parse(payload: &[u8]) -> Option<RecordingLetter> {
        let letter: RecordingLetter = serde_json::from_slice(payload).ok()?;
        (!letter.sid.is_empty() && letter.next_index >= 0).then_some(letter)
    }
}

impl SessionReader {
    /// Streams the recording `letter` names from its first undelivered event
    /// to its end, once (the replay's operator asks again): each event as a
    /// session task makes it, `Invalid` for one whose Struct cannot be read;
    /// Teleport's answer when the stream fails, and then nothing is kept.
    pub async fn read_again(&self, letter: &RecordingLetter) -> Result<Vec<SessionItem>, tonic::Status> {
        let (out, mut items) = mpsc::channel(256);
        let reader = SessionReader { out, ..self.clone() };
        let (trigger, shutdown) = crate::shutdown::channel();
        let mut retry = Retry::new(self.backoff, shutdown);
        let sid = letter.sid.clone();
        let start = letter.next_index;
        let task = tokio::spawn(async move {
            let mut next_index = start;
            reader.stream(&sid, start, &mut next_index, &mut retry).await
        });
        let mut read = Vec::new();
        while let Some(item) = items.recv().await {
            read.push(item);
        }
        drop(trigger);
        match task.await {
            Ok(Ok(None)) => Ok(read),
            Ok(Ok(Some(status))) => Err(status),
            Ok(Err(Stopped)) | Err(_) => Err(tonic::Status::cancelled("the recording's stream was stopped")),
        }
    }
}

/// `call`'s answer, or DEADLINE_EXCEEDED once it has been silent for
/// [`STREAM_IDLE`].
async fn within_idle<T>(call: impl std::future::Future<Output = T>) -> Result<T, tonic::Status> {
    tokio::time::timeout(STREAM_IDLE, call)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded(format!("the recording's stream sent nothing for {}s", STREAM_IDLE.as_secs())))
}
