//! The storage lock: one ferry at a time on a state database.
//!
//! Two ferries on one database deliver every new event twice, overwrite each
//! other's cursors, and, started at the same instant, race in the schema's
//! migrations. So `ferry start`, `dead-letters replay` and the `state`
//! commands that write hold an exclusive advisory lock (`flock`) on the file
//! beside the database (`ferry.lock` beside `ferry.db`) for as long as they
//! run, taken before the schema is touched. The kernel lets go of it when the
//! process ends, however it ends (SIGKILL, the OOM killer), so a crash never
//! leaves a stale lock and nobody ever deletes the file.
//!
//! The holder writes who it is into the file: pid, host, since when and its
//! command line, so that the one refused can name it. The host matters: two
//! containers sharing a volume each have their own pid 1. Once its schema is
//! up to date it adds `schema=current`.
//!
//! The read-only commands (`status`, `dead-letters list`) never wait for a
//! holder to stop: they take a shared lock only while they bring the schema
//! up to date, and beside a holder they migrate only once it has (a fresh
//! database being created by a starting ferry is left to it).

use super::{State, StateError};
use std::fs::{File, TryLockError};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

/// How long to wait for what only takes a moment elsewhere: a holder that
/// has its lock but has not written its name yet, a reader bringing the
/// schema up to date.
const MOMENT: Duration = Duration::from_secs(5);

/// How long a reader waits beside a holder for the schema to be brought up
/// to date (the holder compiles its plugins first).
const SCHEMA_WAIT: Duration = Duration::from_secs(60);

const POLL: Duration = Duration::from_millis(20);

/// The line a holder adds once its schema is up to date.
const SCHEMA_CURRENT: &str = "schema=current";

/// The lock file of the database at `database`.
pub fn lock_path(database: &Path) -> PathBuf {
    database.with_extension("lock")
}

/// An exclusive lock on a state database, held until the last clone of it
/// is dropped (or the process ends).
#[derive(Debug)]
pub struct StorageLock {
    file: File,
    path: PathBuf,
    announced: AtomicBool,
}

/// The locks this process holds: taking one again (`ferry start` takes its
/// lock first, and the state it opens later takes it again) hands out the
/// same one. A second `flock` by the same process would refuse itself.
static HELD: Mutex<Vec<Weak<StorageLock>>> = Mutex::new(Vec::new());

impl StorageLock {
    /// Takes the exclusive lock on the database at `database`, or says, as
    /// the error, who holds it.
    pub async fn exclusive(database: &Path) -> Result<Arc<StorageLock>, StateError> {
        let path = lock_path(database);
        if let Some(held) = held_here(&path) {
            return Ok(held);
        }
        let error = |message: String| StateError::new(database, message);
        if let Some(dir) = database.parent() {
            std::fs::create_dir_all(dir).map_err(|err| error(format!("cannot create its folder: {err}")))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|err| error(format!("cannot open its lock file {}: {err}", path.display())))?;
        take(&file, database, &path).await?;
        let lock = Arc::new(StorageLock { file, path, announced: AtomicBool::new(false) });
        lock.write(&holder_record()).map_err(|err| error(format!("cannot write its lock file {}: {err}", lock.path.display())))?;
        let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.retain(|weak| weak.strong_count() > 0);
        held.push(Arc::downgrade(&lock));
        Ok(lock)
    }

    /// Adds to the holder's record that the schema is up to date: readers
    /// beside it may now read (and bring a newer ferry's schema up to date).
    pub(super) fn schema_current(&self) {
        if self.announced.swap(true, Ordering::SeqCst) {
            return;
        }
        let record = format!("{}{SCHEMA_CURRENT}\n", holder_record());
        if let Err(error) = self.write(&record) {
            tracing::warn!(file = %self.path.display(), %error, "Cannot write the state lock file; ferry holds the lock all the same.");
        }
    }

    /// Replaces the file's text with `text`.
    fn write(&self, text: &str) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.write_all_at(text.as_bytes(), 0)
    }
}

