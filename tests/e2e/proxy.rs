//! Switching over from the event handler with its config unchanged, when
//! `teleport.addr` is not the Auth Service but a Proxy (every Teleport Cloud
//! tenant, most Helm installs): Teleport's guide "Export Events to the
//! Elastic Stack" gives the config below, pointed at the Proxy, and nothing
//! else — no ferry-only `cluster` key.
//!
//! Over real sockets: the Teleport stand-in (the Auth Service), behind the
//! Proxy stand-in with TLS routing (it passes on only connections whose
//! first ALPN protocol is `teleport-auth@<hex(cluster)>…`, and drops
//! everything else), and for the last scenario an HTTP load balancer
//! stand-in in front of that Proxy that terminates TLS (only Teleport's ALPN
//! connection upgrade gets through it). Events go to the Logstash stand-in
//! over mutual TLS, as `[forward.fluentd]` says.

use crate::util::{Output, Sandbox};
use ferry_standin::logstash::LogstashStandIn;
use ferry_standin::proxy::{LoadBalancerStandIn, ProxyStandIn};
use ferry_standin::teleport::{IdentitySpec, StandInOptions, TeleportStandIn};
use serde_json::Value;
use std::time::Duration;

/// The cluster the Teleport stand-in is (its CA's name, in every identity
/// it issues).
const CLUSTER: &str = "ferry.test";

/// The peers, and the runtime they run on.
struct Peers {
    runtime: tokio::runtime::Runtime,
    teleport: TeleportStandIn,
    proxy: ProxyStandIn,
    logstash: LogstashStandIn,
}

impl Peers {
    /// The Auth Service with the fixture events, a Proxy in front of it that
    /// serves `proxy_cluster`, and Logstash.
    fn start(proxy_cluster: &str) -> Peers {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
        let teleport = runtime.block_on(TeleportStandIn::start(StandInOptions::default())).expect("the Teleport stand-in starts");
        assert_eq!(teleport.cluster_name(), CLUSTER);
        let proxy = runtime.block_on(ProxyStandIn::start(teleport.addr(), proxy_cluster)).expect("the Proxy stand-in starts");
        let logstash = runtime.block_on(LogstashStandIn::start(None)).expect("the Logstash stand-in starts");
        Peers { runtime, teleport, proxy, logstash }
    }

    /// A load balancer terminating TLS in front of the Proxy, pinging
    /// upgraded connections every 20 ms.
    fn load_balancer(&self) -> LoadBalancerStandIn {
        self.runtime.block_on(LoadBalancerStandIn::start(self.proxy.addr(), Duration::from_millis(20))).expect("the load balancer starts")
    }

    /// A sandbox holding the guide's config with `teleport.addr` = `addr`,
    /// an identity issued by the cluster, and Logstash's client certificate.
    fn sandbox(&self, name: &str, addr: &str) -> Sandbox {
        let sandbox = Sandbox::new(name, "");
        let pki = self.logstash.pki.write(&sandbox.path("pki")).expect("certificates written");
        let port = self.logstash.addr().port();
        // Teleport's guide, step 3, verbatim but for paths and ports (and
        // `session-url`, which the guide then asks to add).
        let text = format!(
            r#"storage = "./storage"
timeout = "10s"
batch = 20
namespace = "default"
[forward.fluentd]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
url = "https://localhost:{port}/test.log"
session-url = "https://localhost:{port}/session"
[teleport]
addr = "{addr}"
identity = "identity"
"#,
            ca = pki.ca.display(),
            cert = pki.client_cert.display(),
            key = pki.client_key.display(),
        );
        sandbox.set_config(&text);
        self.teleport.write_identity_with(&sandbox.path("identity"), &IdentitySpec::default()).expect("identity written");
        sandbox
    }

    /// The audit log as the stand-in serves it, as JSON.
    fn audit_log(&self) -> Vec<Value> {
        self.teleport
            .audit_events()
            .iter()
            .map(|event| event.unstructured.clone().unwrap_or_default().to_json_value().expect("a well-formed Struct"))
            .collect()
    }
}

