//! ferry's HTTP endpoint (`ferry start --http-addr`, `http-addr` in the
//! config): `/metrics` in the OpenMetrics text format Prometheus scrapes,
//! `/healthz` for a liveness probe and `/readyz` for a readiness probe.
//!
//! Plain HTTP, as Prometheus and Kubernetes probes expect: bind it to
//! localhost or a pod address. It shows counts and component names, never
//! events or secrets. A client holds little of ferry ([`Limits`]): a
//! capped number of connections, each bounded in time.

use super::health::Health;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The endpoint could not listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve HTTP on {key} = \"{addr}\": {reason}")]
pub struct BindError {
    /// Where the address came from: `--http-addr` or `http-addr` in a config file.
    pub key: String,
    /// The address as given.
    pub addr: String,
    /// Why not, on one line.
    pub reason: String,
}

/// The port of the endpoint wherever ferry names one: the README, the
/// ferry.toml of `ferry configure`, the systemd unit's comment, the
/// container image and the chart (a test holds them all to it). Not
/// Prometheus' own 9090 nor node_exporter's 9100, which often run on the
/// same host.
pub const DEFAULT_PORT: u16 = 9464;

/// Listens on `addr` (`HOST:PORT`; port 0 picks a free one), for `key`
/// (the flag or config key it came from, named in the error).
pub async fn bind(addr: &str, key: &str) -> Result<TcpListener, BindError> {
    let failed = |reason: String| BindError { key: key.to_owned(), addr: addr.to_owned(), reason };
    if !addr.contains(':') {
        return Err(failed(format!("expected HOST:PORT, such as 127.0.0.1:{DEFAULT_PORT} or [::]:{DEFAULT_PORT}")));
    }
    TcpListener::bind(addr).await.map_err(|err| failed(crate::error::one_line(&err)))
}

/// How much of ferry one client of the endpoint may hold. The endpoint is
/// for a scraper and a probe or two: a handful of short requests. Anything
/// that holds a connection without finishing a request (a port scanner, a
/// slowloris, a stuck load balancer) must neither keep file descriptors
/// ferry needs for its sinks nor lock the scraper out.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once. Past it, the oldest connection is closed to
    /// make room for the new one: a flood of idle connections then cycles
    /// through the slots while a scraper's fresh request is always served,
    /// where refusing new ones (or leaving them in the kernel backlog) would
    /// lock the scraper out until the flood's own timeouts ran.
    pub max_connections: usize,
    /// Time for a request's head to arrive, from the connection's start and
    /// again between requests on a kept-alive connection: bounds both a
    /// client that stops halfway through a request and an idle one.
    pub header_read_timeout: Duration,
    /// Time a connection may live, whatever it does: bounds a client that
    /// trickles a byte at a time or reads its answer slowly.
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 64, header_read_timeout: Duration::from_secs(5), connection_lifetime: Duration::from_secs(30) }
    }
}

/// The first wait after an accept error, doubled after each further error in a row.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest wait after accept errors.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one WARN line this often for accept errors.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(60);

/// The wait after `failures` (1 or more) accept errors in a row. The error
/// that matters is running out of file descriptors (EMFILE, ENFILE): the
/// connection stays in the backlog, so accepting again at once fails again
/// at once, and without a wait the loop would spin a core.
fn accept_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    ACCEPT_BACKOFF_FIRST.saturating_mul(1 << doublings).min(ACCEPT_BACKOFF_MAX)
}

/// Answers requests on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: &'static Health, shutdown: Shutdown) {
    serve_with(listener, metrics, health, shutdown, Limits::default()).await;
}

