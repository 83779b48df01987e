//! The Teleport source's merge loop: the audit log, the session recordings
//! it announces, and failed-login locks, merged into one ordered stream of
//! records.
//!
//! One merge loop owns the [`Cursor`]. The audit engine and the session
//! tasks send it what they read; it updates the cursor and emits each
//! record with the cursor as it stands just after it. Because the pipeline
//! commits only the position of the last record of a fully delivered prefix,
//! the stored cursor never claims an event that is not delivered, for the
//! audit log and for every session alike.

use super::audit::{self, AuditItem, ChunkGiveUp, Reader, Settings, Share, TypeFilter};
use super::config::{TeleportSourceConfig, parse_start_time, truncate_to_second};
use super::connect::{ConnectOptions, IdentityWatcher, audit_log_client, auth_client, connect_lazy};
use super::cursor::{AuditCursor, Cursor, PositionSnapshot, SessionProgress};
use super::lock::{FailedLogins, lock_for, run_locker};
use super::position::{self, Settle};
use super::sessions::{RecordingLetter, SessionItem, SessionReader};
use crate::config::{ConfigError, Context};
use crate::event::Event;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::source::{Invalid, Item, Position, SourceError, SourceRecord};
use crate::state::State;
use crate::units::format_time;
use ferry_proto::auditlog::audit_log_service_client::AuditLogServiceClient;
use ferry_proto::types::LockV2;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Sessions announced but not yet streamed, per unit of `concurrency`,
/// before the audit log waits (the event handler's back-pressure).
const BACKLOG_PER_STREAM: usize = 16;
/// A recording still missing after this many tries is given up.
const MISSING_ATTEMPTS: u32 = 3;
/// A recording announced longer ago than this is given up when missing.
const MISSING_GIVE_UP_AGE: Duration = Duration::from_secs(48 * 3600);
/// Audit items the merge loop takes from the engine's channel at once.
const AUDIT_AT_ONCE: usize = 64;
/// How long recordings waiting for a stream may hold the audit log back
/// while none of them moves: past it the audit log is read on (the cursor
/// carries the longer backlog), since recordings Teleport cannot serve must
/// never stop the audit log. Recordings waiting after failures never hold it.
const HOLD_WITHOUT_PROGRESS: Duration = Duration::from_secs(30);

/// A configured Teleport source.
pub struct TeleportSource {
    name: String,
    /// The cluster's name for positions (`teleport:<cluster>`): `name` is
    /// this with the slot added, for a slot above 0.
    cluster_key: String,
    share: Share,
    config: TeleportSourceConfig,
    file: PathBuf,
    /// ferry's storage folder, where the event handler's saved state is
    /// looked for (see [`TeleportSource::take_over_from`]); none: not looked for.
    storage: Option<PathBuf>,
    key_prefix: String,
    watcher: IdentityWatcher,
    session_sink: Option<Arc<str>>,
    start_time: Option<SystemTime>,
    locking: bool,
    missing_retry: Duration,
}

impl TeleportSource {
    /// Checks the settings and loads the credentials: a config whose every
    /// certificate has expired is refused here, with the file named.
    /// `key_prefix` is how errors name the keys (`source.teleport.` or
    /// `teleport.` for an event handler config). Session recordings go to
    /// the default sink until [`TeleportSource::send_sessions_to`] says
    /// otherwise.
    pub fn build(config: &TeleportSourceConfig, ctx: &Context, key_prefix: &str) -> Result<TeleportSource, ConfigError> {
        let checked = config.check(&ctx.file, &ctx.base_dir, key_prefix)?;
        let refresh = config.refresh.enabled.then_some(config.refresh.interval.0);
        let watcher = IdentityWatcher::start(checked.credentials.clone(), checked.route.clone(), refresh)
            .map_err(|err| ctx.invalid(format!("{key_prefix}identity"), err.to_string()))?;
        // The audit log is the cluster's: its position is keyed by the
        // cluster name of the identity, not by the address that reaches it.
        let cluster = watcher.current().cluster_name().to_owned();
        let name = if cluster.is_empty() { position::address_key(&config.addr) } else { position::cluster_key(&cluster) };
        Ok(TeleportSource {
            cluster_key: name.clone(),
            name,
            share: Share::WHOLE,
            config: config.clone(),
            file: ctx.file.clone(),
            storage: None,
            key_prefix: key_prefix.to_owned(),
            watcher,
            session_sink: None,
            start_time: checked.start_time,
            locking: config.lock.enabled && !ctx.dry_run,
            missing_retry: config.missing_recording_retry.0,
        })
    }

