//! Teleport's own guide config for the event handler ("Export Events to the
//! Elastic Stack", step 3), verbatim but for its file paths, through
//! `ferry check`: it loads, and the one key that no longer means anything,
//! `namespace`, is named once at WARN.

use crate::teleport::Cluster;
use crate::util::Sandbox;
use ferry_standin::pki::Pki;
use ferry_standin::teleport::StandInOptions;

/// The guide's config; `{DIR}` stands for the folder its files are in.
const GUIDE: &str = r#"storage = "./storage"
timeout = "10s"
batch = 20
namespace = "default"
[forward.fluentd]
ca = "{DIR}/ca.crt"
cert = "{DIR}/client.crt"
key = "{DIR}/client.key"
url = "https://localhost:8888/test.log"
[teleport]
addr = "example.teleport.com:443"
identity = "identity"
"#;

/// A sandbox with the guide's files in it: the fluentd PKI and an identity
/// file issued by the Teleport stand-in.
fn guide_sandbox(name: &str, config: &str) -> Sandbox {
    let sandbox = Sandbox::new(name, "");
    let files = Pki::generate("fluentd").expect("a PKI").write(&sandbox.path("home")).expect("PKI written");
    let dir = files.ca.parent().expect("a folder").to_str().expect("UTF-8").to_owned();
    sandbox.set_config(&config.replace("{DIR}", &dir));
    let cluster = Cluster::start(StandInOptions::default());
    cluster.standin.write_identity(&sandbox.path("identity")).expect("identity written");
    sandbox
}

#[test]
fn the_guides_config_checks_ok_and_names_namespace_once_at_warn() {
    let sandbox = guide_sandbox("eh-guide", GUIDE);
    let output = sandbox.run("check");
    output.assert_success(&sandbox);
    let namespace: Vec<&str> = output.stderr_lines().into_iter().filter(|line| line.contains("namespace")).collect();
    assert_eq!(namespace.len(), 1, "one line names `namespace`\n{}", sandbox.report(Some(&output)));
    assert!(namespace[0].contains("WARN"), "at WARN: {}", namespace[0]);
    assert!(namespace[0].contains(&sandbox.config().display().to_string()), "it names the file: {}", namespace[0]);
    let warnings = output.stderr_lines().into_iter().filter(|line| line.contains("WARN")).count();
    assert_eq!(warnings, 1, "nothing else is warned about\n{}", sandbox.report(Some(&output)));
}

#[test]
fn the_docs_include_with_session_url_window_size_and_empty_types_checks_ok() {
    let config = GUIDE.replace("namespace = \"default\"\n", "namespace = \"default\"\nwindow-size = \"24h\"\ntypes = \"\"\n").replace(
        "url = \"https://localhost:8888/test.log\"\n",
        "url = \"https://localhost:8888/test.log\"\nsession-url = \"https://localhost:8888/session\"\n",
    );
    let sandbox = guide_sandbox("eh-docs-include", &config);
    let output = sandbox.run("check");
    output.assert_success(&sandbox);
    assert_eq!(output.stderr_lines().into_iter().filter(|line| line.contains("WARN")).count(), 1, "{}", sandbox.report(Some(&output)));
}

#[test]
fn a_namespace_other_than_default_is_warned_about_as_such() {
    let sandbox = guide_sandbox("eh-namespace", &GUIDE.replace("namespace = \"default\"", "namespace = \"prod\""));
    let output = sandbox.run("check");
    output.assert_success(&sandbox);
    let namespace: Vec<&str> = output.stderr_lines().into_iter().filter(|line| line.contains("namespace")).collect();
    assert_eq!(namespace.len(), 1, "{}", sandbox.report(Some(&output)));
    assert!(namespace[0].contains("\"prod\"") && namespace[0].contains("default"), "{}", namespace[0]);
}

#[test]
fn the_event_handlers_start_flags_of_every_version_are_taken() {
    let sandbox = guide_sandbox("eh-flags", &GUIDE.replace("namespace = \"default\"\n", ""));
    let mut command = sandbox.command(&["check"]);
    command.args(["--fluentd-max-connections", "3", "--namespace", "default", "--teleport-debug", "-d"]);
    let output = sandbox.run_command(command);
    output.assert_success(&sandbox);
    assert_eq!(output.stderr_lines().into_iter().filter(|line| line.contains("namespace")).count(), 1, "{}", sandbox.report(Some(&output)));
}
