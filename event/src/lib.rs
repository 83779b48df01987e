//! ferry's event contract: what the host, the Rust plugin SDK and the
//! example plugins must agree on about an audit event, written once.
//!
//! - [`Header`]: the fields ferry names an event by (its id, type, time,
//!   index and session), read from the JSON the same way everywhere, also
//!   after the `ecs` plugin mapped the event to the Elastic Common Schema;
//! - [`content_id`]: the id of an event without a `uid` (its [`hex_sha256`]);
//! - [`teleport_field`]: a Teleport field of an event, mapped or not;
//! - [`Outcome`] and [`Route`]: what a plugin decides for one event;
//! - [`lines`]: the JSON Lines framing of a batch.
//!
//! It has no WebAssembly in it (no wasmtime, no wit-bindgen), so the host
//! and the plugins, built for `wasm32-wasip2`, compile the same code, and its
//! tests run natively. When two sides read an event differently, a plugin
//! and ferry's logs and dead letters name it differently; keeping the one
//! reader here is what stops that.

#![deny(missing_docs)]

mod header;
pub mod lines;
mod outcome;

pub use header::{Header, content_id, hex_sha256, teleport_field};
pub use outcome::{Outcome, Route};
