//! What stands between a client and Teleport's Auth Service when the address
//! is a Proxy, over real sockets:
//!
//! * [`ProxyStandIn`], a Proxy Service with TLS routing (one port for
//!   everything, as every Teleport Cloud tenant). It reads the TLS
//!   ClientHello without answering it and routes on the first ALPN
//!   protocol, as Teleport's ALPN router does (`lib/srv/alpnproxy`): a first
//!   protocol `teleport-auth@<hex(cluster)>.teleport.cluster.local` naming
//!   its own cluster is passed on to the Auth Service unterminated — the
//!   ClientHello and every byte after it (`ForwardTLS`), so that the client's
//!   TLS ends at Auth; a cluster it does not know is dropped (Teleport's
//!   `AuthProxyDialerService` answers NotFound and closes); and, as the
//!   issue this stands in for says, anything else is dropped too (the real
//!   Proxy would serve it its web certificate, which a Teleport client does
//!   not trust).
//! * [`LoadBalancerStandIn`], an HTTP load balancer that terminates TLS in
//!   front of that Proxy with a web certificate and speaks HTTP/1.1 only
//!   (an AWS ALB, an ingress). Through it only Teleport's ALPN connection
//!   upgrade gets through (`GET /webapi/connectionupgrade`, a WebSocket with
//!   the sub-protocol `alpn` or `alpn-ping`): it answers the upgrade as the
//!   Proxy's web handler does, and relays the binary frames' bytes to the
//!   Proxy's TLS routing port, where they meet the router above. With
//!   `alpn-ping` it pings the client now and then, as the Proxy keeps such
//!   tunnels alive, and counts the pongs.

use crate::pki::Pki;
use futures_util::{SinkExt, StreamExt};
use rustls::ServerConfig;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

/// Prefix of the ALPN protocol asking for a cluster's Auth Service.
const ALPN_AUTH_PREFIX: &str = "teleport-auth@";
/// What follows the hex cluster name in that protocol.
const API_DOMAIN_SUFFIX: &str = ".teleport.cluster.local";
/// The path of Teleport's ALPN connection upgrade.
const UPGRADE_PATH: &str = "/webapi/connectionupgrade";
/// The upgrade's sub-protocols: raw bytes, and bytes with keepalive pings.
const UPGRADE_TYPES: [&str; 2] = ["alpn", "alpn-ping"];

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// === The Proxy with TLS routing ===

/// A running Proxy stand-in. Stops when dropped.
pub struct ProxyStandIn {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ProxyStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ProxyShared {
    auth: SocketAddr,
    cluster_name: String,
    routed: AtomicUsize,
    refusals: Mutex<Vec<String>>,
}

impl ProxyStandIn {
    /// Starts on `127.0.0.1` at a free port, routing `teleport-auth@` for
    /// `cluster_name` to the Auth Service at `auth`.
    pub async fn start(auth: SocketAddr, cluster_name: &str) -> io::Result<ProxyStandIn> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared =
            Arc::new(ProxyShared { auth, cluster_name: cluster_name.to_owned(), routed: AtomicUsize::new(0), refusals: Mutex::default() });
        let task = tokio::spawn(proxy_accept_loop(listener, shared.clone()));
        Ok(ProxyStandIn { addr, shared, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `localhost:PORT`, as an operator writes a Proxy's address.
    pub fn address(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// Connections passed on to the Auth Service so far.
    pub fn routed(&self) -> usize {
        self.shared.routed.load(Ordering::SeqCst)
    }

    /// Why each dropped connection was dropped, in order.
    pub fn refusals(&self) -> Vec<String> {
        lock(&self.shared.refusals).clone()
    }
}

async fn proxy_accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(reason) = route(tcp, &shared).await {
                lock(&shared.refusals).push(reason);
            }
        });
    }
}

