//! Settings ferry cannot honour are refused by `ferry check`, on one line,
//! instead of panicking at start; an `http://` sink with a client
//! certificate is warned about, once.

use crate::util::{Config, IN, OUT, Sandbox};
use ferry_standin::pki::Pki;

/// `in.jsonl` into the sink `default`, which the caller sets up.
fn config() -> Config {
    Config::new().set("source.file.path", IN)
}

#[test]
fn more_batches_in_flight_or_connections_than_ferry_can_track_are_refused_on_one_line() {
    let sandbox = Sandbox::new("limits-in-flight", &config().set("pipeline.batches-in-flight", i64::MAX).file_sink("default", OUT).text());
    let message = sandbox.run("check").one_line_error(&sandbox);
    assert!(message.contains("pipeline.batches-in-flight") && message.contains("more than the most ferry can track"), "{message}");

    sandbox.set_config(
        &config()
            .set("sinks.default.type", "logstash")
            .set("sinks.default.url", "https://localhost:9/")
            .set("sinks.default.max-connections", i64::MAX)
            .text(),
    );
    let message = sandbox.run("check").one_line_error(&sandbox);
    assert!(message.contains("sinks.default.max-connections") && message.contains("more than the most ferry can track"), "{message}");
}

#[test]
fn an_http_url_with_a_client_certificate_is_warned_about_once() {
    let sandbox = Sandbox::new("limits-http-cert", "");
    let pki = Pki::generate("logstash").expect("a PKI").write(&sandbox.path("pki")).expect("certificates written");
    let text = config()
        .set("sinks.default.type", "logstash")
        .set("sinks.default.url", "http://localhost:9/")
        .set_path("sinks.default.cert", &pki.client_cert)
        .set_path("sinks.default.key", &pki.client_key);
    sandbox.set_config(&text.text());
    let run = sandbox.run("check");
    run.assert_success(&sandbox);
    let warnings: Vec<&str> = run.stderr_lines().into_iter().filter(|line| line.contains("client certificate")).collect();
    assert_eq!(warnings.len(), 1, "one warning\n{}", sandbox.report(Some(&run)));
    assert!(warnings[0].contains("WARN") && warnings[0].contains("never sent"), "{}", warnings[0]);
}
