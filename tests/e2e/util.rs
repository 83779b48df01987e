//! Helpers shared by the end-to-end scenarios: a fresh folder per test with
//! its own ferry.toml, a way to run the real `ferry` binary in it with a
//! deadline, and failure messages that show what happened.
//!
//! Every failure prints the command, the folder, the config, ferry's exit
//! status, stdout and stderr, and what the output file held (ripgrep's
//! `tests/util.rs` is the model). Nothing here sleeps to wait for a result:
//! [`wait_for`] polls a condition until a deadline.

#![allow(dead_code)] // Each scenario uses a different part of this module.

mod config;

pub use config::{Config, Plugin, count, toml_value};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The ferry binary cargo built for this test target.
pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// The longest any single wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The output file every scenario's file sink writes, relative to its folder.
pub const OUT: &str = "out.jsonl";

/// The input file every scenario's file source reads, relative to its folder.
pub const IN: &str = "in.jsonl";

/// A built plugin (`redact`, `hostile`) of this checkout.
pub fn plugin(name: &str) -> PathBuf {
    ferry_test_plugins::plugin(name)
}

/// The 183 Teleport audit events shared by the project's tests.
pub fn fixtures() -> Vec<FixtureEvent> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/teleport-events.jsonl");
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read the fixtures {path}: {err}"));
    let events: Vec<FixtureEvent> = text.lines().map(FixtureEvent::new).collect();
    assert_eq!(events.len(), 183, "the fixture file changed; the scenarios count on its 183 events");
    events
}

/// One fixture line with what ferry derives from it.
#[derive(Debug, Clone)]
pub struct FixtureEvent {
    /// The line, without its newline.
    pub line: String,
    /// The parsed event.
    pub value: Value,
    /// ferry's id for it: `uid`, or the SHA-256 of the line.
    pub id: String,
    /// Its `event` field (the event type).
    pub event_type: String,
}

impl FixtureEvent {
    /// Reads one JSON Lines line.
    pub fn new(line: &str) -> FixtureEvent {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("fixture line is not JSON ({err}): {line}"));
        let id = event_id(line);
        let event_type = value.get("event").and_then(Value::as_str).unwrap_or_default().to_owned();
        FixtureEvent { line: line.to_owned(), value, id, event_type }
    }
}

