//! The export engine: lists each UTC date's chunks with
//! `GetEventExportChunks` and reads each new chunk with
//! `ExportUnstructuredEvents`, up to `concurrency` chunks of a date at once,
//! each in its own task, resuming inside a chunk from its cursor.

use super::{Reader, TypeFilter, read_filtered};
use crate::retry::Retry;
use crate::shutdown::Stopped;
use crate::source::teleport::connect::describe_status;
use crate::source::teleport::cursor::{AuditPosition, DateCursor, ExportCursor, OpenChunks};
use crate::source::{Invalid, Item};
use ferry_proto::auditlog::audit_log_service_client::AuditLogServiceClient;
use ferry_proto::auditlog::{ExportUnstructuredEventsRequest, GetEventExportChunksRequest};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Channel;

const SECONDS_PER_DAY: u64 = 86_400;
/// Past dates the export engine keeps polling for chunks written late.
const EXPORT_BACKLOG_DAYS: u64 = 2;
/// News from the chunk streams of a date waiting for the export engine.
const CHUNK_NEWS: usize = 256;

impl Reader {
    /// Asks whether the cluster implements the bulk export API, as the event
    /// handler does: by listing the chunks of a date two days ahead.
    /// Retries other failures until shutdown.
    pub(super) async fn supports_export(&mut self) -> Result<bool, Stopped> {
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
                tracing::warn!(
                    "Cannot use the bulk export API: {}; paging the audit log instead.",
                    describe_status(&self.settings.addr, &status)
                );
                return Ok(false);
            }
        }
    }

    /// Exports date after date from `cursor` until stopped.
    pub(super) async fn run_export(mut self, cursor: Option<ExportCursor>) {
        // Shared with the positions handed out; changed through
        // `Arc::make_mut`, a copy per chunk, not per event.
        let mut cursor = Arc::new(cursor.unwrap_or_default());
        if cursor.dates.is_empty() {
            Arc::make_mut(&mut cursor).dates.push(DateCursor {
                date: date_of(self.settings.start_time),
                done: Vec::new(),
                partial: Default::default(),
            });
        }
        while self.export_pass(&mut cursor).await.is_ok() {}
    }

    /// Reads every new chunk of every tracked date, then moves to the next
    /// date or waits.
    async fn export_pass(&mut self, cursor: &mut Arc<ExportCursor>) -> Result<(), Stopped> {
        let mut found_new = false;
        for at in 0..cursor.dates.len() {
            let date = start_of(&cursor.dates[at].date);
            let listed = self.chunks(date).await?;
            let new = chunks_to_read(&cursor.dates[at], listed, self.settings.share);
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
            // A date with a chunk under way is never dropped (its chunks were
            // all read or given up above; this guards the rule).
            while cursor_mut.dates.len() > 1
                && cursor_mut.dates[0].partial.is_empty()
                && (cursor_mut.dates.len() > 1 + EXPORT_BACKLOG_DAYS as usize || cursor_mut.dates[0].date < oldest_kept)
            {
                cursor_mut.dates.remove(0);
            }
            return self.send(Item::Progress, AuditPosition::Export(OpenChunks::new(0).position(cursor))).await;
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
                        let reason = describe_status(&self.settings.addr, &status);
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

    /// Reads `chunks` of the date at `at`, up to `concurrency` at once (a
    /// chunk is one stream, and a date's chunks are independent; the event
    /// handler reads `max(concurrency/4, 3)` of each of up to three dates,
    /// docs/event-handler-compatibility.md says why ferry differs),
    /// forwarding their events in the order they arrive. Each chunk is
    /// streamed by its own task ([`Reader::export_chunk`]);
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
            while open.len() < self.settings.concurrency.max(1)
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
                ChunkNews::Read { chunk, item, cursor: chunk_cursor } => {
                    open.read(&chunk, chunk_cursor);
                    self.send(item, AuditPosition::Export(open.position(cursor))).await?;
                }
                ChunkNews::Restarted { chunk } => open.read(&chunk, Arc::default()),
                ChunkNews::Finished { chunk, item } => {
                    open.finish(cursor, &chunk);
                    self.send(item, AuditPosition::Export(open.position(cursor))).await?;
                }
            }
        }
    }

    /// A reader for one chunk stream: the same settings and client (one
    /// connection), its own event buffer.
    fn chunk_reader(&self) -> Reader {
        Reader {
            settings: self.settings.clone(),
            client: self.client.clone(),
            out: self.out.clone(),
            shutdown: self.shutdown.clone(),
            buffer: Vec::new(),
        }
    }

    /// Reads one chunk to its end from `resume` (empty: its start), telling
    /// `news` what it read; a stream that breaks is opened again from the
    /// last event received. A cursor Teleport refuses for good is dropped and
    /// the chunk read again from its start (what comes twice is deduplicated
    /// downstream by id). A chunk Teleport does not have (NOT_FOUND), or
    /// cannot read even from its start, is asked for again with backoff, its
    /// date listed again each time, and given up with a dead letter naming
    /// its date, chunk and cursor only after [`ChunkGiveUp`]: a chunk listed
    /// before it can be read, or a backend that has a bad moment, must not
    /// lose its events for good.
    async fn export_chunk(
        mut self,
        date: SystemTime,
        day: String,
        chunk: Arc<str>,
        mut resume: Arc<str>,
        news: mpsc::Sender<ChunkNews>,
    ) -> Result<(), Stopped> {
        let mut retry = self.retry();
        let mut refusals = Refusals::default();
        let what = format!("export chunk {chunk} of {day}");
        loop {
            let before = resume.clone();
            let status = match self.stream_chunk(date, &chunk, &mut resume, &mut retry, &news).await? {
                Ok(()) => {
                    crate::observe::health().source_part_up(&what);
                    return tell(&news, ChunkNews::Finished { chunk, item: Item::Progress }).await;
                }
                Err(status) => status,
            };
            if !Arc::ptr_eq(&before, &resume) {
                // Events came: the chunk is served, whatever it said before.
                refusals = Refusals::default();
                crate::observe::health().source_part_up(&what);
            }
            if !self.wait_or_recover(&mut retry, &status, &what).await? {
                continue;
            }
            let reason = describe_status(&self.settings.addr, &status);
            if status.code() == tonic::Code::Unimplemented {
                // The cluster no longer has the export API (a downgrade):
                // skipping every chunk would lose the log; an operator must look.
                self.slowly(
                    &mut retry,
                    &what,
                    &reason,
                    "the cluster no longer offers the bulk export API this cursor was read with; check its version",
                )
                .await?;
                continue;
            }
            if status.code() != tonic::Code::NotFound && !resume.is_empty() {
                tracing::warn!(chunk = %chunk, date = %day, "Teleport refused the export cursor of chunk {chunk}: {reason}; reading the chunk again from its start.");
                resume = Arc::default();
                tell(&news, ChunkNews::Restarted { chunk: chunk.clone() }).await?;
                continue;
            }
            let listing = self.listing_of(date, &chunk).await?;
            let bound = self.settings.chunk_give_up;
            let refused = refusals.refused(Instant::now(), bound);
            if !refused.give_up {
                crate::observe::health().source_part_down(&what, &reason);
                let delay = retry.next_delay(Some(bound.spacing()));
                tracing::warn!(
                    chunk = %chunk,
                    date = %day,
                    retry_in = ?delay,
                    "Cannot {what}: {reason}; {listing}; asking again (refusal {} of at least {} over {}).",
                    refused.count,
                    bound.attempts,
                    humantime::format_duration(bound.time)
                );
                retry.sleep(delay).await?;
                continue;
            }
            let reason = format!(
                "{what} cannot be read, so its events are skipped: {reason}; {listing}; refused {} times over {}",
                refused.count,
                humantime::format_duration(Duration::from_secs(refused.over.as_secs()))
            );
            tracing::error!(chunk = %chunk, date = %day, cursor = %resume, "{reason}");
            crate::observe::health().source_part_up(&what);
            let raw = serde_json::json!({ "date": day, "chunk": &*chunk, "cursor": &*resume }).to_string().into_bytes();
            let item = Item::Invalid(Invalid { position: what, reason, raw });
            return tell(&news, ChunkNews::Finished { chunk, item }).await;
        }
    }

    /// Lists `date` again after `chunk` was refused, and says whether the
    /// listing still has it (for the log and the dead letter). A listing
    /// that fails is said so: the chunk's own retries go on regardless.
    async fn listing_of(&mut self, date: SystemTime, chunk: &str) -> Result<&'static str, Stopped> {
        Ok(match self.list_chunks_or_stop(date).await? {
            Ok(listed) if listed.iter().any(|name| name == chunk) => "the date's listing still has it",
            Ok(_) => "the date's listing no longer has it",
            Err(_) => "the date could not be listed again",
        })
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
                    let item = exported.event.map_or(Item::Progress, |event| read_filtered(event, &self.settings.filter, &mut self.buffer));
                    tell(news, ChunkNews::Read { chunk: chunk.clone(), item, cursor: resume.clone() }).await?;
                }
                Ok(None) => return Ok(Ok(())),
                Err(status) => return Ok(Err(status)),
            }
        }
    }
}