    /// Sends session recordings to `sink` unless a plugin routes them
    /// (none: the default sink).
    pub fn send_sessions_to(&mut self, sink: Option<Arc<str>>) {
        self.session_sink = sink;
    }

    /// The name the cursor is stored under: `teleport:<cluster>`, and
    /// `teleport:<cluster>#slot-K` for slot K above 0.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `source`, a name letters and cursors are stored under, is
    /// this cluster's: slot 0's or another slot's (`dead-letters replay`
    /// reads the chunks and recordings of every slot again).
    pub fn is_this_cluster(&self, source: &str) -> bool {
        (0..=crate::state::lease::MOST_SLOTS).any(|slot| slot_source_name(&self.cluster_key, slot) == source)
    }

    /// Reads slot `slot`'s share of the export chunks, of `slots` (see
    /// [`Share`]); its cursor is its own, stored under a name of its own
    /// above slot 0.
    pub fn take_slot(&mut self, slot: u32, slots: u32) {
        self.share = Share { slot, slots: slots.max(1) };
        self.name = slot_source_name(&self.cluster_key, slot);
    }

    /// `dead-letters replay` of an export chunk given up on: reads it again
    /// from the cursor its letter names, once, with this source's identity
    /// and type filters; the reason, one line, when Teleport still refuses.
    pub async fn read_export_chunk(&self, letter: &audit::ChunkLetter) -> Result<Vec<crate::source::Item>, String> {
        let addr = &self.config.addr;
        let channel = connect_lazy(addr, &self.watcher.client_tls(), &ConnectOptions::default()).map_err(|err| err.to_string())?;
        let mut client = audit_log_client(channel);
        let filter =
            TypeFilter { types: self.config.types.iter().cloned().collect(), skip: self.config.skip_event_types.iter().cloned().collect() };
        audit::read_chunk_again(&mut client, letter, &filter).await.map_err(|status| super::connect::describe_status(addr, &status))
    }

    /// `dead-letters replay` of a session recording given up on: streams it
    /// again from the first event its letter says was not delivered, once,
    /// each event bound for `<session-url>.<sid>.log` as `start` sends it;
    /// the reason, one line, when Teleport still refuses.
    pub async fn read_recording(&self, letter: &RecordingLetter) -> Result<Vec<crate::source::Item>, String> {
        let addr = &self.config.addr;
        let channel = connect_lazy(addr, &self.watcher.client_tls(), &ConnectOptions::default()).map_err(|err| err.to_string())?;
        let read = self
            .session_reader(audit_log_client(channel), mpsc::channel(1).0)
            .read_again(letter)
            .await
            .map_err(|status| super::connect::describe_status(addr, &status))?;
        let items = read.into_iter().filter_map(|item| match item {
            SessionItem::Event { sid, mut event, .. } => {
                event.stream_session = Some(Arc::from(sid.as_str()));
                event.sink = self.session_sink.clone();
                Some(Item::Event(event))
            }
            SessionItem::Unreadable { invalid, .. } => Some(Item::Invalid(invalid)),
            _ => None,
        });
        Ok(items.collect())
    }