/// ferry's id for an event line: its non-empty `uid`, else the hex SHA-256
/// of the line's bytes.
pub fn event_id(line: &str) -> String {
    let value: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    match value.get("uid").and_then(Value::as_str) {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => Sha256::digest(line.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The lines of `events`, each followed by a newline: a JSON Lines file.
pub fn jsonl(events: &[FixtureEvent]) -> String {
    events.iter().map(|e| format!("{}\n", e.line)).collect()
}

/// How many times each id occurs in `ids`.
pub fn tally<'a>(ids: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// The keys of a JSON object's text, in the order written (serde_json's map
/// may sort them, so this reads the text itself).
pub fn top_level_keys(json: &str) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    serde::Deserializer::deserialize_map(&mut de, Keys).unwrap_or_else(|err| panic!("not a JSON object ({err}): {json}"))
}

/// Polls `condition` every 10 ms until it holds; after `timeout`, fails with
/// `what` and the report `context` gives.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool, context: impl FnOnce() -> String) {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A ferry.toml that runs the plugins folder `plugins` over `in.jsonl` (to
/// its end) into the file sink `default` (`out.jsonl`), in batches of
/// `batch_size`.
pub fn plugins_dir_job(batch_size: usize) -> Config {
    Config::file_job(false).set("plugins-dir", "plugins").pipeline(batch_size, "20ms")
}

/// A fresh folder with a ferry.toml, in which the tests run ferry. It is
/// removed when dropped, unless the test failed and `FERRY_E2E_KEEP` is set.
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    name: String,
    runs: AtomicUsize,
}

impl Sandbox {
    /// A new folder for the scenario `name`, with `config` as its ferry.toml.
    pub fn new(name: &str, config: &str) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferry-e2e-{name}-"))
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temporary folder: {err}"));
        let root = dir.path().to_owned();
        let sandbox = Sandbox { dir: Some(dir), root, name: name.to_owned(), runs: AtomicUsize::new(0) };
        sandbox.set_config(config);
        sandbox
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the folder.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.path("ferry.toml")
    }

    /// Replaces ferry.toml.
    pub fn set_config(&self, text: &str) {
        self.write("ferry.toml", text.as_bytes());
    }

    /// Writes a file (relative to the folder, or absolute), creating its folder.
    pub fn write(&self, relative: &str, bytes: &[u8]) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|err| panic!("cannot create {}: {err}", parent.display()));
        }
        std::fs::write(&path, bytes).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }

    /// Appends to a file, creating it.
    pub fn append(&self, relative: &str, bytes: &[u8]) {
        append(&self.path(relative), bytes);
    }

    /// A file's text, or "" when it does not exist.
    pub fn read(&self, relative: &str) -> String {
        match std::fs::read(self.path(relative)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => panic!("cannot read {relative}: {err}"),
        }
    }

    /// The complete lines (ending in a newline) of the output file.
    pub fn out_lines(&self) -> Vec<String> {
        complete_lines(&self.read(OUT))
    }

    /// How many complete lines the output file holds.
    pub fn out_count(&self) -> usize {
        self.read(OUT).bytes().filter(|&b| b == b'\n').count()
    }

    /// A `ferry ARGS… --config ferry.toml` command run in the folder, with
    /// ferry's default logging (FERRY_LOG unset).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(FERRY);
        command.args(args).arg("--config").arg(self.config()).current_dir(&self.root).env_remove("FERRY_LOG");
        command
    }

    /// Runs `ferry SUBCOMMAND --config ferry.toml` to the end (at most
    /// [`DEADLINE`]) and returns what it did.
    pub fn run(&self, subcommand: &str) -> Output {
        self.run_command(self.command(&[subcommand]))
    }

    /// Runs `command` to the end, within [`DEADLINE`].
    pub fn run_command(&self, command: Command) -> Output {
        let mut running = self.spawn_command(command);
        running.wait(self, DEADLINE)
    }

    /// Starts `ferry start` in the background.
    pub fn spawn_start(&self) -> Running {
        self.spawn_command(self.command(&["start"]))
    }

    /// Runs `ferry ARGS…` exactly as given (no `--config` added) in the
    /// folder, to the end (at most [`DEADLINE`]), with stdin read from the
    /// folder's file `stdin` when given.
    pub fn run_args(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(FERRY);
        command.args(args).current_dir(&self.root).env_remove("FERRY_LOG");
        let mut running = self.spawn_with_stdin(command, stdin);
        running.wait(self, DEADLINE)
    }

    /// Starts `command` with stdout and stderr going to files in the folder
    /// (a pipe nobody reads could fill and stall ferry).
    pub fn spawn_command(&self, command: Command) -> Running {
        self.spawn_with_stdin(command, None)
    }

    fn spawn_with_stdin(&self, mut command: Command, stdin: Option<&str>) -> Running {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        let stdout = self.path(&format!("run-{run}.stdout"));
        let stderr = self.path(&format!("run-{run}.stderr"));
        let create = |path: &Path| std::fs::File::create(path).unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        let input = match stdin {
            Some(file) => Stdio::from(std::fs::File::open(self.path(file)).unwrap_or_else(|err| panic!("cannot open {file}: {err}"))),
            None => Stdio::null(),
        };
        command.stdin(input).stdout(create(&stdout)).stderr(create(&stderr));
        let shown = describe_command(&command);
        let child = command.spawn().unwrap_or_else(|err| panic!("cannot run {shown}: {err}"));
        Running { child, command: shown, stdout, stderr }
    }

    /// `ferry dead-letters` as parsed JSON objects; fails the test if the
    /// command fails or prints anything that is not one JSON object a line.
    pub fn dead_letters(&self) -> Vec<Value> {
        let output = self.run("dead-letters");
        output.assert_success(self);
        output
            .stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|err| {
                    panic!("`ferry dead-letters` printed a line that is not JSON ({err}): {line}\n{}", self.report(Some(&output)))
                })
            })
            .collect()
    }

    /// Everything worth seeing when a test fails: the folder, the config,
    /// the run (command, status, stdout, stderr) when given, and what the
    /// output file held.
    pub fn report(&self, output: Option<&Output>) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "\n===== scenario {} in {}", self.name, self.root.display());
        let _ = writeln!(text, "----- ferry.toml\n{}", self.read("ferry.toml").trim_end());
        if let Some(output) = output {
            let _ = write!(text, "{output}");
        }
        let out = self.read(OUT);
        let lines: Vec<&str> = out.lines().collect();
        let _ = writeln!(text, "----- {OUT}: {} bytes, {} lines", out.len(), lines.len());
        let shown = 6;
        for line in lines.iter().take(shown) {
            let _ = writeln!(text, "  {}", clip(line, 300));
        }
        if lines.len() > 2 * shown {
            let _ = writeln!(text, "  … {} more lines …", lines.len() - 2 * shown);
        }
        for line in lines.iter().skip(shown.max(lines.len().saturating_sub(shown))) {
            let _ = writeln!(text, "  {}", clip(line, 300));
        }
        if !out.is_empty() && !out.ends_with('\n') {
            let _ = writeln!(text, "  (the last line has no newline)");
        }
        text.push_str("=====\n");
        text
    }

    /// Keeps the folder for inspection (printed by [`Sandbox::report`]).
    pub fn keep(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("FERRY_E2E_KEEP").is_some() {
            self.keep();
            eprintln!("kept {} for inspection", self.root.display());
        }
    }
}

