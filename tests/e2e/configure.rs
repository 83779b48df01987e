//! `ferry configure` through the real binary: the folder it writes works.
//! The generated ferry.toml, with only the addresses of the stand-ins and a
//! start time in the fixtures' year put in its place, carries the Teleport
//! stand-in's events to the Logstash stand-in serving the generated server
//! certificate and requiring the generated client's; and nginx (OpenSSL, as
//! Logstash's and Fluentd's peers are) opens the generated encrypted server
//! key with the generated passphrase file and accepts ferry's client
//! certificate.

use crate::teleport::Cluster;
use crate::util::{self, Config, Sandbox, DEADLINE, IN};
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::pki::{Pair, Pki};
use ferry_standin::teleport::StandInOptions;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    assert!(output.stdout.contains("wrote 16 files") && output.stdout.contains(&format!("tctl create -f {}/teleport-event-handler-role.yaml", etc.display())), "it says what it wrote and what to do next\n{}", sandbox.report(Some(&output)));

    // Before the identity exists, `ferry check` names it and nothing else.
    let config = etc.join("ferry.toml");
    let check = sandbox.run_args(&["check", "--config", config.to_str().expect("UTF-8")], None);
    let message = check.one_line_error(&sandbox);
    assert!(message.contains(&etc.join("identity").display().to_string()), "the missing identity is what check reports: {message}");

    cluster.standin.write_identity(&etc.join("identity")).expect("identity written");
    let pair = |cert: &str, key: &str| Pair { cert: read(&etc.join(cert)), key: read(&etc.join(key)) };
    let pki = Pki { ca: pair("ca.crt", "ca.key"), server: pair("server.crt", "server.key"), client: pair("client.crt", "client.key") };
    let logstash = cluster.runtime.block_on(LogstashStandIn::start_with(pki, None)).expect("Logstash serves the generated server certificate");

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
    let report = || format!("{}\nrequests: {:?}", sandbox.report(Some(&output)), requests.iter().map(|r| (&r.path, r.status, r.events)).collect::<Vec<_>>());
    let expected = cluster.audit_log();
    let audit: usize = requests.iter().filter(|r| r.path == "/").map(|r| r.events).sum();
    let sessions: usize = requests.iter().filter(|r| r.path == "/session").map(|r| r.events).sum();
    assert_eq!(audit, expected.len(), "every audit event reached Logstash over the generated mutual TLS\n{}", report());
    assert_eq!(sessions, 4, "the recording's events (prints skipped) went to the sessions URL\n{}", report());
    let received: Vec<Value> = logstash.events();
    let uids = |events: &[Value]| events.iter().filter_map(|e| e.get("uid").and_then(Value::as_str).map(str::to_owned)).collect::<std::collections::BTreeSet<_>>();
    assert!(uids(&expected).is_subset(&uids(&received)), "the events Logstash stored are Teleport's\n{}", report());
    assert!(requests.iter().all(|r| r.status == 200), "Logstash acknowledged every request\n{}", report());
}

/// nginx with the generated server certificate, the encrypted key and its
/// passphrase file, requiring client certificates of the generated CA,
/// proxying to a plain server so that it reads and logs each body.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn start_nginx(binary: &str, etc: &Path) -> Nginx {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    let (port, backend) = (free_port(), free_port());
    let file = |name: &str| etc.join(name).display().to_string();
    let config = format!(
        r#"user root;
worker_processes 1;
daemon off;
master_process off;
pid logs/nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  access_log off;
  log_format bodies escape=json '{{"status":$status,"verify":"$ssl_client_verify","body":"$request_body"}}';
  server {{
    listen 127.0.0.1:{backend};
    location / {{ default_type text/plain; return 200 "ok"; }}
  }}
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {cert}; ssl_certificate_key {key}; ssl_password_file {passphrase};
    ssl_client_certificate {ca}; ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    client_max_body_size 16m; client_body_buffer_size 16m;
    access_log logs/bodies.jsonl bodies;
    location / {{ proxy_pass http://127.0.0.1:{backend}; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"#,
        cert = file("server.crt"),
        key = file("server.encrypted.key"),
        passphrase = file("server.key.passphrase"),
        ca = file("ca.crt"),
    );
    std::fs::write(dir.path().join("nginx.conf"), config).expect("nginx.conf");
    let child = Command::new(binary).arg("-p").arg(dir.path()).args(["-c", "nginx.conf"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("nginx starts");
    let mut nginx = Nginx { child, dir, port };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = std::fs::read_to_string(nginx.dir.path().join("logs/error.log")).unwrap_or_default();
        assert!(nginx.child.try_wait().expect("wait").is_none(), "nginx exited (it could not load the generated key?): {log}");
        assert!(started.elapsed() < Duration::from_secs(20), "nginx did not start listening: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx
}

fn nginx_events(nginx: &Nginx) -> Vec<Value> {
    let log = std::fs::read_to_string(nginx.dir.path().join("logs/bodies.jsonl")).unwrap_or_default();
    let mut events = Vec::new();
    for line in log.lines() {
        let line: Value = serde_json::from_str(line).expect("nginx logs JSON lines");
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
    let Some(binary) = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|path| Path::new(path).exists()) else {
        assert!(std::env::var_os("CI").is_none(), "nginx must be installed in CI (.ci/run installs nginx-light)");
        eprintln!("nginx is not installed here; `apt-get install nginx-light` to run this test");
        return;
    };
    let sandbox = Sandbox::new("configure-nginx", "");
    // RSA here (the event handler's keys), ECDSA in the Logstash scenario.
    configure(&sandbox, &["--length", "2048"]).assert_success(&sandbox);
    let etc = sandbox.path(ETC);
    let nginx = start_nginx(binary, &etc);

    let fixtures = util::fixtures();
    sandbox.write(IN, util::jsonl(&fixtures).as_bytes());
    let url = format!("https://localhost:{}/", nginx.port);
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

    for (flag, value, expected) in [("--ip", "10.0.0.300", "--ip `10.0.0.300`: not an IP address"), ("--ttl", "forever", "--ttl `forever`: `forever` is not a duration")] {
        let output = configure(&sandbox, &["--key-type", "ecdsa", "--force", flag, value]);
        let message = output.one_line_error(&sandbox);
        assert!(message.starts_with(expected), "{message}");
    }
}