/// `ferry start` on the sandbox's config, reading from the fixtures' first
/// day and stopping at the end of the log. The event handler's own
/// environment variables say so: the config file stays the guide's.
fn start_command(sandbox: &Sandbox) -> std::process::Command {
    let mut command = sandbox.command(&["start"]);
    command
        .env("FDFWD_START_TIME", "2019-01-01T00:00:00Z")
        .env("FDFWD_WINDOW_SIZE", "8760h")
        .env("FDFWD_EXIT_ON_LAST_EVENT", "true")
        .env_remove("TELEPORT_TLS_ROUTING_CONN_UPGRADE")
        .env_remove("SSL_CERT_FILE");
    command
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Every event the cluster serves reached Logstash, none twice.
fn assert_every_event_once(peers: &Peers, sandbox: &Sandbox, output: &Output) {
    let key = |event: &Value| event.to_string();
    let mut expected: Vec<String> = peers.audit_log().iter().map(key).collect();
    let mut got: Vec<String> = peers.logstash.events().iter().map(key).collect();
    assert_eq!(expected.len(), 183, "the fixture events");
    expected.sort();
    got.sort();
    assert_eq!(got.len(), expected.len(), "every fixture event once\n{}", sandbox.report(Some(output)));
    assert!(got == expected, "the events as served, none twice\n{}", sandbox.report(Some(output)));
}

/// The INFO line that says how ferry reached the Auth Service: exactly one.
fn assert_route_said_once(output: &Output, sandbox: &Sandbox, route: &str) {
    let lines: Vec<&str> = output.stderr_lines().into_iter().filter(|line| line.contains("Reached Teleport's Auth Service")).collect();
    assert_eq!(lines.len(), 1, "one line says which route was taken\n{}", sandbox.report(Some(output)));
    assert!(lines[0].contains(route) && lines[0].contains("INFO"), "the route is {route}: {}\n{}", lines[0], sandbox.report(Some(output)));
}

#[test]
fn the_guides_config_pointed_at_a_proxy_with_tls_routing_delivers_every_event() {
    let peers = Peers::start(CLUSTER);
    let sandbox = peers.sandbox("proxy-tls-routing", &peers.proxy.address());
    let output = sandbox.run_command(start_command(&sandbox));
    output.assert_success(&sandbox);
    assert_every_event_once(&peers, &sandbox, &output);
    assert!(peers.proxy.routed() > 0, "the connections went through the Proxy's TLS routing\n{}", sandbox.report(Some(&output)));
    assert_route_said_once(&output, &sandbox, "through the Proxy's TLS routing");
    // `ferry check` reaches the audit log the same way.
    let routed = peers.proxy.routed();
    let check = sandbox.run_command(sandbox.command(&["check", "--probe"]));
    check.assert_success(&sandbox);
    assert!(check.stdout.contains(&format!("teleport {}: ok", peers.proxy.address())), "{}", sandbox.report(Some(&check)));
    assert!(peers.proxy.routed() > routed, "ferry check went through the Proxy too");
}

#[test]
fn the_guides_config_pointed_at_the_auth_service_still_delivers_every_event() {
    let peers = Peers::start(CLUSTER);
    let sandbox = peers.sandbox("proxy-direct-auth", &peers.teleport.address());
    let output = sandbox.run_command(start_command(&sandbox));
    output.assert_success(&sandbox);
    assert_every_event_once(&peers, &sandbox, &output);
    assert_eq!(peers.proxy.routed(), 0);
    assert_route_said_once(&output, &sandbox, "directly");
}

#[test]
fn an_identity_of_another_cluster_than_the_proxys_is_named_on_one_line() {
    let peers = Peers::start("other.example");
    let sandbox = peers.sandbox("proxy-other-cluster", &peers.proxy.address());
    let mut running = sandbox.spawn_command(start_command(&sandbox));
    let said = |running: &crate::util::Running| {
        running.stderr().lines().any(|line| line.contains(&format!("cluster `{CLUSTER}`")) && line.contains("does not serve"))
    };
    crate::util::wait_for(
        "a line naming the cluster",
        crate::util::DEADLINE,
        || said(&running),
        || sandbox.report(Some(&running.snapshot())),
    );
    let output = running.kill(&sandbox);
    assert!(peers.logstash.events().is_empty());
    assert!(
        peers.proxy.refusals().iter().any(|reason| reason.contains("\"ferry.test\" not found")),
        "the Proxy dropped the connections for their cluster: {:?}",
        peers.proxy.refusals()
    );
    let line = output.stderr_lines().into_iter().find(|line| line.contains("does not serve")).unwrap_or_default().to_owned();
    assert!(line.contains(&peers.proxy.address()), "the line names the address: {line}");
    assert!(!line.contains("connection upgrade"), "a Proxy is not a load balancer: {line}");
}

#[test]
fn the_guides_config_pointed_at_a_load_balancer_before_the_proxy_upgrades_the_connection() {
    let peers = Peers::start(CLUSTER);
    let balancer = peers.load_balancer();
    let sandbox = peers.sandbox("proxy-load-balancer", &balancer.address());
    // The load balancer's web certificate comes from a CA the system
    // trusts (here: the file the system trust store is read from).
    let web_ca = sandbox.path("web-ca.crt");
    std::fs::write(&web_ca, &balancer.pki.ca.cert).expect("web CA written");
    let mut command = start_command(&sandbox);
    command.env("SSL_CERT_FILE", &web_ca);
    let output = sandbox.run_command(command);
    output.assert_success(&sandbox);
    assert_every_event_once(&peers, &sandbox, &output);
    // As Teleport's client: the address's host name as SNI, `alpn-ping`;
    // inside, the same TLS as on every route.
    let upgrades = balancer.upgrades();
    assert!(!upgrades.is_empty(), "{}", sandbox.report(Some(&output)));
    for upgrade in &upgrades {
        assert_eq!((upgrade.sni.as_deref(), upgrade.protocol.as_str()), (Some("localhost"), "alpn-ping"));
    }
    assert!(peers.proxy.routed() > 0, "inside the upgrade, the Proxy routed to Auth");
    let inner = peers.teleport.connections();
    let routing = format!("teleport-auth@{}.teleport.cluster.local", hex(CLUSTER));
    assert!(
        inner.iter().all(|peer| peer.sni.as_deref() == Some("teleport.cluster.local") && peer.alpn == [routing.as_str(), "h2"]),
        "{inner:?}"
    );
    assert!(balancer.pongs() > 0, "ferry answered the load balancer's pings");
    assert_route_said_once(&output, &sandbox, "connection upgrade");
}

#[test]
fn teleports_environment_variable_forces_the_upgrade_without_a_test_dial() {
    let peers = Peers::start(CLUSTER);
    let balancer = peers.load_balancer();
    let sandbox = peers.sandbox("proxy-upgrade-forced", &balancer.address());
    let web_ca = sandbox.path("web-ca.crt");
    std::fs::write(&web_ca, &balancer.pki.ca.cert).expect("web CA written");
    let mut command = start_command(&sandbox);
    command.env("SSL_CERT_FILE", &web_ca).env("TELEPORT_TLS_ROUTING_CONN_UPGRADE", format!("other:443=no;{}=yes", balancer.address()));
    let output = sandbox.run_command(command);
    output.assert_success(&sandbox);
    assert_every_event_once(&peers, &sandbox, &output);
    assert_eq!(balancer.refusals(), Vec::<String>::new(), "no plain TLS and no test dial reached the load balancer");
    assert_route_said_once(&output, &sandbox, "connection upgrade");
}

/// The route is said once: a reconnection by the same route says nothing.
#[test]
fn reconnecting_through_the_proxy_does_not_say_the_route_again() {
    let peers = Peers::start(CLUSTER);
    let sandbox = peers.sandbox("proxy-reconnect", &peers.proxy.address());
    let mut command = start_command(&sandbox);
    command.env_remove("FDFWD_EXIT_ON_LAST_EVENT").env("FDFWD_TIMEOUT", "100ms");
    let mut running = sandbox.spawn_command(command);
    let report = |running: &crate::util::Running| sandbox.report(Some(&running.snapshot()));
    crate::util::wait_for("every event", crate::util::DEADLINE, || peers.logstash.event_count() >= 183, || report(&running));
    let routed = peers.proxy.routed();
    peers.teleport.drop_connections();
    crate::util::wait_for(
        "a new connection through the Proxy",
        crate::util::DEADLINE,
        || peers.proxy.routed() > routed,
        || report(&running),
    );
    std::thread::sleep(Duration::from_millis(300));
    let output = running.kill(&sandbox);
    assert_eq!(peers.logstash.event_count(), 183, "nothing twice after the reconnection");
    assert_route_said_once(&output, &sandbox, "through the Proxy's TLS routing");
}