    /// What every session task of this source shares.
    fn session_reader(&self, client: AuditLogServiceClient<Channel>, out: mpsc::Sender<SessionItem>) -> SessionReader {
        SessionReader {
            client,
            addr: self.config.addr.clone(),
            filter: TypeFilter { types: HashSet::new(), skip: self.config.skip_session_types.iter().cloned().collect() },
            backoff: Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(60) },
            out,
            errors: Default::default(),
        }
    }

    /// Looks for the event handler's saved state in `storage` (ferry's
    /// storage folder, which the event handler's `storage` also names) when
    /// the cluster has no position yet.
    pub fn take_over_from(&mut self, storage: PathBuf) {
        self.storage = Some(storage);
    }

    fn settle_with<'a>(&'a self, storage: Option<&'a Path>) -> Settle<'a> {
        Settle { key: &self.name, addr: &self.config.addr, storage, config_file: &self.file, start_time: self.start_time }
    }

    /// `ferry state import-event-handler DIR`: takes the event handler's
    /// folder `dir` over; refused when the cluster has a position, unless
    /// `replace`. Says what it took.
    pub async fn import_event_handler(&self, state: &State, dir: &Path, replace: bool) -> Result<String, String> {
        position::import(state, &self.settle_with(None), dir, replace).await
    }

    /// `ferry state adopt-position KEY`: the position an older ferry stored
    /// under `key` becomes this cluster's.
    pub async fn adopt_position(&self, state: &State, key: &str) -> Result<String, String> {
        position::adopt(state, &self.name, key).await
    }

    /// Settles which stored position is this cluster's (one an older ferry
    /// keyed by address, or the event handler's; see [`position`]), fixes
    /// the start time at the first run and refuses a `start-time` that
    /// differs from the stored one, as the event handler does.
    pub async fn prepare(&mut self, state: &State) -> Result<(), ConfigError> {
        if self.share.slot == 0 {
            // The event handler's position, or an older ferry's, is one
            // position: slot 0's.
            position::settle(state, &self.settle_with(self.storage.as_deref()))
                .await
                .map_err(|message| ConfigError::invalid(&self.file, "storage", message))?;
        }
        self.settle_start_time(state).await?;
        if self.share.slot > 0 {
            self.begin_slot(state).await.map_err(|err| ConfigError::invalid(&self.file, "storage", err.to_string()))?;
        }
        Ok(())
    }

    /// Every slot starts where the deployment started.
    async fn settle_start_time(&mut self, state: &State) -> Result<(), ConfigError> {
        let key = format!("{}#start-time", self.cluster_key);
        let stored = state.cursor(&key).await.map_err(|err| ConfigError::invalid(&self.file, "storage", err.to_string()))?;
        match (stored, self.start_time) {
            (Some(stored), Some(wanted)) if format_time(wanted) != stored => Err(ConfigError::invalid(
                &self.file,
                format!("{}start-time", self.key_prefix),
                format!(
                    "ingestion started from {stored}; start-time cannot change once ingestion started: set it back to {stored}, \
                     or start over from the new one with `ferry state reset --empty --config {}` (it deletes every cursor and dead letter in {})",
                    self.file.display(),
                    state.location()
                ),
            )),
            (Some(stored), _) => {
                self.start_time = Some(parse_start_time(&stored).unwrap_or_else(|_| SystemTime::now()));
                Ok(())
            }
            (None, wanted) => {
                let start = wanted.unwrap_or_else(|| truncate_to_second(SystemTime::now()));
                state
                    .commit_cursor(&key, &format_time(start))
                    .await
                    .map_err(|err| ConfigError::invalid(&self.file, "storage", err.to_string()))?;
                position::started_afresh(state, &self.name, &format_time(start))
                    .await
                    .map_err(|err| ConfigError::invalid(&self.file, "storage", err.to_string()))?;
                self.start_time = Some(start);
                Ok(())
            }
        }
    }

    /// A slot above 0 that runs for the first time, in a deployment whose
    /// slot 0 has exported already (the deployment went from fewer slots to
    /// more), starts from slot 0's dates, with the chunks slot 0 finished or
    /// is partway through counted as done: slot 0 reads its partial ones to
    /// their end, so every chunk is still read once. Without this it would
    /// read every date from `start-time` again.
    async fn begin_slot(&self, state: &State) -> Result<(), crate::state::StateError> {
        if state.cursor(&self.name).await?.is_some() {
            return Ok(());
        }
        let Some(Ok(first)) = state.cursor(&self.cluster_key).await?.map(|text| Cursor::parse(&text)) else { return Ok(()) };
        let AuditCursor::Export(mut export) = first.audit else { return Ok(()) };
        for date in &mut export.dates {
            let partial = std::mem::take(&mut date.partial);
            date.done.extend(partial.into_keys());
        }
        let cursor = Cursor { audit: AuditCursor::Export(export), sessions: Vec::new() };
        tracing::info!(
            slot = self.share.slot,
            "Slot {} starts from the dates slot 0 exports, with the chunks it read counted as done.",
            self.share.slot
        );
        state.commit_cursor(&self.name, &cursor.encode()).await
    }

    /// Reads from `position` until shutdown, or until caught up with
    /// `exit-on-last-event`.
    pub async fn run(self, position: Option<String>, out: mpsc::Sender<SourceRecord>, shutdown: Shutdown) -> Result<(), SourceError> {
        let error = |message: String| SourceError { source_name: self.name.clone(), message };
        let cursor = match position {
            Some(text) => Cursor::parse(&text).map_err(error)?,
            None => Cursor::default(),
        };
        if self.share.slots > 1 && matches!(cursor.audit, AuditCursor::Legacy(_)) {
            return Err(error(format!(
                "this cluster's audit log was read with the legacy engine, which one instance pages alone; [leadership] slots = {} shares the export engine's chunks: set slots = 1, or start the deployment over on the export engine",
                self.share.slots
            )));
        }
        let addr = self.config.addr.clone();
        let channel = connect_lazy(&addr, &self.watcher.client_tls(), &ConnectOptions::default()).map_err(|err| error(err.to_string()))?;
        let client = audit_log_client(channel.clone());
        let (audit_tx, audit_rx) = mpsc::channel(self.config.page_size.clamp(1, 1024) as usize);
        let (session_tx, session_rx) = mpsc::channel(256);
        let settings = Settings {
            addr: addr.clone(),
            filter: TypeFilter {
                types: self.config.types.iter().cloned().collect(),
                skip: self.config.skip_event_types.iter().cloned().collect(),
            },
            page_size: self.config.page_size,
            window_size: self.config.window_size.0,
            poll_interval: self.config.timeout.0,
            exit_on_last_event: self.config.exit_on_last_event,
            start_time: self.start_time.unwrap_or_else(SystemTime::now),
            concurrency: self.config.concurrency,
            // Teleport's own handler reconnects every 5 s; a little longer at most.
            backoff: Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(10) },
            errors: Default::default(),
            chunk_give_up: ChunkGiveUp { attempts: self.config.chunk_retry_attempts, time: self.config.chunk_retry_time.0 },
            share: self.share,
        };
        let reader =
            Reader { settings: Arc::new(settings), client: client.clone(), out: audit_tx, shutdown: shutdown.clone(), buffer: Vec::new() };
        let audit_task = tokio::spawn(audit::run(reader, cursor.audit.clone(), self.config.engine));
        let cursor = PositionSnapshot::from(cursor);
        let locks = self.locking.then(|| {
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(run_locker(auth_client(channel), addr.clone(), rx, shutdown.clone()));
            let logins = FailedLogins::new(self.config.lock.failed_attempts_count, self.config.lock.period.0);
            Locking { logins, out: tx, duration: self.config.lock.lock_for.0 }
        });
        let mut merge = Merge {
            cursor,
            out,
            sessions: self.session_reader(client, session_tx),
            active: HashMap::new(),
            waiting: HashMap::new(),
            concurrency: self.config.concurrency,
            session_sink: self.session_sink.clone(),
            locks,
            exit_on_last_event: self.config.exit_on_last_event,
            missing_retry: self.missing_retry,
            audit_done: false,
            hold: Hold::default(),
        };
        merge.run(audit_rx, session_rx, shutdown).await;
        audit_task.abort();
        for (_, task) in merge.active.drain() {
            task.abort();
        }
        drop(self.watcher);
        Ok(())
    }
}

