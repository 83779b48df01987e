//! The runtime against the real plugins built from `plugins/`: the compile
//! cache, and each way a hostile plugin is cut off, with the exact message.

use super::*;
use crate::event::{Event, Outcome};
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;

fn built(name: &str) -> PathBuf {
    PathBuf::from(ferry_test_plugins::PLUGIN_DIR).join(format!("{name}.wasm"))
}

fn settings(name: &str, config: &str) -> PluginSettings {
    let spec: PluginSpec = toml::from_str(&format!("deadline = \"300ms\"\nmax-memory = \"32MiB\"\n[config]\n{config}")).expect("spec");
    let mut settings = spec.settings();
    settings.name = name.to_owned();
    settings.path = built(if name.starts_with("hostile") { "hostile" } else { name });
    settings
}

fn batch(types: &[&str]) -> Vec<Event> {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| Event::from_json(format!("{{\"uid\":\"u{i}\",\"event\":\"{t}\",\"login\":\"root\"}}").into_bytes()).expect("valid"))
        .collect()
}

fn runtime(cache: Option<PathBuf>) -> Runtime {
    Runtime::new(cache, Arc::new(Metrics::default())).expect("runtime")
}

#[test]
fn an_unchanged_plugin_is_compiled_once_and_then_read_from_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = runtime(Some(dir.path().to_owned()));
    let config = "fields = [\"login\"]";
    let (_, first) = runtime.load(settings("redact", config)).expect("loads");
    let (mut plugin, second) = runtime.load(settings("redact", config)).expect("loads again");
    assert_eq!((first, second), (Loaded::Compiled, Loaded::FromCache));
    let outcomes = plugin.process(&batch(&["user.login"])).expect("runs from the cache");
    assert!(matches!(&outcomes[0], Outcome::Replace(json) if json.windows(12).any(|w| w == b"[REDACTED]\"}")), "{outcomes:?}");
    // A fresh runtime (a restart) finds the cache too.
    let (_, after_restart) = self::runtime(Some(dir.path().to_owned())).load(settings("redact", config)).expect("loads");
    assert_eq!(after_restart, Loaded::FromCache);
}

/// The cache holds native code that ferry runs: a folder or a file that
/// someone else may write is never loaded from, and what ferry writes
/// there is for its own user only.
#[test]
fn a_cache_others_may_write_is_not_loaded_and_what_ferry_writes_is_its_own() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("plugin-cache");
    let config = "fields = [\"login\"]";
    let (_, first) = runtime(Some(cache.clone())).load(settings("redact", config)).expect("loads");
    assert_eq!(first, Loaded::Compiled);
    let mode = |path: &std::path::Path| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
    let cached = std::fs::read_dir(&cache).expect("the cache").map(|entry| entry.expect("entry").path()).collect::<Vec<_>>();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!((mode(&cache), mode(&cached[0])), (0o700, 0o600), "the cache folder and its file");

    // A file others may write: compiled again, not loaded.
    std::fs::set_permissions(&cached[0], std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (_, loaded) = runtime(Some(cache.clone())).load(settings("redact", config)).expect("loads");
    assert_eq!(loaded, Loaded::Compiled, "a cached file others may write is not run");

    // A folder others may write (they could swap the file): the same.
    std::fs::set_permissions(&cached[0], std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let (_, loaded) = runtime(Some(cache.clone())).load(settings("redact", config)).expect("loads");
    assert_eq!(loaded, Loaded::Compiled, "a cache folder others may write is not read");

    // Put right, the cache is read again.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let (_, loaded) = runtime(Some(cache)).load(settings("redact", config)).expect("loads");
    assert_eq!(loaded, Loaded::FromCache);
}

/// Loads `hostile` in `mode` (misbehaving on `user.login`), checks the bad
/// call fails with `expected` in its message, then that the next batch runs.
fn contained(mode: &str, expected: &str) {
    let runtime = runtime(None);
    let name = format!("hostile-{mode}");
    let (mut plugin, _) = runtime.load(settings(&name, &format!("mode = \"{mode}\"\nwhen-type = \"user.login\""))).expect("loads");
    let err = plugin.process(&batch(&["session.start", "user.login"])).expect_err("misbehaves");
    let text = err.to_string();
    assert!(text.starts_with(&format!("plugin `{name}` ")), "{text}");
    assert!(text.contains(expected), "{mode}: {text}");
    assert!(!text.contains('\n'), "{text}");
    let outcomes = plugin.process(&batch(&["session.start", "session.end"])).expect("the next batch runs");
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Keep)), "{outcomes:?}");
}

#[test]
fn a_trap_fails_the_call_and_the_plugin_comes_back() {
    contained("trap", "failed: wasm trap: wasm `unreachable` instruction executed");
}

#[test]
fn an_endless_loop_is_cut_at_the_deadline() {
    contained("loop", "failed: ran past its deadline of 300ms (deadline)");
}

