//! A restart must not run without a plugin that ran before. ferry runs the
//! redact plugin from its plugins folder, stops; then its component goes
//! missing (deleted, the folder emptied or gone: an empty volume, a
//! half-done deploy). The next `start`, `check` and `dead-letters replay`
//! refuse with one line naming the plugin and the file, and deliver nothing,
//! until ferry.toml takes the plugin out on purpose (`removed-plugins`).
//! A settings file without its component is refused even on a first start.

use crate::util::{self, Config, DEADLINE, FixtureEvent, IN, Sandbox};
use serde_json::Value;

const MASK: &str = "***";

/// The plugins folder `plugins` over `in.jsonl` (to its end) into `out.jsonl`.
fn folder_job() -> Config {
    util::plugins_dir_job(16)
}

fn built(name: &str) -> Vec<u8> {
    std::fs::read(util::plugin(name))
        .unwrap_or_else(|err| panic!("the {name} plugin is built by ferry-test-plugins (tests/plugins-build): {err}"))
}

/// A sandbox with `config` whose plugins folder holds redact (masking
/// `login`) and `extra` plugins, after a first run over the first half of
/// the fixtures; returns it with the second half, not yet written.
fn after_a_redacted_run(name: &str, config: &Config, extra: &[(&str, &str, &str)]) -> (Sandbox, Vec<FixtureEvent>) {
    let sandbox = Sandbox::new(name, &config.text());
    // Every other fixture now, the rest later: both halves have logins.
    let (mut events, mut later) = (Vec::new(), Vec::new());
    for (n, event) in util::fixtures().into_iter().enumerate() {
        if n % 2 == 0 { events.push(event) } else { later.push(event) }
    }
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    sandbox.write("plugins/redact.wasm", &built("redact"));
    sandbox.write("plugins/redact.toml", format!("[config]\nfields = [\"login\"]\nreplacement = \"{MASK}\"\n").as_bytes());
    for (file, plugin, settings) in extra {
        sandbox.write(&format!("plugins/{file}.wasm"), &built(plugin));
        sandbox.write(&format!("plugins/{file}.toml"), settings.as_bytes());
    }
    let first = sandbox.run("start");
    first.assert_success(&sandbox);
    assert!(sandbox.out_count() > 0, "the first run delivers{}", sandbox.report(Some(&first)));
    assert_all_masked(&sandbox);
    assert!(later.iter().filter(|event| event.value.get("login").is_some()).count() > 5, "the later events must have logins to leak");
    sandbox.append(IN, util::jsonl(&later).as_bytes());
    (sandbox, later)
}

/// Every delivered event that has a `login` has it masked.
fn assert_all_masked(sandbox: &Sandbox) {
    for line in sandbox.out_lines() {
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("output is not JSON ({err}): {line}"));
        if let Some(login) = event.get("login") {
            assert_eq!(login, MASK, "an event left unredacted: {line}{}", sandbox.report(None));
        }
    }
}

/// `ferry ARGS…` fails with one line that names the plugin `redact` and
/// `file`, and says how to take the plugin out on purpose; nothing more
/// was delivered.
fn assert_refused(sandbox: &Sandbox, args: &[&str], file: &str) -> String {
    assert_refused_without(sandbox, args, "redact", file)
}

/// [`assert_refused`] for the plugin `plugin`.
fn assert_refused_without(sandbox: &Sandbox, args: &[&str], plugin: &str, file: &str) -> String {
    let delivered = sandbox.out_count();
    let output = sandbox.run_command(sandbox.command(args));
    let message = output.one_line_error(sandbox);
    let expected = sandbox.path(file);
    assert!(message.contains(&format!("`{plugin}`")), "the refusal names the plugin: {message}{}", sandbox.report(Some(&output)));
    assert!(message.contains(&expected.display().to_string()), "the refusal names {}: {message}", expected.display());
    let remove = format!("removed-plugins = [\"{plugin}\"]");
    assert!(message.contains(&remove), "the refusal says how to take it out on purpose: {message}");
    assert_eq!(sandbox.out_count(), delivered, "a refused {args:?} delivers nothing{}", sandbox.report(Some(&output)));
    assert_all_masked(sandbox);
    message
}

#[test]
fn a_deleted_component_is_refused_until_the_config_takes_the_plugin_out() {
    let config = folder_job();
    let (sandbox, later) = after_a_redacted_run("missing_plugin_deleted", &config, &[]);
    let delivered = sandbox.out_count();
    std::fs::remove_file(sandbox.path("plugins/redact.wasm")).expect("delete redact.wasm");

    let message = assert_refused(&sandbox, &["start"], "plugins/redact.wasm");
    assert!(message.contains(&sandbox.path("plugins/redact.toml").display().to_string()), "both files are named: {message}");
    assert_refused(&sandbox, &["check"], "plugins/redact.wasm");

    // Taken out on purpose: the rest is delivered as it is.
    sandbox.set_config(&config.set("removed-plugins", vec!["redact"]).text());
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    assert_eq!(sandbox.out_count(), delivered + later.len(), "the rest is delivered{}", sandbox.report(Some(&run)));
}

