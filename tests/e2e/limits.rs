//! Settings ferry cannot honour are refused by `ferry check`, on one line,
//! instead of panicking at start; an `http://` sink with a client
//! certificate is warned about, once.

use crate::util::Sandbox;
use ferry_standin::pki::Pki;

fn config(pipeline: &str, sink: &str) -> String {
    format!("storage = \"storage\"\n\n[pipeline]\n{pipeline}\n\n[source.file]\npath = \"in.jsonl\"\n\n[sinks.default]\n{sink}\n")
}

#[test]
fn more_batches_in_flight_or_connections_than_ferry_can_track_are_refused_on_one_line() {
    let sandbox = Sandbox::new("limits-in-flight", &config("batches-in-flight = 9223372036854775807", "type = \"file\"\npath = \"out.jsonl\""));
    let message = sandbox.run("check").one_line_error(&sandbox);
    assert!(message.contains("pipeline.batches-in-flight") && message.contains("more than the most ferry can track"), "{message}");

    sandbox.set_config(&config("", "type = \"logstash\"\nurl = \"https://localhost:9/\"\nmax-connections = 9223372036854775807"));
    let message = sandbox.run("check").one_line_error(&sandbox);
    assert!(message.contains("sinks.default.max-connections") && message.contains("more than the most ferry can track"), "{message}");
}

#[test]
fn an_http_url_with_a_client_certificate_is_warned_about_once() {
    let sandbox = Sandbox::new("limits-http-cert", "");
    let pki = Pki::generate("logstash").expect("a PKI").write(&sandbox.path("pki")).expect("certificates written");
    let sink = format!("type = \"logstash\"\nurl = \"http://localhost:9/\"\ncert = \"{}\"\nkey = \"{}\"", pki.client_cert.display(), pki.client_key.display());
    sandbox.set_config(&config("", &sink));
    let run = sandbox.run("check");
    run.assert_success(&sandbox);
    let warnings: Vec<&str> = run.stderr_lines().into_iter().filter(|line| line.contains("client certificate")).collect();
    assert_eq!(warnings.len(), 1, "one warning\n{}", sandbox.report(Some(&run)));
    assert!(warnings[0].contains("WARN") && warnings[0].contains("never sent"), "{}", warnings[0]);
}
