//! A real, throwaway PostgreSQL for ferry's tests: Debian's server binaries
//! (`./test` installs them and names their folder in `FERRY_PG_BIN`), a data
//! folder made by `initdb` in a fresh temporary folder, and `postgres`
//! itself as a child process on 127.0.0.1 — no system service — so that a
//! test can stop it, kill it, freeze it and start it again on the same data
//! and port, as a database that restarts or a network that drops would.
//!
//! ferry connects as the role `ferry` with a random password (SCRAM over
//! TCP), optionally over TLS with a client certificate from the stand-in PKI
//! (`Postgres::start_tls`). The stand-in itself administers the server as
//! the superuser `postgres` over its unix socket.
//!
//! Every method panics with what went wrong (and the server's log) rather
//! than returning an error: this is test set-up, and a missing PostgreSQL
//! fails the test with "PostgreSQL is not installed: run ./test" instead of
//! skipping it. Test machinery, so behind the `postgres` feature, which ferry
//! enables in its dev-dependencies only.

use crate::pki::Pki;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The role ferry connects as.
pub const ROLE: &str = "ferry";

/// How long a server may take to accept connections after it was started.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The client side of a server started with TLS: the CA that signed the
/// server's certificate, and a client certificate (common name `ferry`, the
/// role) with its key. All three are PEM files readable by this process only.
#[derive(Debug, Clone)]
pub struct PostgresClientFiles {
    /// The CA of the server's certificate (`sslrootcert`).
    pub ca: PathBuf,
    /// The client certificate (`sslcert`).
    pub cert: PathBuf,
    /// Its key, PKCS#8 PEM (`sslkey`).
    pub key: PathBuf,
}

