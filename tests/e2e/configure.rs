//! `ferry configure` through the real binary: the folder it writes works.
//! The generated ferry.toml, with only the addresses of the stand-ins and a
//! start time in the fixtures' year put in its place, carries the Teleport
//! stand-in's events to the Logstash stand-in serving the generated server
//! certificate and requiring the generated client's; and nginx (OpenSSL, as
//! Logstash's and Fluentd's peers are) opens the generated encrypted server
//! key with the generated passphrase file and accepts ferry's client
//! certificate.

use crate::teleport::Cluster;
use crate::util::{self, Config, DEADLINE, IN, Sandbox};
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::nginx::{Nginx, NginxTls};
use ferry_standin::pki::{Pair, Pki};
use ferry_standin::teleport::StandInOptions;
use serde_json::Value;
use std::path::Path;

/// The folder `ferry configure` writes to, inside the sandbox.
const ETC: &str = "etc";

fn configure(sandbox: &Sandbox, args: &[&str]) -> util::Output {
    let out = sandbox.path(ETC);
    let mut line = vec!["configure", out.to_str().expect("a UTF-8 path")];
    line.extend_from_slice(args);
    sandbox.run_args(&line, None)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn the_generated_config_and_certificates_carry_teleport_events_to_logstash() {
    let cluster = Cluster::start(StandInOptions { announce_sessions: true, ..StandInOptions::default() });
    let sandbox = Sandbox::new("configure-logstash", "");
    let etc = sandbox.path(ETC);
    let output = configure(&sandbox, &[&cluster.standin.address(), "--key-type", "ecdsa", "--ip", "127.0.0.1"]);
    output.assert_success(&sandbox);
    assert!(
        output.stdout.contains("wrote 17 files")
            && output.stdout.contains(&format!("tctl create -f {}/teleport-event-handler-role.yaml", etc.display())),
        "it says what it wrote and what to do next\n{}",
        sandbox.report(Some(&output))
    );

    // Before the identity exists, `ferry check` names it and nothing else.
    let config = etc.join("ferry.toml");
    let check = sandbox.run_args(&["check", "--config", config.to_str().expect("UTF-8")], None);
    let message = check.one_line_error(&sandbox);
    assert!(message.contains(&etc.join("identity").display().to_string()), "the missing identity is what check reports: {message}");

    cluster.standin.write_identity(&etc.join("identity")).expect("identity written");
    let pair = |cert: &str, key: &str| Pair { cert: read(&etc.join(cert)), key: read(&etc.join(key)) };
    let pki = Pki { ca: pair("ca.crt", "ca.key"), server: pair("server.crt", "server.key"), client: pair("client.crt", "client.key") };
    let logstash =
        cluster.runtime.block_on(LogstashStandIn::start_with(pki, None)).expect("Logstash serves the generated server certificate");

    // The generated file, as written, with what only this test knows: where
    // the stand-ins listen, state in the sandbox, the fixtures' year, and an
    // end at the last event.
    let mut table: toml::Table = read(&config).parse().expect("ferry.toml is TOML");
    table.insert("storage".into(), "storage".into());
    let sinks = table["sinks"].as_table_mut().expect("[sinks]");
    sinks["default"].as_table_mut().expect("table").insert("url".into(), logstash.url().into());
    sinks["sessions"].as_table_mut().expect("table").insert("url".into(), format!("{}session", logstash.url()).into());
    let teleport = table["source"]["teleport"].as_table().expect("[source.teleport]").clone();
    let mut teleport = teleport;
    teleport.insert("start-time".into(), "2019-01-01T00:00:00Z".into());
    teleport.insert("window-size".into(), "8760h".into());
    teleport.insert("timeout".into(), "100ms".into());
    teleport.insert("exit-on-last-event".into(), true.into());
    table["source"].as_table_mut().expect("[source]").insert("teleport".into(), teleport.into());
    std::fs::write(&config, table.to_string()).expect("ferry.toml");

    let config_arg = config.to_str().expect("UTF-8");
    sandbox.run_args(&["check", "--config", config_arg], None).assert_success(&sandbox);
    let output = sandbox.run_args(&["start", "--config", config_arg], None);
    output.assert_success(&sandbox);

    let requests = logstash.requests();
    let report = || {
        format!(
            "{}\nrequests: {:?}",
            sandbox.report(Some(&output)),
            requests.iter().map(|r| (&r.path, r.status, r.events)).collect::<Vec<_>>()
        )
    };
    let expected = cluster.audit_log();
    let audit: usize = requests.iter().filter(|r| r.path == "/").map(|r| r.events).sum();
    let sessions: usize = requests.iter().filter(|r| r.path == "/session").map(|r| r.events).sum();
    assert_eq!(audit, expected.len(), "every audit event reached Logstash over the generated mutual TLS\n{}", report());
    assert_eq!(sessions, 4, "the recording's events (prints skipped) went to the sessions URL\n{}", report());
    let received: Vec<Value> = logstash.events();
    let uids = |events: &[Value]| {
        events.iter().filter_map(|e| e.get("uid").and_then(Value::as_str).map(str::to_owned)).collect::<std::collections::BTreeSet<_>>()
    };
    assert!(uids(&expected).is_subset(&uids(&received)), "the events Logstash stored are Teleport's\n{}", report());
    assert!(requests.iter().all(|r| r.status == 200), "Logstash acknowledged every request\n{}", report());
}

/// nginx with the generated server certificate, the encrypted key and its
/// passphrase file, requiring client certificates of the generated CA.
fn start_nginx(binary: &str, etc: &Path, dir: &Path) -> Nginx {
    let tls = NginxTls {
        cert: etc.join("server.crt"),
        key: etc.join("server.encrypted.key"),
        password_file: Some(etc.join("server.key.passphrase")),
        ca: etc.join("ca.crt"),
    };
    Nginx::start(binary, dir, &tls).unwrap_or_else(|err| panic!("nginx with the generated certificates: {err}"))
}

fn nginx_events(nginx: &Nginx) -> Vec<Value> {
    let mut events = Vec::new();
    for line in nginx.logged() {
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["verify"], "SUCCESS", "nginx verified ferry's generated client certificate: {line}");
        match serde_json::from_str(line["body"].as_str().expect("a body")).expect("a JSON body") {
            Value::Array(batch) => events.extend(batch),
            event => events.push(event),
        }
    }
    events
}

