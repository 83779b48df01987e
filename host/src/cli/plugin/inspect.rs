//! `ferry plugin inspect`: what a component file is and whether this ferry
//! takes it.

use super::{ToolError, compile_cache};
use crate::metrics::Metrics;
use crate::plugin::{CONTRACT_VERSION, PluginError, Runtime};
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;

/// Arguments of `ferry plugin inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The component file (`.wasm`).
    pub plugin: PathBuf,
    /// Where compiled plugins are kept between runs, as for `plugin test`
    /// (inspecting compiles the component, which takes seconds for a Python
    /// or JavaScript one). Default: `$XDG_CACHE_HOME/ferry/plugin-cache`
    /// (or `~/.cache/…`); `none` compiles in memory every time.
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

/// `ferry plugin inspect`: writes what the component is to `out` — its
/// size, the `ferry:plugin` version it was built against, its exports and
/// imports — and whether this ferry would load it. A file that is not a
/// component, or one this ferry refuses, is an error (after the report, for
/// a component).
pub fn inspect(args: &InspectArgs, mut out: impl Write) -> Result<(), ToolError> {
    let path = &args.plugin;
    let runtime = Runtime::new(compile_cache(args.cache.as_deref()), Arc::new(Metrics::default()))?;
    let size = std::fs::metadata(path).map_err(|source| PluginError::Read { path: path.clone(), source })?.len();
    let (component, _) = runtime.compile(path)?;
    let engine = runtime.engine();
    let ty = component.component_type();
    let exports: Vec<(String, String)> = ty.exports(engine).map(|(name, item)| (name.to_owned(), describe(engine, &item.ty))).collect();
    let imports: Vec<(String, String)> = ty.imports(engine).map(|(name, item)| (name.to_owned(), describe(engine, &item.ty))).collect();
    let accepted = runtime.check_accepts(&component, path);

    let mut report = String::new();
    let _ = writeln!(report, "plugin    {}", path.display());
    let _ = writeln!(report, "size      {size} bytes ({})", crate::units::human_size(size));
    let _ = match exports.iter().find_map(|(name, _)| name.strip_prefix("ferry:plugin/guest@")) {
        Some(version) => writeln!(report, "contract  ferry:plugin@{version} (this ferry runs ferry:plugin@{CONTRACT_VERSION})"),
        None => writeln!(report, "contract  none: it does not export ferry:plugin/guest"),
    };
    for (heading, items) in [("exports", &exports), ("imports", &imports)] {
        let _ = writeln!(report, "{heading}   {}", items.len());
        for (name, what) in items {
            let _ = writeln!(report, "  {name}{what}");
        }
    }
    let _ = match &accepted {
        Ok(()) => writeln!(report, "accepted  yes"),
        Err(error) => writeln!(report, "accepted  no: {error}"),
    };
    out.write_all(report.as_bytes()).map_err(ToolError::Output)?;
    out.flush().map_err(ToolError::Output)?;
    accepted.map_err(ToolError::Plugin)
}

/// An export or import after its name: an instance's functions with their
/// parameter names, a function's parameters, or what kind of item it is.
fn describe(engine: &Engine, item: &ComponentItem) -> String {
    let func = |name: &str, func: &wasmtime::component::types::ComponentFunc| {
        let params: Vec<&str> = func.params().map(|(param, _)| param).collect();
        format!("{name}({})", params.join(", "))
    };
    match item {
        ComponentItem::ComponentInstance(instance) => {
            let funcs: Vec<String> = instance
                .exports(engine)
                .filter_map(|(name, item)| match item.ty {
                    ComponentItem::ComponentFunc(f) => Some(func(name, &f)),
                    _ => None,
                })
                .collect();
            if funcs.is_empty() { " (types only)".to_owned() } else { format!(": {}", funcs.join(", ")) }
        }
        ComponentItem::ComponentFunc(f) => format!(": {}", func("", f)),
        ComponentItem::CoreFunc(_) => " (core function)".to_owned(),
        ComponentItem::Module(_) => " (core module)".to_owned(),
        ComponentItem::Component(_) => " (component)".to_owned(),
        ComponentItem::Type(_) => " (type)".to_owned(),
        ComponentItem::Resource(_) => " (resource)".to_owned(),
    }
}
