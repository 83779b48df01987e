//! Reading the audit log with either of Teleport's two APIs.
//!
//! The legacy engine pages `GetUnstructuredEvents` in ascending order, one
//! `window-size` window at a time from the start time, resuming on the page
//! that held the last delivered event and skipping up to its id. The export
//! engine lists each UTC date's chunks with `GetEventExportChunks` and reads
//! each new chunk with `ExportUnstructuredEvents`, resuming inside a chunk
//! from its cursor. Both filter by `types` and `skip-event-types` and send
//! what they read, with the cursor just past it, to the source's merge loop.

use super::cursor::{AuditCursor, DateCursor, ExportCursor, LegacyCursor};
use super::config::format_time;
use super::connect::describe_status;
use super::proto::auditlog::audit_log_service_client::AuditLogServiceClient;
use super::proto::auditlog::{EventUnstructured, ExportUnstructuredEventsRequest, GetEventExportChunksRequest, GetUnstructuredEventsRequest, Order};
use super::structjson::struct_to_json_bytes;
use crate::shutdown::Shutdown;
use crate::retry::Backoff;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tonic::transport::Channel;

const SECONDS_PER_DAY: u64 = 86_400;
/// Past dates the export engine keeps polling for chunks written late.
const EXPORT_BACKLOG_DAYS: u64 = 2;

/// What an engine read.
#[derive(Debug)]
pub enum AuditItem {
    /// An event to forward.
    Event {
        /// The event's JSON text.
        json: Vec<u8>,
        /// Teleport's id for it.
        id: String,
        /// The cursor just past it.
        cursor: AuditCursor,
    },
    /// The cursor moved past input that is not forwarded (a skipped event
    /// type, a finished window or chunk).
    Moved(AuditCursor),
    /// Everything up to now is read (sent only with `exit-on-last-event`).
    CaughtUp,
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

/// What both engines share.
pub struct Reader {
    /// The audit log client.
    pub client: AuditLogServiceClient<Channel>,
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
    /// Waits between failed calls.
    pub backoff: Backoff,
    /// Where items go.
    pub out: mpsc::Sender<AuditItem>,
    /// Stops the engine.
    pub shutdown: Shutdown,
}

/// The engine ended: shut down, or the merge loop went away.
pub struct Stopped;

impl Reader {
    /// Asks whether the cluster implements the bulk export API, as the event
    /// handler does: by listing the chunks of a date two days ahead.
    /// Retries other failures until shutdown.
    pub async fn supports_export(&mut self) -> Result<bool, Stopped> {
        let date = SystemTime::now() + Duration::from_secs(2 * SECONDS_PER_DAY);
        let mut attempt = 0;
        loop {
            match self.list_chunks(date).await {
                Ok(_) => return Ok(true),
                Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(false),
                Err(status) => self.retry_after(&status, "probe the bulk export API", &mut attempt).await?,
            }
        }
    }

    /// Logs a failed call on one line and waits before the next attempt.
    async fn retry_after(&mut self, status: &tonic::Status, what: &str, attempt: &mut u32) -> Result<(), Stopped> {
        let delay = self.backoff.delay(*attempt);
        tracing::warn!(retry_in = ?delay, "Cannot {what}: {}; retrying.", describe_status(&self.addr, status));
        *attempt = attempt.saturating_add(1);
        if self.shutdown.sleep_or_stop(delay).await { Err(Stopped) } else { Ok(()) }
    }

    async fn send(&self, item: AuditItem) -> Result<(), Stopped> {
        self.out.send(item).await.map_err(|_| Stopped)
    }

    async fn forward(&self, event: EventUnstructured, cursor: AuditCursor) -> Result<(), Stopped> {
        if !self.filter.forwards(&event.r#type) {
            return self.send(AuditItem::Moved(cursor)).await;
        }
        let json = struct_to_json_bytes(&event.unstructured.unwrap_or_default());
        self.send(AuditItem::Event { json, id: event.id, cursor }).await
    }

    /// Caught up: ends the engine with `exit-on-last-event`, else waits.
    async fn idle(&mut self) -> Result<(), Stopped> {
        if self.exit_on_last_event {
            self.send(AuditItem::CaughtUp).await?;
            return Err(Stopped);
        }
        if self.shutdown.sleep_or_stop(self.poll_interval).await { Err(Stopped) } else { Ok(()) }
    }

    // === Legacy engine ===

