//! The gRPC channel to Teleport's Auth Service over mutual TLS.
//!
//! tonic dials through [`TlsConnector`], which opens TCP to the configured
//! address and runs the TLS handshake with ferry's own rustls config: SNI
//! `teleport.cluster.local`, the cluster CAs as roots, the client
//! certificate, ALPN per [`Route`] — so that the address may be the Auth
//! Service or a Proxy with TLS routing, and, through Teleport's connection
//! upgrade, a Proxy behind a load balancer that terminates TLS. The connector takes the newest config for
//! every new connection, so when an [`IdentityWatcher`] has re-read a renewed
//! identity file, reconnects use the new certificate while open connections
//! carry on.
//!
//! Keepalive follows Teleport's: its gRPC server refuses pings more often
//! than its keep-alive period (5 minutes by default; grpc-go answers a
//! faster pinger with GOAWAY `too_many_pings`), and Teleport's own client
//! pings at that period.

use super::identity::{ALPN_H2, API_DOMAIN, Credentials, IdentityError, Route, TlsMaterial, routed_cluster};
use super::upgrade;
use crate::error::one_line;
use crate::tls::Unreached;
use crate::watch::{Snapshot, Watch};
use ferry_proto::auditlog::audit_log_service_client::AuditLogServiceClient;
use ferry_proto::auth::auth_service_client::AuthServiceClient;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint, Uri};

/// The largest message ferry accepts from Teleport (events can be large;
/// tonic's default is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// How the channel behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Longest wait for TCP and the TLS handshake. Default 15 s.
    pub connect_timeout: Duration,
    /// HTTP/2 ping interval. Default 5 minutes: Teleport's server
    /// disconnects clients that ping more often than its keep-alive period.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    /// Default 30 s.
    pub keepalive_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(300),
            keepalive_timeout: Duration::from_secs(30),
        }
    }
}

/// Connecting failed; one line naming the address.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address is not `host:port`.
    #[error("Teleport address `{addr}` is not host:port: {reason}")]
    Address {
        /// The configured address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Nothing, or no TLS, answered at the address (see [`Unreached`]).
    #[error("cannot reach Teleport: {}", unreached.at(addr))]
    Unreached {
        /// The configured address.
        addr: String,
        /// What answered instead.
        unreached: Unreached,
    },
    /// TCP, TLS or HTTP/2 failed.
    #[error("cannot connect to Teleport at {addr}: {reason}")]
    Connect {
        /// The configured address.
        addr: String,
        /// What failed, the whole cause chain on one line.
        reason: String,
    },
}

// === ClientTls: the newest client config ===

/// Where the connector gets its rustls config for each new connection.
#[derive(Clone)]
pub struct ClientTls {
    config: watch::Receiver<Arc<ClientConfig>>,
}

impl ClientTls {
    /// A config that never changes.
    pub fn fixed(config: Arc<ClientConfig>) -> ClientTls {
        // A receiver keeps the last value after its sender is gone.
        let (_sender, config) = watch::channel(config);
        ClientTls { config }
    }

    /// The config new connections use now.
    pub fn current(&self) -> Arc<ClientConfig> {
        self.config.borrow().clone()
    }
}

// === IdentityWatcher: re-reading renewed credentials ===

/// Loaded credentials, kept fresh: their files are watched
/// ([`crate::watch`]: a rewrite, a replacement by rename or a deletion,
/// acted on once settled), and when they change they are read again; a good
/// new identity replaces the old one for new connections, a bad one is
/// logged and the old one kept (Machine ID may be half-way through writing
/// it).
pub struct IdentityWatcher {
    material: watch::Receiver<Arc<TlsMaterial>>,
    config: watch::Receiver<Arc<ClientConfig>>,
    reload_error: watch::Receiver<Option<String>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for IdentityWatcher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl IdentityWatcher {
    /// Loads the credentials (an expired or broken identity is an error
    /// here) and, with `refresh`, looks at their files at that interval.
    pub fn start(credentials: Credentials, route: Route, refresh: Option<Duration>) -> Result<IdentityWatcher, IdentityError> {
        let material = credentials.load()?;
        let config = material.shared_client_config(&route)?;
        let files = Snapshot::of(credentials.files());
        let (material_tx, material_rx) = watch::channel(Arc::new(material));
        let (config_tx, config_rx) = watch::channel(config);
        let (error_tx, error_rx) = watch::channel(None);
        let task = refresh.map(|interval| {
            let refresher = Refresher {
                credentials,
                route,
                files: Watch::new(files, interval),
                material: material_tx,
                config: config_tx,
                error: error_tx,
            };
            tokio::spawn(refresher.run())
        });
        Ok(IdentityWatcher { material: material_rx, config: config_rx, reload_error: error_rx, task })
    }

    /// The config source for [`connect`].
    pub fn client_tls(&self) -> ClientTls {
        ClientTls { config: self.config.clone() }
    }

    /// The credentials in use now.
    pub fn current(&self) -> Arc<TlsMaterial> {
        self.material.borrow().clone()
    }

    /// A receiver that sees every identity that replaces the current one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<TlsMaterial>> {
        self.material.clone()
    }

