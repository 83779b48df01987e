use crate::units::{ByteSize, ConfigDuration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[sinks.NAME]` with `type = "logstash"` or `type = "http"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where to POST events, e.g. `https://logstash.example.com:9601/`.
    /// An `https` URL is never tried without TLS.
    pub url: String,
    /// CA bundle (PEM) that signed the receiver's certificate. Default: the
    /// system's trust store.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Most requests in flight at once, and most pooled connections.
    /// Default 10, as teleport-event-handler.
    pub max_connections: Option<usize>,
    /// Longest wait for one response. Default `"60s"`: Logstash answers late
    /// when its queue is blocked, and a timeout means a re-send.
    pub timeout: Option<ConfigDuration>,
    /// POST each event to `<url>.<session id>.log` instead of `url`, as
    /// teleport-event-handler sends session recordings to its `session-url`.
    /// Events without a session go to `url` itself. Default false.
    #[serde(default)]
    pub per_session: bool,
    /// Request body: `json-array` (one request per batch; default for
    /// `logstash`), `ndjson`, or `single` (one event per request; default
    /// for `http`, as teleport-event-handler does).
    pub format: Option<BodyFormat>,
    /// Compress bodies with gzip (`Content-Encoding: gzip`). Default false.
    #[serde(default)]
    pub gzip: bool,
    /// Largest body before compression; a batch is split to stay under it.
    /// Default `"10MiB"` (Logstash refuses bodies over 100 MiB).
    pub max_batch_bytes: Option<ByteSize>,
    /// HTTP statuses that acknowledge a request. Default: any 2xx.
    pub success_statuses: Option<Vec<u16>>,
    /// HTTP statuses retried although ferry's table dead-letters them
    /// (400, 422; 413 is then retried, not split): for a receiver whose
    /// 400 means a request it cannot take now. Default none.
    pub retry_statuses: Option<Vec<u16>>,
    /// HTTP statuses that dead-letter a request's events although ferry's
    /// table retries them (say 409 for a receiver that answers it for an
    /// event it will never take). Default none. A status in both lists is
    /// a config error.
    pub dead_letter_statuses: Option<Vec<u16>>,
    /// Extra request headers (for example `Authorization`). Values are
    /// never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// First retry delay ceiling. Default `"500ms"`.
    pub retry_initial: Option<ConfigDuration>,
    /// Longest retry delay. Default `"30s"`.
    pub retry_max: Option<ConfigDuration>,
    /// Longest wait a receiver's `Retry-After` (on 429 or 5xx) is obeyed
    /// for; a longer one is cut to this. Default `"5m"`: a receiver asking
    /// for a day is misconfigured, and a day without delivery looks like a
    /// hang.
    pub max_retry_after: Option<ConfigDuration>,
}

/// How a batch is laid out in request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BodyFormat {
    /// `[{...},{...}]`, `Content-Type: application/json`.
    JsonArray,
    /// One object per line, `Content-Type: application/x-ndjson`.
    Ndjson,
    /// One object per request, `Content-Type: application/json`.
    Single,
}
