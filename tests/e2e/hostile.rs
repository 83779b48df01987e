//! A plugin cannot harm ferry: the `hostile` plugin misbehaves in every
//! batch that holds a `user.login` event, and ferry must contain it — the
//! batch (or the event) goes where the plugin's `on-error` says, every other
//! event is delivered untouched, and nothing the sandbox hides leaks out.

use crate::util::{self, Config, FixtureEvent, IN, Output, Plugin, Sandbox};
use serde_json::Value;
use std::collections::BTreeSet;

/// Small batches, so that only a few of them hold a `user.login`.
const BATCH: usize = 5;
const TRIGGER: &str = "user.login";

/// A config running `hostile` in `mode`, on the batches that hold a
/// `user.login`, as plugin `name` with `settings` (more keys of its
/// `[[plugins]]` table), over the fixtures to their end in small batches.
fn config(name: &str, mode: &str, settings: &[(&str, &str)]) -> String {
    let keys = [[("config.mode", mode), ("config.when-type", TRIGGER)].as_slice(), settings].concat();
    job(name, &keys, BATCH, false).text()
}

/// One scenario's run over the fixtures, and what became of each event.
struct Contained {
    sandbox: Sandbox,
    run: Output,
    events: Vec<FixtureEvent>,
    /// Input index of each output line, in output order.
    delivered: Vec<usize>,
    /// The dead letters, and the input index of each.
    dead: Vec<(Value, usize)>,
}

impl Contained {
    /// Runs `config` over the fixtures to the end; fails unless ferry exits 0,
    /// every output line is an input line unchanged, and every dead letter is
    /// a plugin-stage letter from `name` holding an input event unchanged.
    fn run(scenario: &str, name: &str, config: &str) -> Contained {
        Contained::run_with(scenario, name, config, |command| command)
    }

    fn run_with(
        scenario: &str,
        name: &str,
        config: &str,
        adjust: impl FnOnce(&mut std::process::Command) -> &mut std::process::Command,
    ) -> Contained {
        let sandbox = Sandbox::new(scenario, config);
        let events = util::fixtures();
        sandbox.write(IN, util::jsonl(&events).as_bytes());
        let mut command = sandbox.command(&["start"]);
        adjust(&mut command);
        let run = sandbox.run_command(command);
        run.assert_success(&sandbox);
        let report = |extra: &str| format!("{extra}{}", sandbox.report(Some(&run)));

        let index_of_line = |line: &str| events.iter().position(|e| e.line == line);
        let delivered: Vec<usize> = sandbox
            .out_lines()
            .iter()
            .map(|line| {
                index_of_line(line).unwrap_or_else(|| panic!("an output line is not an input line unchanged: {line}{}", report("")))
            })
            .collect();
        let dead: Vec<(Value, usize)> = sandbox
            .dead_letters()
            .into_iter()
            .map(|letter| {
                let shown = letter.to_string();
                assert_eq!(letter["stage"], "plugin", "dead letter from the wrong stage: {shown}{}", report(""));
                assert_eq!(letter["component"], name, "dead letter should name the plugin `{name}`: {shown}{}", report(""));
                let reason = letter["reason"].as_str().unwrap_or_default();
                assert!(reason.contains(&format!("`{name}`")), "the reason should name the plugin `{name}`: {shown}{}", report(""));
                assert!(!reason.contains('\n'), "the reason should be one line: {shown}");
                let payload = letter["payload"].as_str().unwrap_or_default();
                let index = index_of_line(payload)
                    .unwrap_or_else(|| panic!("a dead letter's payload is not an input event unchanged: {shown}{}", report("")));
                assert_eq!(letter["event_id"], events[index].id.as_str(), "the dead letter's event_id is not its event's id: {shown}");
                (letter, index)
            })
            .collect();
        Contained { sandbox, run, events, delivered, dead }
    }

    fn report(&self) -> String {
        let dead: Vec<String> = self.dead.iter().map(|(letter, i)| format!("  #{i}: {}", letter["reason"])).collect();
        format!("\n----- dead letters ({})\n{}{}", dead.len(), dead.join("\n"), self.sandbox.report(Some(&self.run)))
    }