/// A running PostgreSQL server in a temporary folder of its own; stopped,
/// and its folder removed, when dropped. Every method takes `&self`, so one
/// server can be shared between threads (one kills it while another writes).
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    password: String,
    /// The system user the server runs as when this process is root
    /// (initdb and postgres refuse to run as root): uid and gid.
    server_user: Option<(u32, u32)>,
    client_files: Option<PostgresClientFiles>,
    child: Mutex<Option<Child>>,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(mut child) = child {
            signal_group(&child, libc::SIGCONT);
            signal_group(&child, libc::SIGKILL);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Postgres {
    /// The folder of PostgreSQL's server binaries: `FERRY_PG_BIN` (which
    /// `./test` sets), else the newest `/usr/lib/postgresql/NN/bin`. Panics
    /// when there is none: a test that needs PostgreSQL fails without it.
    pub fn bin() -> PathBuf {
        find_bin(std::env::var_os("FERRY_PG_BIN").map(PathBuf::from), Path::new("/usr/lib/postgresql"))
    }

    /// Starts a server accepting the role `ferry` with its password over
    /// plain TCP on 127.0.0.1.
    pub fn start() -> Postgres {
        Postgres::create(None)
    }

    /// Starts a server that takes TLS only, with `pki`'s server certificate
    /// (for `localhost` and `127.0.0.1`), and lets the role `ferry` in only
    /// with its password and a client certificate `pki`'s CA signed whose
    /// common name is the role (`pki.client` is one). The client's files are
    /// written beside the server, and `url` names them.
    pub fn start_tls(pki: &Pki) -> Postgres {
        Postgres::create(Some(pki))
    }

    fn create(pki: Option<&Pki>) -> Postgres {
        let bin = Postgres::bin();
        let server_user = server_user();
        let dir = fresh_folder();
        let mut postgres =
            Postgres { bin, dir, port: free_port(), password: random_password(), server_user, client_files: None, child: Mutex::new(None) };
        postgres.give(&postgres.dir);
        std::fs::create_dir(postgres.socket_dir()).unwrap_or_else(|err| panic!("create the socket folder: {err}"));
        postgres.give(&postgres.socket_dir());
        postgres.initdb();
        std::fs::write(postgres.data_dir().join("pg_hba.conf"), hba(pki.is_some()))
            .unwrap_or_else(|err| panic!("write pg_hba.conf: {err}"));
        postgres.give(&postgres.data_dir().join("pg_hba.conf"));
        if let Some(pki) = pki {
            postgres.write_server_tls(pki);
            postgres.client_files = Some(postgres.write_client_tls(pki));
        }
        postgres.start_again();
        postgres.admin(&format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD '{}';",
            postgres.password // Random hex: nothing to quote.
        ));
        postgres
    }

    /// The port it listens on, on 127.0.0.1 (the same after `start_again`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password of the role `ferry` (never part of `url`).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The URL ferry connects to `database` with, as the role `ferry` and
    /// without its password; with TLS, `sslmode=verify-full` and the
    /// client's files (`sslrootcert`, `sslcert`, `sslkey`).
    pub fn url(&self, database: &str) -> String {
        let base = self.url_without_tls(database);
        match &self.client_files {
            None => base,
            Some(files) => format!(
                "{base}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
                files.ca.display(),
                files.cert.display(),
                files.key.display()
            ),
        }
    }

    /// `url` without any TLS parameter: `postgres://ferry@127.0.0.1:PORT/DATABASE`.
    pub fn url_without_tls(&self, database: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    /// The client's CA, certificate and key, for a server started with
    /// `start_tls`.
    pub fn client_files(&self) -> Option<&PostgresClientFiles> {
        self.client_files.as_ref()
    }

    /// Creates the database `name`, owned by the role `ferry` (so that ferry
    /// may create its tables in it), and returns its `url`. `name` is a plain
    /// identifier: lower-case letters, digits and `_`.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "a database name of lower-case letters, digits and _: {name:?}"
        );
        self.admin(&format!("CREATE DATABASE {name} OWNER {ROLE};"));
        self.url(name)
    }

    /// Runs `sql` in `database` as the superuser, over the unix socket, and
    /// returns what psql prints unaligned (`-At`: one row a line, columns
    /// split by `|`). For tests that look at, or tamper with, what ferry
    /// wrote.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        self.psql(database, sql).unwrap_or_else(|err| panic!("{err}"))
    }

    /// `sql` that may fail, with psql's error message: for tests that show
    /// the database itself refuses a write.
    pub fn try_sql(&self, database: &str, sql: &str) -> Result<String, String> {
        self.psql(database, sql)
    }

    /// Stops the server (a fast shutdown: open connections are cut) and
    /// waits until it has exited. The data stays for `start_again`.
    pub fn stop(&self) {
        let mut child = self.lock_child();
        if let Some(mut running) = child.take() {
            signal_group(&running, libc::SIGCONT);
            signal(&running, libc::SIGINT);
            let _ = running.wait();
        }
    }

    /// Kills the server and every backend process with SIGKILL, as a
    /// crashed machine would; `start_again` recovers from its write-ahead log.
    pub fn kill(&self) {
        let mut child = self.lock_child();
        if let Some(mut running) = child.take() {
            signal_group(&running, libc::SIGKILL);
            let _ = running.wait();
        }
    }

    /// Freezes the server and every backend with SIGSTOP: connections stay
    /// open and nothing answers, as through a network partition.
    pub fn pause(&self) {
        if let Some(running) = self.lock_child().as_ref() {
            signal_group(running, libc::SIGSTOP);
        }
    }

    /// Lets a paused server run on (SIGCONT).
    pub fn resume(&self) {
        if let Some(running) = self.lock_child().as_ref() {
            signal_group(running, libc::SIGCONT);
        }
    }

    /// Starts the server again on the same data and port after `stop` or
    /// `kill` (nothing when it is running), and waits until it accepts
    /// connections.
    pub fn start_again(&self) {
        let mut child = self.lock_child();
        if child.is_some() {
            return;
        }
        let started = Instant::now();
        loop {
            let mut running = self.spawn_server();
            match self.wait_ready(&mut running, started) {
                Ok(()) => {
                    *child = Some(running);
                    return;
                }
                // Backends of a killed server may hold its shared memory
                // for a moment after it died: a new server refuses to start
                // until they are gone.
                Err(log) if log.contains("pre-existing shared memory block") && started.elapsed() < READY_WITHIN => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("PostgreSQL did not start in {}: {log}", self.dir.display()),
            }
        }
    }

    /// The server's log so far (its stderr, across restarts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn lock_child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// A command of the server's binaries, run as the server's user.
    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(&self.dir).env_remove("PGDATA");
        if let Some((uid, gid)) = self.server_user {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Hands `path` to the server's user (when this process is root).
    fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.server_user {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap_or_else(|err| panic!("chown {}: {err}", path.display()));
        }
    }

    fn initdb(&self) {
        let output = self
            .server_command("initdb")
            .arg("--pgdata")
            .arg(self.data_dir())
            .args(["--username=postgres", "--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync", "--no-instructions"])
            .output()
            .unwrap_or_else(|err| panic!("run {}: {err}", self.bin.join("initdb").display()));
        assert!(
            output.status.success(),
            "initdb failed in {}: {}{}",
            self.dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The server's certificate, key and the CA clients are checked
    /// against, in the data folder (postgres wants its key private).
    fn write_server_tls(&self, pki: &Pki) {
        for (name, text) in [("server.crt", &pki.server.cert), ("server.key", &pki.server.key), ("client-ca.crt", &pki.ca.cert)] {
            let path = self.data_dir().join(name);
            write_private(&path, text);
            self.give(&path);
        }
    }

    /// The client's files, for this process (libpq and rustls read them).
    fn write_client_tls(&self, pki: &Pki) -> PostgresClientFiles {
        let dir = self.dir.join("client");
        std::fs::create_dir(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
        let files = PostgresClientFiles { ca: dir.join("ca.crt"), cert: dir.join("client.crt"), key: dir.join("client.key") };
        write_private(&files.ca, &pki.ca.cert);
        write_private(&files.cert, &pki.client.cert);
        write_private(&files.key, &pki.client.key);
        files
    }

    fn spawn_server(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|err| panic!("open {}: {err}", self.log_path().display()));
        let log_too = log.try_clone().unwrap_or_else(|err| panic!("the server's log: {err}"));
        let mut command = self.server_command("postgres");
        command.arg("-D").arg(self.data_dir());
        for setting in self.settings() {
            command.arg("-c").arg(setting);
        }
        // A group of its own: `kill` and `pause` reach its backends too.
        command.process_group(0).stdin(Stdio::null()).stdout(log).stderr(log_too);
        command.spawn().unwrap_or_else(|err| panic!("run {}: {err}", self.bin.join("postgres").display()))
    }

    fn settings(&self) -> Vec<String> {
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_owned(),
            format!("port={}", self.port),
            format!("unix_socket_directories={}", self.socket_dir().display()),
            "password_encryption=scram-sha-256".to_owned(),
            // A test database: speed over durability across a power cut. A
            // killed server still keeps every commit it acknowledged (the OS
            // holds what it wrote), as a real one does; synchronous_commit
            // stays on, as without it a commit acknowledged within the last
            // 200 ms is lost to SIGKILL.
            "fsync=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "shared_buffers=16MB".to_owned(),
            "max_connections=200".to_owned(),
            "logging_collector=off".to_owned(),
        ];
        if self.client_files.is_some() {
            settings
                .extend(["ssl=on", "ssl_cert_file=server.crt", "ssl_key_file=server.key", "ssl_ca_file=client-ca.crt"].map(str::to_owned));
        }
        settings
    }

    /// Waits until `running` accepts connections (pg_isready over its
    /// socket), or returns its log when it exited or took too long.
    fn wait_ready(&self, running: &mut Child, started: Instant) -> Result<(), String> {
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(self.socket_dir())
                .arg("-p")
                .arg(self.port.to_string())
                .status()
                .map_err(|err| format!("run pg_isready: {err}"))?;
            if ready.success() {
                return Ok(());
            }
            if running.try_wait().map_err(|err| err.to_string())?.is_some() {
                return Err(format!("postgres exited: {}", self.log()));
            }
            if started.elapsed() > READY_WITHIN {
                signal_group(running, libc::SIGKILL);
                let _ = running.wait();
                return Err(format!("postgres did not accept connections within {READY_WITHIN:?}: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn admin(&self, sql: &str) {
        self.sql("postgres", sql);
    }

    /// psql as the superuser over the socket, `sql` on its stdin (a
    /// password stays off the command line).
    fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h"])
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("run psql: {err}"))?;
        let mut stdin = child.stdin.take().ok_or("psql's stdin")?;
        stdin.write_all(sql.as_bytes()).map_err(|err| format!("write to psql: {err}"))?;
        drop(stdin);
        let output = child.wait_with_output().map_err(|err| format!("run psql: {err}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }
}

/// The binaries' folder: `configured` (FERRY_PG_BIN) when set, else the
/// newest `<debian>/NN/bin`; it must hold every binary the stand-in runs.
fn find_bin(configured: Option<PathBuf>, debian: &Path) -> PathBuf {
    let needed = ["initdb", "postgres", "psql", "pg_isready"];
    let complete = |dir: &Path| needed.iter().all(|name| dir.join(name).is_file());
    if let Some(dir) = configured {
        assert!(complete(&dir), "PostgreSQL is not installed: run ./test (FERRY_PG_BIN is {} and lacks one of {needed:?})", dir.display());
        return dir;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, dir)| complete(dir))
        .collect();
    found.sort();
    found.pop().map(|(_, dir)| dir).unwrap_or_else(|| {
        panic!("PostgreSQL is not installed: run ./test (it installs Debian's postgresql and sets FERRY_PG_BIN to its binaries)")
    })
}

/// pg_hba.conf: the superuser over the socket without a password; the role
/// `ferry` over TCP with its password (SCRAM), and with TLS only with a
/// client certificate for that role as well. Anything else is refused.
fn hba(tls: bool) -> String {
    let tcp =
        if tls { "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full" } else { "host all all 127.0.0.1/32 scram-sha-256" };
    format!("local all postgres trust\n{tcp}\n")
}

/// The `postgres` system user's uid and gid when this process is root
/// (initdb and postgres refuse root), else nothing: they run as ourselves.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = passwd.lines().map(|line| line.split(':').collect::<Vec<_>>()).find(|fields| fields.len() > 3 && fields[0] == "postgres");
    let ids = user.and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)));
    Some(ids.unwrap_or_else(|| {
        panic!("PostgreSQL refuses to run as root and there is no `postgres` system user to run it as: run ./test (Debian's postgresql makes that user)")
    }))
}