/// Reads the ClientHello, decides, and either relays both ways to Auth or
/// drops the connection (by returning why).
async fn route(mut client: TcpStream, shared: &ProxyShared) -> Result<(), String> {
    let (hello, alpn) = read_client_hello(&mut client).await?;
    let first = alpn.first().ok_or_else(|| "no ALPN: not a TLS routing request".to_owned())?;
    let encoded = first
        .strip_prefix(ALPN_AUTH_PREFIX)
        .ok_or_else(|| format!("first ALPN protocol {first:?} (of {alpn:?}) is not {ALPN_AUTH_PREFIX}…"))?;
    let cluster = decode_cluster_name(encoded).ok_or_else(|| format!("{first:?} does not encode a cluster name"))?;
    if cluster != shared.cluster_name {
        return Err(format!("auth server for cluster {cluster:?} not found (this Proxy serves {:?})", shared.cluster_name));
    }
    let mut auth = TcpStream::connect(shared.auth).await.map_err(|err| format!("cannot reach the Auth Service: {err}"))?;
    let _ = auth.set_nodelay(true);
    auth.write_all(&hello).await.map_err(|err| err.to_string())?;
    shared.routed.fetch_add(1, Ordering::SeqCst);
    // The end of either side ends both, as the Proxy's copy loops do.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut auth).await;
    Ok(())
}

/// Reads until a whole ClientHello has arrived; returns every byte read
/// (to replay to the Auth Service) and the ALPN protocols it offers.
async fn read_client_hello(tcp: &mut TcpStream) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tcp.read(&mut chunk).await.map_err(|err| err.to_string())?;
        if n == 0 {
            return Err("closed before a whole ClientHello".into());
        }
        seen.extend_from_slice(&chunk[..n]);
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            acceptor.read_tls(&mut rest).map_err(|err| format!("not TLS: {err}"))?;
        }
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                let alpn =
                    hello.alpn().map(|offered| offered.map(|p| String::from_utf8_lossy(p).into_owned()).collect()).unwrap_or_default();
                return Ok((seen, alpn));
            }
            Err((err, _)) => return Err(format!("not a ClientHello: {err}")),
        }
    }
}