/// The export chunks one instance reads when `[leadership] slots` instances
/// run at once: those whose name hashes to its slot. The hash (FNV-1a, 64
/// bits, of the chunk's name) is fixed by this definition, not by a
/// library's version, so that instances of different ferry versions agree
/// on it during a rolling update: every chunk has exactly one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// This instance's slot, `0..slots`.
    pub slot: u32,
    /// How many slots the deployment has.
    pub slots: u32,
}

impl Share {
    /// One instance reads every chunk.
    pub const WHOLE: Share = Share { slot: 0, slots: 1 };

    /// Whether `chunk` is this slot's to read.
    pub fn takes(&self, chunk: &str) -> bool {
        self.slots <= 1 || slot_of(chunk, self.slots) == self.slot
    }
}

/// The slot of `chunk` among `slots`.
fn slot_of(chunk: &str, slots: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = chunk.bytes().fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME));
    u32::try_from(hash % u64::from(slots.max(1))).unwrap_or(0)
}

/// The bound on asking again for an export chunk Teleport will not serve
/// (`chunk-retry-attempts`, `chunk-retry-time`): it is given up once it was
/// refused `attempts` times in a row *and* `time` has passed since the first
/// of those refusals. The event handler asks for ever, which holds the
/// date (and, after a crash, a chunk no longer listed is never asked at
/// all); skipping at the first refusal loses a chunk a backend listed a
/// moment early. Default 5 attempts over at least 10 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkGiveUp {
    /// Refusals in a row, at least.
    pub attempts: u32,
    /// Time since the first refusal, at least.
    pub time: Duration,
}

