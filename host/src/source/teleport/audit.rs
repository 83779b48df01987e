//! Reading the audit log with either of Teleport's two APIs.
//!
//! The legacy engine pages `GetUnstructuredEvents` in ascending order, one
//! `window-size` window at a time from the start time, resuming on the page
//! that held the last delivered event and skipping up to its id. The export
//! engine lists each UTC date's chunks with `GetEventExportChunks` and reads
//! each new chunk with `ExportUnstructuredEvents`, up to `concurrency` chunks
//! of a date at once (each in its own task), resuming inside a chunk from its
//! cursor. Both filter by `types` and `skip-event-types` and send
//! what they read, with the cursor just past it, to the source's merge loop.
//!
//! A failed call is handled by its class ([`super::status::classify`]): a
//! transient one is asked again through the one retry policy; one that is
//! permanent for the request is recovered from (a stale page key: search
//! again from the last event read; a stale export cursor: read the chunk
//! again from its start; a chunk that vanished: skip it with a dead letter
//! naming it); a refused identity is asked again slowly, with one ERROR line
//! a minute.

use super::cursor::{AuditPosition, DateCursor, ExportCursor, LegacyCursor, OpenChunks};
use super::config::format_time;
use super::connect::describe_status;
use ferry_proto::auditlog::audit_log_service_client::AuditLogServiceClient;
use ferry_proto::auditlog::{EventUnstructured, EventsUnstructured, ExportUnstructuredEventsRequest, GetEventExportChunksRequest, GetUnstructuredEventsRequest, Order};
use super::status::{Class, ErrorEvery, SLOW_RETRY, classify};
use crate::event::Event;
use crate::source::Invalid;
use crate::retry::{Backoff, Retry};
use crate::shutdown::{Shutdown, Stopped};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::transport::Channel;

const SECONDS_PER_DAY: u64 = 86_400;
/// Past dates the export engine keeps polling for chunks written late.
const EXPORT_BACKLOG_DAYS: u64 = 2;
/// News from the chunk streams of a date waiting for the export engine.
const CHUNK_NEWS: usize = 256;

/// What an engine read.
#[derive(Debug)]
pub enum AuditItem {
    /// An event to forward.
    Event {
        /// The event, its JSON written and its header read here, in the
        /// engine's task.
        event: Event,
        /// The cursor just past it.
        cursor: AuditPosition,
    },
    /// The cursor moved past input that is not forwarded (a skipped event
    /// type, a finished window or chunk).
    Moved(AuditPosition),
    /// Input that Teleport no longer has (an export chunk removed by
    /// retention between its listing and its reading), or an event whose
    /// Struct is malformed: the cursor moves past it and a dead letter names
    /// it, so that the loss is visible.
    Lost {
        /// What was lost, e.g. `export chunk chunk-0001 of 2024-05-01`.
        position: String,
        /// Why, on one line.
        reason: String,
        /// A JSON record of it for the dead-letter table.
        raw: Vec<u8>,
        /// The cursor past it.
        cursor: AuditPosition,
    },
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
    /// Export chunks of a date streamed at once (export engine).
    pub concurrency: usize,
    /// Waits between failed calls.
    pub backoff: Backoff,
    /// Where items go.
    pub out: mpsc::Sender<AuditItem>,
    /// Stops the engine.
    pub shutdown: Shutdown,
    /// Lets one ERROR line a minute through for a failure that lasts;
    /// shared by the chunk streams read at once, so that one failure of all
    /// of them is still one line a minute.
    pub errors: Arc<Mutex<ErrorEvery>>,
    /// Each event's JSON is written here first, so that the buffer grows
    /// once, not per event; empty to start.
    pub buffer: Vec<u8>,
}

impl Reader {
    /// Asks whether the cluster implements the bulk export API, as the event
    /// handler does: by listing the chunks of a date two days ahead.
    /// Retries other failures until shutdown.
    pub async fn supports_export(&mut self) -> Result<bool, Stopped> {
        let date = SystemTime::now() + Duration::from_secs(2 * SECONDS_PER_DAY);
        let mut retry = self.retry();
        loop {
            let status = match self.list_chunks_or_stop(date).await? {
                Ok(_) => return Ok(true),
                Err(status) => status,
            };
            if status.code() == tonic::Code::Unimplemented {
                return Ok(false);
            }
            if self.wait_or_recover(&mut retry, &status, "probe the bulk export API").await? {
                // Any other refusal of the probe: the paging API still works.
                tracing::warn!("Cannot use the bulk export API: {}; paging the audit log instead.", describe_status(&self.addr, &status));
                return Ok(false);
            }
        }
    }