    /// Pages through the audit log from `cursor` until stopped.
    pub async fn run_legacy(mut self, cursor: Option<LegacyCursor>) {
        let mut cursor = cursor.unwrap_or_else(|| LegacyCursor {
            window_start: format_time(self.start_time),
            start_key: String::new(),
            last_id: String::new(),
        });
        while self.legacy_step(&mut cursor).await.is_ok() {}
    }

    /// Reads one page and moves `cursor` on.
    async fn legacy_step(&mut self, cursor: &mut LegacyCursor) -> Result<(), Stopped> {
        let window_start = humantime::parse_rfc3339_weak(&cursor.window_start)
            .or_else(|_| humantime::parse_rfc3339(&cursor.window_start))
            .unwrap_or(self.start_time);
        let now = SystemTime::now();
        let window_end = (window_start + self.window_size).min(now);
        let last_window = window_start + self.window_size >= now;
        let page = self.fetch_page(window_start, window_end, &cursor.start_key).await?;
        let resume_at = match cursor.last_id.as_str() {
            "" => 0,
            last => page.items.iter().position(|event| event.id == last).map_or(0, |at| at + 1),
        };
        let fresh = page.items.len().saturating_sub(resume_at);
        for event in page.items.into_iter().skip(resume_at) {
            cursor.last_id = event.id.clone();
            self.forward(event, AuditCursor::Legacy(cursor.clone())).await?;
        }
        if !page.last_key.is_empty() {
            // The next page; its events carry its key.
            cursor.start_key = page.last_key;
            cursor.last_id.clear();
            return Ok(());
        }
        if !last_window {
            *cursor = LegacyCursor { window_start: format_time(window_end), start_key: String::new(), last_id: String::new() };
            return self.send(AuditItem::Moved(AuditCursor::Legacy(cursor.clone()))).await;
        }
        if fresh == 0 {
            self.idle().await?;
        }
        Ok(())
    }

    async fn fetch_page(&mut self, from: SystemTime, to: SystemTime, start_key: &str) -> Result<super::proto::auditlog::EventsUnstructured, Stopped> {
        let mut attempt = 0;
        loop {
            let request = GetUnstructuredEventsRequest {
                namespace: "default".into(),
                start_date: Some(from.into()),
                end_date: Some(to.into()),
                event_types: self.filter.types.iter().cloned().collect(),
                limit: i32::try_from(self.page_size).unwrap_or(i32::MAX),
                start_key: start_key.to_owned(),
                order: Order::Ascending.into(),
            };
            let call = self.client.get_unstructured_events(request);
            let answer = tokio::select! {
                answer = call => answer,
                () = self.shutdown.wait() => return Err(Stopped),
            };
            match answer {
                Ok(page) => return Ok(page.into_inner()),
                Err(status) => self.retry_after(&status, "read the audit log", &mut attempt).await?,
            }
        }
    }

    // === Export engine ===

    /// Exports date after date from `cursor` until stopped.
    pub async fn run_export(mut self, cursor: Option<ExportCursor>) {
        let mut cursor = cursor.unwrap_or_default();
        if cursor.dates.is_empty() {
            cursor.dates.push(DateCursor { date: date_of(self.start_time), done: Vec::new(), partial: Default::default() });
        }
        while self.export_pass(&mut cursor).await.is_ok() {}
    }

    /// Reads every new chunk of every tracked date, then moves to the next
    /// date or waits.
    async fn export_pass(&mut self, cursor: &mut ExportCursor) -> Result<(), Stopped> {
        let mut found_new = false;
        for at in 0..cursor.dates.len() {
            let date = start_of(&cursor.dates[at].date);
            let chunks = self.chunks(date).await?;
            for chunk in chunks {
                if cursor.dates[at].done.contains(&chunk) {
                    continue;
                }
                found_new = true;
                self.export_chunk(cursor, at, &chunk).await?;
            }
        }
        let today = date_of(SystemTime::now());
        let newest = cursor.dates.last().map(|date| date.date.clone()).unwrap_or_else(|| today.clone());
        if newest < today {
            let next = date_of(start_of(&newest) + Duration::from_secs(SECONDS_PER_DAY));
            cursor.dates.push(DateCursor { date: next, done: Vec::new(), partial: Default::default() });
            let oldest_kept = date_of(SystemTime::now() - Duration::from_secs(EXPORT_BACKLOG_DAYS * SECONDS_PER_DAY));
            // Dates near today stay for chunks written late; older ones were
            // listed once after their day was over, which is final.
            while cursor.dates.len() > 1
                && (cursor.dates.len() > 1 + EXPORT_BACKLOG_DAYS as usize || cursor.dates[0].date < oldest_kept)
            {
                cursor.dates.remove(0);
            }
            return self.send(AuditItem::Moved(AuditCursor::Export(cursor.clone()))).await;
        }
        if !found_new {
            self.idle().await?;
        }
        Ok(())
    }