/// The cluster name in `<hex(cluster)>.teleport.cluster.local`.
fn decode_cluster_name(encoded: &str) -> Option<String> {
    let hex = encoded.strip_suffix(API_DOMAIN_SUFFIX)?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

// === The HTTP load balancer in front of it ===

/// A running load balancer stand-in. Stops when dropped.
pub struct LoadBalancerStandIn {
    addr: SocketAddr,
    /// Its web PKI: the server certificate for `localhost`/`127.0.0.1` it
    /// presents, and the CA a client must trust (as a public CA is).
    pub pki: Pki,
    shared: Arc<BalancerShared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LoadBalancerStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct BalancerShared {
    backend: SocketAddr,
    ping_every: Duration,
    upgrades: Mutex<Vec<Upgrade>>,
    refusals: Mutex<Vec<String>>,
    pongs: AtomicUsize,
}

/// One upgrade the load balancer served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The server name the client asked for in the outer TLS (SNI).
    pub sni: Option<String>,
    /// The WebSocket sub-protocol (`alpn` or `alpn-ping`).
    pub protocol: String,
}

impl LoadBalancerStandIn {
    /// Starts on `127.0.0.1` at a free port with a fresh web PKI, relaying
    /// upgraded connections to the Proxy's TLS routing port `backend`, and
    /// pinging `alpn-ping` tunnels every `ping_every`.
    pub async fn start(backend: SocketAddr, ping_every: Duration) -> io::Result<LoadBalancerStandIn> {
        let pki = Pki::generate("web").map_err(io::Error::other)?;
        let tls = web_server_config(&pki)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(BalancerShared {
            backend,
            ping_every,
            upgrades: Mutex::default(),
            refusals: Mutex::default(),
            pongs: AtomicUsize::new(0),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let task = tokio::spawn(balancer_accept_loop(listener, acceptor, shared.clone()));
        Ok(LoadBalancerStandIn { addr, pki, shared, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `localhost:PORT`, the name on its web certificate.
    pub fn address(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// Each upgrade served, in order.
    pub fn upgrades(&self) -> Vec<Upgrade> {
        lock(&self.shared.upgrades).clone()
    }

    /// Why each refused connection was refused (TLS, HTTP or upgrade).
    pub fn refusals(&self) -> Vec<String> {
        lock(&self.shared.refusals).clone()
    }

    /// Pongs received in answer to its pings.
    pub fn pongs(&self) -> usize {
        self.shared.pongs.load(Ordering::SeqCst)
    }
}

/// TLS with the web certificate, no client certificate asked for, and
/// HTTP/1.1 the only application protocol, as an HTTP load balancer.
fn web_server_config(pki: &Pki) -> io::Result<ServerConfig> {
    let certs = crate::tls::certs_from_pem(pki.server.cert.as_bytes());
    let key = PrivateKeyDer::from_pem_slice(pki.server.key.as_bytes()).map_err(io::Error::other)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn balancer_accept_loop(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, shared: Arc<BalancerShared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            if let Err(reason) = serve_upgrade(tcp, acceptor, &shared).await {
                lock(&shared.refusals).push(reason);
            }
        });
    }
}

// The answer's type is the WebSocket library's (`Callback`): not ours to box.
#[allow(clippy::result_large_err)]
async fn serve_upgrade(tcp: TcpStream, acceptor: tokio_rustls::TlsAcceptor, shared: &BalancerShared) -> Result<(), String> {
    let tls = acceptor.accept(tcp).await.map_err(|err| format!("TLS: {err}"))?;
    let sni = tls.get_ref().1.server_name().map(str::to_owned);
    let chosen = Arc::new(Mutex::new(None::<String>));
    let answer = {
        let chosen = chosen.clone();
        move |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
            let refuse = |status: StatusCode| {
                let mut error = ErrorResponse::new(None);
                *error.status_mut() = status;
                error
            };
            if request.uri().path() != UPGRADE_PATH {
                return Err(refuse(StatusCode::NOT_FOUND));
            }
            let offered = request.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let Some(kind) = offered.split(',').map(str::trim).find(|p| UPGRADE_TYPES.contains(p)) else {
                return Err(refuse(StatusCode::BAD_REQUEST));
            };
            response
                .headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static(if kind == "alpn" { "alpn" } else { "alpn-ping" }));
            *lock(&chosen) = Some(kind.to_owned());
            Ok(response)
        }
    };
    let websocket = tokio_tungstenite::accept_hdr_async(tls, answer).await.map_err(|err| format!("upgrade: {err}"))?;
    let kind = lock(&chosen).clone().unwrap_or_default();
    lock(&shared.upgrades).push(Upgrade { sni, protocol: kind.clone() });
    let backend = TcpStream::connect(shared.backend).await.map_err(|err| format!("cannot reach the Proxy: {err}"))?;
    let _ = backend.set_nodelay(true);
    relay(websocket, backend, kind == "alpn-ping", shared).await;
    Ok(())
}

/// Binary frames to the Proxy and the Proxy's bytes back as binary frames,
/// with a ping now and then on a `ping` tunnel; either side's end ends both.
async fn relay<S>(websocket: tokio_tungstenite::WebSocketStream<S>, backend: TcpStream, ping: bool, shared: &BalancerShared)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut to_client, mut from_client) = websocket.split();
    let (mut from_backend, mut to_backend) = backend.into_split();
    let mut ticker = tokio::time::interval(shared.ping_every);
    ticker.tick().await;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            message = from_client.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if to_backend.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Pong(_))) => {
                    shared.pongs.fetch_add(1, Ordering::SeqCst);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            read = from_backend.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.send(Message::Binary(buffer[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            },
            _ = ticker.tick(), if ping => {
                if to_client.send(Message::Ping(b"ferry-standin".to_vec().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to_client.send(Message::Close(None)).await;
    let _ = to_backend.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_decode_as_teleport_encodes_them() {
        assert_eq!(decode_cluster_name("6578616d706c652e636f6d.teleport.cluster.local").as_deref(), Some("example.com"));
        for bad in ["6578616d706c652e636f6d", "657.teleport.cluster.local", "zz.teleport.cluster.local", "ff.teleport.cluster.local"] {
            assert_eq!(decode_cluster_name(bad), None, "{bad}");
        }
    }
}