/// The name slot `slot` of the cluster `cluster_key` stores its cursor and
/// letters under: the cluster's own for slot 0, so that a deployment of one
/// slot keeps the name it always had.
fn slot_source_name(cluster_key: &str, slot: u32) -> String {
    if slot == 0 { cluster_key.to_owned() } else { format!("{cluster_key}#slot-{slot}") }
}

struct Locking {
    logins: FailedLogins,
    out: mpsc::Sender<LockV2>,
    duration: Duration,
}

/// The merge loop's state.
struct Merge {
    cursor: PositionSnapshot,
    out: mpsc::Sender<SourceRecord>,
    sessions: SessionReader,
    active: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Recordings not found, by session id: when to ask again.
    waiting: HashMap<String, Instant>,
    concurrency: usize,
    session_sink: Option<Arc<str>>,
    locks: Option<Locking>,
    exit_on_last_event: bool,
    missing_retry: Duration,
    /// The audit engine ended and all it sent is handled: caught up with
    /// `exit-on-last-event` (or stopped).
    audit_done: bool,
    hold: Hold,
}

/// Whether the recordings' backlog holds the audit log back, and since when
/// nothing moved (see [`HOLD_WITHOUT_PROGRESS`]).
#[derive(Default)]
struct Hold {
    /// When the backlog began to hold the audit log; none while it does not.
    since: Option<Instant>,
    /// When a recording last moved (an event, its end, a failure handed back).
    moved: Option<Instant>,
    /// The release was logged for this hold.
    warned: bool,
}