    /// Why the last attempt to re-read the credentials failed; `None` once
    /// a re-read succeeds. For status reports and tests.
    pub fn reload_error(&self) -> watch::Receiver<Option<String>> {
        self.reload_error.clone()
    }
}

/// Re-reads the credentials when their files change.
struct Refresher {
    credentials: Credentials,
    route: Route,
    files: Watch,
    material: watch::Sender<Arc<TlsMaterial>>,
    config: watch::Sender<Arc<ClientConfig>>,
    error: watch::Sender<Option<String>>,
}

impl Refresher {
    async fn run(mut self) {
        loop {
            tokio::time::sleep(self.files.next_look()).await;
            if self.files.look(Snapshot::of(self.credentials.files())).is_some() {
                self.reload();
            }
        }
    }

    fn reload(&self) {
        let loaded = self.credentials.load().and_then(|material| Ok((material.shared_client_config(&self.route)?, material)));
        match loaded {
            Ok((config, material)) => {
                tracing::info!(
                    subject = %material.certificate().common_name,
                    serial = %material.certificate().serial,
                    expires = %humantime::format_rfc3339_seconds(material.expires()),
                    "Re-read the Teleport identity; new connections use it."
                );
                self.config.send_replace(config);
                self.material.send_replace(Arc::new(material));
                self.error.send_replace(None);
            }
            Err(error) => {
                tracing::warn!(%error, "Failed to reload the Teleport identity; keeping the previous one.");
                self.error.send_replace(Some(error.to_string()));
            }
        }
    }
}

// === The connector ===

/// The bytes under the Teleport TLS connection: TCP, or the tunnel of the
/// ALPN connection upgrade.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// A TLS connection to the Auth Service, as tonic takes it.
pub type Connection = TokioIo<tokio_rustls::client::TlsStream<Box<dyn Transport>>>;

/// How a connection reached the Auth Service, as said once in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The address is the Auth Service: it answers `h2` without the
    /// routing protocol.
    Direct,
    /// The address is a Proxy with TLS routing: it answers only when asked
    /// for the cluster's Auth Service.
    TlsRouting,
    /// Through the Proxy's web API (ALPN connection upgrade), for a load
    /// balancer that terminates TLS in front of it.
    Upgrade,
    /// Connected, but the second connection that tells the first two apart
    /// failed to open.
    Untold,
}

impl Reached {
    fn describe(self) -> &'static str {
        match self {
            Reached::Direct => "directly (the address answers h2 without the routing protocol)",
            Reached::TlsRouting => "through the Proxy's TLS routing (ALPN teleport-auth@…)",
            Reached::Upgrade => {
                "through the Proxy's ALPN connection upgrade (a WebSocket over HTTPS, past a load balancer that terminates TLS)"
            }
            Reached::Untold => "(directly or through a Proxy's TLS routing: the connection that tells them apart failed)",
        }
    }
}

/// What the connector has learnt about its address, shared by its clones.
#[derive(Debug, Default)]
struct Reach {
    /// The connection upgrade turned out to be needed: later connections go
    /// straight to it.
    upgrade: bool,
    /// The route last said in the log.
    said: Option<Reached>,
    /// A connection telling the routes apart is open.
    telling: bool,
}

/// Why opening a connection failed, and at which step.
enum OpenError {
    /// TCP: nothing about the peer learnt.
    Tcp(std::io::Error),
    /// The TLS handshake.
    Tls(std::io::Error),
}

/// Opens a connection to one address with the newest client config, as
/// Teleport's client reaches an Auth Service or a Proxy: straight TLS with
/// the route's ALPN; where that fails and the peer turns out to be an HTTP
/// load balancer (or `TELEPORT_TLS_ROUTING_CONN_UPGRADE` says so), the same
/// TLS inside Teleport's connection upgrade ([`super::upgrade`]).
#[derive(Clone)]
pub struct TlsConnector {
    addr: String,
    tls: ClientTls,
    timeout: Duration,
    say_route: bool,
    reach: Arc<Mutex<Reach>>,
}

