//! The systemd unit runs ferry as the system user and group `ferry`, and
//! `ferry configure --group ferry` writes what that user can read: the
//! unit's exact `ExecStart` (only the binary and the `/etc/ferry` folder
//! moved into a test folder), started as that user with `setpriv`, reads the
//! generated config, certificates and identity and carries the Teleport
//! stand-in's events to the Logstash stand-in. Files only root can read (what
//! `configure` writes without `--group`) are refused on one line that names
//! the file, who cannot read it, its owner and mode, and the fix.
//!
//! These tests must run as root (they make the user, give files to its
//! group and drop to it, as an installation does); as anyone else they fail
//! and say so rather than pass without having checked anything.

use crate::teleport::Cluster;
use crate::util::{FERRY, Sandbox};
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::pki::{Pair, Pki};
use ferry_standin::teleport::StandInOptions;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const UNIT: &str = include_str!("../../packaging/systemd/ferry.service");
const SYSUSERS: &str = include_str!("../../packaging/systemd/ferry.sysusers");

/// The user and group the unit runs as.
const USER: &str = "ferry";

/// The folder the unit's `ExecStart` names, where `configure`'s next steps put the files.
const ETC_FERRY: &str = "/etc/ferry";

/// The files ferry reads: what `configure --group` gives the group, and the identity.
const READ_BY_FERRY: [&str; 5] = ["ferry.toml", "ca.crt", "client.crt", "client.key", "identity"];

/// The value of `key=` in the unit (the first one).
fn setting(key: &str) -> &'static str {
    UNIT.lines()
        .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

/// The output of a command that must succeed.
fn stdout_of(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The uid and gid of the unit's user, made when missing as the unit's
/// comment says to (`useradd --system`; ferry.sysusers does the same under
/// systemd). Fails unless the tests run as root.
fn service_user() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        assert_eq!(
            stdout_of("id", &["-u"]),
            "0",
            "the service_user tests run as root: they make the user `ferry`, give files to its group and start ferry as it \
             with setpriv (run them as root, e.g. in the CI container); nothing was checked"
        );
        assert_eq!(setting("User"), USER, "the unit runs as the user the tests make");
        assert_eq!(setting("Group"), USER, "the unit runs as the group configure --group gives the files to");
        assert!(SYSUSERS.lines().any(|line| line.split_whitespace().take(2).eq(["u", USER])), "ferry.sysusers makes the user:\n{SYSUSERS}");
        let exists = Command::new("id").arg(USER).output().is_ok_and(|output| output.status.success());
        if !exists {
            // What the unit's comment gives for systems without systemd-sysusers.
            let made = Command::new("useradd")
                .args(["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", USER])
                .status()
                .expect("useradd runs");
            // Another test process may have made it meanwhile.
            assert!(made.success() || Command::new("id").arg(USER).status().is_ok_and(|s| s.success()), "useradd {USER} failed");
        }
        let id = |flag: &str| stdout_of("id", &[flag, USER]).parse::<u32>().expect("a number");
        (id("-u"), id("-g"))
    })
}

/// `ferry ARGS…` as the unit's user, with its groups, as systemd starts it.
fn as_service_user(args: &[String]) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--reuid", USER, "--regid", USER, "--init-groups", "--"]).arg(FERRY).args(args).env_remove("FERRY_LOG");
    command
}

/// The unit's `ExecStart`, word for word, with only the installed binary
/// and the `/etc/ferry` folder replaced by the built binary and `etc`.
fn exec_start(etc: &Path) -> Vec<String> {
    let words: Vec<&str> = setting("ExecStart").split_whitespace().collect();
    assert_eq!(words[0], "/usr/local/bin/ferry", "the unit runs the installed binary");
    words[1..]
        .iter()
        .map(|word| match word.strip_prefix(ETC_FERRY) {
            Some(rest) => format!("{}{rest}", etc.display()),
            None => (*word).to_owned(),
        })
        .collect()
}

