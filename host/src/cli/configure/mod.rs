//! `ferry configure OUT [ADDR]`: everything a new installation needs, in one
//! folder — a CA with server and client certificates for the mutual TLS
//! between ferry and Logstash (or Fluentd), the Teleport role and user ferry
//! reads as and the role that signs its identity, a commented `ferry.toml`
//! using them, a Logstash pipeline with its `pipelines.yml` entry and an
//! index template, a `fluent.conf`, the systemd unit and the values file of
//! the Helm chart (naming the secrets to make from these files) — then the
//! `tctl` steps left to do. It takes teleport-event-handler's `configure`
//! arguments, so its guide reads the same with ferry.
//!
//! `args` validates the command line, `pki` makes the keys and
//! certificates, `render` fills the templates (files under `templates/`),
//! `output` refuses to overwrite and writes every file 0600, the ones ferry
//! reads 0640 root:GROUP with `--group`.

mod args;
mod error;
mod output;
mod pki;
mod render;
#[cfg(test)]
mod tests;

pub use args::{ConfigureArgs, KeyType};
pub use error::ConfigureError;
pub use output::{READ_BY_FERRY, run};

/// The system user and group the systemd unit runs ferry as (User=, Group=
/// of packaging/systemd/ferry.service, made by ferry.sysusers).
pub const SERVICE_GROUP: &str = "ferry";

/// Where the systemd unit and the container image read ferry's config and
/// the files it names: `ExecStart` and `CMD` name `CONFIG_DIR/ferry.toml`.
pub const CONFIG_DIR: &str = "/etc/ferry";

/// Where an installed ferry reads its Teleport identity by default: beside
/// its config (ferry.toml's `identity = "identity"` is relative to the
/// file's folder), root's and readable by ferry's group, as the certificates
/// are. Not in the state folder `/var/lib/ferry`: that one is ferry's to
/// write (systemd's StateDirectory gives it to ferry's user), and an
/// identity ferry could replace would be a credential it could change.
/// Machine ID (tbot) renewing the identity writes to its own folder, which
/// ferry.toml's `identity` then names.
pub const IDENTITY_PATH: &str = "/etc/ferry/identity";
