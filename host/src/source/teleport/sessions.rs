//! Streaming session recordings, one task per session.
//!
//! A task streams `StreamUnstructuredSessionEvents` from the session's next
//! index and sends each event, with its index, to the merge loop, which owns
//! the progress. A stream that breaks is opened again from the event after
//! the last one received. Failures are handled by their class
//! ([`super::status::classify`]): a transient one is asked again through the
//! one retry policy; a refused identity is asked again slowly, with one ERROR
//! line a minute, and never gives the recording up; a recording that is not
//! there yet (NOT_FOUND) is handed back to be asked for later; any other
//! permanent refusal is first answered by asking for the recording from its
//! start (the events already forwarded are skipped), and only a recording
//! that fails from its start too is reported as malformed and dead-lettered,
//! never stopping the process.

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
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Channel;

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
        loop {
            let status = match self.stream(&sid, start_index, &mut next_index, &mut retry).await {
                Ok(Some(status)) => status,
                Ok(None) => {
                    let _ = self.out.send(SessionItem::Done { sid }).await;
                    return;
                }
                Err(Stopped) => return,
            };
            let reason = describe_status(&self.addr, &status);
            let delay = match classify(status.code()) {
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
        let opened = retry.shutdown().until(client.stream_unstructured_session_events(request)).await?;
        let mut stream = match opened {
            Ok(stream) => stream.into_inner(),
            Err(status) => return Ok(Some(status)),
        };
        // Each event's JSON is written here first: the buffer grows once.
        let mut buffer = Vec::new();
        loop {
            let next = retry.shutdown().until(stream.message()).await?;
            let event = match next {
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
