//! What a newcomer meets at the command line: a reader that stops early
//! (`| head -1`), debug logging that is about ferry, and error lines that
//! say what is wrong and what to do.

use crate::util::{self, Config, IN, OUT, Plugin, Sandbox};
use ferry_standin::teleport::{StandInOptions, TeleportStandIn};
use std::process::{Command, Stdio};

/// Runs `ferry ARGS…` in the sandbox with stdout a pipe whose reader is
/// already gone (as `ferry … | head -1` leaves it once `head` has its line):
/// the exit code and stderr.
fn with_stdout_closed(sandbox: &Sandbox, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut command = Command::new(util::FERRY);
    command.args(args).current_dir(sandbox.root()).env_remove("FERRY_LOG").stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped());
    let output = command.spawn().expect("ferry runs").wait_with_output().expect("ferry ends");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Every command that answers on stdout stops quietly when its reader went
/// away, instead of panicking (exit 101) or reporting a broken pipe.
#[test]
fn a_closed_stdout_ends_each_command_quietly() {
    let config = Config::empty()
        .set("source.file.path", IN)
        .file_sink("default", OUT)
        .plugin(Plugin::built("redact").set("config.fields", vec!["login"]));
    let sandbox = Sandbox::new("cli_closed_stdout", &config.text());
    let redact = util::plugin("redact");
    let redact = redact.to_str().expect("a UTF-8 path");
    let commands: [&[&str]; 5] = [
        &["version"],
        &["check", "--config", "ferry.toml"],
        &["status", "--config", "ferry.toml"],
        &["plugin", "inspect", redact],
        &["plugin", "new", "tiny", "--lang", "rust", "--dir", "scaffold"],
    ];
    for args in commands {
        let (code, stderr) = with_stdout_closed(&sandbox, args);
        assert!(
            !stderr.contains("panicked") && !stderr.to_lowercase().contains("broken pipe"),
            "ferry {args:?} with stdout closed: {stderr}"
        );
        assert_eq!(code, Some(0), "ferry {args:?} with stdout closed should end as `head` expects: {stderr}");
    }
}

/// `FERRY_LOG=debug` is ferry's debug detail: Cranelift compiling the
/// plugin stays quiet (it printed tens of thousands of lines).
#[test]
fn ferry_log_debug_is_about_ferry() {
    let config = Config::empty()
        .set("source.file.path", IN)
        .file_sink("default", OUT)
        .plugin(Plugin::built("redact").set("config.fields", vec!["login"]));
    let sandbox = Sandbox::new("cli_log_debug", &config.text());
    let mut command = sandbox.command(&["check"]);
    command.env("FERRY_LOG", "debug");
    let run = sandbox.run_command(command);
    run.assert_success(&sandbox);
    let foreign: Vec<&str> = run.stderr.lines().filter(|line| !line.contains(" ferry::") && !line.contains("ferry:")).collect();
    assert!(foreign.is_empty(), "{} lines not from ferry, first: {:?}{}", foreign.len(), foreign.first(), sandbox.report(None));

    let mut command = sandbox.command(&["check"]);
    command.env("FERRY_LOG", "debug,cranelift_codegen=debug");
    let run = sandbox.run_command(command);
    assert!(run.stderr.contains("cranelift_codegen"), "a library named by target still logs{}", sandbox.report(None));
}