    /// A retry loop for one request, cut short by shutdown.
    fn retry(&self) -> Retry {
        Retry::new(self.backoff, self.shutdown.clone())
    }

    /// Waits before asking again after `status`, as its class says, and
    /// returns false; returns true at once, without waiting, when the
    /// failure is permanent for the request, which the caller recovers from
    /// by asking something else.
    async fn wait_or_recover(&mut self, retry: &mut Retry, status: &tonic::Status, what: &str) -> Result<bool, Stopped> {
        let reason = describe_status(&self.addr, status);
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
        if self.errors.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).due() {
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
        self.errors.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).reset();
    }

    async fn send(&self, item: AuditItem) -> Result<(), Stopped> {
        self.out.send(item).await.map_err(|_| Stopped)
    }

    async fn forward(&mut self, event: EventUnstructured, cursor: AuditPosition) -> Result<(), Stopped> {
        if !self.filter.forwards(&event.r#type) {
            return self.send(AuditItem::Moved(cursor)).await;
        }
        match super::read_event(event, &mut self.buffer, None) {
            Ok(event) => self.send(AuditItem::Event { event, cursor }).await,
            Err(invalid) => self.lost_event(invalid, cursor).await,
        }
    }

    /// An event that cannot be read: logged, and its dead letter sent with
    /// the cursor past it.
    async fn lost_event(&self, invalid: Invalid, cursor: AuditPosition) -> Result<(), Stopped> {
        tracing::error!("{}; it is kept as a dead letter.", invalid.reason);
        self.send(AuditItem::Lost { position: invalid.position, reason: invalid.reason, raw: invalid.raw, cursor }).await
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
        let mut cursor = cursor.unwrap_or_else(|| LegacyCursor::start(format_time(self.start_time)));
        while self.legacy_step(&mut cursor).await.is_ok() {}
    }

    /// Reads one page and moves `cursor` on.
    async fn legacy_step(&mut self, cursor: &mut LegacyCursor) -> Result<(), Stopped> {
        let window_start = crate::units::parse_time(&cursor.window_start).unwrap_or(self.start_time);
        let now = SystemTime::now();
        let window_end = (window_start + self.window_size).min(now);
        let last_window = window_start + self.window_size >= now;
        let page = match self.fetch_page(window_start, window_end, &cursor.start_key).await? {
            Ok(page) => page,
            Err(status) => return self.legacy_recover(cursor, &status).await,
        };
        // A search started over may have more events already read than a
        // page holds (many events in one millisecond): pass whole pages.
        let (resume_at, carried) = match cursor.skip {
            Some(done) if done > page.items.len() && !page.last_key.is_empty() => (page.items.len(), done - page.items.len()),
            skip => (resume_at(&page.items, &cursor.last_id, skip), 0),
        };
        let fresh = page.items.len().saturating_sub(resume_at);
        for (at, event) in page.items.into_iter().enumerate().skip(resume_at) {
            cursor.last_id = Arc::from(event.id.as_str());
            cursor.skip = Some(at + 1);
            let time = event.time.and_then(|time| SystemTime::try_from(time).ok()).map(|time| humantime::format_rfc3339_nanos(time).to_string());
            match time {
                Some(time) if *time == *cursor.last_time => cursor.same_time += 1,
                Some(time) => {
                    cursor.last_time = Arc::from(time);
                    cursor.same_time = 1;
                }
                None => cursor.same_time = 0,
            }
            self.forward(event, AuditPosition::Legacy(cursor.clone())).await?;
        }
        if !page.last_key.is_empty() {
            // The next page; nothing of it is read yet. The last id and time
            // stay: a search that must start over starts from them.
            cursor.start_key = Arc::from(page.last_key);
            cursor.skip = Some(carried);
            return Ok(());
        }
        if !last_window {
            *cursor = LegacyCursor::start(format_time(window_end));
            return self.send(AuditItem::Moved(AuditPosition::Legacy(cursor.clone()))).await;
        }
        if fresh == 0 {
            self.idle().await?;
        }
        Ok(())
    }

    /// Teleport refuses a search for good (a page key that expired or that
    /// another backend issued): searches again, without a key, from the time
    /// of the last event read, passing the events of that time already read
    /// (they come first, in the same order). Events read before that stay
    /// read; a cursor of an older ferry, which did not count them, finds the
    /// last event by id instead, and at worst some of its time come again.
    async fn legacy_recover(&mut self, cursor: &mut LegacyCursor, status: &tonic::Status) -> Result<(), Stopped> {
        let reason = describe_status(&self.addr, status);
        if cursor.start_key.is_empty() {
            // The search has no key to drop: nothing ferry can change makes
            // Teleport answer it, so an operator must look.
            let mut retry = self.retry();
            let what = format!("search the audit log from {}", cursor.window_start);
            return self.slowly(&mut retry, &what, &reason, "check the cluster's audit log backend").await;
        }
        let from = if cursor.last_time.is_empty() { cursor.window_start.clone() } else { cursor.last_time.clone() };
        tracing::warn!(from = %from, last_event = %cursor.last_id, "Teleport refused the audit log page key: {reason}; searching again from the last event read.");
        cursor.window_start = from;
        cursor.start_key = Arc::default();
        cursor.skip = (cursor.same_time > 0).then_some(cursor.same_time);
        Ok(())
    }

    /// Asks for one page until Teleport answers; `Ok(Err(status))` when the
    /// request is refused for good.
    async fn fetch_page(&mut self, from: SystemTime, to: SystemTime, start_key: &str) -> Result<Result<EventsUnstructured, tonic::Status>, Stopped> {
        let mut retry = self.retry();
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
            let answer = self.shutdown.until(call).await?;
            match answer {
                Ok(page) => {
                    self.succeeded(&mut retry);
                    return Ok(Ok(page.into_inner()));
                }
                Err(status) => {
                    if self.wait_or_recover(&mut retry, &status, "read the audit log").await? {
                        return Ok(Err(status));
                    }
                }
            }
        }
    }

    // === Export engine ===

    /// Exports date after date from `cursor` until stopped.
    pub async fn run_export(mut self, cursor: Option<ExportCursor>) {
        // Shared with the positions handed out; changed through
        // `Arc::make_mut`, a copy per chunk, not per event.
        let mut cursor = Arc::new(cursor.unwrap_or_default());
        if cursor.dates.is_empty() {
            Arc::make_mut(&mut cursor).dates.push(DateCursor { date: date_of(self.start_time), done: Vec::new(), partial: Default::default() });
        }
        while self.export_pass(&mut cursor).await.is_ok() {}
    }

    /// Reads every new chunk of every tracked date, then moves to the next
    /// date or waits.
    async fn export_pass(&mut self, cursor: &mut Arc<ExportCursor>) -> Result<(), Stopped> {
        let mut found_new = false;
        for at in 0..cursor.dates.len() {
            let date = start_of(&cursor.dates[at].date);
            let chunks = self.chunks(date).await?;
            let new: Vec<String> = chunks.into_iter().filter(|chunk| !cursor.dates[at].done.contains(chunk)).collect();
            if !new.is_empty() {
                found_new = true;
                self.export_chunks(cursor, at, new).await?;
            }
        }
        let today = date_of(SystemTime::now());
        let newest = cursor.dates.last().map(|date| date.date.clone()).unwrap_or_else(|| today.clone());
        if newest < today {
            let next = date_of(start_of(&newest) + Duration::from_secs(SECONDS_PER_DAY));
            let cursor_mut = Arc::make_mut(cursor);
            cursor_mut.dates.push(DateCursor { date: next, done: Vec::new(), partial: Default::default() });
            let oldest_kept = date_of(SystemTime::now() - Duration::from_secs(EXPORT_BACKLOG_DAYS * SECONDS_PER_DAY));
            // Dates near today stay for chunks written late; older ones were
            // listed once after their day was over, which is final.
            while cursor_mut.dates.len() > 1
                && (cursor_mut.dates.len() > 1 + EXPORT_BACKLOG_DAYS as usize || cursor_mut.dates[0].date < oldest_kept)
            {
                cursor_mut.dates.remove(0);
            }
            return self.send(AuditItem::Moved(AuditPosition::Export(OpenChunks::new(0).position(cursor)))).await;
        }
        if !found_new {
            self.idle().await?;
        }
        Ok(())
    }

    async fn chunks(&mut self, date: SystemTime) -> Result<Vec<String>, Stopped> {
        let mut retry = self.retry();
        loop {
            match self.list_chunks_or_stop(date).await? {
                Ok(chunks) => {
                    self.succeeded(&mut retry);
                    return Ok(chunks);
                }
                Err(status) => {
                    let what = format!("list the export chunks of {}", date_of(date));
                    if self.wait_or_recover(&mut retry, &status, &what).await? {
                        // A listing has nothing to drop or skip: an operator must look.
                        let reason = describe_status(&self.addr, &status);
                        self.slowly(&mut retry, &what, &reason, "check the cluster's audit log backend").await?;
                    }
                }
            }
        }
    }

    /// [`Reader::list_chunks`], given up when shutdown fires: a call that
    /// hangs must not hold shutdown.
    async fn list_chunks_or_stop(&mut self, date: SystemTime) -> Result<Result<Vec<String>, tonic::Status>, Stopped> {
        let mut shutdown = self.shutdown.clone();
        shutdown.until(self.list_chunks(date)).await
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

    /// Reads `chunks` of the date at `at`, up to `concurrency` at once as
    /// Teleport's own exporter does (a chunk is one stream, and a date's
    /// chunks are independent), forwarding their events in the order they
    /// arrive. Each chunk is streamed by its own task ([`Reader::export_chunk`]);
    /// this loop alone owns `cursor`, so each event's position says every
    /// open chunk's cursor as of that event, and a chunk is marked done only
    /// once its last event is forwarded (its task's news come in order).
    async fn export_chunks(&mut self, cursor: &mut Arc<ExportCursor>, at: usize, chunks: Vec<String>) -> Result<(), Stopped> {
        let date = start_of(&cursor.dates[at].date);
        let day = cursor.dates[at].date.clone();
        let (news_tx, mut news) = mpsc::channel(CHUNK_NEWS);
        // Dropped on return, which aborts the streams still open: shutdown
        // stops them all at once.
        let mut streams = JoinSet::new();
        let mut waiting = chunks.into_iter();
        let mut open = OpenChunks::new(at);
        loop {
            while open.len() < self.concurrency.max(1)
                && let Some(chunk) = waiting.next()
            {
                let name: Arc<str> = Arc::from(chunk);
                let resume: Arc<str> = cursor.dates[at].partial.get(&*name).map_or_else(Arc::default, |resume| Arc::from(resume.as_str()));
                open.open(name.clone(), resume.clone());
                streams.spawn(self.chunk_reader().export_chunk(date, day.clone(), name, resume, news_tx.clone()));
            }
            if open.is_empty() {
                return Ok(());
            }
            // `news_tx` is held here, so the channel never closes while chunks
            // are open. A chunk's task that panicked sends nothing more:
            // waiting for it would stall the export without a word, so the
            // engine ends as it would on a panic of its own.
            // (A task that ended well does not match `Some(Err(_))`: `select!`
            // then goes on waiting for news.)
            let next = async {
                tokio::select! {
                    item = news.recv() => item,
                    Some(Err(failed)) = streams.join_next(), if !streams.is_empty() => {
                        tracing::error!(date = %day, error = %failed, "A task reading an export chunk failed; the export stops.");
                        None
                    }
                }
            };
            let Some(item) = self.shutdown.until(next).await? else { return Err(Stopped) };
            match item {
                ChunkNews::Read { chunk, event, cursor: chunk_cursor } => {
                    open.read(&chunk, chunk_cursor);
                    let position = AuditPosition::Export(open.position(cursor));
                    match event {
                        Some(Ok(event)) => self.send(AuditItem::Event { event, cursor: position }).await?,
                        Some(Err(invalid)) => self.lost_event(invalid, position).await?,
                        None => self.send(AuditItem::Moved(position)).await?,
                    }
                }
                ChunkNews::Restarted { chunk } => open.read(&chunk, Arc::default()),
                ChunkNews::Finished { chunk } => {
                    open.finish(cursor, &chunk);
                    self.send(AuditItem::Moved(AuditPosition::Export(open.position(cursor)))).await?;
                }
                ChunkNews::Lost { chunk, what, reason, raw } => {
                    open.finish(cursor, &chunk);
                    let position = AuditPosition::Export(open.position(cursor));
                    self.send(AuditItem::Lost { position: what, reason, raw, cursor: position }).await?;
                }
            }
        }
    }

    /// A reader for one chunk stream: the same client (one connection) and
    /// settings, its own retry state and event buffer.
    fn chunk_reader(&self) -> Reader {
        Reader {
            client: self.client.clone(),
            addr: self.addr.clone(),
            filter: self.filter.clone(),
            page_size: self.page_size,
            window_size: self.window_size,
            poll_interval: self.poll_interval,
            exit_on_last_event: self.exit_on_last_event,
            start_time: self.start_time,
            concurrency: 1,
            backoff: self.backoff,
            out: self.out.clone(),
            shutdown: self.shutdown.clone(),
            errors: self.errors.clone(),
            buffer: Vec::new(),
        }
    }

    /// Reads one chunk to its end from `resume` (empty: its start), telling
    /// `news` what it read; a stream that breaks is opened again from the
    /// last event received. A cursor Teleport refuses for good is dropped and
    /// the chunk read again from its start (what comes twice is deduplicated
    /// downstream by id); a chunk Teleport no longer has, or cannot read even
    /// from its start, is skipped with a dead letter naming it.
    async fn export_chunk(mut self, date: SystemTime, day: String, chunk: Arc<str>, mut resume: Arc<str>, news: mpsc::Sender<ChunkNews>) -> Result<(), Stopped> {
        let mut retry = self.retry();
        let what = format!("export chunk {chunk} of {day}");
        loop {
            let status = match self.stream_chunk(date, &chunk, &mut resume, &mut retry, &news).await? {
                Ok(()) => return tell(&news, ChunkNews::Finished { chunk }).await,
                Err(status) => status,
            };
            if !self.wait_or_recover(&mut retry, &status, &what).await? {
                continue;
            }
            let reason = describe_status(&self.addr, &status);
            if status.code() == tonic::Code::Unimplemented {
                // The cluster no longer has the export API (a downgrade):
                // skipping every chunk would lose the log; an operator must look.
                self.slowly(&mut retry, &what, &reason, "the cluster no longer offers the bulk export API this cursor was read with; check its version").await?;
                continue;
            }
            if status.code() != tonic::Code::NotFound && !resume.is_empty() {
                tracing::warn!(chunk = %chunk, date = %day, "Teleport refused the export cursor of chunk {chunk}: {reason}; reading the chunk again from its start.");
                resume = Arc::default();
                tell(&news, ChunkNews::Restarted { chunk: chunk.clone() }).await?;
                continue;
            }
            let reason = format!("{what} cannot be read, so its events are skipped: {reason}");
            tracing::error!(chunk = %chunk, date = %day, "{reason}");
            let raw = serde_json::json!({ "date": day, "chunk": &*chunk, "cursor": &*resume }).to_string().into_bytes();
            return tell(&news, ChunkNews::Lost { chunk, what, reason, raw }).await;
        }
    }

    /// One stream of `chunk` from `resume`, which follows each event read.
    async fn stream_chunk(
        &mut self,
        date: SystemTime,
        chunk: &Arc<str>,
        resume: &mut Arc<str>,
        retry: &mut Retry,
        news: &mpsc::Sender<ChunkNews>,
    ) -> Result<Result<(), tonic::Status>, Stopped> {
        let request = ExportUnstructuredEventsRequest { date: Some(date.into()), chunk: chunk.to_string(), cursor: resume.to_string() };
        let opened = self.shutdown.until(self.client.export_unstructured_events(request)).await?;
        let mut stream = match opened {
            Ok(stream) => stream.into_inner(),
            Err(status) => return Ok(Err(status)),
        };
        loop {
            let next = self.shutdown.until(stream.message()).await?;
            match next {
                Ok(Some(exported)) => {
                    retry.reset();
                    *resume = Arc::from(exported.cursor);
                    // The JSON is written here, in the chunk's task, so that
                    // chunks read at once also convert at once.
                    let event = exported.event.filter(|event| self.filter.forwards(&event.r#type));
                    let event = event.map(|event| super::read_event(event, &mut self.buffer, None));
                    tell(news, ChunkNews::Read { chunk: chunk.clone(), event, cursor: resume.clone() }).await?;
                }
                Ok(None) => return Ok(Ok(())),
                Err(status) => return Ok(Err(status)),
            }
        }
    }
}

/// What a chunk's task tells the export engine, in the order it happened.
#[derive(Debug)]
enum ChunkNews {
    /// An event read (none when it is not forwarded; an error when its
    /// Struct cannot be read) and the chunk's cursor just past it.
    Read { chunk: Arc<str>, event: Option<Result<Event, Invalid>>, cursor: Arc<str> },
    /// Teleport refused the chunk's cursor; it is read again from its start.
    Restarted { chunk: Arc<str> },
    /// The chunk is read to its end.
    Finished { chunk: Arc<str> },
    /// The chunk cannot be read: its events are skipped with a dead letter.
    Lost { chunk: Arc<str>, what: String, reason: String, raw: Vec<u8> },
}

async fn tell(news: &mpsc::Sender<ChunkNews>, item: ChunkNews) -> Result<(), Stopped> {
    news.send(item).await.map_err(|_| Stopped)
}

/// Where to go on in a page that was read before up to `skip` events, the
/// last of them `last_id`.
///
/// The count decides when the event it points at still has the last id (or
/// there is no id to check), so that an id that repeats, or is empty, cannot
/// send ferry back to an earlier event of the page again and again. When the
/// page changed under the cursor, or the count is unknown (a cursor of an
/// older ferry, a search started over), the occurrence of the id nearest the
/// count is taken; when the id is not on the page, the whole page is read
/// again: duplicates rather than a loss.
fn resume_at(items: &[EventUnstructured], last_id: &str, skip: Option<usize>) -> usize {
    match skip {
        Some(0) => return 0,
        Some(done) if done <= items.len() && (last_id.is_empty() || items[done - 1].id == last_id) => return done,
        _ => {}
    }
    if last_id.is_empty() {
        return skip.unwrap_or(0).min(items.len());
    }
    let near = skip.unwrap_or(0).saturating_sub(1);
    let found = items.iter().enumerate().filter(|(_, event)| event.id == last_id).map(|(at, _)| at).min_by_key(|at| at.abs_diff(near));
    found.map_or(0, |at| at + 1)
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
    crate::units::parse_time(&format!("{date}T00:00:00Z")).unwrap_or(UNIX_EPOCH)
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

    fn page(ids: &[&str]) -> Vec<EventUnstructured> {
        ids.iter().map(|id| EventUnstructured { id: (*id).to_owned(), ..Default::default() }).collect()
    }

    #[test]
    fn a_page_resumes_after_the_events_read_even_when_ids_repeat_or_are_empty() {
        let repeated = page(&["a", "b", "a"]);
        assert_eq!(resume_at(&repeated, "a", Some(3)), 3, "the repeated id at the end is the last read, not the first");
        assert_eq!(resume_at(&repeated, "a", Some(1)), 1);
        let empty = page(&["", "", ""]);
        assert_eq!(resume_at(&empty, "", Some(3)), 3, "events without an id are counted");
        assert_eq!(resume_at(&empty, "", Some(2)), 2);
        assert_eq!(resume_at(&page(&["a", "b"]), "b", Some(0)), 0, "a new page starts at its first event");
    }

    #[test]
    fn a_page_that_changed_is_resumed_by_id() {
        // An event arrived late, before the last one read.
        let page = page(&["a", "late", "b", "c"]);
        assert_eq!(resume_at(&page, "b", Some(2)), 3);
        // An older ferry's cursor (no count), or a search started over.
        assert_eq!(resume_at(&page, "b", None), 3);
        assert_eq!(resume_at(&page, "gone", None), 0, "an id not on the page: read it all again");
        assert_eq!(resume_at(&page, "", None), 0);
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