#[test]
fn an_emptied_plugins_folder_is_refused() {
    let (sandbox, _) = after_a_redacted_run("missing_plugin_emptied", &folder_job(), &[]);
    for file in ["plugins/redact.wasm", "plugins/redact.toml"] {
        std::fs::remove_file(sandbox.path(file)).expect("empty the folder");
    }
    assert_refused(&sandbox, &["start"], "plugins/redact.wasm");
    assert_refused(&sandbox, &["check"], "plugins/redact.wasm");
}

#[test]
fn a_missing_default_plugins_folder_is_refused() {
    // No `plugins-dir`: the folder `plugins` beside ferry.toml, which may be missing.
    let config = Config::file_job(false).pipeline(16, "20ms");
    let (sandbox, _) = after_a_redacted_run("missing_plugin_folder", &config, &[]);
    std::fs::remove_dir_all(sandbox.path("plugins")).expect("remove the folder");
    assert_refused(&sandbox, &["start"], "plugins/redact.wasm");
    assert_refused(&sandbox, &["check"], "plugins/redact.wasm");
}

#[test]
fn dead_letters_replay_refuses_without_the_plugin() {
    // `fail` (first in name order) fails every user.login event: dead letters to replay.
    let fail = ("fail", "hostile", "[config]\nmode = \"fail-each\"\nwhen-type = \"user.login\"\n");
    let (sandbox, _) = after_a_redacted_run("missing_plugin_replay", &folder_job(), &[fail]);
    let letters = sandbox.dead_letters();
    assert!(!letters.is_empty(), "the fail plugin made dead letters{}", sandbox.report(None));
    for file in ["plugins/redact.wasm", "plugins/redact.toml"] {
        std::fs::remove_file(sandbox.path(file)).expect("delete redact");
    }
    assert_refused(&sandbox, &["dead-letters", "replay"], "plugins/redact.wasm");
    assert_eq!(sandbox.dead_letters(), letters, "a refused replay leaves the dead letters as they were");
}

#[test]
fn a_settings_file_without_its_component_is_refused_on_a_first_start() {
    let sandbox = Sandbox::new("missing_plugin_lone_settings", &folder_job().text());
    sandbox.write(IN, util::jsonl(&util::fixtures()).as_bytes());
    sandbox.write("plugins/redact.toml", b"[config]\nfields = [\"login\"]\n");
    for args in [&["check"][..], &["start"]] {
        let message = assert_refused(&sandbox, args, "plugins/redact.wasm");
        assert!(message.contains(&sandbox.path("plugins/redact.toml").display().to_string()), "both files are named: {message}");
    }
    assert_eq!(sandbox.read(util::OUT), "", "nothing was delivered");
}

/// A plugin added by a reload is remembered too: deployed settings first
/// (a lone settings file, refused), then its component (taken); once it
/// ran, a restart without it is refused.
#[test]
fn a_plugin_a_reload_added_is_kept_by_the_next_start() {
    let config = Config::file_job(true).set("plugins-dir", "plugins").pipeline(8, "20ms").set("source.file.poll-interval", "20ms");
    let sandbox = Sandbox::new("missing_plugin_reloaded", &config.text());
    sandbox.write(IN, b"");
    sandbox.write("plugins/redact.wasm", &built("redact"));
    sandbox.write("plugins/redact.toml", b"[config]\nfields = [\"login\"]\n");
    let mut ferry = sandbox.spawn_start();
    let wait = |text: &str, ferry: &util::Running| {
        util::wait_for(
            &format!("`{text}` on stderr"),
            DEADLINE,
            || ferry.stderr_count(text) >= 1,
            || sandbox.report(Some(&ferry.snapshot())),
        )
    };
    wait("Starting the pipeline.", &ferry);
    sandbox.write("plugins/mask.toml", b"[config]\nfields = [\"user\"]\n");
    wait("Reload refused", &ferry);
    let refusal = ferry.stderr().lines().find(|line| line.contains("Reload refused")).unwrap_or_default().to_owned();
    assert!(
        refusal.contains("plugin `mask` has its settings file")
            && refusal.contains(&sandbox.path("plugins/mask.wasm").display().to_string()),
        "a lone settings file is named at a reload: {refusal}"
    );
    sandbox.write("plugins/mask.wasm", &built("redact"));
    wait("Plugin chain reloaded", &ferry);
    ferry.terminate();
    ferry.wait(&sandbox, DEADLINE).assert_success(&sandbox);

    for file in ["plugins/mask.wasm", "plugins/mask.toml"] {
        std::fs::remove_file(sandbox.path(file)).expect("delete mask");
    }
    // Not following: a start that is wrongly let through ends at once.
    sandbox.set_config(&folder_job().text());
    assert_refused_without(&sandbox, &["start"], "mask", "plugins/mask.wasm");
}