/// The lock this process already holds at `path`.
fn held_here(path: &Path) -> Option<Arc<StorageLock>> {
    let held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    held.iter().filter_map(Weak::upgrade).find(|lock| lock.path == path)
}

/// Takes the exclusive lock on `file`. Readers bringing the schema up to
/// date hold it shared for a moment: waited for. A holder is named.
async fn take(file: &File, database: &Path, path: &Path) -> Result<(), StateError> {
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(err)) => return Err(unsupported(database, path, &err)),
            Err(TryLockError::WouldBlock) => {}
        }
        // Shared holders only are readers; an exclusive one is a ferry.
        let readers_only = file.try_lock_shared().is_ok();
        if readers_only {
            let _ = file.unlock();
            if started.elapsed() > SCHEMA_WAIT {
                let readers = "`ferry status` or `ferry dead-letters` bringing its schema up to date";
                return Err(in_use(database, path, &format!("{readers} for over {}s", SCHEMA_WAIT.as_secs())));
            }
        } else if let Some(holder) = Holder::read(path) {
            return Err(in_use(database, path, &holder.describe()));
        } else if started.elapsed() > MOMENT {
            // A holder between its lock and its name takes microseconds.
            return Err(in_use(database, path, "another ferry, which has not written its name into the lock file"));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn in_use(database: &Path, path: &Path, holder: &str) -> StateError {
    StateError::new(
        database,
        format!(
            "in use by {holder}, which holds {}; only one ferry at a time may run on a storage: stop that one first, or give this config a `storage` of its own",
            path.display()
        ),
    )
}

fn unsupported(database: &Path, path: &Path, err: &std::io::Error) -> StateError {
    StateError::new(
        database,
        format!(
            "cannot lock {} ({err}): ferry locks its storage so that two ferries never run on one state database, and a filesystem without file locks (some network or FUSE mounts) cannot hold it; put `storage` on a local filesystem",
            path.display()
        ),
    )
}

/// Who holds a lock, as its file says.
#[derive(Debug, Default, PartialEq)]
struct Holder {
    pid: String,
    host: String,
    since: String,
    command: String,
    schema_current: bool,
}

impl Holder {
    /// The holder named in the lock file at `path`, once it has written its
    /// name.
    fn read(path: &Path) -> Option<Holder> {
        Holder::parse(&std::fs::read_to_string(path).ok()?)
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut holder = Holder::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", value)) => value.clone_into(&mut holder.pid),
                Some(("host", value)) => value.clone_into(&mut holder.host),
                Some(("since", value)) => value.clone_into(&mut holder.since),
                Some(("command", value)) => value.clone_into(&mut holder.command),
                _ if line == SCHEMA_CURRENT => holder.schema_current = true,
                _ => {}
            }
        }
        (!holder.pid.is_empty() && !holder.command.is_empty()).then_some(holder)
    }

    fn describe(&self) -> String {
        format!("`{}` (pid {} on host {}, since {})", self.command, self.pid, self.host, self.since)
    }
}

/// This process's record for the lock file.
fn holder_record() -> String {
    static SINCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let since = SINCE.get_or_init(|| humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    format!(
        "# ferry holds a lock on this file while it uses the state database beside it; the lock ends with the process.\npid={}\nhost={}\nsince={since}\ncommand={}\n",
        std::process::id(),
        host_name(),
        command_line()
    )
}

/// The host's name (a container's own, in its namespace).
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "(unknown)".to_owned())
}

/// `ferry ARGS…` as this process was started, on one line and short.
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args.next().map(PathBuf::from).and_then(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()));
    let line: Vec<String> = program.into_iter().chain(args).collect();
    let line = line.join(" ").replace(['\n', '\r'], " ");
    if line.chars().count() > 200 { format!("{}…", line.chars().take(200).collect::<String>()) } else { line }
}

