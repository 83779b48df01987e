//! Host bindings generated from `wit/plugin.wit`, the one source of truth
//! for the plugin contract. Nothing here is written by hand.

// The generated items are documented in the WIT file, not here.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    // Calls into a plugin are async so that a host call the plugin makes
    // (a WASI clock wait, a poll) can be cut off at its deadline; see
    // `instance.rs`. ferry's own imports (`log`, `count`) never block.
    exports: { default: async },
});
