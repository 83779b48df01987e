//! Reading the audit log with either of Teleport's two APIs.
//!
//! The legacy engine (`legacy.rs`) pages `GetUnstructuredEvents` in ascending
//! order, one `window-size` window at a time from the start time, resuming on
//! the page that held the last delivered event and skipping up to its id. The
//! export engine (`export.rs`) lists each UTC date's chunks with
//! `GetEventExportChunks` and reads each new chunk with
//! `ExportUnstructuredEvents`, up to `concurrency` chunks of a date at once
//! (each in its own task), resuming inside a chunk from its cursor. Both
//! filter by `types` and `skip-event-types` and send what they read, with the
//! cursor just past it, to the source's merge loop.
//!
//! A failed call is handled by its class ([`super::status::classify`]): a
//! transient one is asked again through the one retry policy; one that is
//! permanent for the request is recovered from (a stale page key: search
//! again from the last event read; a stale export cursor: read the chunk
//! again from its start; a chunk Teleport will not serve: ask again, listing
//! its date again, and give it up with a dead letter naming its date, chunk
//! and cursor only after a bound of attempts and time); a refused identity is asked again slowly, with one ERROR line
//! a minute.

mod export;
mod legacy;

pub use export::{ChunkGiveUp, ChunkLetter, Share, read_chunk_again};

use super::config::Engine;
use super::connect::describe_status;
use super::cursor::{AuditCursor, AuditPosition};
use super::status::{Class, ErrorEvery, SLOW_RETRY, classify};
use crate::retry::{Backoff, Retry};
use crate::shutdown::{Shutdown, Stopped};
use crate::source::{Invalid, Item};
use ferry_proto::auditlog::EventUnstructured;
use ferry_proto::auditlog::audit_log_service_client::AuditLogServiceClient;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// What an engine read, made into the record's item where it was read, and
/// the cursor just past it.
///
/// An engine that has read everything up to now with `exit-on-last-event`
/// ends: its channel closing tells the merge loop it is caught up.
#[derive(Debug)]
pub struct AuditItem {
    /// An event to forward (its JSON written and its header read in the
    /// engine's task); input that cannot be read or that Teleport no longer
    /// has (an event whose Struct is malformed, an export chunk removed by
    /// retention between its listing and its reading), for a dead letter
    /// that makes the loss visible; or nothing to forward (`Progress`: a
    /// skipped event type, a finished window or chunk).
    pub item: Item,
    /// The cursor just past it.
    pub cursor: AuditPosition,
}

/// Which events are forwarded.
#[derive(Debug, Clone, Default)]
pub struct TypeFilter {
    /// Only these types; empty means every type.
    pub types: HashSet<String>,
    /// Never these types.
    pub skip: HashSet<String>,
}

impl TypeFilter {
    /// Whether an event of `event_type` is forwarded.
    pub fn forwards(&self, event_type: &str) -> bool {
        (self.types.is_empty() || self.types.contains(event_type)) && !self.skip.contains(event_type)
    }
}

/// How the engines read, fixed at start and shared by every task that
/// reads (the engine and its export chunk streams).
#[derive(Debug)]
pub struct Settings {
    /// The address, for messages.
    pub addr: String,
    /// Type filters.
    pub filter: TypeFilter,
    /// Events per page (legacy engine).
    pub page_size: u32,
    /// Span of a search window (legacy engine).
    pub window_size: Duration,
    /// Pause once caught up.
    pub poll_interval: Duration,
    /// Stop once caught up.
    pub exit_on_last_event: bool,
    /// Where ingestion starts when there is no cursor.
    pub start_time: SystemTime,
    /// Export chunks of a date streamed at once (export engine).
    pub concurrency: usize,
    /// Waits between failed calls.
    pub backoff: Backoff,
    /// Lets one ERROR line a minute through for a failure that lasts;
    /// shared by the chunk streams read at once, so that one failure of all
    /// of them is still one line a minute.
    pub errors: Mutex<ErrorEvery>,
    /// When an export chunk Teleport will not serve is given up.
    pub chunk_give_up: ChunkGiveUp,
    /// Which export chunks this instance reads: its slot's share.
    pub share: Share,
}

/// One task reading the audit log: the shared settings, and its own client
/// handle (one connection for all), channel, shutdown and event buffer.
pub struct Reader {
    /// How to read.
    pub settings: Arc<Settings>,
    /// The audit log client.
    pub client: AuditLogServiceClient<Channel>,
    /// Where items go.
    pub out: mpsc::Sender<AuditItem>,
    /// Stops the engine.
    pub shutdown: Shutdown,
    /// Each event's JSON is written here first, so that the buffer grows
    /// once, not per event; empty to start.
    pub buffer: Vec<u8>,
}