/// What a reader has of the lock while it opens the database.
pub(super) enum Beside {
    /// No ferry holds the lock: the reader holds it shared while it brings
    /// the schema up to date (or nothing, where the file cannot be opened).
    Alone(#[allow(dead_code, reason = "held, not read: the shared lock lasts as long as the file is open")] Option<File>),
    /// A ferry holds it (this one, or another).
    Holder,
}

/// Takes the lock shared for a reader, or finds it held. Never an error:
/// a reader that cannot lock reads as it did before locks existed.
pub(super) fn share(database: &Path) -> Beside {
    let path = lock_path(database);
    if held_here(&path).is_some() {
        return Beside::Holder;
    }
    // Never created here: a reader may be another user, whose file ferry
    // could not open.
    let Ok(file) = File::options().read(true).write(true).open(&path).or_else(|_| File::open(&path)) else { return Beside::Alone(None) };
    match file.try_lock_shared() {
        Ok(()) => Beside::Alone(Some(file)),
        Err(TryLockError::WouldBlock) => Beside::Holder,
        Err(TryLockError::Error(_)) => Beside::Alone(None),
    }
}

/// Waits until the holder of the lock of `database` says its schema is up
/// to date, or is gone, for at most [`SCHEMA_WAIT`].
pub(super) async fn holder_schema_current(database: &Path) {
    let path = lock_path(database);
    let started = Instant::now();
    while started.elapsed() < SCHEMA_WAIT {
        if Holder::read(&path).is_none_or(|holder| holder.schema_current) || held_here(&path).is_some() {
            return;
        }
        if let Ok(file) = File::open(&path)
            && file.try_lock_shared().is_ok()
        {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

impl State {
    /// Opens the database at `path` holding its lock for as long as the
    /// state lives, without the marker's check ([`State::open_guarded`] has it).
    pub async fn open_exclusive(path: &Path) -> Result<State, StateError> {
        let lock = StorageLock::exclusive(path).await?;
        State::open_locked(path, lock).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_its_holder_once_complete() {
        let record = holder_record();
        let holder = Holder::parse(&record).expect("a complete record");
        assert_eq!(holder.pid, std::process::id().to_string());
        assert_eq!(holder.host, host_name());
        assert!(!holder.schema_current);
        assert!(holder.describe().contains(&format!("(pid {} on host {}, since ", holder.pid, holder.host)), "{}", holder.describe());
        assert!(Holder::parse(&format!("{record}{SCHEMA_CURRENT}\n")).expect("complete").schema_current);
        assert_eq!(Holder::parse(""), None, "a holder between its lock and its name");
        assert_eq!(Holder::parse("pid=12\n"), None);
    }

    #[tokio::test]
    async fn a_second_holder_is_refused_naming_the_first_and_the_lock_ends_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = dir.path().join("storage").join("ferry.db");
        let lock = StorageLock::exclusive(&database).await.expect("the first takes it");
        assert!(Arc::ptr_eq(&lock, &StorageLock::exclusive(&database).await.expect("again")), "the same process shares its lock");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(lock_path(&database)).expect("lock file").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Another holder, as another process would be: its own open file.
        let other = File::options().read(true).write(true).open(lock_path(&database)).expect("open");
        let err = take(&other, &database, &lock_path(&database)).await.expect_err("refused");
        let text = err.to_string();
        assert!(text.contains(&format!("in use by `{}` (pid {} on host ", command_line(), std::process::id())), "{text}");
        assert!(text.contains(&lock_path(&database).display().to_string()), "{text}");
        assert!(matches!(share(&database), Beside::Holder));
        drop(lock);
        take(&other, &database, &lock_path(&database)).await.expect("free once the holder is gone");
    }

    #[tokio::test]
    async fn readers_do_not_hold_a_holder_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = dir.path().join("ferry.db");
        let writer = File::options().read(true).write(true).create_new(true).open(lock_path(&database)).expect("create");
        let Beside::Alone(Some(reader)) = share(&database) else { panic!("no holder: the reader locks shared") };
        let releases = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(reader);
        });
        take(&writer, &database, &lock_path(&database)).await.expect("taken once the reader is done");
        releases.await.expect("released");
    }
}