#[test]
fn nginx_opens_the_encrypted_server_key_and_takes_events_with_the_generated_client_certificate() {
    let binary = Nginx::binary();
    let sandbox = Sandbox::new("configure-nginx", "");
    // RSA here (the event handler's keys), ECDSA in the Logstash scenario.
    configure(&sandbox, &["--length", "2048"]).assert_success(&sandbox);
    let etc = sandbox.path(ETC);
    let nginx = start_nginx(binary, &etc, &sandbox.path("nginx"));

    let fixtures = util::fixtures();
    sandbox.write(IN, util::jsonl(&fixtures).as_bytes());
    let url = nginx.url();
    let config = Config::logstash_job(false, &url, &etc.join("ca.crt"), &etc.join("client.crt"), &etc.join("client.key"));
    sandbox.set_config(&config.text());
    let output = sandbox.run("start");
    output.assert_success(&sandbox);
    let mut received = Vec::new();
    util::wait_for(
        "nginx to log every event",
        DEADLINE,
        || {
            received = nginx_events(&nginx);
            received.len() >= fixtures.len()
        },
        || sandbox.report(Some(&output)),
    );
    assert_eq!(received.len(), fixtures.len(), "every event once\n{}", sandbox.report(Some(&output)));
    let sent: Vec<Value> = fixtures.iter().map(|f| f.value.clone()).collect();
    assert!(received == sent, "nginx got the events unchanged, in order\n{}", sandbox.report(Some(&output)));
}

#[test]
fn a_second_run_refuses_on_one_line_and_bad_flags_name_themselves() {
    let sandbox = Sandbox::new("configure-refuse", "");
    configure(&sandbox, &["--key-type", "ecdsa"]).assert_success(&sandbox);
    let etc = sandbox.path(ETC);
    let before = read(&etc.join("ca.key"));
    let again = configure(&sandbox, &["--key-type", "ecdsa"]);
    let message = again.one_line_error(&sandbox);
    assert!(message.starts_with(&format!("{} exists; nothing was written", etc.join("ca.crt").display())), "{message}");
    assert_eq!(read(&etc.join("ca.key")), before, "the CA key is untouched");
    configure(&sandbox, &["--key-type", "ecdsa", "--force"]).assert_success(&sandbox);
    assert_ne!(read(&etc.join("ca.key")), before, "--force writes a new CA");

    for (flag, value, expected) in [
        ("--ip", "10.0.0.300", "--ip `10.0.0.300`: not an IP address"),
        ("--ttl", "forever", "--ttl `forever`: `forever` is not a duration"),
    ] {
        let output = configure(&sandbox, &["--key-type", "ecdsa", "--force", flag, value]);
        let message = output.one_line_error(&sandbox);
        assert!(message.starts_with(expected), "{message}");
    }
}