/// [`serve`] within `limits`.
async fn serve_with(listener: TcpListener, metrics: Arc<Metrics>, health: &'static Health, mut shutdown: Shutdown, limits: Limits) {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = %local.map_or_else(|| "?".to_owned(), |a| a.to_string()), "Serving /metrics, /healthz and /readyz.");
    let mut open = Connections::new(limits.max_connections);
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                // Closing the oldest connection gives a descriptor back.
                open.close_oldest();
                let wait = errors.failed(&error);
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = shutdown.wait() => return,
                }
            }
        };
        errors.succeeded();
        let closed = open.admit();
        tokio::spawn(serve_connection(tcp, metrics.clone(), health, limits, closed));
    }
}

/// The open connections, oldest first, each by the sender whose drop closes it.
struct Connections {
    max: usize,
    open: std::collections::VecDeque<tokio::sync::oneshot::Sender<()>>,
}

impl Connections {
    fn new(max: usize) -> Connections {
        Connections { max: max.max(1), open: std::collections::VecDeque::new() }
    }

    /// Makes room for one more connection, closing the oldest ones past the
    /// cap; the receiver that tells the new one to close.
    fn admit(&mut self) -> tokio::sync::oneshot::Receiver<()> {
        // A finished connection dropped its receiver.
        self.open.retain(|sender| !sender.is_closed());
        while self.open.len() >= self.max {
            self.close_oldest();
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.open.push_back(sender);
        receiver
    }

    /// Closes the oldest open connection, if any.
    fn close_oldest(&mut self) {
        self.open.pop_front();
    }
}

/// Accept errors in a row, and when one was last logged.
#[derive(Default)]
struct AcceptErrors {
    in_a_row: u32,
    unlogged: u64,
    logged_at: Option<tokio::time::Instant>,
}

impl AcceptErrors {
    /// Counts `error`, logs it at most once a [`ACCEPT_WARN_EVERY`], and
    /// says how long to wait before accepting again.
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unlogged += 1;
        let now = tokio::time::Instant::now();
        if self.logged_at.is_none_or(|at| now.duration_since(at) >= ACCEPT_WARN_EVERY) {
            let wait = accept_backoff(self.in_a_row);
            tracing::warn!(%error, errors = self.unlogged, retry_in = ?wait, "Cannot accept HTTP connections (out of file descriptors?); backing off.");
            self.logged_at = Some(now);
            self.unlogged = 0;
        }
        accept_backoff(self.in_a_row)
    }

    /// An accept succeeded: the next error starts the back-off afresh.
    fn succeeded(&mut self) {
        self.in_a_row = 0;
    }
}

/// Serves one connection (HTTP/1.1 only: Prometheus and probes speak it, and
/// HTTP/2's preface detection would wait on a silent client with no
/// timeout) within `limits`, until it ends, its lifetime runs out or
/// `closed` says it was pushed out by newer ones.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    metrics: Arc<Metrics>,
    health: &'static Health,
    limits: Limits,
    closed: tokio::sync::oneshot::Receiver<()>,
) {
    let service = hyper::service::service_fn(move |request| {
        let answer = answer(&request, &metrics, health);
        async move { Ok::<_, std::convert::Infallible>(answer) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(tcp), service);
    tokio::select! {
        _ = connection => {}
        _ = tokio::time::sleep(limits.connection_lifetime) => {}
        _ = closed => {}
    }
}

/// The answer to one request.
fn answer(request: &Request<Incoming>, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "only GET and HEAD\n".to_owned());
    }
    match request.uri().path() {
        "/metrics" => reply(StatusCode::OK, crate::metrics::CONTENT_TYPE, metrics.render()),
        "/healthz" => status(health.live()),
        "/readyz" => status(health.ready()),
        _ => {
            reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found: ferry serves /metrics, /healthz and /readyz\n".to_owned())
        }
    }
}

