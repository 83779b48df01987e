//! Write ferry plugins in Rust, with no WebAssembly glue of your own.
//!
//! ferry forwards Teleport audit events through a chain of plugins. A plugin
//! is a WebAssembly component, built for `wasm32-wasip2` against ferry's
//! contract `wit/plugin.wit` (package `ferry:plugin@0.2.0`, world `plugin`).
//! This crate owns that contract's Rust bindings so that a plugin is only:
//!
//! 1. a type holding the plugin's state, implementing [`Plugin`]
//!    (`init` builds it from the plugin's config, `process` handles a batch);
//! 2. one line, [`export_plugin!`], that exports it to ferry.
//!
//! The SDK keeps the state between calls, answers a `process` that comes
//! before a successful `init` with a clear [`Outcome::Fail`] per event instead
//! of panicking, and gives you the host's imports ([`log()`], [`mod@log`],
//! [`count`]) and JSON helpers ([`EventExt`], [`OutcomeExt`]).
//!
//! # Example
//!
//! A plugin that drops the event types named in its config and counts them.
//! Its config in ferry.toml, `config = { drop = ["user.login"] }` in its
//! `[[plugins]]` entry, reaches `init` as the JSON text
//! `{"drop":["user.login"]}`.
//!
//! ```
//! use ferry_guest::prelude::*;
//! use ferry_guest::serde_json::{self, Value};
//!
//! /// The plugin's state: the event types to drop.
//! struct DropTypes {
//!     types: Vec<String>,
//! }
//!
//! impl Plugin for DropTypes {
//!     fn init(config: &str) -> Result<Self, String> {
//!         let config: Value = serde_json::from_str(config).map_err(|e| e.to_string())?;
//!         let types = config["drop"].as_array().ok_or("\"drop\" must be a list of event types")?;
//!         let types = types.iter().filter_map(Value::as_str).map(str::to_owned).collect();
//!         Ok(DropTypes { types })
//!     }
//!
//!     fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
//!         let drop = |event: &Event| self.types.iter().any(|t| t == event.event_type());
//!         let dropped = batch.iter().filter(|event| drop(event)).count();
//!         count("dropped", dropped as u64);
//!         log::debug("Batch filtered.", &[("events", &batch.len()), ("dropped", &dropped)]);
//!         batch
//!             .iter()
//!             .map(|event| if drop(event) { Outcome::Drop } else { Outcome::Keep })
//!             .collect()
//!     }
//! }
//!
//! export_plugin!(DropTypes);
//! #
//! # fn main() {
//! #     // Natively the host imports are stand-ins (see `count`), so the
//! #     // plugin's logic can be tested with plain `cargo test`.
//! #     let mut plugin = DropTypes::init(r#"{"drop":["user.login"]}"#).expect("valid config");
//! #     let outcomes = plugin.process(&[
//! #         Event::new(br#"{"event":"user.login"}"#),
//! #         Event::new(br#"{"event":"session.start"}"#),
//! #     ]);
//! #     assert!(matches!(outcomes[..], [Outcome::Drop, Outcome::Keep]));
//! #     assert!(DropTypes::init("{}").is_err());
//! # }
//! ```
//!
//! Its `Cargo.toml` makes a `cdylib` and depends on this crate only:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! ferry-guest = { path = "../../guest-sdk" }
//! ```
//!
//! `cargo build --release --target wasm32-wasip2` then writes the component
//! `target/wasm32-wasip2/release/<crate name>.wasm`; put it in ferry's plugins
//! folder. See `plugins/redact` in the ferry repository for a complete plugin
//! with config validation and tests.
//!
//! # The contract, in short
//!
//! - `init` runs once per plugin instance, before any `process`, and again on
//!   a fresh instance whenever ferry had to rebuild one (after a trap, or to
//!   give back memory). Returning `Err` makes ferry refuse to load the plugin
//!   and print the message with the plugin's name, so say what is wrong and
//!   which key it concerns.
//! - `process` returns exactly one [`Outcome`] per input event, in input
//!   order. A result of another length, a panic (which traps: plugins build
//!   with `panic = "abort"` or not, a panic ends the call), running past the
//!   deadline or past the memory cap fail the whole batch. To fail one event,
//!   return [`Outcome::Fail`] for it.
//! - There are no files, network, environment or clock: the only way out is
//!   the outcomes, [`log()`] and [`count`].
//!
//! # Building natively
//!
//! The crate also compiles for the machine you build on, so that a plugin's
//! logic can be unit-tested with `cargo test`: there, [`log()`] writes to
//! standard error and [`count`] does nothing, and [`export_plugin!`] still
//! compiles (its exported symbols are simply unused).

#![deny(missing_docs)]

