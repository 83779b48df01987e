//! hostile: a ferry plugin that misbehaves on purpose.
//!
//! ferry's sandbox tests load it to check that a plugin cannot harm the host:
//! that a trap, an endless loop, unbounded memory, a malformed result or an
//! attempt to reach files, the network, the environment, ferry's own output
//! or another plugin's data fails one call (or one event) and nothing else. It is not an example to follow and has no use in a real
//! pipeline. See README.md beside this crate for its config.

use ferry_guest::bindings::ferry::plugin::types::{Output, Route as WireRoute, Verdict};
use ferry_guest::prelude::*;
use ferry_guest::serde_json::{self, json};
use serde::Deserialize;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

/// The plugin's config, from its table in ferry.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    /// How to misbehave; one of [`MODES`].
    mode: String,
    /// Misbehave only in a call whose batch holds an event of this type;
    /// absent: in every call.
    when_type: Option<String>,
    /// `socket` mode: the `host:port` to connect to. Default `127.0.0.1:9`.
    address: Option<String>,
}

/// The ways this plugin misbehaves; see README.md for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Trap,
    Loop,
    Oom,
    WrongLength,
    BadJson,
    Files,
    Env,
    HugeOutput,
    InitFail,
    Log,
    Drop,
    FailEach,
    Socket,
    Stdio,
    Remember,
    Sleep,
    SleepInit,
    Amplify,
    Poison,
}

/// Every mode by its name in the config.
const MODES: [(&str, Mode); 19] = [
    ("trap", Mode::Trap),
    ("loop", Mode::Loop),
    ("oom", Mode::Oom),
    ("wrong-length", Mode::WrongLength),
    ("bad-json", Mode::BadJson),
    ("files", Mode::Files),
    ("env", Mode::Env),
    ("huge-output", Mode::HugeOutput),
    ("init-fail", Mode::InitFail),
    ("log", Mode::Log),
    ("drop", Mode::Drop),
    ("fail-each", Mode::FailEach),
    ("socket", Mode::Socket),
    ("stdio", Mode::Stdio),
    ("remember", Mode::Remember),
    ("sleep", Mode::Sleep),
    ("sleep-init", Mode::SleepInit),
    ("amplify", Mode::Amplify),
    ("poison", Mode::Poison),
];

/// How long `sleep` and `sleep-init` sleep: far past any deadline.
const SLEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// What `poison` traps on: a batch holding an event whose JSON has this.
const POISON_MARKER: &[u8] = b"hostile-poison";

/// `amplify`: how many entries its one sink list has, and how long the one
/// name they all point to is: 64 MiB for a host that copies the list, from
/// 64 KiB of guest memory.
const AMPLIFY_NAMES: usize = 1024;
const AMPLIFY_NAME_BYTES: usize = 64 << 10;

/// What `stdio` writes to its stdout and stderr; ferry must not show it.
const STDIO_MARKER: &str = "hostile plugin output on stdio";

/// Every event id this instance has seen, in order (`remember`). A static, so
/// that it lives as long as the instance's linear memory: another instance,
/// even of the same component, has its own.
static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// What `huge-output` pads each event with: 10 MiB.
const HUGE_OUTPUT_BYTES: usize = 10 << 20;

/// What `oom` allocates at a time: 1 MiB.
const OOM_CHUNK_BYTES: usize = 1 << 20;

impl Mode {
    fn parse(name: &str) -> Result<Mode, String> {
        match MODES.iter().find(|(known, _)| *known == name) {
            Some((_, mode)) => Ok(*mode),
            None => {
                let known: Vec<&str> = MODES.iter().map(|(known, _)| *known).collect();
                Err(format!("config: unknown mode \"{name}\"; expected one of {}", known.join(", ")))
            }
        }
    }
}

/// The plugin's state: its parsed config.
#[derive(Debug)]
struct Hostile {
    mode: Mode,
    when_type: Option<String>,
    address: String,
}