/// The sandbox folder stands for `/`: open to everyone, as `/` is (a
/// temporary folder is its owner's only).
fn open_like_root_folder(sandbox: &Sandbox) {
    std::fs::set_permissions(sandbox.root(), std::fs::Permissions::from_mode(0o755)).expect("chmod the sandbox");
}

/// `ferry configure` as root into `etc`, for the Teleport at `addr`.
fn configure(sandbox: &Sandbox, etc: &Path, addr: &str, extra: &[&str]) {
    let mut line = vec!["configure", etc.to_str().expect("UTF-8"), addr, "--key-type", "ecdsa", "--ip", "127.0.0.1"];
    line.extend_from_slice(extra);
    sandbox.run_args(&line, None).assert_success(sandbox);
}

/// The state folder, as the unit's `StateDirectory=` makes `/var/lib/ferry`: the user's own.
fn state_folder(sandbox: &Sandbox, (uid, gid): (u32, u32)) -> PathBuf {
    let state = sandbox.path("state");
    std::fs::create_dir(&state).expect("state folder");
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).expect("chown the state folder");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    state
}

/// Points the generated ferry.toml at the stand-ins and the test's state
/// folder, in place (the file keeps its owner and mode).
fn point_at_standins(config: &Path, state: &Path, logstash_url: &str) {
    let mut table: toml::Table = std::fs::read_to_string(config).expect("ferry.toml").parse().expect("TOML");
    table.insert("storage".into(), state.to_str().expect("UTF-8").into());
    let sinks = table["sinks"].as_table_mut().expect("[sinks]");
    sinks["default"].as_table_mut().expect("table").insert("url".into(), logstash_url.into());
    sinks["sessions"].as_table_mut().expect("table").insert("url".into(), format!("{logstash_url}session").into());
    let teleport = table["source"].as_table_mut().expect("[source]")["teleport"].as_table_mut().expect("[source.teleport]");
    teleport.insert("start-time".into(), "2019-01-01T00:00:00Z".into());
    teleport.insert("window-size".into(), "8760h".into());
    teleport.insert("timeout".into(), "100ms".into());
    teleport.insert("exit-on-last-event".into(), true.into());
    std::fs::write(config, table.to_string()).expect("ferry.toml");
}

/// Gives a file to `gid`, readable by the group only (`chgrp ferry F && chmod 0640 F`).
fn give_to_group(path: &Path, gid: u32) {
    std::os::unix::fs::chown(path, None, Some(gid)).unwrap_or_else(|err| panic!("chgrp {}: {err}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).expect("chmod 0640");
}

fn owner_group_mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o777)
}

#[test]
fn the_units_exec_start_as_its_user_reads_what_configure_group_wrote_and_delivers() {
    let user = service_user();
    let cluster = Cluster::start(StandInOptions { announce_sessions: true, ..StandInOptions::default() });
    let sandbox = Sandbox::new("service-user", "");
    open_like_root_folder(&sandbox);
    let etc = sandbox.path("etc");
    configure(&sandbox, &etc, &cluster.standin.address(), &["--group", USER]);

    // The rule: what ferry reads is root's, readable by the group, written by
    // neither ferry nor others; what ferry must not read stays root's alone.
    for name in ["ferry.toml", "ca.crt", "client.crt", "client.key"] {
        assert_eq!(owner_group_mode(&etc.join(name)), (0, user.1, 0o640), "{name}: 0640 root:{USER}");
    }
    for name in ["ca.key", "server.key", "server.encrypted.key", "server.key.passphrase"] {
        assert_eq!(owner_group_mode(&etc.join(name)), (0, 0, 0o600), "{name}: root's only");
    }

    // The identity `tctl auth sign` writes (0600), given to the group as the next steps say.
    cluster.standin.write_identity(&etc.join("identity")).expect("identity written");
    give_to_group(&etc.join("identity"), user.1);

    let read = |name: &str| std::fs::read_to_string(etc.join(name)).expect("readable by root");
    let pair = |cert: &str, key: &str| Pair { cert: read(cert), key: read(key) };
    let pki = Pki { ca: pair("ca.crt", "ca.key"), server: pair("server.crt", "server.key"), client: pair("client.crt", "client.key") };
    let logstash = cluster.runtime.block_on(LogstashStandIn::start_with(pki, None)).expect("Logstash with the generated certificate");
    let state = state_folder(&sandbox, user);
    point_at_standins(&etc.join("ferry.toml"), &state, &logstash.url());
    assert_eq!(owner_group_mode(&etc.join("ferry.toml")), (0, user.1, 0o640), "editing kept the owner and mode");

    let check = sandbox.run_command(as_service_user(&["check".into(), "--config".into(), etc.join("ferry.toml").display().to_string()]));
    check.assert_success(&sandbox);
    let output = sandbox.run_command(as_service_user(&exec_start(&etc)));
    output.assert_success(&sandbox);
    let audit: usize = logstash.requests().iter().filter(|r| r.path == "/" && r.status == 200).map(|r| r.events).sum();
    assert_eq!(audit, cluster.audit_log().len(), "every audit event arrived, sent by ferry as {USER}\n{}", sandbox.report(Some(&output)));
    let owner = std::fs::metadata(state.join("ferry.db")).expect("ferry.db in the state folder").uid();
    assert_eq!(owner, user.0, "ferry ran as {USER}, not root");
}

