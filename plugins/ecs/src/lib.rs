//! ecs: a ferry plugin that maps Teleport audit events to the Elastic
//! Common Schema (ECS), so that Kibana's stock dashboards and detection rules
//! find `@timestamp`, `event.*`, `user.name`, `source.ip` and `host.name`
//! where they look for them.
//!
//! # Config
//!
//! ```toml
//! [[plugins]]
//! path = "ecs.wasm"
//! config = { dataset = "teleport.audit" }
//! ```
//!
//! - `dataset` (default `"teleport.audit"`): written to `event.dataset`.
//!
//! # What it writes
//!
//! The mapped event holds the ECS fields below, in this order, then the
//! whole original event under `teleport` (so nothing is lost and rules
//! written for Teleport's names go on working, as `teleport.login`). A field
//! is written only when the Teleport field it comes from is present and has
//! the expected type.
//!
//! | ECS field | from Teleport |
//! | --- | --- |
//! | `@timestamp` | `time` |
//! | `ecs.version` | `8.11.0` |
//! | `event.id` | `uid`, or ferry's id for an event without one |
//! | `event.action` | `event` (`user.login`) |
//! | `event.code` | `code` (`T1000W`) |
//! | `event.kind` | `event` |
//! | `event.category`, `event.type` | the event type, per the table in `category.rs`, when it is clear |
//! | `event.outcome` | `success` (`true`: `success`, `false`: `failure`); without it, the code's last letter (`I`: `success`, `W`/`E`: `failure`) |
//! | `event.module`, `event.dataset` | `teleport`, the configured dataset |
//! | `event.sequence` | `ei` |
//! | `message` | `message` |
//! | `error.message` | `error` |
//! | `user.name` | `user` |
//! | `source.address`, `source.ip`/`source.domain`, `source.port` | `addr.remote` (`ip:port`, `[ipv6]:port`, bare IP, or `host:port`) |
//! | `destination.*` | `addr.local`, likewise |
//! | `host.name`, `host.id` | `server_hostname`, `server_id` |
//! | `labels.teleport_cluster` | `cluster_name` |
//! | `labels.session_id` | `sid` (when not empty) |
//! | `orchestrator.cluster.name`, `orchestrator.type` | `kubernetes_cluster`, `kubernetes` |
//! | `process.pid`, `.parent.pid`, `.name`, `.executable`, `.args`, `.exit_code` | `session.command`'s `pid`, `ppid`, `program`, `path`, `argv`, `return_code` |
//! | `file.path` | `path` of `sftp` and `scp` events |
//! | `related.user`, `related.ip` | `user` and `login`; the source and destination IPs |
//! | `teleport` | the original event, unchanged |
//!
//! The Teleport cluster goes to `labels`, not `orchestrator`, because ECS
//! keeps `orchestrator` for container orchestrators such as Kubernetes.
//!
//! An event that is not a Teleport event (not a JSON object, or without a
//! string `event`, such as one already mapped) passes unchanged. ferry reads
//! a mapped event's id, type, time, index and session from `teleport`, so
//! later plugins and sinks see the same event as before the mapping.

#![deny(missing_docs)]

mod address;
mod category;
mod map;

#[cfg(target_arch = "wasm32")]
mod guest;

#[cfg(test)]
mod tests;

use serde::Deserialize;

/// The ECS version the mapped events follow.
pub const ECS_VERSION: &str = "8.11.0";

/// Maps Teleport events to ECS.
#[derive(Debug)]
pub struct Mapper {
    dataset: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `event.dataset` of every mapped event.
    #[serde(default = "default_dataset")]
    dataset: String,
}

fn default_dataset() -> String {
    "teleport.audit".to_owned()
}

impl Mapper {
    /// Builds the mapper from the plugin's config as JSON text.
    pub fn from_config(config_json: &str) -> Result<Mapper, String> {
        let config: Config = ferry_rules::config::parse(config_json)?;
        if config.dataset.trim().is_empty() {
            return Err(ferry_rules::config::key_error("dataset", "is blank; leave it out for \"teleport.audit\""));
        }
        Ok(Mapper { dataset: config.dataset })
    }

    /// The event as ECS JSON, or `None` when it is not a Teleport event and
    /// passes unchanged. `id` is ferry's id for the event (its `uid`, or a
    /// hash for an event without one), written to `event.id`.
    pub fn map(&self, id: &str, json: &[u8]) -> Option<Vec<u8>> {
        let serde_json::Value::Object(original) = serde_json::from_slice(json).ok()? else {
            return None;
        };
        let mapped = map::to_ecs(id, &self.dataset, original)?;
        serde_json::to_vec(&mapped).ok()
    }
}
