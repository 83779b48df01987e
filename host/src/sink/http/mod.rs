//! `type = "logstash"` and `type = "http"`: events POSTed over HTTPS with a
//! client certificate (mutual TLS) to a Logstash `http` input, or to any
//! receiver that speaks the same way (Fluentd `in_http`, Fluent Bit, Vector).
//!
//! What shapes it (Logstash's http input, 8.x and 9.x):
//! - `200 ok` means queued in Logstash, not stored; events keep their id so
//!   the Elasticsearch output can dedupe on it;
//! - a JSON array body becomes one event per element (the `json` codec);
//!   NDJSON only works where the pipeline maps its content type to
//!   `json_lines`, so it is opt-in;
//! - 429 when Logstash is blocked, 413 above 100 MiB, no HTTP status at all
//!   when a client certificate is missing (the handshake fails);
//! - a proxy in front of Logstash answers for it (nginx's 403 for a `deny`,
//!   its 400 page for a missing client certificate, 502/504 for Logstash
//!   down): a status about the request is retried, never dead-lettered
//!   (the table is [`StatusTable::action`]);
//! - with ECS on, a `User-Agent` header collides with Teleport's own
//!   `user_agent` field, so none is sent unless configured.

mod classify;
mod client;
mod config;
mod encode;

pub use classify::{Action, Attempt, StatusTable, classify, default_action};
pub use client::HttpSink;
pub use config::{BodyFormat, HttpSinkConfig};
pub use encode::{Request, plan_requests};