impl ChunkGiveUp {
    /// The least wait between asks, so that the attempts spread over the
    /// time rather than being spent in its first seconds.
    fn spacing(&self) -> Duration {
        self.time / self.attempts.max(1)
    }
}

/// Refusals of one chunk since it last served an event.
#[derive(Debug, Default)]
struct Refusals {
    count: u32,
    first: Option<Instant>,
}

/// What one more refusal means.
#[derive(Debug, PartialEq, Eq)]
struct Refused {
    /// Refusals in a row, this one included.
    count: u32,
    /// Since the first of them.
    over: Duration,
    /// The bound is reached: the chunk is given up.
    give_up: bool,
}

impl Refusals {
    /// Counts a refusal at `now` and decides on it by `bound`.
    fn refused(&mut self, now: Instant, bound: ChunkGiveUp) -> Refused {
        let first = *self.first.get_or_insert(now);
        self.count = self.count.saturating_add(1);
        let over = now.saturating_duration_since(first);
        Refused { count: self.count, over, give_up: self.count >= bound.attempts && over >= bound.time }
    }
}

/// The chunks of a date to read: those listed, of this slot's `share`,
/// and not done; then those under way (a cursor stored), which are read to
/// their end whatever the share says now (a slot added meanwhile counts
/// them done) and asked for all the same when the listing no longer has
/// them: a chunk left partial by a crash must be read to its end or given
/// up with a dead letter, never dropped with its date.
fn chunks_to_read(date: &DateCursor, listed: Vec<String>, share: Share) -> Vec<String> {
    let (mine, others): (Vec<String>, Vec<String>) = listed.into_iter().partition(|chunk| share.takes(chunk));
    let mut chunks: Vec<String> = mine.into_iter().filter(|chunk| !date.done.contains(chunk)).collect();
    for (chunk, cursor) in &date.partial {
        if chunks.contains(chunk) || date.done.contains(chunk) {
            continue;
        }
        if !others.contains(chunk) {
            tracing::warn!(
                chunk = %chunk,
                date = %date.date,
                "Export chunk {chunk} of {}, read up to cursor {cursor:?}, is no longer listed; asking for it before giving it up.",
                date.date
            );
        }
        chunks.push(chunk.clone());
    }
    chunks
}

