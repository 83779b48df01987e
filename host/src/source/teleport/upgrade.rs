//! Teleport's ALPN connection upgrade, for a Proxy behind a load balancer
//! that terminates TLS (an AWS ALB, an ingress): such a balancer passes
//! HTTP only, so neither the routing protocol nor the client certificate
//! reach the Proxy. Teleport's client then tunnels its connection through
//! HTTPS (`api/client/alpn_conn_upgrade.go`, `alpn_websocket.go`; RFD 123),
//! and ferry does the same:
//!
//! 1. TLS to `addr` as to any web site: the system's trust store, the
//!    address's host name as SNI, ALPN `http/1.1`;
//! 2. `GET /webapi/connectionupgrade`, a WebSocket upgrade with the
//!    sub-protocol `alpn-ping` (what Teleport's client asks for on its Auth
//!    Service connections: the Proxy keeps the tunnel alive with WebSocket
//!    pings, which are answered);
//! 3. the bytes of the connection in binary frames; inside them, the
//!    Teleport TLS connection as on any other route (SNI
//!    `teleport.cluster.local`, ALPN `teleport-auth@…` then `h2`, the
//!    identity's certificate), which the Proxy's router passes to the Auth
//!    Service.
//!
//! When it is needed is decided as Teleport's client decides
//! (`IsALPNConnUpgradeRequired`): the environment variable
//! `TELEPORT_TLS_ROUTING_CONN_UPGRADE` when it speaks for the address, else
//! a test dial, with web PKI, offering `teleport-reversetunnel`: a peer that
//! answers `no_application_protocol`, or picks no protocol, is not Teleport's
//! router, and an upgrade is needed.

use crate::tls;
use futures_util::{Sink, Stream};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

/// The environment variable that says whether to upgrade, as Teleport's
/// client reads it.
pub const ENV: &str = "TELEPORT_TLS_ROUTING_CONN_UPGRADE";

/// The web API path of the upgrade.
const UPGRADE_PATH: &str = "/webapi/connectionupgrade";

/// The WebSocket sub-protocol: the tunnelled bytes, kept alive with pings.
pub const PROTOCOL: &str = "alpn-ping";

/// What the test dial offers (Teleport's client offers its reverse tunnel
/// protocol, which only Teleport's router knows).
const PROBE_ALPN: &[u8] = b"teleport-reversetunnel";

/// The test dial's longest wait, as Teleport's client's.
pub const TEST_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/1.1, the only protocol an HTTP load balancer is sure to speak.
const HTTP1: &[u8] = b"http/1.1";

/// What `TELEPORT_TLS_ROUTING_CONN_UPGRADE` says about `addr`, read as
/// Teleport's client reads it (`isALPNConnUpgradeRequiredByEnv`): items
/// split on `,` or `;`, each `<addr>=<bool>` (that address: the first such
/// item decides, an unreadable boolean meaning no) or `<bool>` (every other
/// address: the last readable one counts). A value that is set decides:
/// no when nothing in it speaks for the address. Unset or empty: `None`,
/// the test dial decides. (Teleport matches `<addr>=` anywhere in an item;
/// ferry compares the address exactly.)
pub fn wanted_by(value: &str, addr: &str) -> Option<bool> {
    if value.is_empty() {
        return None;
    }
    let mut for_all = false;
    for item in value.split([',', ';']).map(str::trim).filter(|item| !item.is_empty()) {
        match item.split_once('=') {
            Some((target, flag)) if target.trim() == addr => return Some(parse_bool(flag.trim()).unwrap_or(false)),
            Some(_) => {}
            None => for_all = parse_bool(item).unwrap_or(for_all),
        }
    }
    Some(for_all)
}

/// What the environment says about `addr`.
pub fn wanted_by_env(addr: &str) -> Option<bool> {
    std::env::var(ENV).ok().and_then(|value| wanted_by(&value, addr))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "y" | "on" => Some(true),
        "0" | "f" | "false" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// A client config for web servers: the system's roots, no client
/// certificate, ALPN `alpn`. (`SSL_CERT_FILE` and `SSL_CERT_DIR` replace the
/// system's roots, as for every program that reads them.)
///
/// The roots are read once per process: reading the system's store parses
/// every certificate in it, and every reconnection through the upgrade
/// would pay that again.
fn web_config(alpn: &[u8]) -> io::Result<Arc<ClientConfig>> {
    static ROOTS: std::sync::OnceLock<Result<rustls::RootCertStore, String>> = std::sync::OnceLock::new();
    let roots = ROOTS.get_or_init(|| tls::system_roots().map_err(|err| err.to_string())).clone().map_err(io::Error::other)?;
    tls::client_config_with(roots, None, vec![alpn.to_vec()]).map(Arc::new).map_err(io::Error::other)
}

/// The host of `host:port` (without the brackets of an IPv6 address).
fn host_of(addr: &str) -> String {
    super::connect::host_and_port(addr).map_or_else(|| addr.to_owned(), |(host, _)| host)
}

async fn web_tls(addr: &str, alpn: &[u8]) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host_of(addr)).map_err(io::Error::other)?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(web_config(alpn)?).connect(name, tcp).await
}

