//! ferry's HTTP endpoint (`ferry start --http-addr`, `http-addr` in the
//! config): `/metrics` in the OpenMetrics text format Prometheus scrapes,
//! `/healthz` for a liveness probe and `/readyz` for a readiness probe.
//!
//! Plain HTTP, as Prometheus and Kubernetes probes expect: bind it to
//! localhost or a pod address. It shows counts and component names, never
//! events or secrets.

use super::health::Health;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
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

/// Listens on `addr` (`HOST:PORT`; port 0 picks a free one), for `key`
/// (the flag or config key it came from, named in the error).
pub async fn bind(addr: &str, key: &str) -> Result<TcpListener, BindError> {
    let failed = |reason: String| BindError { key: key.to_owned(), addr: addr.to_owned(), reason };
    if !addr.contains(':') {
        return Err(failed("expected HOST:PORT, such as 127.0.0.1:9090 or [::]:9090".to_owned()));
    }
    TcpListener::bind(addr).await.map_err(|err| failed(crate::error::one_line(&err)))
}

/// Answers requests on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: &'static Health, mut shutdown: Shutdown) {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = %local.map_or_else(|| "?".to_owned(), |a| a.to_string()), "Serving /metrics, /healthz and /readyz.");
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                // Out of file descriptors, for one: the next accept may work.
                tracing::debug!(%error, "Cannot accept an HTTP connection.");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = answer(&request, &metrics, health);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tcp), service).await;
        });
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
            "cannot serve HTTP on http-addr in ferry.toml = \"9090\": expected HOST:PORT, such as 127.0.0.1:9090 or [::]:9090"
        );
    }
}