/// A ferry running in the background.
pub struct Running {
    child: Child,
    command: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What ferry wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// The run so far, for failure messages (the process may still run).
    pub fn snapshot(&self) -> Output {
        Output { command: self.command.clone(), status: None, stdout: read_lossy(&self.stdout), stderr: self.stderr() }
    }

    /// True once the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the process to exit; past `timeout` kills it and fails.
    pub fn wait(&mut self, sandbox: &Sandbox, timeout: Duration) -> Output {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap_or_else(|err| panic!("cannot wait for ferry: {err}")) {
                return Output { status: Some(status), ..self.snapshot() };
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("timed out after {timeout:?} waiting for ferry to exit (killed it)\n{}", sandbox.report(Some(&self.snapshot())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, as a crash or the OOM killer would: no chance to clean up.
    pub fn kill(&mut self, sandbox: &Sandbox) -> Output {
        self.child.kill().unwrap_or_else(|err| panic!("cannot kill ferry: {err}"));
        self.wait(sandbox, DEADLINE)
    }

    /// SIGTERM, as a service manager stops ferry.
    pub fn terminate(&self) {
        let status = Command::new("kill").arg(self.pid().to_string()).status().unwrap_or_else(|err| panic!("cannot run kill: {err}"));
        assert!(status.success(), "`kill {}` failed: {status}", self.pid());
    }

    /// SIGHUP, as an operator asks ferry to reload its plugins.
    pub fn hangup(&self) {
        let status =
            Command::new("kill").args(["-HUP", &self.pid().to_string()]).status().unwrap_or_else(|err| panic!("cannot run kill: {err}"));
        assert!(status.success(), "`kill -HUP {}` failed: {status}", self.pid());
    }

    /// How many lines of stderr so far contain `text`.
    pub fn stderr_count(&self, text: &str) -> usize {
        self.stderr().lines().filter(|line| line.contains(text)).count()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave ferry running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished (or, for snapshots, running) ferry did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, as it could be pasted into a shell.
    pub command: String,
    /// The exit status; `None` while still running.
    pub status: Option<ExitStatus>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Output {
    /// True when ferry exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|status| status.success())
    }

    /// Fails the test unless ferry exited with status 0.
    pub fn assert_success(&self, sandbox: &Sandbox) {
        assert!(self.success(), "ferry did not succeed\n{}", sandbox.report(Some(self)));
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|line| !line.trim().is_empty()).collect()
    }

    /// Fails unless ferry exited non-zero and its stderr holds exactly one
    /// line, `ferry: error: …`; returns the text after that prefix.
    pub fn one_line_error(&self, sandbox: &Sandbox) -> String {
        assert!(self.status.is_some() && !self.success(), "ferry should have failed\n{}", sandbox.report(Some(self)));
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "stderr should be exactly one line\n{}", sandbox.report(Some(self)));
        let Some(message) = lines[0].strip_prefix("ferry: error: ") else {
            panic!("stderr should start with `ferry: error: `\n{}", sandbox.report(Some(self)))
        };
        message.to_owned()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "----- command\n{}", self.command)?;
        match self.status {
            Some(status) => writeln!(f, "----- status: {status}")?,
            None => writeln!(f, "----- status: still running")?,
        }
        writeln!(f, "----- stdout ({} bytes)\n{}", self.stdout.len(), clip(self.stdout.trim_end(), 4000))?;
        writeln!(f, "----- stderr ({} bytes)\n{}", self.stderr.len(), clip_tail(self.stderr.trim_end(), 8000))
    }
}

/// Appends `bytes` to the file at `path`, creating it.
pub fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()));
    file.write_all(bytes).unwrap_or_else(|err| panic!("cannot append to {}: {err}", path.display()));
}

