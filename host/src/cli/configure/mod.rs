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
//! `output` refuses to overwrite and writes every file 0600.

mod args;
mod error;
mod output;
mod pki;
mod render;
#[cfg(test)]
mod tests;

pub use args::{ConfigureArgs, KeyType};
pub use error::ConfigureError;
pub use output::run;