impl Hold {
    /// Whether the audit log may be read with `waiting` recordings waiting
    /// for a stream and room for `backlog`; and when to look again if not.
    fn audit_may_go(&mut self, waiting: usize, backlog: usize, now: Instant) -> (bool, Option<Instant>) {
        if waiting < backlog {
            *self = Hold { moved: self.moved, ..Hold::default() };
            return (true, None);
        }
        let since = *self.since.get_or_insert(now);
        let quiet_from = self.moved.map_or(since, |moved| moved.max(since));
        let release_at = quiet_from + HOLD_WITHOUT_PROGRESS;
        if now < release_at {
            return (false, Some(release_at));
        }
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(
                "No session recording has moved for {}s while {waiting} recording(s) wait for a stream; reading the audit log on.",
                HOLD_WITHOUT_PROGRESS.as_secs()
            );
        }
        (true, None)
    }

    fn moved(&mut self, now: Instant) {
        self.moved = Some(now);
        self.warned = false;
    }
}

/// The pipeline stopped reading.
struct Closed;

impl Merge {
    async fn run(&mut self, mut audit: mpsc::Receiver<AuditItem>, mut sessions: mpsc::Receiver<SessionItem>, mut shutdown: Shutdown) {
        let backlog = self.concurrency.saturating_mul(BACKLOG_PER_STREAM);
        // Audit items are taken as many at a time as the engine has queued
        // (one wake-up for them all), then handled one by one, each under
        // the session backlog's limit as before.
        let mut arrived = Vec::with_capacity(AUDIT_AT_ONCE);
        let mut queued: VecDeque<AuditItem> = VecDeque::with_capacity(AUDIT_AT_ONCE);
        let mut audit_closed = false;
        loop {
            self.start_sessions(&shutdown);
            if audit_closed && queued.is_empty() {
                self.audit_done = true;
            }
            if self.exit_on_last_event && self.audit_done && self.active.is_empty() {
                if !self.waiting.is_empty() {
                    tracing::warn!(
                        recordings = self.waiting.len(),
                        "Caught up; recordings not uploaded yet are asked for again at the next start."
                    );
                }
                return;
            }
            // Recordings waiting after failures hold nothing back.
            let streamable = self.cursor.sessions.len().saturating_sub(self.waiting.len());
            let (may_go, look_again) = self.hold.audit_may_go(streamable, backlog, Instant::now());
            let take_audit = !self.audit_done && may_go;
            if take_audit
                && !shutdown.is_fired()
                && let Some(item) = queued.pop_front()
            {
                if self.on_audit(item).await.is_err() {
                    return;
                }
                continue;
            }
            let next_retry = self.waiting.values().min().copied();
            let step = tokio::select! {
                count = audit.recv_many(&mut arrived, AUDIT_AT_ONCE), if take_audit && !audit_closed => {
                    audit_closed = count == 0;
                    queued.extend(arrived.drain(..));
                    Ok(())
                },
                Some(item) = sessions.recv() => self.on_session(item).await,
                () = sleep_until(next_retry), if next_retry.is_some() => {
                    let now = Instant::now();
                    self.waiting.retain(|_, at| *at > now);
                    Ok(())
                }
                () = sleep_until(look_again), if look_again.is_some() && !self.audit_done => Ok(()),
                () = shutdown.wait() => return,
            };
            if step.is_err() {
                return;
            }
        }
    }