#[test]
fn files_only_root_can_read_are_refused_on_one_line_naming_the_file_the_user_and_the_fix() {
    let user = service_user();
    let cluster = Cluster::start(StandInOptions::default());
    let sandbox = Sandbox::new("service-user-denied", "");
    open_like_root_folder(&sandbox);
    let etc = sandbox.path("etc");
    // Without --group: every file 0600 root, as configure wrote before.
    configure(&sandbox, &etc, &cluster.standin.address(), &[]);
    cluster.standin.write_identity(&etc.join("identity")).expect("identity written");
    let state = state_folder(&sandbox, user);
    point_at_standins(&etc.join("ferry.toml"), &state, "https://127.0.0.1:9/");

    // The unit's own command line names the config it cannot read.
    let output = sandbox.run_command(as_service_user(&exec_start(&etc)));
    let message = output.one_line_error(&sandbox);
    assert_denied(&message, &etc.join("ferry.toml"), user);

    // `ferry check` names each unreadable file in turn, until the operator
    // has done what the messages say for every file ferry reads.
    let check_line = vec!["check".to_owned(), "--config".to_owned(), etc.join("ferry.toml").display().to_string()];
    let mut named = Vec::new();
    for _ in 0..=READ_BY_FERRY.len() {
        let check = sandbox.run_command(as_service_user(&check_line));
        if check.success() {
            break;
        }
        let message = check.one_line_error(&sandbox);
        let Some(name) = READ_BY_FERRY.iter().find(|name| message.contains(&format!("cannot read {}:", etc.join(name).display()))) else {
            panic!("the error names one of the files ferry reads: {message}\n{}", sandbox.report(Some(&check)));
        };
        assert_denied(&message, &etc.join(name), user);
        give_to_group(&etc.join(name), user.1);
        named.push(*name);
    }
    named.sort_unstable();
    let mut expected = READ_BY_FERRY.to_vec();
    expected.sort_unstable();
    assert_eq!(named, expected, "each file ferry reads was named once, and then check passed");
}

/// The one line says which file, who cannot read it (ferry's uid), whose it
/// is and its mode, and what to do.
fn assert_denied(message: &str, file: &Path, (uid, _gid): (u32, u32)) {
    let file = file.display().to_string();
    for part in [
        file.as_str(),
        "permission denied",
        &format!("uid {uid} ({USER})"),
        "owned by root:root",
        "mode 0600",
        "ferry configure --group",
        &format!("chgrp {USER} {file} && chmod 0640 {file}"),
    ] {
        assert!(message.contains(part), "the message should contain `{part}`: {message}");
    }
}