fn status(result: Result<(), String>) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".to_owned()),
        Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", format!("{why}\n")),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A server on a free port within `limits`; its address.
    async fn server(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("addr");
        let health: &'static Health = Box::leak(Box::default());
        tokio::spawn(serve_with(listener, Arc::new(Metrics::default()), health, Shutdown::never(), limits));
        addr
    }

    /// Whether the server closed `tcp` (EOF or reset) within `within`.
    async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(within, tcp.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    /// A GET of `/metrics` on a new connection: its status line.
    async fn scrape(addr: SocketAddr) -> String {
        let mut tcp = TcpStream::connect(addr).await.expect("connects");
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n").await.expect("writes");
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.expect("reads");
        String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_client_that_stops_halfway_through_its_request_line_is_dropped() {
        let limits = Limits { header_read_timeout: Duration::from_millis(300), ..Limits::default() };
        let addr = server(limits).await;
        let mut slow = TcpStream::connect(addr).await.expect("connects");
        slow.write_all(b"GET /metr").await.expect("writes");
        assert!(closed_within(&mut slow, Duration::from_secs(3)).await, "a half request line held its connection");
        let mut silent = TcpStream::connect(addr).await.expect("connects");
        assert!(closed_within(&mut silent, Duration::from_secs(3)).await, "a connection that sent nothing was kept");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let limits = Limits { header_read_timeout: Duration::from_millis(300), ..Limits::default() };
        let addr = server(limits).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connects");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: ferry\r\n\r\n").await.expect("writes");
        let mut buf = [0u8; 1024];
        let n = tcp.read(&mut buf).await.expect("an answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        assert!(closed_within(&mut tcp, Duration::from_secs(3)).await, "an idle keep-alive connection was kept");
    }

    #[tokio::test]
    async fn a_connection_trickling_headers_is_cut_at_its_lifetime() {
        let limits =
            Limits { header_read_timeout: Duration::from_secs(60), connection_lifetime: Duration::from_millis(500), ..Limits::default() };
        let addr = server(limits).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connects");
        let started = std::time::Instant::now();
        let mut cut = false;
        // One header byte every 100 ms: never a whole head, never idle.
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle().take(40) {
            if tcp.write_all(&[*byte]).await.is_err() || closed_within(&mut tcp, Duration::from_millis(100)).await {
                cut = true;
                break;
            }
        }
        assert!(cut && started.elapsed() < Duration::from_secs(3), "a trickling client held its connection for {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn past_the_cap_the_oldest_connections_are_closed_and_a_scrape_gets_through() {
        let addr = server(Limits::default()).await;
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(TcpStream::connect(addr).await.expect("connects"));
        }
        let status = tokio::time::timeout(Duration::from_secs(2), scrape(addr)).await.expect("a scrape answered within 2 s");
        assert_eq!(status, "HTTP/1.1 200 OK");
        let mut closed = 0;
        for tcp in &mut idle {
            if closed_within(tcp, Duration::from_millis(10)).await {
                closed += 1;
            }
        }
        // 200 idle and one scrape, 64 at most open: at least 137 closed.
        assert!(closed >= 137, "only {closed} of 200 idle connections were closed");
        // The newest ones (well within their header timeout) are the ones kept.
        assert!(!closed_within(idle.last_mut().expect("200"), Duration::from_millis(10)).await, "the newest connection was closed");
    }

    #[test]
    fn accept_errors_back_off_from_100_ms_to_a_second() {
        let waits: Vec<u128> = (1..=7).map(|failures| accept_backoff(failures).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(accept_backoff(u32::MAX), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_taken_port_or_a_bad_address_is_one_line_naming_the_key() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = taken.local_addr().expect("addr").to_string();
        let error = bind(&addr, "--http-addr").await.expect_err("the port is taken").to_string();
        assert!(error.starts_with(&format!("cannot serve HTTP on --http-addr = \"{addr}\": ")), "{error}");
        assert!(!error.contains('\n'), "{error}");
        let error = bind("9090", "http-addr in ferry.toml").await.expect_err("no host").to_string();
        assert_eq!(
            error,
            "cannot serve HTTP on http-addr in ferry.toml = \"9090\": expected HOST:PORT, such as 127.0.0.1:9464 or [::]:9464"
        );
    }
}