    /// Starts streams for pending sessions, up to `concurrency`.
    fn start_sessions(&mut self, shutdown: &Shutdown) {
        for progress in self.cursor.sessions.iter() {
            if self.active.len() >= self.concurrency {
                break;
            }
            if self.active.contains_key(&progress.sid) || self.waiting.contains_key(&progress.sid) {
                continue;
            }
            let task = tokio::spawn(self.sessions.clone().run(progress.sid.clone(), progress.next_index, shutdown.clone()));
            self.active.insert(progress.sid.clone(), task);
        }
    }

    async fn emit(&self, item: Item) -> Result<(), Closed> {
        // Shared, not encoded: the committer writes the document of the
        // last record of each batch only, and the copy each record carries
        // costs reference counts, not an allocation.
        let record = SourceRecord { item, position: Position::Teleport(self.cursor.clone()) };
        self.out.send(record).await.map_err(|_| Closed)
    }

    async fn on_audit(&mut self, AuditItem { item, cursor }: AuditItem) -> Result<(), Closed> {
        self.cursor.audit = cursor;
        if let Item::Event(event) = &item {
            self.register_session(event);
            self.check_failed_login(event);
        }
        self.emit(item).await
    }

    /// A `session.upload` announces a recording to stream.
    fn register_session(&mut self, event: &Event) {
        if event.event_type != "session.upload" {
            return;
        }
        if event.session_id.is_empty() {
            tracing::warn!(event = %event.id, "A session.upload event names no session (`sid`); there is no recording to stream.");
            return;
        }
        if self.cursor.sessions.iter().any(|s| s.sid == event.session_id) {
            return;
        }
        Arc::make_mut(&mut self.cursor.sessions).push(SessionProgress {
            sid: event.session_id.clone(),
            next_index: 0,
            upload_time: event.time.clone(),
            ..SessionProgress::default()
        });
    }

    fn check_failed_login(&mut self, event: &Event) {
        let Some(locking) = &mut self.locks else { return };
        if event.event_type != "user.login" {
            return;
        }
        if let Some(target) = locking.logins.observe(&event.json, SystemTime::now()) {
            // The audit log must not wait for locks Teleport is slow to take.
            if let Err(error) = locking.out.try_send(lock_for(&target, locking.duration, SystemTime::now())) {
                tracing::error!(user = %target.user, login = %target.login, %error, "Cannot queue the lock for the user: too many locks wait for Teleport.");
            }
        }
    }

    fn progress(&mut self, sid: &str) -> Option<&mut SessionProgress> {
        Arc::make_mut(&mut self.cursor.sessions).iter_mut().find(|s| s.sid == sid)
    }