    /// Input indexes of the events that trigger the plugin.
    fn triggers(&self) -> Vec<usize> {
        self.events.iter().enumerate().filter(|(_, e)| e.event_type == TRIGGER).map(|(i, _)| i).collect()
    }

    /// Every event exactly once: delivered (in input order) or dead-lettered.
    fn assert_each_event_once(&self) {
        let delivered: BTreeSet<usize> = self.delivered.iter().copied().collect();
        let dead: BTreeSet<usize> = self.dead.iter().map(|(_, i)| *i).collect();
        assert_eq!(delivered.len(), self.delivered.len(), "an event was delivered twice{}", self.report());
        assert_eq!(dead.len(), self.dead.len(), "an event was dead-lettered twice{}", self.report());
        assert!(delivered.is_disjoint(&dead), "an event was both delivered and dead-lettered{}", self.report());
        assert_eq!(
            self.delivered.len() + self.dead.len(),
            self.events.len(),
            "delivered + dead-lettered must add up to the {} input events{}",
            self.events.len(),
            self.report()
        );
        assert!(self.delivered.windows(2).all(|w| w[0] < w[1]), "events were delivered out of order{}", self.report());
    }

    /// The batches holding a trigger were dead-lettered whole and nothing
    /// else was: every trigger is dead, every dead event shared a batch with
    /// one (it lies within a batch's length of it), and the rest arrived.
    fn assert_trigger_batches_dead(&self, cause: &str) {
        self.assert_each_event_once();
        let triggers = self.triggers();
        assert!(!triggers.is_empty(), "the fixtures hold no {TRIGGER}");
        let dead: BTreeSet<usize> = self.dead.iter().map(|(_, i)| *i).collect();
        for t in &triggers {
            assert!(dead.contains(t), "{TRIGGER} event #{t} was not dead-lettered{}", self.report());
        }
        for (letter, i) in &self.dead {
            assert!(
                triggers.iter().any(|t| t.abs_diff(*i) < BATCH),
                "event #{i} was dead-lettered but shared no batch with a {TRIGGER}: {letter}{}",
                self.report()
            );
            let reason = letter["reason"].as_str().unwrap_or_default();
            assert!(reason.contains(cause), "the reason should say `{cause}`: {reason}{}", self.report());
        }
        assert!(self.dead.len() <= triggers.len() * BATCH, "more dead letters than the trigger batches hold{}", self.report());
        assert!(self.delivered.len() >= self.events.len() - triggers.len() * BATCH, "{}", self.report());
    }
}

