//! The Teleport source's building blocks: the identity file, the mutual-TLS
//! connection to the Auth Service (direct, or through a Proxy with TLS
//! routing), the audit log and session readers, the cursor and locking.
//!
//! The gRPC protocol and the conversion of Teleport's
//! `google.protobuf.Struct` events to and from JSON are the `ferry-proto`
//! crate (`proto/`), generated from Teleport's own protobuf definitions
//! (package, service, method and message names and field numbers kept).

pub mod audit;
pub mod config;
pub mod connect;
pub mod cursor;
pub mod identity;
pub mod lock;
pub mod sessions;
mod source;
pub mod status;

pub use config::TeleportSourceConfig;
pub use source::TeleportSource;

#[cfg(test)]
mod tests;