    fn forget(&mut self, sid: &str) {
        Arc::make_mut(&mut self.cursor.sessions).retain(|s| s.sid != sid);
        self.active.remove(sid);
        crate::observe::health().source_part_up(&recording_part(sid));
    }

    async fn on_session(&mut self, item: SessionItem) -> Result<(), Closed> {
        self.hold.moved(Instant::now());
        match item {
            SessionItem::Event { sid, index, mut event } => {
                let Some(progress) = self.progress(&sid) else { return Ok(()) };
                progress.next_index = index + 1;
                if progress.failing.is_some() {
                    recovered(progress);
                }
                // A recording goes to `<session-url>.<sid>.log` by the
                // stream's id: its `print` events have no `sid`.
                event.stream_session = Some(Arc::from(sid.as_str()));
                event.sink = self.session_sink.clone();
                self.emit(Item::Event(event)).await
            }
            SessionItem::Unreadable { sid, index, invalid } => {
                let Some(progress) = self.progress(&sid) else { return Ok(()) };
                progress.next_index = index + 1;
                tracing::error!(session = %sid, "{}; it is kept as a dead letter.", invalid.reason);
                self.emit(Item::Invalid(invalid)).await
            }
            SessionItem::Skipped { sid, index } => {
                if let Some(progress) = self.progress(&sid) {
                    progress.next_index = index + 1;
                }
                Ok(())
            }
            SessionItem::Done { sid } => {
                self.forget(&sid);
                self.emit(Item::Progress).await
            }
            SessionItem::Missing { sid, reason } => self.on_missing(sid, reason).await,
            SessionItem::Failing { sid, reason } => self.on_failing(sid, reason).await,
            SessionItem::Malformed { sid, reason } => {
                let Some(progress) = self.progress(&sid).cloned() else { return Ok(()) };
                self.forget(&sid);
                self.give_up(&progress, format!("session recording {sid} cannot be read: {reason}")).await
            }
        }
    }

    async fn on_missing(&mut self, sid: String, reason: String) -> Result<(), Closed> {
        self.active.remove(&sid);
        let Some(progress) = self.progress(&sid) else { return Ok(()) };
        progress.missing += 1;
        let progress = progress.clone();
        if let Some(why) = give_up_why(progress.missing, Some(&progress.upload_time), SystemTime::now()) {
            self.forget(&sid);
            return self.give_up(&progress, format!("session recording {sid} is not in Teleport's storage ({why}): {reason}")).await;
        }
        let delay = self.missing_retry * progress.missing;
        tracing::info!(session = %sid, retry_in = ?delay, "Session recording not uploaded yet: {reason}; asking again later.");
        self.waiting.insert(sid, Instant::now() + delay);
        self.emit(Item::Progress).await
    }

    /// A recording failed a round of tries for a reason of its own: it waits
    /// `missing-recording-retry` times the rounds failed, shows as failing,
    /// and is dead-lettered after the last round (`dead-letters replay`
    /// streams it again).
    async fn on_failing(&mut self, sid: String, reason: String) -> Result<(), Closed> {
        self.active.remove(&sid);
        let Some(progress) = self.progress(&sid) else { return Ok(()) };
        progress.failed += 1;
        progress.failing = Some(reason.clone());
        let progress = progress.clone();
        crate::observe::health().source_part_down(&recording_part(&sid), &reason);
        // Not by age: a recording that exists but fails says nothing by its
        // age (a backfill reads recordings years old), unlike a missing one.
        if let Some(why) = give_up_why(progress.failed, None, SystemTime::now()) {
            self.forget(&sid);
            return self.give_up(&progress, format!("session recording {sid} cannot be streamed ({why}): {reason}")).await;
        }
        let delay = self.missing_retry * progress.failed;
        tracing::warn!(session = %sid, retry_in = ?delay, "Session recording failed {} times in a row: {reason}; asking again later (the audit log goes on).", super::sessions::TRIES_PER_ROUND);
        self.waiting.insert(sid, Instant::now() + delay);
        self.emit(Item::Progress).await
    }

