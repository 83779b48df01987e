//! `ferry demo --dir DIR`: it keeps to its own folder, resumes there from
//! its cursor, and does not warn about its own sample data.

use crate::util::Sandbox;

/// The events the demo's summary line says it delivered.
fn delivered(stdout: &str) -> usize {
    let line = stdout.lines().find(|line| line.contains(" delivered, ")).unwrap_or_else(|| panic!("no summary line in {stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|word| *word == "delivered,").expect("`N delivered,`");
    words[at - 1].parse().unwrap_or_else(|_| panic!("a count before `delivered` in {line}"))
}

#[test]
fn a_second_run_in_the_same_folder_resumes_and_sends_nothing_again() {
    let sandbox = Sandbox::new("demo_resume", "");
    let first = sandbox.run_args(&["demo", "--dir", "demo"], None);
    first.assert_success(&sandbox);
    assert!(delivered(&first.stdout) > 0, "{}", sandbox.report(Some(&first)));
    assert!(first.stdout.contains("run the same command again: it resumes from the cursor"), "{}", sandbox.report(Some(&first)));
    let warnings: Vec<&str> = first.stderr.lines().filter(|line| line.contains(" WARN ") || line.contains(" ERROR ")).collect();
    assert!(warnings.is_empty(), "the demo warns about its own data: {warnings:?}{}", sandbox.report(Some(&first)));

    let second = sandbox.run_args(&["demo", "--dir", "demo"], None);
    second.assert_success(&sandbox);
    assert_eq!(delivered(&second.stdout), 0, "nothing is sent twice{}", sandbox.report(Some(&second)));
    let database = sandbox.path("demo/storage/ferry.db");
    let resumed = format!("resumed from the cursor in {}: 0 event(s) sent this time", database.display());
    assert!(second.stdout.contains(&resumed), "{}", sandbox.report(Some(&second)));
}

#[test]
fn a_folder_the_demo_did_not_write_is_refused_and_left_alone() {
    let sandbox = Sandbox::new("demo_foreign", "");
    sandbox.run_args(&["configure", "conf", "teleport.example.com:443"], None).assert_success(&sandbox);
    let config = sandbox.read("conf/ferry.toml");
    let refused = sandbox.run_args(&["demo", "--dir", "conf"], None);
    let message = refused.one_line_error(&sandbox);
    let dir = sandbox.path("conf");
    assert!(message.starts_with(&format!("{} holds ", dir.display())) && message.contains("which the demo did not write"), "{message}");
    assert_eq!(sandbox.read("conf/ferry.toml"), config, "configure's ferry.toml is untouched");
    assert!(!sandbox.path("conf/identity").exists() && !sandbox.path("conf/ferry-demo.txt").exists(), "nothing was added");

    // A demo's folder with a file of someone else's in it.
    sandbox.run_args(&["demo", "--dir", "demo"], None).assert_success(&sandbox);
    sandbox.write("demo/notes.txt", b"mine\n");
    let refused = sandbox.run_args(&["demo", "--dir", "demo"], None);
    let message = refused.one_line_error(&sandbox);
    assert!(message.starts_with(&format!("{} holds notes.txt, which the demo did not write", sandbox.path("demo").display())), "{message}");
}
