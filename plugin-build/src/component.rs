//! From a WASI preview-1 reactor module to a component, in process: what
//! the C and Go builders share.
//!
//! A module's exports and imports must be the contract's, in the canonical
//! ABI's names (`ferry:plugin/guest@0.2.0#process`, …); `wit-component`
//! then wraps it, adapting its WASI preview-1 calls to preview 2 with
//! wasmtime's adapter, the one of the wasmtime ferry runs (48). The
//! component's type comes from a `component-type` custom section: C's
//! bindings link one in (`plugin_component_type.o`); for a module without
//! one, such as Go's, [`embed_contract`] adds it from the folder's
//! `wit/plugin.wit`.

use crate::Failure;
use std::path::Path;
use wit_bindgen_core::wit_parser::{Resolve, WorldId};

/// The world every plugin targets, in `wit/plugin.wit`.
pub const WORLD: &str = "plugin";

/// The contract in `wit_dir` and its `plugin` world.
pub fn contract(wit_dir: &Path) -> Result<(Resolve, WorldId), Failure> {
    let mut resolve = Resolve::default();
    let (package, _) =
        resolve.push_path(wit_dir).map_err(|err| format!("cannot read the contract in {}: {}", wit_dir.display(), one_line(&err)))?;
    let world = resolve
        .select_world(&[package], Some(WORLD))
        .map_err(|err| format!("no world `{WORLD}` in {}: {}", wit_dir.display(), one_line(&err)))?;
    Ok((resolve, world))
}

/// Appends the `plugin` world of `wit_dir` to `module` as its component type
/// (strings in UTF-8), for a module whose compiler wrote none.
pub fn embed_contract(module: &mut Vec<u8>, wit_dir: &Path) -> Result<(), Failure> {
    let (resolve, world) = contract(wit_dir)?;
    wit_component::embed_component_metadata(module, &resolve, world, wit_component::StringEncoding::UTF8, false)
        .map_err(|err| format!("cannot add the contract of {} to the module: {}", wit_dir.display(), one_line(&err)))
}

/// Turns a WASI preview-1 reactor module that carries its component type
/// into a component, adapting its WASI calls to preview 2 with the adapter
/// of wasmtime 48, ferry's runtime.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, Failure> {
    use wasi_preview1_component_adapter_provider::{WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER};
    let failed = |err: anyhow::Error| format!("cannot make a component of it: {}", one_line(&err));
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .map_err(failed)?
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
        .map_err(failed)?
        .encode()
        .map_err(failed)
}

/// The folder's name, which names the plugin's main file and component.
pub fn plugin_name(dir: &Path) -> String {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    dir.file_name().map_or_else(|| "plugin".to_owned(), |name| name.to_string_lossy().into_owned())
}

/// An error chain as one line.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}