/// A new, empty folder under the temporary folder, this process's only.
fn fresh_folder() -> PathBuf {
    static SERVERS: AtomicUsize = AtomicUsize::new(0);
    let name = format!("ferry-postgres-{}-{}-{}", std::process::id(), SERVERS.fetch_add(1, Ordering::Relaxed), &random_password()[..8]);
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap_or_else(|err| panic!("chmod {}: {err}", dir.display()));
    dir
}

/// 32 random hex digits.
fn random_password() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap_or_else(|_| panic!("no system randomness"));
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|err| panic!("find a free port: {err}"));
    listener.local_addr().unwrap_or_else(|err| panic!("find a free port: {err}")).port()
}

fn write_private(path: &Path, text: &str) {
    crate::tls::write_private(path, text.as_bytes()).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

fn signal(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else { return };
    // SAFETY: kill has no memory preconditions; the pid is our child's,
    // not yet reaped (we hold it), so it names no other process.
    unsafe { libc::kill(pid, signal) };
}

/// `signal` to the server and its backends. The server leads a process
/// group of its own, but each backend leaves it (PostgreSQL calls
/// `setsid()` in every child it forks), so the backends are found as the
/// server's children. The server is signalled first: stopped, it forks no
/// backend that the scan below would miss.
fn signal_group(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else { return };
    // Listed before: a killed server's children go to another parent.
    let mut backends = children_of(pid);
    // SAFETY: as in `signal`; the group is the one the server leads.
    unsafe { libc::kill(-pid, signal) };
    backends.extend(children_of(pid).into_iter().filter(|backend| !backends.contains(backend)).collect::<Vec<_>>());
    for backend in backends {
        // SAFETY: a child of the server we have not reaped: while the
        // server lives, its children are not reaped by anyone else either,
        // and a pid just freed names a process only after it is reused.
        unsafe { libc::kill(backend, signal) };
    }
}

/// The processes whose parent is `parent` (from `/proc/PID/stat`).
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&pid| {
            // `PID (COMM) STATE PPID …`; COMM may hold spaces and parentheses.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after_comm.split_whitespace().nth(1).and_then(|ppid| ppid.parse::<libc::pid_t>().ok()) == Some(parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panic_message(find: impl FnOnce() -> PathBuf + std::panic::UnwindSafe) -> String {
        let payload = std::panic::catch_unwind(find).expect_err("no binaries: a panic");
        match payload.downcast::<String>() {
            Ok(message) => *message,
            Err(payload) => payload.downcast_ref::<&str>().map(|message| (*message).to_owned()).unwrap_or_default(),
        }
    }

    #[test]
    fn missing_binaries_fail_the_test_saying_to_run_the_test_script() {
        let empty = tempfile::tempdir().expect("a folder");
        let configured = panic_message(|| find_bin(Some(empty.path().to_owned()), Path::new("/nonexistent")));
        assert!(configured.starts_with("PostgreSQL is not installed: run ./test"), "{configured}");
        let unconfigured = panic_message(|| find_bin(None, empty.path()));
        assert!(unconfigured.starts_with("PostgreSQL is not installed: run ./test"), "{unconfigured}");
    }

    #[test]
    fn without_ferry_pg_bin_the_newest_complete_debian_folder_is_taken() {
        let debian = tempfile::tempdir().expect("a folder");
        for (version, binaries) in [
            ("9", &["initdb", "postgres", "psql", "pg_isready"][..]),
            ("15", &["initdb", "postgres", "psql", "pg_isready"]),
            ("17", &["psql"]),
        ] {
            let bin = debian.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).expect("mkdir");
            for binary in binaries {
                std::fs::write(bin.join(binary), "").expect("write");
            }
        }
        assert_eq!(find_bin(None, debian.path()), debian.path().join("15/bin"), "15, not 9 (as text) nor 17 (only a client)");
    }
}
