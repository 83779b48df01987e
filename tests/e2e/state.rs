//! A lost state database is an error, not a silent fresh start; accepting
//! a fresh start is one command. The files ferry keeps its state and keys
//! in are private (0600).

use crate::util::{Config, IN, Sandbox};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A small input to its end into `out.jsonl`, in batches of 10.
fn config() -> Config {
    Config::file_job(false).pipeline(10, "10ms")
}

fn events(count: usize) -> String {
    (0..count).map(|n| format!("{{\"uid\":\"e-{n}\",\"event\":\"user.login\"}}\n")).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).permissions().mode() & 0o777
}

#[test]
fn a_deleted_database_is_refused_until_a_reset_accepts_starting_afresh() {
    let sandbox = Sandbox::new("state_deleted", &config().text());
    sandbox.write(IN, events(20).as_bytes());
    sandbox.run("start").assert_success(&sandbox);
    assert_eq!(sandbox.out_count(), 20, "{}", sandbox.report(None));
    for file in ["storage/ferry.db", "storage/ferry.marker"] {
        assert_eq!(mode(&sandbox.path(file)), 0o600, "{file} must be private");
    }

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(sandbox.path(&format!("storage/ferry.db{suffix}")));
    }
    let refused = sandbox.run("start");
    let error = refused.one_line_error(&sandbox);
    let database = sandbox.path("storage/ferry.db");
    assert!(error.starts_with(&format!("state database {}: missing, but ", database.display())), "{error}");
    assert!(error.ends_with(&format!("run `ferry state reset --config {}`", sandbox.config().display())), "{error}");
    assert_eq!(sandbox.out_count(), 20, "a refused start sends nothing{}", sandbox.report(Some(&refused)));

    let reset = sandbox.run_command(sandbox.command(&["state", "reset"]));
    reset.assert_success(&sandbox);
    assert!(reset.stdout.contains("created empty"), "{}", sandbox.report(Some(&reset)));
    // Accepted: the file is read again from its start (duplicates, no loss).
    sandbox.run("start").assert_success(&sandbox);
    assert_eq!(sandbox.out_count(), 40, "{}", sandbox.report(None));
    assert_eq!(mode(&database), 0o600);
}

#[test]
fn a_replaced_database_is_refused() {
    let sandbox = Sandbox::new("state_replaced", &config().text());
    sandbox.write(IN, events(5).as_bytes());
    sandbox.run("start").assert_success(&sandbox);
    // Another ferry's database copied over this one.
    let other = Sandbox::new("state_other", &config().text());
    other.write(IN, events(3).as_bytes());
    other.run("start").assert_success(&other);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(sandbox.path(&format!("storage/ferry.db{suffix}")));
    }
    std::fs::copy(other.path("storage/ferry.db"), sandbox.path("storage/ferry.db")).expect("copy");
    let error = sandbox.run("start").one_line_error(&sandbox);
    assert!(error.contains("not the database ferry ran with before"), "{error}");
    assert!(error.contains("ferry state reset --config"), "{error}");
}

#[test]
fn a_dry_run_keeps_its_own_state_and_is_never_refused() {
    let sandbox = Sandbox::new("state_dry_run", &config().set("dry-run", true).text());
    sandbox.write(IN, events(5).as_bytes());
    sandbox.run("start").assert_success(&sandbox);
    // Each dry run throws its database away and starts again.
    sandbox.run("start").assert_success(&sandbox);
    assert!(!sandbox.path("storage/ferry.db").exists(), "the real state is untouched");
    assert!(!sandbox.path("storage/ferry.marker").exists());
    assert!(!sandbox.path("storage/dry-run/ferry.marker").exists());
}

#[test]
fn the_demo_writes_its_keys_certificates_identity_and_state_private() {
    let sandbox = Sandbox::new("state_demo", "");
    let run = sandbox.run_args(&["demo", "--dir", "demo"], None);
    run.assert_success(&sandbox);
    for file in [
        "demo/pki/ca.crt",
        "demo/pki/client.crt",
        "demo/pki/client.key",
        "demo/pki/server.crt",
        "demo/pki/server.key",
        "demo/identity",
        "demo/storage/ferry.db",
        "demo/storage/ferry.marker",
    ] {
        assert_eq!(mode(&sandbox.path(file)), 0o600, "{file} must be private{}", sandbox.report(Some(&run)));
    }
}