#[test]
fn a_trap_dead_letters_its_batch_and_the_rest_is_delivered() {
    let c = Contained::run("hostile_trap", "sandboxed-trap", &config("sandboxed-trap", "trap", &[]));
    c.assert_trigger_batches_dead("trap");
    let reason = c.dead[0].0["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("plugin `sandboxed-trap` failed: "), "{reason}{}", c.report());
}

#[test]
fn an_endless_loop_is_stopped_at_its_deadline() {
    let c = Contained::run("hostile_loop", "spinner", &config("spinner", "loop", &[("deadline", "300ms")]));
    c.assert_trigger_batches_dead("deadline");
    let reason = c.dead[0].0["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("300ms"), "the reason should give the deadline: {reason}{}", c.report());
}

#[test]
fn a_memory_hog_is_stopped_at_its_cap() {
    let c = Contained::run("hostile_oom", "hog", &config("hog", "oom", &[("max-memory", "32MiB")]));
    c.assert_trigger_batches_dead("memory");
    let reason = c.dead[0].0["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("max-memory") && reason.contains(&(32u64 << 20).to_string()),
        "the reason should name the cap: {reason}{}",
        c.report()
    );
}

#[test]
fn a_result_of_the_wrong_length_is_refused() {
    let c = Contained::run("hostile_wrong_length", "short", &config("short", "wrong-length", &[]));
    c.assert_trigger_batches_dead("malformed result");
    let reason = c.dead[0].0["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("verdicts for"), "the reason should say what is malformed: {reason}{}", c.report());
}

#[test]
fn invalid_json_from_a_plugin_fails_each_event_and_keeps_the_original() {
    let c = Contained::run("hostile_bad_json", "garbler", &config("garbler", "bad-json", &[]));
    c.assert_trigger_batches_dead("invalid JSON");
    for (letter, _) in &c.dead {
        let reason = letter["reason"].as_str().unwrap_or_default();
        let id = letter["event_id"].as_str().unwrap_or_default();
        assert!(reason.contains(id), "a per-event reason should name the event: {reason}{}", c.report());
    }
}

#[test]
fn output_over_max_output_is_refused() {
    let c = Contained::run("hostile_huge_output", "bloater", &config("bloater", "huge-output", &[("max-output", "1MiB")]));
    c.assert_trigger_batches_dead("max-output");
    assert!(!c.sandbox.read(util::OUT).contains("xxxxxxxx"), "padding reached the output{}", c.report());
}

#[test]
fn files_are_out_of_reach() {
    let c = Contained::run("hostile_files", "snoop", &config("snoop", "files", &[]));
    c.assert_trigger_batches_dead("file access denied");
    assert!(!c.sandbox.read(util::OUT).contains("leaked"), "file contents reached the output{}", c.report());
    for (letter, _) in &c.dead {
        let text = letter.to_string();
        assert!(!text.contains("leaked") && !text.contains("root:"), "a dead letter holds file contents: {text}{}", c.report());
    }
}

#[test]
fn the_environment_is_out_of_reach() {
    let c = Contained::run_with("hostile_env", "envy", &config("envy", "env", &[]), |command| command.env("FERRY_E2E_SECRET", "hunter2"));
    c.assert_each_event_once();
    assert!(c.dead.is_empty(), "nothing should be dead-lettered{}", c.report());
    assert_eq!(c.delivered, (0..c.events.len()).collect::<Vec<_>>(), "every event unchanged, in order{}", c.report());
    let out = c.sandbox.read(util::OUT);
    assert!(!out.contains("leaked") && !out.contains("hunter2"), "the environment reached the output{}", c.report());
}

#[test]
fn failing_single_events_dead_letters_exactly_those() {
    let c = Contained::run("hostile_fail_each", "picky", &config("picky", "fail-each", &[]));
    c.assert_each_event_once();
    let dead: Vec<usize> = c.dead.iter().map(|(_, i)| *i).collect();
    assert_eq!(dead, c.triggers(), "exactly the {TRIGGER} events should be dead-lettered{}", c.report());
    for (letter, i) in &c.dead {
        let reason = letter["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&c.events[*i].id) && reason.ends_with(": failed on purpose"),
            "the reason should name the event and carry the plugin's own words: {reason}{}",
            c.report()
        );
    }
}

#[test]
fn dropped_events_are_neither_delivered_nor_dead_lettered() {
    let c = Contained::run("hostile_drop", "dropper", &config("dropper", "drop", &[]));
    assert!(c.dead.is_empty(), "drops are not failures{}", c.report());
    let triggers = c.triggers();
    let dropped: Vec<usize> = (0..c.events.len()).filter(|i| !c.delivered.contains(i)).collect();
    for t in &triggers {
        assert!(dropped.contains(t), "{TRIGGER} event #{t} was not dropped{}", c.report());
    }
    for i in &dropped {
        assert!(triggers.iter().any(|t| t.abs_diff(*i) < BATCH), "event #{i} was dropped outside a {TRIGGER} batch{}", c.report());
    }
    let summary = format!("{} events in, {} delivered, {} dropped, 0 dead-lettered", c.events.len(), c.delivered.len(), dropped.len());
    assert!(c.run.stderr.contains(&summary), "the summary should read `{summary}`{}", c.report());
}

#[test]
fn plugin_logs_reach_ferrys_log_tagged_with_the_plugin() {
    let c = Contained::run("hostile_log", "chatty", &config("chatty", "log", &[]));
    assert!(c.dead.is_empty(), "{}", c.report());
    assert_eq!(c.delivered.len(), c.events.len(), "{}", c.report());
    let logged: Vec<&str> = c.run.stderr.lines().filter(|l| l.contains("Hostile plugin saw a batch.")).collect();
    assert!(!logged.is_empty(), "the plugin's log line is missing{}", c.report());
    assert!(
        logged.iter().all(|l| l.contains("chatty") && l.contains("events")),
        "plugin log lines should carry the plugin's name and fields: {logged:?}"
    );
}

#[test]
fn on_error_pass_hands_the_batch_on_unchanged() {
    let c = Contained::run("hostile_pass", "lenient", &config("lenient", "trap", &[("on-error", "pass")]));
    c.assert_each_event_once();
    assert!(c.dead.is_empty(), "with on-error = \"pass\" nothing is dead-lettered{}", c.report());
    assert_eq!(c.delivered, (0..c.events.len()).collect::<Vec<_>>(), "every event, unchanged and in order{}", c.report());
    assert!(c.run.stderr.contains("Plugin call failed."), "the failure should still be logged{}", c.report());
}

#[test]
fn on_error_halt_stops_ferry_before_the_failed_batch() {
    let halt = config("strict", "trap", &[("on-error", "halt")]);
    let sandbox = Sandbox::new("hostile_halt", &halt);
    let events = util::fixtures();
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let first_trigger = events.iter().position(|e| e.event_type == TRIGGER).expect("the fixtures hold a user.login");

    // First run: stops with one error line naming the plugin.
    let run = sandbox.run("start");
    assert!(run.status.is_some() && !run.success(), "ferry should exit non-zero on a halting plugin{}", sandbox.report(Some(&run)));
    let errors: Vec<&str> = run.stderr_lines().into_iter().filter(|l| l.starts_with("ferry: error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected{}", sandbox.report(Some(&run)));
    assert_eq!(run.stderr_lines().last().copied(), Some(errors[0]), "the error should be the last line{}", sandbox.report(Some(&run)));
    assert!(
        errors[0].contains("`strict`") && errors[0].contains("halt"),
        "the error should name the plugin and the policy{}",
        sandbox.report(Some(&run))
    );

    // The output is the input up to the failed batch: every batch before it,
    // nothing from it on.
    let prefix = |sandbox: &Sandbox, run: &Output| {
        let lines = sandbox.out_lines();
        let expected: Vec<&str> = events.iter().take(lines.len()).map(|e| e.line.as_str()).collect();
        assert!(lines == expected, "the output should be a prefix of the input{}", sandbox.report(Some(run)));
        assert!(
            lines.len() <= first_trigger && lines.len() + BATCH > first_trigger,
            "the output should stop just before the batch holding event #{first_trigger}, not after {} events{}",
            lines.len(),
            sandbox.report(Some(run))
        );
    };
    prefix(&sandbox, &run);
    assert!(sandbox.dead_letters().is_empty(), "halting dead-letters nothing{}", sandbox.report(Some(&run)));

    // Second run (quiet logs): the same batch fails again, so the cursor had
    // stopped before it, and the earlier batches are not sent again.
    let out_before = sandbox.read(util::OUT);
    let mut quiet = sandbox.command(&["start"]);
    quiet.env("FERRY_LOG", "off");
    let again = sandbox.run_command(quiet);
    let message = again.one_line_error(&sandbox);
    assert!(message.contains("`strict`"), "{message}{}", sandbox.report(Some(&again)));
    assert!(
        sandbox.read(util::OUT) == out_before,
        "the second run must resend nothing: the first left {} lines, now there are {}\n===== the first run\n{run}{}",
        util::complete_lines(&out_before).len(),
        sandbox.out_count(),
        sandbox.report(Some(&again))
    );

    // With the plugin made lenient, the rest arrives, the failed batch included.
    sandbox.set_config(&config("strict", "trap", &[("on-error", "pass")]));
    let rest = sandbox.run("start");
    rest.assert_success(&sandbox);
    let lines = sandbox.out_lines();
    let all: Vec<&str> = events.iter().map(|e| e.line.as_str()).collect();
    assert!(lines == all, "after the halt, resuming must deliver every event exactly once, in order{}", sandbox.report(Some(&rest)));
}

#[test]
fn the_network_is_out_of_reach() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let address = listener.local_addr().expect("address");
    let config = config("netcat", "socket", &[("config.address", &address.to_string())]);
    let c = Contained::run("hostile_socket", "netcat", &config);
    c.assert_each_event_once();
    let dead: BTreeSet<usize> = c.dead.iter().map(|(_, i)| *i).collect();
    let delivered: BTreeSet<usize> = c.delivered.iter().copied().collect();
    assert!(c.triggers().iter().all(|t| dead.contains(t)), "every connecting event fails{}", c.report());
    assert_eq!(delivered.len() + dead.len(), c.events.len(), "{}", c.report());
    for (letter, _) in &c.dead {
        let reason = letter["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(&format!("socket access denied: connect {address}")), "{reason}{}", c.report());
    }
    assert!(
        matches!(listener.accept(), Err(err) if err.kind() == std::io::ErrorKind::WouldBlock),
        "a plugin's connection reached the listener{}",
        c.report()
    );
}

#[test]
fn plugin_stdio_reaches_nothing() {
    let c = Contained::run("hostile_stdio", "loud", &config("loud", "stdio", &[]));
    c.assert_each_event_once();
    assert_eq!(c.delivered, (0..c.events.len()).collect::<Vec<_>>(), "every event unchanged, in order{}", c.report());
    let marker = "hostile plugin output on stdio";
    assert!(!c.run.stdout.contains(marker) && !c.run.stderr.contains(marker), "the plugin's stdio reached ferry's{}", c.report());
}

/// A config running `hostile` as plugin `name` over `in.jsonl` into
/// `out.jsonl`: `plugin` holds the keys of its `[[plugins]]` table (its
/// `config` as `config.KEY`).
fn job(name: &str, plugin: &[(&str, &str)], batch: usize, follow: bool) -> Config {
    let hostile = plugin.iter().fold(Plugin::built("hostile").set("name", name), |hostile, (key, value)| hostile.set(key, *value));
    Config::file_job(follow).pipeline(batch, "10ms").plugin(hostile)
}

/// `n` small events `ev-0`, `ev-1`, …; the one at `poison` (if any) carries
/// the marker the `poison` mode traps on.
fn numbered(n: usize, poison: Option<usize>) -> Vec<FixtureEvent> {
    (0..n)
        .map(|i| {
            let note = if Some(i) == poison { "hostile-poison" } else { "fine" };
            FixtureEvent::new(&format!(r#"{{"event":"app.check","uid":"ev-{i}","time":"2026-11-30T10:00:00Z","note":"{note}"}}"#))
        })
        .collect()
}

#[test]
fn a_sleeping_plugin_fails_its_call_at_its_deadline() {
    // `sleep` sleeps 60 s in every batch holding a user.login (4 of them):
    // a host call (WASI clock + poll) that the epoch deadline cannot stop.
    let started = std::time::Instant::now();
    let c = Contained::run("hostile_sleep", "sleepy", &config("sleepy", "sleep", &[("deadline", "500ms")]));
    let took = started.elapsed();
    c.assert_trigger_batches_dead("ran past its deadline of 500ms (deadline)");
    // Each of the 4 batches costs at most 4 deadlines (the call and isolating
    // its events); compiling the plugin takes a few seconds more.
    assert!(took < std::time::Duration::from_secs(30), "4 sleeping batches took {took:?}{}", c.report());
}

#[test]
fn sigterm_stops_ferry_within_its_shutdown_timeout_while_a_plugin_sleeps() {
    let config = job("sleepy", &[("deadline", "500ms"), ("config.mode", "sleep")], 16, true).set("pipeline.shutdown-timeout", "2s").text();
    let sandbox = Sandbox::new("hostile_sleep_sigterm", &config);
    sandbox.write(IN, util::jsonl(&numbered(64, None)).as_bytes());
    let mut running = sandbox.spawn_start();
    // Every call sleeps: the first one ends at its deadline ...
    util::wait_for(
        "a sleeping call to fail at its deadline",
        std::time::Duration::from_secs(20),
        || running.stderr_count("ran past its deadline of 500ms") > 0,
        || sandbox.report(Some(&running.snapshot())),
    );
    // ... and ferry, busy isolating that batch's events in calls that sleep
    // too, still stops within its shutdown-timeout (2 s) after SIGTERM.
    running.terminate();
    let stopped = std::time::Instant::now();
    let run = running.wait(&sandbox, std::time::Duration::from_secs(5));
    assert!(
        stopped.elapsed() < std::time::Duration::from_millis(3500),
        "ferry took {:?} to stop{}",
        stopped.elapsed(),
        sandbox.report(Some(&run))
    );
}

#[test]
fn ferry_check_refuses_a_plugin_whose_init_sleeps_within_seconds() {
    let config = job("napper", &[("deadline", "500ms"), ("config.mode", "sleep-init")], 16, false).text();
    let sandbox = Sandbox::new("hostile_sleep_init", &config);
    sandbox.write(IN, b"");
    let started = std::time::Instant::now();
    let mut running = sandbox.spawn_command(sandbox.command(&["check"]));
    let run = running.wait(&sandbox, std::time::Duration::from_secs(20));
    assert!(!run.success(), "check should refuse a plugin whose init never returns{}", sandbox.report(Some(&run)));
    let message = run.one_line_error(&sandbox);
    assert!(message.contains("`napper`") && message.contains("ran past its deadline of 500ms"), "{message}{}", sandbox.report(Some(&run)));
    // Most of that is compiling the plugin; the init itself is cut at 500 ms.
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "{:?}{}", started.elapsed(), sandbox.report(Some(&run)));
}

/// ferry's peak resident memory (`VmHWM`) in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|err| panic!("cannot read /proc/{pid}/status: {err}"));
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap_or_else(|| panic!("no VmHWM in {status}"));
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("unreadable: {line}"));
    kib << 10
}

#[test]
fn an_amplifying_result_is_refused_before_it_is_copied() {
    // Each call returns one sink list of 1,024 names that all point to the
    // same 64 KiB of guest memory, and routes all 16 events to it: 64 MiB in
    // the host for one copy of the list, a GiB for a copy per event.
    let config = job("amp", &[("max-output", "1MiB"), ("config.mode", "amplify")], 16, true).text();
    let sandbox = Sandbox::new("hostile_amplify", &config);
    let events = numbered(32, None);
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let mut running = sandbox.spawn_start();
    let refusal = "plugin `amp` returned a malformed result: it handed ferry more than its max-output of 1048576 bytes in one call";
    let refused_calls = |stderr: &str| stderr.lines().filter(|line| line.contains("Plugin call failed.") && line.contains(refusal)).count();
    util::wait_for(
        "both batches to be refused",
        std::time::Duration::from_secs(30),
        || refused_calls(&running.stderr()) >= 2,
        || sandbox.report(Some(&running.snapshot())),
    );
    let peak = peak_rss(running.pid());
    running.terminate();
    let run = running.wait(&sandbox, util::DEADLINE);
    eprintln!("ferry's peak RSS: {} MiB", peak >> 20);
    // ferry with this plugin compiled peaks near 50 MiB; one copy of the
    // list would be 64 MiB more, and a copy per event a GiB.
    assert!(peak < 100 << 20, "ferry's peak RSS was {} MiB{}", peak >> 20, sandbox.report(Some(&run)));
    let dead = sandbox.dead_letters();
    assert_eq!(dead.len(), events.len(), "every refused event is dead-lettered{}", sandbox.report(Some(&run)));
    assert!(dead.iter().all(|letter| {
        letter["reason"].as_str().is_some_and(|reason| reason.contains("max-output of 1048576 bytes") && !reason.contains('\n'))
    }));
    assert_eq!(sandbox.out_count(), 0, "{}", sandbox.report(Some(&run)));
}

#[test]
fn one_poisonous_event_is_dead_lettered_alone_and_the_other_255_are_delivered() {
    let config = job("taster", &[("config.mode", "poison")], 256, false).text();
    let sandbox = Sandbox::new("hostile_poison", &config);
    let events = numbered(256, Some(137));
    sandbox.write(IN, util::jsonl(&events).as_bytes());
    let run = sandbox.run("start");
    run.assert_success(&sandbox);
    let dead = sandbox.dead_letters();
    let dead_ids: Vec<&str> = dead.iter().map(|letter| letter["event_id"].as_str().unwrap_or_default()).collect();
    assert_eq!(dead_ids, ["ev-137"], "only the poisonous event is dead-lettered{}", sandbox.report(Some(&run)));
    let reason = dead[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("plugin `taster` failed: ") && reason.contains("unreachable"), "{reason}");
    let expected: Vec<&str> = events.iter().filter(|e| e.id != "ev-137").map(|e| e.line.as_str()).collect();
    assert!(sandbox.out_lines() == expected, "the other 255, unchanged and in order{}", sandbox.report(Some(&run)));
}
