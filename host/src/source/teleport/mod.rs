//! The Teleport source's building blocks: the gRPC protocol, the conversion
//! of Teleport's `google.protobuf.Struct` events to and from JSON, the
//! identity file, and the mutual-TLS connection to the Auth Service (direct,
//! or through a Proxy with TLS routing).
//!
//! Wire compatibility is judged against Teleport's own protobuf definitions:
//! [`proto`] is generated from `host/proto`, which keeps Teleport's package,
//! service, method and message names and field numbers.

pub mod audit;
pub mod config;
pub mod connect;
pub mod cursor;
pub mod identity;
pub mod lock;
pub mod proto;
pub mod sessions;
mod source;
pub mod status;
pub mod structjson;

pub use config::TeleportSourceConfig;
pub use source::TeleportSource;

#[cfg(test)]
mod tests;