impl TlsConnector {
    /// A connector to `addr` (`host:port`).
    pub fn new(addr: impl Into<String>, tls: ClientTls) -> TlsConnector {
        TlsConnector { addr: addr.into(), tls, timeout: ConnectOptions::default().connect_timeout, say_route: false, reach: Arc::default() }
    }

    /// Says in the log, once and again only when it changes, which route
    /// reached the Auth Service.
    pub fn saying_the_route(self) -> TlsConnector {
        TlsConnector { say_route: true, ..self }
    }

    fn reach(&self) -> std::sync::MutexGuard<'_, Reach> {
        self.reach.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn open(self) -> std::io::Result<Connection> {
        let config = self.tls.current();
        let wanted = upgrade::wanted_by_env(&self.addr);
        if wanted == Some(true) || (wanted.is_none() && self.reach().upgrade) {
            return self.open_upgraded(config).await;
        }
        match self.open_direct(config.clone()).await {
            Ok(connection) => {
                self.tell_route(config);
                Ok(connection)
            }
            Err(OpenError::Tls(err))
                if wanted.is_none() && upgrade::required(&self.addr, self.timeout.min(upgrade::TEST_DIAL_TIMEOUT)).await =>
            {
                tracing::debug!(addr = %self.addr, error = %err, "TLS to Teleport failed and the peer refuses Teleport's routing; trying the connection upgrade.");
                match self.open_upgraded(config.clone()).await {
                    Ok(connection) => {
                        self.reach().upgrade = true;
                        Ok(connection)
                    }
                    // Not an HTTP server either (an Auth Service refuses the
                    // test dial's protocol too): the first failure is the story.
                    Err(upgrade) if upgrade::refused_the_protocol(&upgrade) => Err(self.explain(err, &config)),
                    Err(upgrade) => {
                        let err = self.explain(err, &config);
                        Err(std::io::Error::new(err.kind(), format!("{err}; through Teleport's connection upgrade: {upgrade}")))
                    }
                }
            }
            Err(OpenError::Tls(err)) => Err(self.explain(err, &config)),
            Err(OpenError::Tcp(err)) => Err(err),
        }
    }

    /// TCP to the address, then the Teleport TLS.
    async fn open_direct(&self, config: Arc<ClientConfig>) -> Result<Connection, OpenError> {
        let tcp = TcpStream::connect(&self.addr).await.map_err(OpenError::Tcp)?;
        tcp.set_nodelay(true).map_err(OpenError::Tcp)?;
        handshake(config, Box::new(tcp)).await.map_err(OpenError::Tls)
    }

    /// The connection upgrade, then the Teleport TLS inside it.
    async fn open_upgraded(&self, config: Arc<ClientConfig>) -> std::io::Result<Connection> {
        let tunnel = upgrade::dial(&self.addr).await?;
        let connection = handshake(config.clone(), Box::new(tunnel)).await.map_err(|err| self.explain(err, &config))?;
        self.say(Reached::Upgrade);
        Ok(connection)
    }

    /// A handshake the peer cut short, when ferry asked a Proxy for a
    /// cluster: what a Proxy does for a cluster it does not serve (an
    /// identity from another cluster, or the wrong address), said so.
    fn explain(&self, err: std::io::Error, config: &ClientConfig) -> std::io::Error {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        let cluster = config.alpn_protocols.first().and_then(|protocol| routed_cluster(protocol));
        match (cluster, err.kind()) {
            (Some(cluster), kind @ (UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe)) => std::io::Error::new(
                kind,
                format!(
                    "{} closed the connection during the TLS handshake that asks for cluster `{cluster}`: a Teleport Proxy \
                     does so when it does not serve cluster `{cluster}`; check that `teleport.addr` belongs to the cluster \
                     that issued the identity",
                    self.addr
                ),
            ),
            _ => err,
        }
    }