    async fn chunks(&mut self, date: SystemTime) -> Result<Vec<String>, Stopped> {
        let mut attempt = 0;
        loop {
            match self.list_chunks(date).await {
                Ok(chunks) => return Ok(chunks),
                Err(status) => self.retry_after(&status, "list export chunks", &mut attempt).await?,
            }
        }
    }

    async fn list_chunks(&mut self, date: SystemTime) -> Result<Vec<String>, tonic::Status> {
        let request = GetEventExportChunksRequest { date: Some(date.into()) };
        let mut stream = self.client.get_event_export_chunks(request).await?.into_inner();
        let mut chunks = Vec::new();
        let mut seen = BTreeSet::new();
        while let Some(chunk) = stream.message().await? {
            if seen.insert(chunk.chunk.clone()) {
                chunks.push(chunk.chunk);
            }
        }
        Ok(chunks)
    }

    /// Reads one chunk to its end, resuming from its saved cursor; a stream
    /// that breaks is opened again from the last event received.
    async fn export_chunk(&mut self, cursor: &mut ExportCursor, at: usize, chunk: &str) -> Result<(), Stopped> {
        let date = start_of(&cursor.dates[at].date);
        let mut attempt = 0;
        loop {
            let resume = cursor.dates[at].partial.get(chunk).cloned().unwrap_or_default();
            match self.stream_chunk(cursor, at, chunk, date, resume).await? {
                Ok(()) => break,
                Err(status) => self.retry_after(&status, &format!("export chunk {chunk}"), &mut attempt).await?,
            }
        }
        let day = &mut cursor.dates[at];
        day.partial.remove(chunk);
        day.done.push(chunk.to_owned());
        self.send(AuditItem::Moved(AuditCursor::Export(cursor.clone()))).await
    }

    async fn stream_chunk(
        &mut self,
        cursor: &mut ExportCursor,
        at: usize,
        chunk: &str,
        date: SystemTime,
        resume: String,
    ) -> Result<Result<(), tonic::Status>, Stopped> {
        let request = ExportUnstructuredEventsRequest { date: Some(date.into()), chunk: chunk.to_owned(), cursor: resume };
        let mut stream = match self.client.export_unstructured_events(request).await {
            Ok(stream) => stream.into_inner(),
            Err(status) => return Ok(Err(status)),
        };
        loop {
            let next = tokio::select! {
                next = stream.message() => next,
                () = self.shutdown.wait() => return Err(Stopped),
            };
            match next {
                Ok(Some(exported)) => {
                    cursor.dates[at].partial.insert(chunk.to_owned(), exported.cursor);
                    let Some(event) = exported.event else { continue };
                    self.forward(event, AuditCursor::Export(cursor.clone())).await?;
                }
                Ok(None) => return Ok(Ok(())),
                Err(status) => return Ok(Err(status)),
            }
        }
    }
}

/// `YYYY-MM-DD` of `time`, UTC.
pub fn date_of(time: SystemTime) -> String {
    let days = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / SECONDS_PER_DAY;
    let midnight = UNIX_EPOCH + Duration::from_secs(days * SECONDS_PER_DAY);
    humantime::format_rfc3339_seconds(midnight).to_string()[..10].to_owned()
}

/// Midnight UTC at the start of `date` (`YYYY-MM-DD`); the epoch if it does
/// not parse (a cursor is only ever written by ferry).
fn start_of(date: &str) -> SystemTime {
    humantime::parse_rfc3339(&format!("{date}T00:00:00Z")).unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        let time = humantime::parse_rfc3339("2024-02-29T23:59:59Z").expect("valid");
        assert_eq!(date_of(time), "2024-02-29");
        assert_eq!(date_of(start_of("2024-02-29") + Duration::from_secs(SECONDS_PER_DAY)), "2024-03-01");
    }

    #[test]
    fn types_and_skipped_types_filter_together() {
        let filter = TypeFilter { types: HashSet::from(["user.login".into(), "exec".into()]), skip: HashSet::from(["exec".into()]) };
        assert!(filter.forwards("user.login"));
        assert!(!filter.forwards("exec"));
        assert!(!filter.forwards("session.start"));
        assert!(TypeFilter::default().forwards("anything"));
    }
}