impl Plugin for Hostile {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|error| format!("config: {error}"))?;
        let mode = Mode::parse(&config.mode)?;
        if mode == Mode::InitFail {
            return Err("refusing config on purpose".to_owned());
        }
        if mode == Mode::SleepInit {
            std::thread::sleep(SLEEP);
        }
        Ok(Hostile { mode, when_type: config.when_type, address: config.address.unwrap_or_else(|| "127.0.0.1:9".to_owned()) })
    }

    fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
        if !batch.iter().any(|event| self.triggers(event)) {
            return keep(batch.len());
        }
        match self.mode {
            Mode::Trap => panic!("hostile plugin: trapping on purpose (mode \"trap\")"),
            Mode::Loop => spin(),
            Mode::Oom => hoard(),
            Mode::WrongLength => keep(batch.len() - 1),
            Mode::BadJson => each(batch, || Outcome::Replace(b"{\"not\": json".to_vec())),
            Mode::Files => each(batch, || leak(read_files(), "leaked")),
            Mode::Env => each(batch, env_outcome),
            Mode::HugeOutput => each(batch, huge_outcome),
            // `init` refuses this mode, so `process` never runs with it.
            Mode::InitFail => keep(batch.len()),
            Mode::Log => log_batch(batch),
            Mode::Drop => each(batch, || Outcome::Drop),
            Mode::FailEach => self.fail_each(batch),
            Mode::Socket => each(batch, || connect(&self.address)),
            Mode::Stdio => {
                println!("{STDIO_MARKER}");
                eprintln!("{STDIO_MARKER}");
                keep(batch.len())
            }
            Mode::Remember => remember(batch),
            Mode::Sleep => {
                std::thread::sleep(SLEEP);
                keep(batch.len())
            }
            // `init` slept already; the export answers for `amplify`.
            Mode::SleepInit | Mode::Amplify => keep(batch.len()),
            Mode::Poison => {
                if batch.iter().any(|event| event.json.windows(POISON_MARKER.len()).any(|w| w == POISON_MARKER)) {
                    panic!("hostile plugin: trapping on a poisonous event (mode \"poison\")");
                }
                keep(batch.len())
            }
        }
    }
}

impl Hostile {
    /// Whether this event makes the call misbehave.
    fn triggers(&self, event: &Event) -> bool {
        match &self.when_type {
            Some(event_type) => event.event_type() == event_type,
            None => true,
        }
    }

    /// `fail-each`: fails the triggering events, keeps the others.
    fn fail_each(&self, batch: &[Event]) -> Vec<Outcome> {
        batch.iter().map(|event| if self.triggers(event) { Outcome::Fail("failed on purpose".to_owned()) } else { Outcome::Keep }).collect()
    }
}

/// `events` Keep outcomes.
fn keep(events: usize) -> Vec<Outcome> {
    (0..events).map(|_| Outcome::Keep).collect()
}

/// The same outcome for every event of the batch, made anew for each.
fn each(batch: &[Event], outcome: impl Fn() -> Outcome) -> Vec<Outcome> {
    batch.iter().map(|_| outcome()).collect()
}

/// `loop`: never returns; `black_box` keeps the compiler from proving the
/// loop useless.
fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = black_box(turns.wrapping_add(1));
    }
}

/// `oom`: allocates 1 MiB blocks filled with non-zero bytes, so every page is
/// really touched, and keeps them all, until the allocator fails (a trap).
fn hoard() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0x5a; OOM_CHUNK_BYTES]);
        black_box(&hoard);
    }
}

/// `files`: the start of /etc/passwd, else the names in /, else why neither
/// could be read.
fn read_files() -> Result<String, String> {
    let passwd_error = match std::fs::read_to_string("/etc/passwd") {
        Ok(passwd) => return Ok(passwd),
        Err(error) => error,
    };
    match std::fs::read_dir("/") {
        Ok(entries) => {
            Ok(entries.filter_map(Result::ok).map(|entry| entry.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" "))
        }
        Err(root_error) => Err(format!("/etc/passwd: {passwd_error}; read_dir(\"/\"): {root_error}")),
    }
}

/// Replaces the event with `{key: <first 100 chars>}` of what was read, or
/// fails it with why nothing could be.
fn leak(read: Result<String, String>, key: &str) -> Outcome {
    match read {
        Ok(text) => {
            let start: String = text.chars().take(100).collect();
            Outcome::replace_json(&json!({ key: start }))
        }
        Err(error) => Outcome::Fail(format!("file access denied: {error}")),
    }
}

/// `socket`: opens a TCP connection to `address`; on success replaces the
/// event with `{"connected": address}`, else fails it with the error.
fn connect(address: &str) -> Outcome {
    match std::net::TcpStream::connect(address) {
        Ok(_) => Outcome::replace_json(&json!({ "connected": address })),
        Err(error) => Outcome::Fail(format!("socket access denied: connect {address}: {error}")),
    }
}

/// `remember`: adds each event's id to [`SEEN`] and replaces the event with
/// `{"uid": id, "seen_before": N, "first_seen": first id ever seen}`, where N
/// counts the ids this instance saw before this event.
fn remember(batch: &[Event]) -> Vec<Outcome> {
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    batch
        .iter()
        .map(|event| {
            let before = seen.len();
            seen.push(event.id().to_owned());
            let first = seen.first().cloned().unwrap_or_default();
            Outcome::replace_json(&json!({ "uid": event.id(), "seen_before": before, "first_seen": first }))
        })
        .collect()
}

