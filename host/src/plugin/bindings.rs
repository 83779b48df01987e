//! Host bindings generated from `wit/plugin.wit`, the one source of truth
//! for the plugin contract. Nothing here is written by hand.

// The generated items are documented in the WIT file, not here.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
});