/// The Python that has helm-python-sdk, which `./test` installs (see
/// packaging/tests/render.py): `FERRY_CHART_PYTHON`, else its venv.
fn chart_renderer() -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("FERRY_CHART_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo.join("target/chart-renderer/bin/python"));
    assert!(python.exists(), "no chart renderer at {} (FERRY_CHART_PYTHON): run ./test to install the chart renderer", python.display());
    python
}

/// ferry.toml as the rendered config map holds it (a YAML block scalar,
/// indented four spaces).
fn ferry_toml_of(config_map: &str) -> String {
    let mut lines = config_map.lines().skip_while(|line| line.trim() != "ferry.toml: |").skip(1);
    let mut text = String::new();
    for line in lines.by_ref() {
        if !line.is_empty() && !line.starts_with("    ") {
            break;
        }
        text.push_str(line.strip_prefix("    ").unwrap_or(line));
        text.push('\n');
    }
    text
}

#[test]
fn the_generated_chart_values_install_ferrys_chart() {
    let sandbox = Sandbox::new("configure-chart", "");
    let args = ["teleport.example.com:443", "--key-type", "ecdsa", "--dns-names", "logstash.logging.svc", "--lock"];
    configure(&sandbox, &args).assert_success(&sandbox);
    let etc = sandbox.path(ETC);
    let values = etc.join("teleport-plugin-event-handler-values.yaml");
    let text = read(&values);
    // The secrets it says to make name files the folder has (the identity
    // comes from `tctl auth sign`).
    for file in ["ca.crt", "client.crt", "client.key"] {
        let from = format!("--from-file={file}={}", etc.join(file).display());
        assert!(text.contains(&from) && etc.join(file).is_file(), "the values file says to put {file} in the client secret: {text}");
    }
    assert!(text.contains(&format!("--from-file=identity={}", etc.join("identity").display())), "{text}");

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = sandbox.path("rendered");
    let rendered = std::process::Command::new(chart_renderer())
        .arg(repo.join("packaging/tests/render.py"))
        .arg(repo.join("packaging/helm/ferry"))
        .arg(&out)
        .arg(&values)
        .output()
        .expect("run the chart renderer");
    assert!(rendered.status.success(), "ferry's chart refuses the generated values: {}", String::from_utf8_lossy(&rendered.stderr));

    let deployment = read(&out.join("deployment.yaml"));
    for secret in ["secretName: \"teleport-event-handler-identity\"", "secretName: \"teleport-event-handler-client-tls\""] {
        assert!(deployment.contains(secret), "the pod mounts {secret}\n{deployment}");
    }
    assert!(
        out.join("pvc.yaml").is_file() && read(&out.join("pvc.yaml")).contains("PersistentVolumeClaim"),
        "the state is kept on a volume"
    );
    let toml = ferry_toml_of(&read(&out.join("configmap.yaml")));
    let config = ferry::app::FerryConfig::parse(&toml, &sandbox.path("ferry.toml"))
        .unwrap_or_else(|err| panic!("ferry does not load the chart's config: {err}\n{toml}"));
    let Some(ferry::source::SourceConfig::Teleport(teleport)) = &config.source else { panic!("no Teleport source in\n{toml}") };
    assert_eq!(teleport.addr, "teleport.example.com:443");
    assert!(teleport.lock.enabled, "--lock turns locking on in the chart too");
    assert!(teleport.identity.as_ref().is_some_and(|path| path.ends_with("identity")), "{:?}", teleport.identity);
    assert!(toml.contains("url = \"https://logstash.logging.svc:9601/\""), "Logstash by the name in its certificate\n{toml}");
}