/// A chunk given up on, as its dead letter's payload names it (written by
/// [`Reader::export_chunk`]): `dead-letters replay` reads it again from there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ChunkLetter {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    /// The chunk's name.
    pub chunk: String,
    /// Teleport's cursor inside the chunk; empty: from its start.
    #[serde(default)]
    pub cursor: String,
}

impl ChunkLetter {
    /// The chunk a dead letter's payload names; `None` for any other
    /// payload (an event whose Struct is malformed) or a date that is not one.
    pub fn parse(payload: &[u8]) -> Option<ChunkLetter> {
        let letter: ChunkLetter = serde_json::from_slice(payload).ok()?;
        crate::units::parse_time(&format!("{}T00:00:00Z", letter.date)).ok()?;
        Some(letter)
    }
}

/// Reads the chunk `letter` names from its cursor to its end, once (the
/// replay's operator asks again): each event as the engine would make it
/// (filtered by `filter`; `Progress` dropped), `Invalid` for one whose
/// Struct cannot be read.
pub async fn read_chunk_again(
    client: &mut AuditLogServiceClient<Channel>,
    letter: &ChunkLetter,
    filter: &TypeFilter,
) -> Result<Vec<Item>, tonic::Status> {
    let date = start_of(&letter.date);
    let request = ExportUnstructuredEventsRequest { date: Some(date.into()), chunk: letter.chunk.clone(), cursor: letter.cursor.clone() };
    let mut stream = client.export_unstructured_events(request).await?.into_inner();
    let (mut items, mut buffer) = (Vec::new(), Vec::new());
    while let Some(exported) = stream.message().await? {
        match exported.event.map(|event| read_filtered(event, filter, &mut buffer)) {
            None | Some(Item::Progress) => {}
            Some(item) => items.push(item),
        }
    }
    Ok(items)
}

/// What a chunk's task tells the export engine, in the order it happened.
/// The item is the record's, made here: the engine only adds the position.
#[derive(Debug)]
enum ChunkNews {
    /// What was read (an event; an event whose Struct cannot be read;
    /// `Progress` for one not forwarded) and the chunk's cursor just past it.
    Read { chunk: Arc<str>, item: Item, cursor: Arc<str> },
    /// Teleport refused the chunk's cursor; it is read again from its start.
    Restarted { chunk: Arc<str> },
    /// The chunk is done: read to its end (`Progress`), or skipped because
    /// it cannot be read (`Invalid`: the dead letter that names it).
    Finished { chunk: Arc<str>, item: Item },
}

async fn tell(news: &mpsc::Sender<ChunkNews>, item: ChunkNews) -> Result<(), Stopped> {
    news.send(item).await.map_err(|_| Stopped)
}

