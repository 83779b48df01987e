use std::path::PathBuf;

/// Why a plugin could not be loaded or a call to it failed. Every message is
/// one line naming the plugin (by file when loading, by name when running).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin file cannot be read.
    #[error("plugin {}: cannot read: {source}", path.display())]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a WebAssembly component (perhaps a core module, or
    /// not WebAssembly at all).
    #[error("plugin {}: not a ferry plugin: {message}", path.display())]
    NotAPlugin {
        /// The plugin file.
        path: PathBuf,
        /// What was found instead.
        message: String,
    },
    /// The plugin was built against a version of the contract this ferry
    /// cannot run.
    #[error("plugin {}: built for ferry:plugin@{found}, but this ferry runs ferry:plugin@{supported}; rebuild it against {supported}", path.display())]
    Incompatible {
        /// The plugin file.
        path: PathBuf,
        /// The version the plugin was built against.
        found: String,
        /// The version this ferry implements.
        supported: String,
    },
    /// The plugin imports something ferry does not provide.
    #[error("plugin {}: imports `{import}`, which ferry does not provide (plugins may import only ferry:plugin/host and WASI)", path.display())]
    UnsupportedImport {
        /// The plugin file.
        path: PathBuf,
        /// The import name.
        import: String,
    },
    /// The engine or the compile cache failed in a way that is not the
    /// plugin's fault.
    #[error("plugin {}: {message}", path.display())]
    Runtime {
        /// The plugin file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The plugin's `init` refused its config.
    #[error("plugin `{plugin}` refused its config: {message}")]
    InitRefused {
        /// The plugin's name.
        plugin: String,
        /// The plugin's own message.
        message: String,
    },
    /// A call trapped, ran past its deadline or past its memory cap.
    #[error("plugin `{plugin}` failed: {message}")]
    Call {
        /// The plugin's name.
        plugin: String,
        /// What happened, on one line.
        message: String,
    },
    /// A call returned a result that breaks the contract.
    #[error("plugin `{plugin}` returned a malformed result: {message}")]
    Malformed {
        /// The plugin's name.
        plugin: String,
        /// What is wrong with it.
        message: String,
    },
}