    /// After a direct connection: the route is the Auth Service itself or a
    /// Proxy's TLS routing, and the same offer reaches both. One more
    /// connection, offering `h2` alone, tells them apart: the Auth Service
    /// answers it, a Proxy does not (it routes only the routing protocol).
    /// It runs once, on its own: whatever becomes of it, ferry goes on.
    fn tell_route(&self, config: Arc<ClientConfig>) {
        if !self.say_route {
            return;
        }
        if config.alpn_protocols.first().is_none_or(|protocol| routed_cluster(protocol).is_none()) {
            self.say(Reached::Direct);
            return;
        }
        {
            let mut reach = self.reach();
            if reach.telling || matches!(reach.said, Some(Reached::Direct | Reached::TlsRouting | Reached::Untold)) {
                return;
            }
            reach.telling = true;
        }
        let connector = self.clone();
        tokio::spawn(async move {
            let reached = connector.h2_alone(&config).await;
            connector.reach().telling = false;
            connector.say(reached);
        });
    }

    async fn h2_alone(&self, config: &ClientConfig) -> Reached {
        let mut plain = config.clone();
        plain.alpn_protocols = vec![ALPN_H2.to_vec()];
        let opened = tokio::time::timeout(self.timeout, self.open_direct(Arc::new(plain))).await;
        match opened {
            Ok(Ok(connection)) => {
                let mut tls = connection.into_inner();
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                Reached::Direct
            }
            Ok(Err(OpenError::Tls(_))) | Err(_) => Reached::TlsRouting,
            Ok(Err(OpenError::Tcp(_))) => Reached::Untold,
        }
    }

    fn say(&self, reached: Reached) {
        if !self.say_route {
            return;
        }
        let mut reach = self.reach();
        if reach.said != Some(reached) {
            reach.said = Some(reached);
            tracing::info!(addr = %self.addr, "Reached Teleport's Auth Service {}.", reached.describe());
        }
    }
}

/// The Teleport TLS handshake over `transport`: SNI `teleport.cluster.local`.
async fn handshake(config: Arc<ClientConfig>, transport: Box<dyn Transport>) -> std::io::Result<Connection> {
    let name = ServerName::try_from(API_DOMAIN).map_err(std::io::Error::other)?;
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, transport).await?;
    Ok(TokioIo::new(tls))
}

type Connecting = Pin<Box<dyn Future<Output = std::io::Result<Connection>> + Send>>;

impl tonic::codegen::Service<Uri> for TlsConnector {
    type Response = Connection;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        Box::pin(self.clone().open())
    }
}

// === connect ===

/// Connects to Teleport at `addr` (`host:port`) and waits until the channel
/// is up. The channel reconnects by itself after a failure, through the same
/// connector (so with the newest identity).
pub async fn connect(addr: &str, tls: &ClientTls, options: &ConnectOptions) -> Result<Channel, ConnectError> {
    let endpoint = endpoint(addr, options)?;
    let connector = TlsConnector { timeout: options.connect_timeout, ..TlsConnector::new(addr, tls.clone()) };
    endpoint.connect_with_connector(connector).await.map_err(|err| match Unreached::of(&err) {
        Some(unreached) => ConnectError::Unreached { addr: addr.to_owned(), unreached },
        None => ConnectError::Connect { addr: addr.to_owned(), reason: one_line(&err) },
    })
}

/// Like [`connect`], but connects on first use; for a process that must
/// start (and retry) while Teleport is down. Says in the log which route
/// reached the Auth Service.
pub fn connect_lazy(addr: &str, tls: &ClientTls, options: &ConnectOptions) -> Result<Channel, ConnectError> {
    let connector = TlsConnector { timeout: options.connect_timeout, ..TlsConnector::new(addr, tls.clone()) }.saying_the_route();
    Ok(endpoint(addr, options)?.connect_with_connector_lazy(connector))
}

/// Checks that `addr` is `host:port`, as ferry dials Teleport; else says
/// what to write instead: a URL (`https://…`), which people copy from the
/// browser, becomes its `host:port`, and a host without a port gets both
/// usual ports offered (443 of a Proxy or Teleport Cloud, 3025 of the Auth
/// Service), since either may be meant. The reason follows the address:
/// "`x` has no port; write …".
pub fn check_addr(addr: &str) -> Result<(), String> {
    let (scheme, rest) = match addr.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest.trim_end_matches('/')),
        None => (None, addr),
    };
    let uri = format!("http://{rest}").parse::<Uri>().ok().filter(|uri| uri.path() == "/" && uri.host().is_some_and(|h| !h.is_empty()));
    let Some(uri) = uri else {
        return Err(
            "is not host:port; write for example `teleport.example.com:443` (a Proxy) or `auth.example.com:3025` (the Auth Service)".into(),
        );
    };
    let host = uri.host().unwrap_or_default();
    let write = match uri.port_u16() {
        Some(port) => format!("`{host}:{port}`"),
        None => format!("`{host}:443` (a Proxy, or Teleport Cloud) or `{host}:3025` (the Auth Service)"),
    };
    match (scheme, uri.port_u16()) {
        (Some(scheme), _) => Err(format!("is a URL, but ferry wants host:port without `{scheme}://`; write {write}")),
        (None, None) => Err(format!("has no port; write {write}")),
        (None, Some(_)) => Ok(()),
    }
}

