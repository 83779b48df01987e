//! What an operator watches while ferry runs (`ferry start`): the HTTP
//! endpoint with `/metrics`, `/healthz` and `/readyz`, the health those two
//! report, and the progress line or periodic progress log.

pub mod health;
pub mod http;
pub mod progress;

pub use health::{Health, health};

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// For people: one line per event, with colours on a terminal.
    #[default]
    Text,
    /// One JSON object per line, with `timestamp`, `level`, `message` and
    /// the event's fields, for journald and ELK.
    Json,
}