#[test]
fn a_sleep_is_cut_at_the_deadline_like_a_loop() {
    // `std::thread::sleep` is a WASI clock subscription and `poll`: a host
    // call, where the epoch deadline cannot reach.
    let started = std::time::Instant::now();
    contained("sleep", "failed: ran past its deadline of 300ms (deadline)");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn an_init_that_sleeps_is_refused_at_the_deadline() {
    let started = std::time::Instant::now();
    let err = runtime(None).load(settings("hostile-nap", "mode = \"sleep-init\"")).err().expect("refused");
    assert_eq!(err.to_string(), "plugin `hostile-nap` failed: ran past its deadline of 300ms (deadline)");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn a_result_that_would_expand_in_the_host_is_refused_before_it_is_copied() {
    // 1,024 sink names pointing at the same 64 KiB: 64 MiB if copied, over
    // even the default max-output of 64 MiB.
    let runtime = runtime(None);
    let (mut plugin, _) = runtime.load(settings("hostile-amp", "mode = \"amplify\"")).expect("loads");
    let err = plugin.process(&batch(&["a", "b"])).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "plugin `hostile-amp` returned a malformed result: it handed ferry more than its max-output of 67108864 bytes in one call (verdicts, lines, sink lists and sink names, counted as copied), refused before copying the rest"
    );
}

#[test]
fn a_plugin_keeps_its_deadline_after_its_runtime_is_dropped() {
    let (mut plugin, _) = runtime(None).load(settings("hostile-loop", "mode = \"loop\"")).expect("loads");
    // The runtime is gone; the epoch must still advance for this plugin.
    let err = plugin.process(&batch(&["user.login"])).expect_err("cut at the deadline");
    assert!(err.to_string().contains("ran past its deadline of 300ms"), "{err}");
}

#[test]
fn unbounded_allocation_is_cut_at_the_memory_cap() {
    contained("oom", "memory limit exceeded");
}

#[test]
fn a_result_of_the_wrong_length_is_malformed() {
    contained("wrong-length", "returned a malformed result: 1 verdict for 2 events");
}

#[test]
fn output_beyond_max_output_is_refused() {
    let runtime = runtime(None);
    let mut settings = settings("hostile-huge", "mode = \"huge-output\"");
    settings.max_memory = 256 << 20;
    settings.max_output = 1 << 20;
    settings.deadline = std::time::Duration::from_secs(10);
    let (mut plugin, _) = runtime.load(settings).expect("loads");
    let err = plugin.process(&batch(&["x"])).expect_err("too much output");
    assert!(err.to_string().contains("more than its max-output of 1048576 bytes"), "{err}");
}

#[test]
fn the_sandbox_grants_no_files_and_no_environment() {
    let runtime = runtime(None);
    let (mut files, _) = runtime.load(settings("hostile-files", "mode = \"files\"")).expect("loads");
    let outcomes = files.process(&batch(&["x"])).expect("runs");
    assert!(matches!(&outcomes[0], Outcome::Fail(reason) if reason.contains("file access denied")), "{outcomes:?}");
    // SAFETY (test only): the variable is set before the plugin runs and read by nothing else.
    unsafe { std::env::set_var("FERRY_TEST_SECRET", "hunter2") };
    let (mut env, _) = runtime.load(settings("hostile-env", "mode = \"env\"")).expect("loads");
    let outcomes = env.process(&batch(&["x"])).expect("runs");
    assert!(matches!(&outcomes[0], Outcome::Keep), "the plugin saw environment variables: {outcomes:?}");
}

#[test]
fn a_refused_config_names_the_plugin() {
    let err = runtime(None).load(settings("hostile-init", "mode = \"init-fail\"")).err().expect("refused");
    assert_eq!(err.to_string(), "plugin `hostile-init` refused its config: refusing config on purpose");
}

#[test]
fn host_imports_reach_ferrys_counters() {
    let metrics = Arc::new(Metrics::default());
    let runtime = Runtime::new(None, metrics.clone()).expect("runtime");
    let (mut plugin, _) = runtime.load(settings("hostile-log", "mode = \"log\"")).expect("loads");
    plugin.process(&batch(&["a", "b"])).expect("runs");
    assert_eq!(metrics.get("ferry_plugin_counter_total", &[("plugin", "hostile-log"), ("name", "seen")]), 2);
}

#[test]
fn a_file_that_is_not_a_plugin_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("fake.wasm");
    std::fs::write(&fake, "not wasm").expect("write");
    let mut settings = settings("fake", "");
    settings.path = fake.clone();
    let err = runtime(None).load(settings).err().expect("refused");
    assert_eq!(err.to_string(), format!("plugin {}: not a ferry plugin: it is not a WebAssembly file", fake.display()));
}

