//! Streaming session recordings, one task per session.
//!
//! A task streams `StreamUnstructuredSessionEvents` from the session's next
//! index and sends each event, with its index, to the merge loop, which owns
//! the progress. A stream that breaks is opened again from the event after
//! the last one received. A recording that is not there yet (NOT_FOUND) is
//! handed back to be asked for later; one the server cannot read is
//! reported as malformed and dead-lettered, never stopping the process.

use super::audit::TypeFilter;
use super::connect::describe_status;
use super::proto::auditlog::StreamUnstructuredSessionEventsRequest;
use super::proto::auditlog::audit_log_service_client::AuditLogServiceClient;
use super::structjson::struct_to_json_bytes;
use crate::shutdown::Shutdown;
use crate::retry::Backoff;
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
        /// Its JSON text.
        json: Vec<u8>,
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
}

/// Errors worth asking again for: the server or the network had a moment.
fn is_transient(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted | Code::Unknown | Code::Cancelled)
}

impl SessionReader {
    /// Streams session `sid` from `next_index` to its end, or until stopped.
    pub async fn run(self, sid: String, mut next_index: i64, mut shutdown: Shutdown) {
        let mut attempt = 0u32;
        loop {
            let status = match self.stream(&sid, &mut next_index, &mut attempt, &mut shutdown).await {
                Ok(Some(status)) => status,
                Ok(None) => {
                    let _ = self.out.send(SessionItem::Done { sid }).await;
                    return;
                }
                Err(Stopped) => return,
            };
            let reason = describe_status(&self.addr, &status);
            if status.code() == Code::NotFound {
                let _ = self.out.send(SessionItem::Missing { sid, reason }).await;
                return;
            }
            if !is_transient(status.code()) {
                let _ = self.out.send(SessionItem::Malformed { sid, reason }).await;
                return;
            }
            let delay = self.backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            tracing::warn!(session = %sid, next_index, retry_in = ?delay, "Session recording stream failed: {reason}; retrying.");
            if shutdown.sleep_or_stop(delay).await {
                return;
            }
        }
    }

    /// One stream; `Ok(None)` at its end, `Ok(Some(status))` when it failed.
    async fn stream(&self, sid: &str, next_index: &mut i64, attempt: &mut u32, shutdown: &mut Shutdown) -> Result<Option<tonic::Status>, Stopped> {
        let request = StreamUnstructuredSessionEventsRequest {
            session_id: sid.to_owned(),
            start_index: i32::try_from(*next_index).unwrap_or(i32::MAX),
        };
        let mut client = self.client.clone();
        let mut stream = match client.stream_unstructured_session_events(request).await {
            Ok(stream) => stream.into_inner(),
            Err(status) => return Ok(Some(status)),
        };
        loop {
            let next = tokio::select! {
                next = stream.message() => next,
                () = shutdown.wait() => return Err(Stopped),
            };
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(None),
                Err(status) => return Ok(Some(status)),
            };
            *attempt = 0;
            if event.index < *next_index {
                continue; // Already forwarded before the stream was reopened.
            }
            *next_index = event.index.saturating_add(1);
            let item = if self.filter.skip.contains(&event.r#type) {
                SessionItem::Skipped { sid: sid.to_owned(), index: event.index }
            } else {
                let json = struct_to_json_bytes(&event.unstructured.unwrap_or_default());
                SessionItem::Event { sid: sid.to_owned(), index: event.index, json }
            };
            self.out.send(item).await.map_err(|_| Stopped)?;
        }
    }
}

/// The task was stopped or its reports are no longer read.
struct Stopped;