/// `env`: replaces the event with the number of visible variables, if any.
fn env_outcome() -> Outcome {
    match std::env::vars().count() {
        0 => Outcome::Keep,
        visible => Outcome::replace_json(&json!({ "leaked_env": visible })),
    }
}

/// `huge-output`: replaces the event with `{"pad":"xxx…"}`, 10 MiB of x.
fn huge_outcome() -> Outcome {
    let mut json = Vec::with_capacity(HUGE_OUTPUT_BYTES + 16);
    json.extend_from_slice(b"{\"pad\":\"");
    json.resize(json.len() + HUGE_OUTPUT_BYTES, b'x');
    json.extend_from_slice(b"\"}");
    Outcome::Replace(json)
}

/// `log`: one info record with a field and one counter, then keeps all.
fn log_batch(batch: &[Event]) -> Vec<Outcome> {
    log::info("Hostile plugin saw a batch.", &[("events", &batch.len())]);
    count("seen", batch.len() as u64);
    keep(batch.len())
}

// What `export_plugin!(Hostile)` would write, except that `amplify` answers
// with an output the SDK would never build.
std::thread_local! {
    static STATE: ferry_guest::__private::State<Hostile> =
        const { ferry_guest::__private::RefCell::new(None) };
}

struct Export;

impl ferry_guest::bindings::exports::ferry::plugin::guest::Guest for Export {
    fn init(config: String) -> Result<(), String> {
        ferry_guest::__private::init::<Hostile>(&STATE, &config)
    }

    fn process(events: Vec<u8>) -> Output {
        let amplify = STATE.with_borrow(|state| matches!(state, Some(plugin) if plugin.mode == Mode::Amplify));
        if amplify {
            return amplified(events.iter().filter(|&&byte| byte == b'\n').count());
        }
        ferry_guest::__private::process::<Hostile>(&STATE, &events)
    }
}

ferry_guest::bindings::__export_plugin_world!(Export with_types_in ferry_guest::bindings);

/// `amplify`: every event routed to sink list 0, whose
/// [`AMPLIFY_NAMES`] names all point to the same [`AMPLIFY_NAME_BYTES`]
/// bytes of guest memory. A host that copies the list once per verdict
/// turns 64 KiB of guest memory into 64 MiB per event.
///
/// The aliasing `String`s are unsound on purpose (this plugin is hostile);
/// they are never dropped by this code, and [`NEVER_FREE`] makes the
/// component's post-return free of each of them a no-op.
fn amplified(events: usize) -> Output {
    NEVER_FREE.store(true, Ordering::Relaxed);
    let name: &'static mut [u8] = Box::leak(vec![b's'; AMPLIFY_NAME_BYTES].into_boxed_slice());
    let pointer = name.as_mut_ptr();
    // SAFETY: none; see above. The bytes are ASCII and live forever.
    let names: Vec<String> =
        (0..AMPLIFY_NAMES).map(|_| unsafe { String::from_raw_parts(pointer, AMPLIFY_NAME_BYTES, AMPLIFY_NAME_BYTES) }).collect();
    Output {
        verdicts: (0..events).map(|_| Verdict::Route(WireRoute { sinks: 0, replaced: false })).collect(),
        lines: Vec::new(),
        routes: vec![names],
    }
}

/// Set by `amplify`: from then on this instance frees nothing.
static NEVER_FREE: AtomicBool = AtomicBool::new(false);

/// The system allocator, except that it frees nothing once [`NEVER_FREE`]
/// is set, so that the aliased names of `amplify` are not freed twice.
struct Allocator;