#[test]
fn the_sandbox_grants_no_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let address = listener.local_addr().expect("address");
    let runtime = runtime(None);
    let (mut plugin, _) = runtime.load(settings("hostile-socket", &format!("mode = \"socket\"\naddress = \"{address}\""))).expect("loads");
    let outcomes = plugin.process(&batch(&["x", "y"])).expect("the call itself succeeds");
    for outcome in &outcomes {
        let Outcome::Fail(reason) = outcome else { panic!("the plugin reached the network: {outcomes:?}") };
        assert!(reason.starts_with(&format!("socket access denied: connect {address}: ")), "{reason}");
    }
    assert!(matches!(listener.accept(), Err(err) if err.kind() == std::io::ErrorKind::WouldBlock), "a connection reached the listener");
    // The host and the plugin go on.
    let (mut other, _) = runtime.load(settings("redact", "fields = [\"login\"]")).expect("loads");
    assert!(matches!(&other.process(&batch(&["x"])).expect("runs")[0], Outcome::Replace(_)));
    assert_eq!(plugin.process(&batch(&["z"])).expect("runs again").len(), 1);
}

/// What `remember` made of each event: (id, ids seen before it, first id seen).
fn remembered(outcomes: &[Outcome]) -> Vec<(String, u64, String)> {
    outcomes
        .iter()
        .map(|outcome| {
            let Outcome::Replace(json) = outcome else { panic!("expected a replacement: {outcome:?}") };
            let value: serde_json::Value = serde_json::from_slice(json).expect("JSON");
            let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
            (text("uid"), value["seen_before"].as_u64().unwrap_or(u64::MAX), text("first_seen"))
        })
        .collect()
}

#[test]
fn a_plugin_cannot_see_another_plugins_data() {
    let runtime = runtime(None);
    let (mut first, _) = runtime.load(settings("hostile-a", "mode = \"remember\"")).expect("loads");
    let (mut second, _) = runtime.load(settings("hostile-b", "mode = \"remember\"")).expect("loads");
    let a = batch(&["a", "a"]);
    assert_eq!(remembered(&first.process(&a).expect("runs")), [("u0".into(), 0, "u0".into()), ("u1".into(), 1, "u0".into())]);
    // The same component, loaded twice: the second instance's static is its own.
    let b: Vec<Event> =
        ["b0", "b1"].iter().map(|id| Event::from_json(format!("{{\"uid\":\"{id}\"}}").into_bytes()).expect("valid")).collect();
    assert_eq!(remembered(&second.process(&b).expect("runs")), [("b0".into(), 0, "b0".into()), ("b1".into(), 1, "b0".into())]);
    // And the first still holds exactly what it saw itself.
    assert_eq!(remembered(&first.process(&batch(&["a"])).expect("runs")), [("u0".into(), 2, "u0".into())]);
}

/// `component` as if it had been built against `ferry:plugin@{version}`: a
/// plugin's interface names (`ferry:plugin/guest@0.2.0`, …) are plain
/// length-prefixed strings in the component, both in its imports and
/// exports and in its embedded WIT, so rewriting them to a version of the
/// same length gives exactly the component wit-bindgen would produce from a
/// copy of the WIT carrying that version.
fn built_against(component: &[u8], version: &str) -> Vec<u8> {
    assert_eq!(version.len(), CONTRACT_VERSION.len(), "the rewrite keeps lengths");
    let mut bytes = component.to_vec();
    let mut rewritten = 0;
    for name in ["ferry:plugin/types@", "ferry:plugin/host@", "ferry:plugin/guest@", "ferry:plugin@"] {
        let from = format!("{name}{CONTRACT_VERSION}").into_bytes();
        let to = format!("{name}{version}").into_bytes();
        let mut at = 0;
        while let Some(found) = bytes[at..].windows(from.len()).position(|w| w == from.as_slice()) {
            let start = at + found;
            bytes[start..start + to.len()].copy_from_slice(&to);
            at = start + to.len();
            rewritten += 1;
        }
    }
    assert!(rewritten >= 2, "the component should name its guest and host interfaces");
    bytes
}

#[test]
fn a_plugin_built_against_another_contract_version_is_refused_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = std::fs::read(built("hostile")).expect("hostile is built");
    let runtime = runtime(None);
    let load = |version: &str| {
        let path = dir.path().join(format!("hostile-{version}.wasm"));
        std::fs::write(&path, built_against(&hostile, version)).expect("write");
        let mut settings = settings("hostile-versioned", "mode = \"drop\"");
        settings.path = path.clone();
        (path, runtime.load(settings))
    };
    for incompatible in ["0.1.0", "0.3.0", "1.2.0"] {
        let (path, result) = load(incompatible);
        let err = result.err().expect("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "plugin {}: built for ferry:plugin@{incompatible}, but this ferry runs ferry:plugin@{CONTRACT_VERSION}; rebuild it against {CONTRACT_VERSION}",
                path.display()
            )
        );
    }
    // A patch release of the contract is compatible: it loads and runs.
    let (_, result) = load("0.2.9");
    let (mut plugin, _) = result.expect("a compatible version loads");
    assert!(matches!(plugin.process(&batch(&["x"])).expect("runs")[..], [Outcome::Drop]));
}