/// `dead-letters list` with none says so (on stderr: stdout stays JSON
/// Lines), and `show` refuses the filters it would ignore.
#[test]
fn dead_letters_say_when_there_are_none_and_show_takes_no_filters() {
    let sandbox = Sandbox::new("cli_no_dead_letters", &Config::file_job(false).text());
    let fixtures = util::fixtures();
    sandbox.write(IN, util::jsonl(&fixtures[..3]).as_bytes());
    sandbox.run("start").assert_success(&sandbox);
    let list = sandbox.run_command(sandbox.command(&["dead-letters", "list"]));
    list.assert_success(&sandbox);
    assert_eq!(list.stdout, "", "{}", sandbox.report(Some(&list)));
    let database = sandbox.path("storage/ferry.db");
    assert_eq!(list.stderr, format!("no dead letters in {}\n", database.display()), "{}", sandbox.report(Some(&list)));
    let filtered = sandbox.run_command(sandbox.command(&["dead-letters", "list", "--stage", "sink"]));
    assert!(filtered.stderr.starts_with("no dead letters matching the filters in "), "{}", sandbox.report(Some(&filtered)));

    for args in [&["dead-letters", "show", "1", "--stage", "sink"][..], &["dead-letters", "show", "1", "--limit", "3"]] {
        let show = sandbox.run_command(sandbox.command(args));
        assert_eq!(show.status.and_then(|status| status.code()), Some(2), "clap refuses the flag{}", sandbox.report(Some(&show)));
        assert!(show.stderr.contains("unexpected argument"), "{}", sandbox.report(Some(&show)));
    }
    let before = sandbox.run_command(sandbox.command(&["dead-letters", "--component", "default", "show", "1"]));
    let message = before.one_line_error(&sandbox);
    assert!(message.contains("takes no filters"), "{message}");
}

/// The `--log-format` help of a command without a config does not send
/// people looking for one.
#[test]
fn log_format_help_names_the_config_only_for_the_commands_that_read_one() {
    let sandbox = Sandbox::new("cli_log_format_help", "");
    let help = sandbox.run_args(&["demo", "--help"], None);
    help.assert_success(&sandbox);
    let text = help.stdout.split("--log-format").nth(1).unwrap_or_default().split("\n  -").next().unwrap_or_default().to_owned();
    assert!(!text.contains("or `log-format` in the config"), "{text}");
    assert!(text.contains("`start` and `check`"), "{text}");
}

/// A port that answers plain HTTP to every connection, for as long as the
/// test runs: what a TLS client meets at a wrong port.
fn plain_http_port() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        for mut socket in listener.incoming().flatten() {
            let mut hello = [0u8; 512];
            let _ = socket.read(&mut hello);
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    addr
}

/// `check --probe` against a plain-HTTP port and a closed one says which is
/// which, for Teleport and for a sink, instead of rustls's "corrupt message"
/// and gRPC's "Unavailable".
#[test]
fn probes_say_plain_text_and_nothing_listening() {
    let plain = plain_http_port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address");
    let sandbox = Sandbox::new("cli_probe_plain_text", "");
    let standin = ferry_standin::pki::Pki::generate("localhost").expect("a PKI");
    let pki = standin.write(&sandbox.path("pki")).expect("certificates written");
    // A real identity (of the stand-in's cluster) for an address where no Teleport is.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let teleport = runtime.block_on(TeleportStandIn::start(StandInOptions::default())).expect("the stand-in Teleport starts");
    teleport.write_identity(&sandbox.path("identity")).expect("identity written");
    let config = Config::teleport_job(&plain.to_string())
        .logstash_sink("default", &format!("https://{plain}/"), &pki.ca, &pki.client_cert, &pki.client_key)
        .logstash_sink("closed", &format!("https://{closed}/"), &pki.ca, &pki.client_cert, &pki.client_key);
    sandbox.set_config(&config.text());
    let probe = sandbox.run_command(sandbox.command(&["check", "--probe"]));
    assert!(!probe.success(), "{}", sandbox.report(Some(&probe)));
    let says = |start: String, text: String| {
        assert!(
            probe.stdout.lines().any(|line| line.starts_with(&start) && line.contains(&text)),
            "a line starting `{start}` saying `{text}`{}",
            sandbox.report(Some(&probe))
        );
    };
    let plain_text = format!("{plain} answered in plain text, not TLS: check the port, and that TLS is enabled there");
    says(format!("teleport {plain}: FAILED: "), format!("cannot reach Teleport: {plain_text}"));
    says(format!("sink default (https://{plain}/): FAILED: "), plain_text);
    says(format!("sink closed (https://{closed}/): FAILED: "), format!("nothing is listening at {closed} (connection refused)"));
    assert!(!probe.stdout.contains("InvalidContentType"), "{}", sandbox.report(Some(&probe)));
}