mod event;
mod host;
mod json;
mod plugin;
mod wire;

/// The Rust bindings wit-bindgen generates from `wit/plugin.wit`.
///
/// Public only because [`export_plugin!`] expands to code that names them
/// from the plugin's crate; use the re-exports at the crate root instead.
#[doc(hidden)]
// Generated code: its docs come from the WIT comments, and the WIT leaves the
// cases of `level` undocumented.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        // The export macro is invoked from the plugin's crate (through
        // `export_plugin!`), so it must be exported from this one ...
        pub_export_macro: true,
        // ... under a name that says it is not for direct use ...
        export_macro_name: "__export_plugin_world",
        // ... and, when called without `with_types_in`, finds these bindings.
        default_bindings_module: "ferry_guest::bindings",
    });
}

pub use bindings::ferry::plugin::types::Level;
pub use event::{Event, Outcome, Route};
pub use host::{count, log};
pub use json::{EventExt, OutcomeExt};
pub use plugin::Plugin;
/// The `serde_json` this crate uses, with `preserve_order` on, so that JSON a
/// plugin parses and writes back keeps the event's key order.
pub use serde_json;

/// Logs at a fixed level: `log::info("Batch done.", &[("events", &n)])`.
///
/// Each function is [`log()`] with its level filled in; see there for what
/// ferry does with the record.
pub mod log {
    use crate::Level;
    use std::fmt::Display;

    /// Logs at [`Level::Trace`]: detail only a plugin's author wants.
    pub fn trace(message: &str, fields: &[(&str, &dyn Display)]) {
        super::log(Level::Trace, message, fields);
    }

    /// Logs at [`Level::Debug`]: what the plugin did with a batch.
    pub fn debug(message: &str, fields: &[(&str, &dyn Display)]) {
        super::log(Level::Debug, message, fields);
    }

    /// Logs at [`Level::Info`]: rare events an operator may want to see.
    pub fn info(message: &str, fields: &[(&str, &dyn Display)]) {
        super::log(Level::Info, message, fields);
    }

    /// Logs at [`Level::Warn`]: something odd that the plugin worked around.
    pub fn warn(message: &str, fields: &[(&str, &dyn Display)]) {
        super::log(Level::Warn, message, fields);
    }

    /// Logs at [`Level::Error`]: an operator has to act, or data was lost.
    pub fn error(message: &str, fields: &[(&str, &dyn Display)]) {
        super::log(Level::Error, message, fields);
    }
}

/// Everything a plugin usually needs, in one `use ferry_guest::prelude::*;`.
pub mod prelude {
    pub use crate::{Event, EventExt, Level, Outcome, OutcomeExt, Plugin, Route, count, export_plugin, log};
}

/// What [`export_plugin!`] expands to. Not part of the API: names and
/// signatures here may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::{State, init, process};
    pub use std::cell::RefCell;
}

/// Exports a [`Plugin`] implementation as the plugin's component exports.
///
/// Invoke it once, at the top level of the plugin's crate, with the type that
/// implements [`Plugin`]:
///
/// ```
/// # use ferry_guest::{Event, Outcome, Plugin};
/// # struct MyPlugin;
/// # impl Plugin for MyPlugin {
/// #     fn init(_config: &str) -> Result<Self, String> { Ok(MyPlugin) }
/// #     fn process(&mut self, batch: &[Event]) -> Vec<Outcome> {
/// #         batch.iter().map(|_| Outcome::Keep).collect()
/// #     }
/// # }
/// ferry_guest::export_plugin!(MyPlugin);
/// # fn main() {}
/// ```
///
/// It keeps one instance of the type in a per-instance slot, which `init`
/// fills (dropping any earlier state first, and leaving the slot empty when
/// `init` fails) and `process` borrows. Invoking it twice in one crate fails
/// to link, because a component exports `init` and `process` once.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            ::std::thread_local! {
                // A WebAssembly instance is single-threaded, so this is the
                // one slot of the instance; natively it is per thread, which
                // keeps plugin unit tests independent.
                static FERRY_PLUGIN_STATE: $crate::__private::State<$plugin> =
                    const { $crate::__private::RefCell::new(::core::option::Option::None) };
            }

            struct FerryPluginExport;

            impl $crate::bindings::exports::ferry::plugin::guest::Guest for FerryPluginExport {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$plugin>(&FERRY_PLUGIN_STATE, &config)
                }

                fn process(events: ::std::vec::Vec<u8>) -> $crate::bindings::ferry::plugin::types::Output {
                    $crate::__private::process::<$plugin>(&FERRY_PLUGIN_STATE, &events)
                }
            }

            $crate::bindings::__export_plugin_world!(
                FerryPluginExport with_types_in $crate::bindings
            );
        };
    };
}