/// Whether `addr` needs the upgrade, by a test dial as Teleport's client
/// makes it: yes when the peer refuses the routing protocol with
/// `no_application_protocol` or picks none; no on success and on any other
/// failure (that failure is not one the upgrade can get round).
pub async fn required(addr: &str, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, web_tls(addr, PROBE_ALPN)).await {
        Ok(Ok(tls)) => tls.get_ref().1.alpn_protocol().is_none_or(|chosen| chosen != PROBE_ALPN),
        Ok(Err(err)) => refused_the_protocol(&err),
        Err(_) => false,
    }
}

/// A TLS failure that says the peer does not speak the protocol offered.
pub fn refused_the_protocol(err: &io::Error) -> bool {
    let Some(tls) = err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else { return false };
    matches!(
        tls,
        rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
            | rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::SelectedUnofferedApplicationProtocol)
    )
}

/// Opens the tunnel: TLS to `addr` with web PKI, then the WebSocket upgrade.
/// The result carries the bytes of a connection to the Proxy's router.
pub async fn dial(addr: &str) -> io::Result<Upgraded> {
    let tls = web_tls(addr, HTTP1).await?;
    let mut request = format!("wss://{addr}{UPGRADE_PATH}").into_client_request().map_err(|err| io::Error::other(err.to_string()))?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOL));
    let (websocket, response) = tokio_tungstenite::client_async(request, tls).await.map_err(|err| match err {
        tungstenite::Error::Http(response) if response.status() == 404 => {
            io::Error::other(format!("{addr} has no {UPGRADE_PATH} (HTTP 404): not a Teleport Proxy, or one older than 13.0"))
        }
        tungstenite::Error::Http(response) => {
            io::Error::other(format!("{addr} refused the upgrade at {UPGRADE_PATH}: HTTP {}", response.status()))
        }
        other => io::Error::other(format!("the upgrade at {addr}{UPGRADE_PATH} failed: {other}")),
    })?;
    let chosen = response.headers().get("Sec-WebSocket-Protocol").and_then(|value| value.to_str().ok());
    if chosen != Some(PROTOCOL) {
        return Err(io::Error::other(format!("{addr} upgraded to the sub-protocol {chosen:?}, not {PROTOCOL}")));
    }
    Ok(Upgraded { websocket, pending: tungstenite::Bytes::new() })
}

/// The tunnel as a byte stream: each write one binary frame; reads take the
/// binary frames' bytes, answer pings (the WebSocket library sends the pong
/// on its next read or write), and end at a close frame.
pub struct Upgraded {
    websocket: WebSocketStream<TlsStream<TcpStream>>,
    pending: tungstenite::Bytes,
}

fn io_error(err: tungstenite::Error) -> io::Error {
    match err {
        tungstenite::Error::Io(err) => err,
        other => io::Error::other(other.to_string()),
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.websocket).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                // Pings (answered by the library), pongs, text: not data.
                Some(Ok(_)) => {}
                Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => return Poll::Ready(Ok(())),
                Some(Err(err)) => return Poll::Ready(Err(io_error(err))),
            }
        }
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.websocket).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut self.websocket).start_send(Message::Binary(tungstenite::Bytes::copy_from_slice(buf))).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.websocket).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.websocket).poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_variable_reads_as_teleports_client_reads_it() {
        let addr = "tenant.teleport.sh:443";
        assert_eq!(wanted_by("", addr), None, "unset: the test dial decides");
        assert_eq!(wanted_by("true", addr), Some(true));
        assert_eq!(wanted_by("0", addr), Some(false));
        assert_eq!(wanted_by("other:443=yes", addr), Some(false), "set, but for another address only");
        assert_eq!(wanted_by("other:443=yes;tenant.teleport.sh:443=no", addr), Some(false));
        assert_eq!(wanted_by("false, tenant.teleport.sh:443=true", addr), Some(true), "the address's own item wins");
        assert_eq!(wanted_by("tenant.teleport.sh:443=true,false", addr), Some(true));
        assert_eq!(wanted_by("yes,maybe", addr), Some(true), "an unreadable item is skipped");
        assert_eq!(wanted_by("tenant.teleport.sh:443=maybe,true", addr), Some(false), "an unreadable answer for the address is no");
    }

    #[test]
    fn the_host_of_an_address_is_its_server_name() {
        assert_eq!(host_of("tenant.teleport.sh:443"), "tenant.teleport.sh");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("127.0.0.1:3080"), "127.0.0.1");
    }
}