/// `YYYY-MM-DD` of `time`, UTC.
fn date_of(time: SystemTime) -> String {
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

    const BOUND: ChunkGiveUp = ChunkGiveUp { attempts: 5, time: Duration::from_secs(600) };

    #[test]
    fn a_chunk_is_given_up_only_after_enough_refusals_and_enough_time() {
        let start = Instant::now();
        let mut refusals = Refusals::default();
        // Five refusals in the first minute: not enough time.
        for n in 0..5u32 {
            let refused = refusals.refused(start + Duration::from_secs(u64::from(n) * 10), BOUND);
            assert!(!refused.give_up, "refusal {} after {:?} is too early", refused.count, refused.over);
        }
        // Ten minutes after the first: given up.
        let refused = refusals.refused(start + Duration::from_secs(600), BOUND);
        assert_eq!(refused, Refused { count: 6, over: Duration::from_secs(600), give_up: true });
    }

    #[test]
    fn time_alone_does_not_give_a_chunk_up() {
        let start = Instant::now();
        let mut refusals = Refusals::default();
        assert!(!refusals.refused(start, BOUND).give_up);
        assert!(!refusals.refused(start + Duration::from_secs(3600), BOUND).give_up, "two refusals, an hour apart, are not five");
    }

    #[test]
    fn a_chunk_letter_is_read_back_from_its_payload() {
        let payload = serde_json::json!({ "date": "2024-05-01", "chunk": "c2", "cursor": "17" }).to_string();
        let letter = ChunkLetter { date: "2024-05-01".into(), chunk: "c2".into(), cursor: "17".into() };
        assert_eq!(ChunkLetter::parse(payload.as_bytes()), Some(letter));
        assert_eq!(ChunkLetter::parse(br#"{"date":"yesterday","chunk":"c2","cursor":""}"#), None, "a date that is not one");
        assert_eq!(ChunkLetter::parse(br#"{"event":"user.login"}"#), None, "an event, not a chunk");
    }

    #[test]
    fn asks_are_spread_over_the_time() {
        assert_eq!(BOUND.spacing(), Duration::from_secs(120));
        assert_eq!(ChunkGiveUp { attempts: 0, time: Duration::from_secs(6) }.spacing(), Duration::from_secs(6));
    }

    #[test]
    fn a_slot_reads_its_share_and_finishes_what_it_started_of_another() {
        let share = Share { slot: 1, slots: 2 };
        let names: Vec<String> = (0..40).map(|n| format!("c{n}")).collect();
        let (mine, others): (Vec<&String>, Vec<&String>) = names.iter().partition(|chunk| share.takes(chunk));
        let date =
            DateCursor { date: "2024-05-01".into(), done: vec![mine[0].clone()], partial: [(others[0].clone(), "5".to_owned())].into() };
        let read = chunks_to_read(&date, names.clone(), share);
        let mut expected: Vec<String> = mine[1..].iter().map(|chunk| (*chunk).clone()).collect();
        expected.push(others[0].clone());
        assert_eq!(read, expected, "its own chunks not done, then the partial one it started before the slots changed");
    }

    #[test]
    fn every_chunk_has_exactly_one_slot_and_the_slots_share_them() {
        // FNV-1a of "a" is 0xaf63dc4c8601ec8c: the hash is the published one.
        assert_eq!(slot_of("a", u32::MAX), u32::try_from(0xaf63_dc4c_8601_ec8c_u64 % u64::from(u32::MAX)).expect("fits"));
        let chunks: Vec<String> = (0..300).map(|n| format!("{n:016x}-chunk")).collect();
        let shares: Vec<Share> = (0..3).map(|slot| Share { slot, slots: 3 }).collect();
        for chunk in &chunks {
            let takers = shares.iter().filter(|share| share.takes(chunk)).count();
            assert_eq!(takers, 1, "{chunk} is read by exactly one of three slots");
            assert!(Share::WHOLE.takes(chunk), "one slot reads everything");
        }
        for share in &shares {
            let taken = chunks.iter().filter(|chunk| share.takes(chunk)).count();
            assert!((60..=140).contains(&taken), "slot {} takes {taken} of 300 chunks: a fair share", share.slot);
        }
    }

    #[test]
    fn a_partial_chunk_no_longer_listed_is_read_all_the_same() {
        let date = DateCursor {
            date: "2024-05-01".into(),
            done: vec!["c1".into()],
            partial: [("c2".to_owned(), "17".to_owned()), ("c4".to_owned(), "3".to_owned())].into(),
        };
        let listed = vec!["c1".to_owned(), "c3".to_owned(), "c4".to_owned()];
        assert_eq!(
            chunks_to_read(&date, listed, Share::WHOLE),
            ["c3", "c4", "c2"],
            "done ones skipped, the unlisted partial one kept, none twice"
        );
        assert_eq!(chunks_to_read(&date, Vec::new(), Share::WHOLE), ["c2", "c4"], "an empty listing still reads the partial chunks");
    }
}
