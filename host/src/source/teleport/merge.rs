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

use super::audit::{self, AuditItem, ChunkGiveUp, Reader, Settings, TypeFilter};
use super::config::{TeleportSourceConfig, format_time, parse_start_time, truncate_to_second};
use super::connect::{ConnectOptions, IdentityWatcher, audit_log_client, auth_client, connect_lazy};
use super::cursor::{Cursor, PositionSnapshot, SessionProgress};
use super::lock::{FailedLogins, lock_for, run_locker};
use super::position::{self, Settle};
use super::sessions::{SessionItem, SessionReader};
use crate::config::{ConfigError, Context};
use crate::event::Event;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::source::{Invalid, Item, Position, SourceError, SourceRecord};
use crate::state::State;
use ferry_proto::types::LockV2;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Sessions announced but not yet streamed, per unit of `concurrency`,
/// before the audit log waits (the event handler's back-pressure).
const BACKLOG_PER_STREAM: usize = 16;
/// A recording still missing after this many tries is given up.
const MISSING_ATTEMPTS: u32 = 3;
/// A recording announced longer ago than this is given up when missing.
const MISSING_GIVE_UP_AGE: Duration = Duration::from_secs(48 * 3600);
/// Audit items the merge loop takes from the engine's channel at once.
const AUDIT_AT_ONCE: usize = 64;

/// A configured Teleport source.
pub struct TeleportSource {
    name: String,
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
            name,
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

    /// The name the cursor is stored under: `teleport:<cluster>`.
    pub fn name(&self) -> &str {
        &self.name
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
        position::settle(state, &self.settle_with(self.storage.as_deref()))
            .await
            .map_err(|message| ConfigError::invalid(&self.file, "storage", message))?;
        let key = format!("{}#start-time", self.name);
        let stored = state.cursor(&key).await.map_err(|err| ConfigError::invalid(&self.file, "storage", err.to_string()))?;
        match (stored, self.start_time) {
            (Some(stored), Some(wanted)) if format_time(wanted) != stored => Err(ConfigError::invalid(
                &self.file,
                format!("{}start-time", self.key_prefix),
                format!(
                    "ingestion started from {stored}; start-time cannot change once ingestion started: set it back to {stored}, \
                     or start over from the new one with `ferry state reset --empty --config {}` (it deletes every cursor and dead letter in {})",
                    self.file.display(),
                    state.path().display()
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

    /// Reads from `position` until shutdown, or until caught up with
    /// `exit-on-last-event`.
    pub async fn run(self, position: Option<String>, out: mpsc::Sender<SourceRecord>, shutdown: Shutdown) -> Result<(), SourceError> {
        let error = |message: String| SourceError { source_name: self.name.clone(), message };
        let cursor = match position {
            Some(text) => Cursor::parse(&text).map_err(error)?,
            None => Cursor::default(),
        };
        let addr = self.config.addr.clone();
        let channel = connect_lazy(&addr, &self.watcher.client_tls(), &ConnectOptions::default()).map_err(|err| error(err.to_string()))?;
        let client = audit_log_client(channel.clone());
        let (audit_tx, audit_rx) = mpsc::channel(self.config.page_size.clamp(1, 1024) as usize);
        let (session_tx, session_rx) = mpsc::channel(256);
        let skip_sessions = TypeFilter { types: HashSet::new(), skip: self.config.skip_session_types.iter().cloned().collect() };
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
            sessions: SessionReader {
                client,
                addr,
                filter: skip_sessions,
                backoff: Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(60) },
                out: session_tx,
                errors: Default::default(),
            },
            active: HashMap::new(),
            waiting: HashMap::new(),
            concurrency: self.config.concurrency,
            session_sink: self.session_sink.clone(),
            locks,
            exit_on_last_event: self.config.exit_on_last_event,
            missing_retry: self.missing_retry,
            audit_done: false,
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
            let take_audit = !self.audit_done && self.cursor.sessions.len() < backlog;
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
            missing: 0,
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
    }

    async fn on_session(&mut self, item: SessionItem) -> Result<(), Closed> {
        match item {
            SessionItem::Event { sid, index, mut event } => {
                let Some(progress) = self.progress(&sid) else { return Ok(()) };
                progress.next_index = index + 1;
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
        let announced = crate::units::parse_time(&progress.upload_time).ok();
        let too_old = announced.is_some_and(|at| at + MISSING_GIVE_UP_AGE < SystemTime::now());
        if progress.missing >= MISSING_ATTEMPTS || too_old {
            self.forget(&sid);
            let why = if too_old { "announced more than 48 hours ago".to_owned() } else { format!("asked {} times", progress.missing) };
            return self.give_up(&progress, format!("session recording {sid} is not in Teleport's storage ({why}): {reason}")).await;
        }
        let delay = self.missing_retry * progress.missing;
        tracing::info!(session = %sid, retry_in = ?delay, "Session recording not uploaded yet: {reason}; asking again later.");
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

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