    /// Dead-letters a recording that cannot be streamed, so that an
    /// operator sees it and the rest goes on.
    async fn give_up(&mut self, progress: &SessionProgress, reason: String) -> Result<(), Closed> {
        tracing::error!(session = %progress.sid, "{reason}");
        let raw = serde_json::json!({ "sid": progress.sid, "upload_time": progress.upload_time, "next_index": progress.next_index });
        let invalid = Invalid { position: format!("session {}", progress.sid), reason, raw: raw.to_string().into_bytes() };
        self.emit(Item::Invalid(invalid)).await
    }
}

/// How `/readyz` names a recording that fails.
fn recording_part(sid: &str) -> String {
    format!("session recording {sid}")
}

/// A failing recording sent an event again.
fn recovered(progress: &mut SessionProgress) {
    progress.failing = None;
    progress.failed = 0;
    crate::observe::health().source_part_up(&recording_part(&progress.sid));
}

/// Why a recording asked for `tries` times (rounds) is given up: after
/// [`MISSING_ATTEMPTS`], or, when `upload_time` is given, once it was
/// announced more than [`MISSING_GIVE_UP_AGE`] ago (the event handler's
/// bounds for a missing recording); `None` while it is asked again.
fn give_up_why(tries: u32, upload_time: Option<&str>, now: SystemTime) -> Option<String> {
    let announced = upload_time.and_then(|time| crate::units::parse_time(time).ok());
    if announced.is_some_and(|at| at + MISSING_GIVE_UP_AGE < now) {
        return Some("announced more than 48 hours ago".to_owned());
    }
    (tries >= MISSING_ATTEMPTS).then(|| format!("asked {tries} times"))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_zero_keeps_the_clusters_name_and_the_others_add_theirs() {
        assert_eq!(slot_source_name("teleport:c", 0), "teleport:c");
        assert_eq!(slot_source_name("teleport:c", 2), "teleport:c#slot-2");
    }

    #[test]
    fn recordings_waiting_hold_the_audit_log_only_while_they_move_or_briefly() {
        let mut hold = Hold::default();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(hold.audit_may_go(31, 32, at(0)), (true, None), "room left");
        assert_eq!(hold.audit_may_go(32, 32, at(1)), (false, Some(at(31))), "full: held, looked at again when the bound is reached");
        hold.moved(at(20));
        assert_eq!(hold.audit_may_go(32, 32, at(31)), (false, Some(at(50))), "a recording moved: the bound starts again");
        assert_eq!(hold.audit_may_go(32, 32, at(50)), (true, None), "nothing moved for the bound: the audit log goes on");
        assert_eq!(hold.audit_may_go(40, 32, at(80)), (true, None), "and stays going while nothing moves");
        assert_eq!(hold.audit_may_go(10, 32, at(81)), (true, None));
        assert_eq!(hold.audit_may_go(32, 32, at(82)), (false, Some(at(112))), "a new hold starts its own bound");
    }

    #[test]
    fn a_recording_is_given_up_after_three_tries_or_when_missing_two_days_after_its_upload() {
        let now = crate::units::parse_time("2024-05-03T00:00:01Z").expect("a time");
        assert_eq!(give_up_why(2, Some("2024-05-02T00:00:00Z"), now), None);
        assert_eq!(give_up_why(3, Some("2024-05-02T00:00:00Z"), now).as_deref(), Some("asked 3 times"));
        assert_eq!(give_up_why(1, Some("2024-05-01T00:00:00Z"), now).as_deref(), Some("announced more than 48 hours ago"));
        assert_eq!(give_up_why(1, Some("not a time"), now), None, "an unreadable upload time bounds by tries only");
        assert_eq!(give_up_why(2, None, now), None, "a failing recording is bounded by tries only");
    }
}