/// `addr` as a URI, when it is `host:port` and nothing else (no scheme, no
/// path): the one reading of an address every part of the source shares.
fn host_port_uri(addr: &str) -> Option<Uri> {
    let uri: Uri = format!("http://{addr}").parse().ok()?;
    (uri.port_u16().is_some() && uri.path() == "/" && uri.host().is_some_and(|host| !host.is_empty())).then_some(uri)
}

/// The host (an IPv6 address without its brackets) and the port of
/// `host:port`; `None` for anything else.
pub fn host_and_port(addr: &str) -> Option<(String, u16)> {
    let uri = host_port_uri(addr)?;
    let host = uri.host()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host.to_owned(), uri.port_u16()?))
}

fn endpoint(addr: &str, options: &ConnectOptions) -> Result<Endpoint, ConnectError> {
    let Some(uri) = host_port_uri(addr) else {
        return Err(ConnectError::Address {
            addr: addr.to_owned(),
            reason: "expected host:port, for example teleport.example.com:3025".into(),
        });
    };
    // The scheme is http because TLS happens in our connector, not in tonic.
    Ok(Endpoint::from(uri)
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        .keep_alive_while_idle(true))
}

/// The audit log client on a channel, accepting messages up to
/// [`MAX_MESSAGE_BYTES`].
pub fn audit_log_client(channel: Channel) -> AuditLogServiceClient<Channel> {
    AuditLogServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// The Auth Service client on a channel (for `UpsertLock`).
pub fn auth_client(channel: Channel) -> AuthServiceClient<Channel> {
    AuthServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// A failed call as one line: which address answered what. A call that
/// reached no Teleport (nothing listening, no TLS, no such host) says so,
/// rather than that Teleport answered `Unavailable`.
pub fn describe_status(addr: &str, status: &tonic::Status) -> String {
    if let Some(unreached) = status.source().and_then(Unreached::of) {
        return format!("cannot reach Teleport: {}", unreached.at(addr));
    }
    let message = status.message().replace('\n', " ");
    let cause = status.source().map(one_line).unwrap_or_default();
    let detail = match () {
        _ if cause.is_empty() || message.contains(&cause) => message,
        _ if cause.contains(&message) => cause,
        _ => format!("{message} ({cause})"),
    };
    format!("Teleport at {addr} answered {:?}: {detail}", status.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_that_is_not_host_and_port_says_what_to_write() {
        assert_eq!(check_addr("teleport.example.com:443"), Ok(()));
        assert_eq!(check_addr("[::1]:3025"), Ok(()));
        assert_eq!(
            check_addr("teleport.example.com"),
            Err("has no port; write `teleport.example.com:443` (a Proxy, or Teleport Cloud) or `teleport.example.com:3025` (the Auth Service)".into())
        );
        assert_eq!(
            check_addr("https://example.teleport.sh/"),
            Err("is a URL, but ferry wants host:port without `https://`; write `example.teleport.sh:443` (a Proxy, or Teleport Cloud) or `example.teleport.sh:3025` (the Auth Service)".into())
        );
        assert_eq!(
            check_addr("https://teleport.example.com:3080"),
            Err("is a URL, but ferry wants host:port without `https://`; write `teleport.example.com:3080`".into())
        );
        for bad in ["host:3025/path", ":3025", "a b:1", ""] {
            assert!(check_addr(bad).expect_err(bad).starts_with("is not host:port; write for example"), "{bad}");
        }
    }

    #[test]
    fn addresses_must_be_host_and_port() {
        let options = ConnectOptions::default();
        assert!(endpoint("teleport.example.com:3025", &options).is_ok());
        assert!(endpoint("[::1]:3025", &options).is_ok());
        for bad in ["teleport.example.com", "https://teleport.example.com:443", "host:3025/path", ":3025", "a b:1"] {
            let err = endpoint(bad, &options).expect_err(bad).to_string();
            assert!(err.starts_with(&format!("Teleport address `{bad}` is not host:port: ")), "{err}");
        }
    }
}