/// The lines of `text` that end in a newline (a partial last line is left out).
pub fn complete_lines(text: &str) -> Vec<String> {
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    if complete.is_empty() && !text.starts_with('\n') {
        return Vec::new();
    }
    complete.split('\n').map(str::to_owned).collect()
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

fn describe_command(command: &Command) -> String {
    let mut text = String::new();
    if let Some(dir) = command.get_current_dir() {
        let _ = write!(text, "cd {} && ", dir.display());
    }
    let _ = write!(text, "{}", command.get_program().to_string_lossy());
    for arg in command.get_args() {
        let _ = write!(text, " {}", arg.to_string_lossy());
    }
    text
}

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &text[..end], text.len() - end)
}

fn clip_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("({} bytes before) …{}", start, &text[start..])
}

/// True when some thread of process `pid` sleeps in a kernel function whose
/// name contains `function` (Linux `/proc/PID/task/TID/wchan`), e.g.
/// `pipe_write` for a write blocked on a full pipe. This is how a test knows,
/// without sleeping, that ferry is stuck in the middle of a delivery.
pub fn blocked_in(pid: u32, function: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.filter_map(Result::ok).any(|task| std::fs::read_to_string(task.path().join("wchan")).is_ok_and(|wchan| wchan.contains(function)))
}

/// The address ferry serves on, from its log (it was given port 0).
pub fn served_addr(running: &Running, sandbox: &Sandbox) -> String {
    let mut addr = None;
    wait_for(
        "ferry to serve HTTP",
        Duration::from_secs(30),
        || {
            addr = running
                .stderr()
                .lines()
                .find(|line| line.contains("Serving /metrics"))
                .and_then(|line| line.split("addr=").nth(1))
                .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_owned());
            addr.is_some()
        },
        || sandbox.report(Some(&running.snapshot())),
    );
    addr.unwrap_or_default()
}

/// What ferry's HTTP endpoint answered to one GET.
#[derive(Debug, Default)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, lower-cased; empty when there is none.
    pub content_type: String,
    /// The body.
    pub body: String,
}

/// One HTTP/1.1 GET of `path` at `addr`; `None` when no whole answer came
/// within 5 s.
pub fn http_get(addr: &str, path: &str) -> Option<HttpAnswer> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let content_type =
        head.lines().find_map(|line| line.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned)).unwrap_or_default();
    Some(HttpAnswer { status, content_type, body: body.to_owned() })
}

/// How often each uid arrived in the sandbox's output, every line a JSON
/// event with a `uid` (a line that is not fails the test).
pub fn arrived(sandbox: &Sandbox) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in sandbox.out_lines() {
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("output is not JSON ({err}): {line}"));
        let uid = value.get("uid").and_then(Value::as_str).unwrap_or_else(|| panic!("output without a uid: {line}"));
        *counts.entry(uid.to_owned()).or_default() += 1;
    }
    counts
}

/// Runs `command` to its end, failing the test with its output when it
/// fails; its stdout. For tools beside ferry (a compiler, `go test`).
pub fn stdout_of_success(mut command: std::process::Command) -> String {
    let shown = format!("{command:?}");
    let output = command.output().unwrap_or_else(|err| panic!("cannot run {shown}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{shown} failed ({})\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `ferry plugin build DIR` in the sandbox, which must succeed and print the
/// component it wrote, `DIR/NAME.wasm`; that path.
pub fn build_plugin(sandbox: &Sandbox, dir: &Path, name: &str) -> PathBuf {
    let output = sandbox.run_args(&["plugin", "build", &dir.to_string_lossy()], None);
    output.assert_success(sandbox);
    let wasm = dir.join(format!("{name}.wasm"));
    assert_eq!(output.stdout.trim(), wasm.display().to_string(), "{}", sandbox.report(Some(&output)));
    wasm
}

/// `ferry plugin test WASM ARGS…` with the folder's file `input` as stdin.
pub fn plugin_test(sandbox: &Sandbox, wasm: &Path, args: &[&str], input: &str) -> Output {
    let wasm = wasm.to_string_lossy();
    let mut all = vec!["plugin", "test", wasm.as_ref()];
    all.extend_from_slice(args);
    sandbox.run_args(&all, Some(input))
}