/// Picks the engine (from the cursor, the config, or by asking Teleport)
/// and runs it until stopped.
pub async fn run(mut reader: Reader, cursor: AuditCursor, engine: Engine) {
    let export = match (&cursor, engine) {
        (AuditCursor::Legacy(_), _) => false,
        (AuditCursor::Export(_), _) => true,
        (AuditCursor::Start, Engine::Legacy) => false,
        (AuditCursor::Start, Engine::Export) => true,
        (AuditCursor::Start, Engine::Auto) => match reader.supports_export().await {
            Ok(supported) => supported,
            Err(_stopped) => return,
        },
    };
    tracing::info!(engine = if export { "export" } else { "legacy" }, addr = %reader.settings.addr, "Reading Teleport's audit log.");
    match cursor {
        AuditCursor::Export(cursor) => reader.run_export(Some(cursor)).await,
        AuditCursor::Legacy(cursor) => reader.run_legacy(Some(cursor)).await,
        AuditCursor::Start if export => reader.run_export(None).await,
        AuditCursor::Start => reader.run_legacy(None).await,
    }
}

impl Reader {
    /// A retry loop for one request, cut short by shutdown.
    fn retry(&self) -> Retry {
        Retry::new(self.settings.backoff, self.shutdown.clone())
    }

    /// Waits before asking again after `status`, as its class says, and
    /// returns false; returns true at once, without waiting, when the
    /// failure is permanent for the request, which the caller recovers from
    /// by asking something else.
    async fn wait_or_recover(&mut self, retry: &mut Retry, status: &tonic::Status, what: &str) -> Result<bool, Stopped> {
        let reason = describe_status(&self.settings.addr, status);
        match classify(status.code()) {
            Class::Permanent => Ok(true),
            Class::Transient => {
                crate::observe::health().source_down(&reason);
                let delay = retry.next_delay(None);
                tracing::warn!(retry_in = ?delay, "Cannot {what}: {reason}; retrying.");
                retry.sleep(delay).await.map(|()| false)
            }
            Class::Unauthorized => {
                crate::observe::health().source_down(&reason);
                let hint = "give ferry's Teleport user `event` and `session` `list` and `read`, or renew its identity";
                self.slowly(retry, what, &reason, hint).await.map(|()| false)
            }
        }
    }

    /// Asks again slowly after a failure only an operator can fix, with one
    /// ERROR line a minute rather than one per attempt.
    async fn slowly(&mut self, retry: &mut Retry, what: &str, reason: &str, hint: &str) -> Result<(), Stopped> {
        let delay = retry.next_delay(Some(SLOW_RETRY));
        if self.settings.errors.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).due() {
            tracing::error!(retry_in = ?delay, "Cannot {what}: {reason}; {hint}. Retrying every {}s.", SLOW_RETRY.as_secs());
        } else {
            tracing::debug!(retry_in = ?delay, "Cannot {what}: {reason}; retrying.");
        }
        retry.sleep(delay).await
    }

    /// A call succeeded: the next failure is reported at once.
    fn succeeded(&mut self, retry: &mut Retry) {
        crate::observe::health().source_up();
        retry.reset();
        self.settings.errors.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).reset();
    }

    /// Sends what was read, with the cursor just past it.
    async fn send(&self, item: Item, cursor: AuditPosition) -> Result<(), Stopped> {
        self.out.send(AuditItem { item, cursor }).await.map_err(|_| Stopped)
    }

    /// Sends `event` as an event, as input that cannot be read (logged), or
    /// as progress when its type is not forwarded.
    async fn forward(&mut self, event: EventUnstructured, cursor: AuditPosition) -> Result<(), Stopped> {
        let item = read_filtered(event, &self.settings.filter, &mut self.buffer);
        self.send(item, cursor).await
    }

    /// Caught up: ends the engine with `exit-on-last-event` (which closes
    /// its channel once its chunk tasks are gone too), else waits.
    async fn idle(&mut self) -> Result<(), Stopped> {
        if self.settings.exit_on_last_event {
            return Err(Stopped);
        }
        if self.shutdown.sleep_or_stop(self.settings.poll_interval).await { Err(Stopped) } else { Ok(()) }
    }
}

/// The record's item for an audit event: the event; input that cannot be
/// read, logged and kept for its dead letter; or progress for an event of a
/// type not forwarded.
fn read_filtered(event: EventUnstructured, filter: &TypeFilter, buffer: &mut Vec<u8>) -> Item {
    if !filter.forwards(&event.r#type) {
        return Item::Progress;
    }
    match super::read_event(event, buffer, None) {
        Ok(event) => Item::Event(event),
        Err(invalid) => lost_event(invalid),
    }
}

/// An event that cannot be read: logged, and kept as a dead letter.
fn lost_event(invalid: Invalid) -> Item {
    tracing::error!("{}; it is kept as a dead letter.", invalid.reason);
    Item::Invalid(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_skipped_types_filter_together() {
        let filter = TypeFilter { types: HashSet::from(["user.login".into(), "exec".into()]), skip: HashSet::from(["exec".into()]) };
        assert!(filter.forwards("user.login"));
        assert!(!filter.forwards("exec"));
        assert!(!filter.forwards("session.start"));
        assert!(TypeFilter::default().forwards("anything"));
    }
}
