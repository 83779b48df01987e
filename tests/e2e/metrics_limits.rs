//! The `/metrics` endpoint when ferry runs out of file descriptors: with
//! clients knocking, every accept fails at once (EMFILE) and the connection
//! stays in the backlog. The accept loop must wait between tries, not spin
//! a core, log that with a rate-limited WARN, and serve again once
//! descriptors are free.

use crate::util::{self, Config, IN, Sandbox, http_get, served_addr, wait_for};
use rustix::process::{Pid, Resource, Rlimit, getrlimit, prlimit};
use std::time::Duration;

/// CPU time (user and system, in clock ticks) `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("(comm)").1.split_whitespace().collect();
    // After `(comm)`: state is field 3, utime 14 and stime 15.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn out_of_file_descriptors_the_accept_loop_backs_off_instead_of_spinning() {
    let sandbox = Sandbox::new("metrics_limits_emfile", &Config::file_job(true).text());
    let first = util::fixtures().remove(0);
    sandbox.write(IN, format!("{}\n", first.line).as_bytes());
    let running = sandbox.spawn_command(sandbox.command(&["start", "--http-addr", "127.0.0.1:0"]));
    let addr = served_addr(&running, &sandbox);
    let report = || sandbox.report(Some(&running.snapshot()));
    // Ready, and an event delivered: the state database, the source's file
    // and the sink's file are open (`/readyz` answers before the source has
    // opened its file, and a source that cannot open it stops ferry).
    wait_for("ferry to be ready", Duration::from_secs(30), || http_get(&addr, "/readyz").map(|answer| answer.status) == Some(200), report);
    wait_for("the first event delivered", Duration::from_secs(30), || sandbox.out_count() == 1, report);

    // Leave ferry two descriptors more than it holds, then knock 30 times.
    let pid = Pid::from_raw(running.pid() as i32).expect("a pid");
    let open = std::fs::read_dir(format!("/proc/{}/fd", running.pid())).expect("/proc/PID/fd").count() as u64;
    let before = prlimit(Some(pid), Resource::Nofile, Rlimit { current: Some(open + 2), maximum: getrlimit(Resource::Nofile).maximum })
        .expect("prlimit lowers ferry's RLIMIT_NOFILE");
    let knocking: Vec<std::net::TcpStream> = (0..30).filter_map(|_| std::net::TcpStream::connect(&addr).ok()).collect();
    assert_eq!(knocking.len(), 30, "the kernel completes connections ferry has not accepted");
    std::thread::sleep(Duration::from_millis(500));

    let start = cpu_ticks(running.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(running.pid()) - start;
    let held = std::fs::read_dir(format!("/proc/{}/fd", running.pid())).expect("/proc/PID/fd").count();
    eprintln!("ferry held {open} descriptors, then {held} with 30 clients knocking; it used {used} clock ticks in 2 s");
    // A spinning loop uses ~200 ticks (a core for 2 s at 100 Hz); waiting
    // 100 ms to 1 s between tries, a few.
    assert!(used < 40, "ferry used {used} clock ticks of CPU in 2 s while out of file descriptors{}", report());
    let warnings = running.stderr_count("Cannot accept HTTP connections");
    assert!((1..=2).contains(&warnings), "{warnings} WARN lines about accept errors, expected 1 (rate-limited){}", report());

    prlimit(Some(pid), Resource::Nofile, before).expect("prlimit restores ferry's RLIMIT_NOFILE");
    drop(knocking);
    wait_for(
        "a scrape once descriptors are free",
        Duration::from_secs(15),
        || http_get(&addr, "/metrics").map(|answer| answer.status) == Some(200),
        report,
    );
    running.terminate();
}