/// A Teleport address without a port, or copied from the browser with
/// `https://`, is refused by `check` (naming the file and key) and by
/// `configure` (naming ADDR), each on one line saying what to write.
#[test]
fn an_address_that_is_not_host_and_port_is_refused_with_what_to_write() {
    for (addr, says) in [
        (
            "teleport.example.com",
            "has no port; write `teleport.example.com:443` (a Proxy, or Teleport Cloud) or `teleport.example.com:3025`",
        ),
        ("https://teleport.example.com/", "is a URL, but ferry wants host:port without `https://`; write `teleport.example.com:443`"),
    ] {
        let sandbox = Sandbox::new("cli_addr", &Config::teleport_job(addr).file_sink("default", OUT).text());
        let check = sandbox.run("check");
        let message = check.one_line_error(&sandbox);
        let expected = format!("{}: `teleport.addr`: `{addr}` {says}", sandbox.config().display());
        assert!(message.starts_with(&expected), "`{message}` should start with `{expected}`");

        let configure = sandbox.run_args(&["configure", "out", addr], None);
        let message = configure.one_line_error(&sandbox);
        assert!(message.starts_with(&format!("ADDR `{addr}`: {says}")), "{message}");
        assert!(!sandbox.path("out").exists(), "nothing was written{}", sandbox.report(Some(&configure)));
    }
}

/// A changed `start-time` is refused with the one command that starts over
/// from it, and that command works as given (deleting the database by hand
/// only met the marker's refusal next). It is refused while ferry runs.
#[test]
fn a_changed_start_time_names_the_one_command_that_starts_over() {
    let cluster = crate::teleport::Cluster::start(StandInOptions { export_api: false, ..StandInOptions::default() });
    let job = |start: &str| {
        Config::teleport_job(&cluster.standin.address()).set("start-time", start).file_sink("default", OUT).set("exit-on-last-event", true)
    };
    let sandbox = Sandbox::new("cli_start_time", &job("2019-01-01T00:00:00Z").text());
    cluster.standin.write_identity(&sandbox.path("identity")).expect("identity written");
    sandbox.run("start").assert_success(&sandbox);
    let first = sandbox.out_count();
    assert!(first > 0, "{}", sandbox.report(None));

    sandbox.set_config(&job("2020-01-01T00:00:00Z").text());
    let refused = sandbox.run("start");
    let message = refused.one_line_error(&sandbox);
    let command = format!("ferry state reset --empty --config {}", sandbox.config().display());
    assert!(message.contains(&format!("`{command}`")), "{message}");
    assert_eq!(sandbox.out_count(), first, "a refused start sends nothing");

    // Refused while a ferry holds the storage (one still following, from
    // the old start-time).
    sandbox.set_config(&job("2019-01-01T00:00:00Z").set("exit-on-last-event", false).text());
    let mut following = sandbox.spawn_start();
    util::wait_for(
        "ferry to start its pipeline",
        util::DEADLINE,
        || following.stderr().contains("Starting the pipeline"),
        || sandbox.report(Some(&following.snapshot())),
    );
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    let busy = sandbox.run_args(&args, None);
    assert!(!busy.success() && busy.stderr.lines().count() == 1, "{}", sandbox.report(Some(&busy)));
    assert!(sandbox.path("storage/ferry.db").exists(), "nothing was deleted{}", sandbox.report(Some(&busy)));
    following.terminate();
    following.wait(&sandbox, util::DEADLINE).assert_success(&sandbox);
    sandbox.set_config(&job("2020-01-01T00:00:00Z").text());

    let reset = sandbox.run_args(&args, None);
    reset.assert_success(&sandbox);
    assert!(reset.stdout.contains(": emptied (identity "), "{}", sandbox.report(Some(&reset)));
    sandbox.run("start").assert_success(&sandbox);
    let since_2020 = cluster.audit_log().iter().filter(|e| e["time"].as_str().is_some_and(|t| t >= "2020")).count();
    assert!(since_2020 > 0 && since_2020 < first, "the fixtures span 2019 and 2020");
    assert_eq!(sandbox.out_count(), first + since_2020, "the second run read from the new start-time{}", sandbox.report(None));
}