// SAFETY: every call is forwarded to the system allocator, or (dealloc
// after `amplify`) not made at all, which only leaks.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if !NEVER_FREE.load(Ordering::Relaxed) {
            unsafe { System.dealloc(pointer, layout) }
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !NEVER_FREE.load(Ordering::Relaxed) {
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        // Moved without freeing the old block.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = unsafe { System.alloc(new_layout) };
        if !new.is_null() {
            unsafe { std::ptr::copy_nonoverlapping(pointer, new, layout.size().min(new_size)) };
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of an event of this type.
    fn event(event_type: &str) -> Vec<u8> {
        format!(r#"{{"event":"{event_type}","uid":"id-{event_type}"}}"#).into_bytes()
    }

    /// Runs `plugin` on these events' JSON.
    fn process(plugin: &mut Hostile, jsons: Vec<Vec<u8>>) -> Vec<Outcome> {
        let events: Vec<Event> = jsons.iter().map(|json| Event::new(json)).collect();
        plugin.process(&events)
    }

    fn hostile(config: &str) -> Hostile {
        Hostile::init(config).unwrap_or_else(|error| panic!("config {config}: {error}"))
    }

    fn batch() -> Vec<Vec<u8>> {
        vec![event("session.start"), event("user.login"), event("session.end")]
    }

    #[test]
    fn every_mode_name_parses() {
        for (name, mode) in MODES {
            assert_eq!(Mode::parse(name), Ok(mode));
        }
    }

    #[test]
    fn unknown_mode_is_refused_by_name() {
        let error = Hostile::init(r#"{"mode":"explode"}"#).expect_err("unknown mode");
        assert!(error.starts_with("config: unknown mode \"explode\"; expected one of trap, loop,"), "{error}");
    }

    #[test]
    fn config_needs_a_mode_and_no_unknown_keys() {
        let error = Hostile::init("{}").expect_err("no mode");
        assert_eq!(error, "config: missing field `mode` at line 1 column 2");
        let error = Hostile::init(r#"{"mode":"drop","when":"x"}"#).expect_err("unknown key");
        assert!(error.starts_with("config: unknown field `when`"), "{error}");
    }

    #[test]
    fn init_fail_refuses_on_purpose() {
        let error = Hostile::init(r#"{"mode":"init-fail"}"#).expect_err("on purpose");
        assert_eq!(error, "refusing config on purpose");
    }

    #[test]
    fn batches_without_the_trigger_type_are_kept() {
        let mut plugin = hostile(r#"{"mode":"trap","when-type":"user.delete"}"#);
        let outcomes = process(&mut plugin, batch());
        assert!(matches!(outcomes[..], [Outcome::Keep, Outcome::Keep, Outcome::Keep]));
    }

    #[test]
    fn wrong_length_returns_one_outcome_fewer() {
        let mut plugin = hostile(r#"{"mode":"wrong-length","when-type":"user.login"}"#);
        assert_eq!(process(&mut plugin, batch()).len(), 2);
    }

    #[test]
    fn fail_each_fails_only_triggering_events() {
        let mut plugin = hostile(r#"{"mode":"fail-each","when-type":"user.login"}"#);
        let outcomes = process(&mut plugin, batch());
        assert!(matches!(
            &outcomes[..],
            [Outcome::Keep, Outcome::Fail(reason), Outcome::Keep] if reason == "failed on purpose"
        ));
    }

    #[test]
    fn without_when_type_every_call_misbehaves() {
        let mut plugin = hostile(r#"{"mode":"drop"}"#);
        let outcomes = process(&mut plugin, vec![event("session.start")]);
        assert!(matches!(outcomes[..], [Outcome::Drop]));
    }

    #[test]
    fn bad_json_is_not_json() {
        let mut plugin = hostile(r#"{"mode":"bad-json"}"#);
        for outcome in process(&mut plugin, batch()) {
            let Outcome::Replace(json) = outcome else {
                panic!("expected a replacement, got {outcome:?}");
            };
            assert!(serde_json::from_slice::<serde_json::Value>(&json).is_err());
        }
    }

    #[test]
    fn poison_traps_only_on_a_batch_holding_the_marker() {
        let mut plugin = hostile(r#"{"mode":"poison"}"#);
        assert!(matches!(process(&mut plugin, batch())[..], [Outcome::Keep, Outcome::Keep, Outcome::Keep]));
        let poisonous = br#"{"event":"x","uid":"p","note":"hostile-poison"}"#.to_vec();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(&mut plugin, vec![event("a"), poisonous])));
        assert!(panicked.is_err());
    }

    #[test]
    fn amplify_points_every_name_at_the_same_bytes() {
        let output = amplified(3);
        assert_eq!(output.verdicts.len(), 3);
        let names = &output.routes[0];
        assert_eq!(names.len(), AMPLIFY_NAMES);
        assert!(names.iter().all(|name| name.as_ptr() == names[0].as_ptr() && name.len() == AMPLIFY_NAME_BYTES));
        // The aliases must not be dropped here.
        std::mem::forget(output);
    }

    #[test]
    fn huge_output_is_ten_mib_of_valid_json() {
        let Outcome::Replace(json) = huge_outcome() else {
            panic!("expected a replacement");
        };
        assert_eq!(json.len(), HUGE_OUTPUT_BYTES + 10);
        let value: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        assert_eq!(value["pad"].as_str().map(str::len), Some(HUGE_OUTPUT_BYTES));
    }

    #[test]
    fn leak_reports_denied_access() {
        let outcome = leak(Err("/etc/passwd: denied".to_owned()), "leaked");
        assert!(matches!(
            outcome,
            Outcome::Fail(reason) if reason == "file access denied: /etc/passwd: denied"
        ));
        let outcome = leak(Ok("root:x:0:0".repeat(20)), "leaked");
        let Outcome::Replace(json) = outcome else {
            panic!("expected a replacement");
        };
        let value: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        assert_eq!(value["leaked"].as_str().map(str::len), Some(100));
    }
}
