//! ferry's end-to-end tests: each module is one scenario that runs the real
//! `ferry` binary, with the real plugins, in a fresh folder.
//!
//! Run with `cargo test -p ferry --test e2e`. Set `FERRY_E2E_KEEP=1` to keep
//! the folder of a failed scenario (its path is in the failure message).

mod util;

mod c_plugins;
mod check;
mod cli_errors;
mod configure;
mod crash_restart;
mod demo;
mod docs;
mod event_handler_config;
mod example_chain;
mod example_plugins;
mod export;
mod export_chunks;
mod go_plugins;
mod hostile;
mod late_writer;
mod limits;
mod malformed;
mod metrics_limits;
mod missing_plugin;
mod observe;
mod odd_times;
mod ops;
mod plugin_authoring;
mod plugin_tool;
mod proxy;
mod redact_file;
mod reload;
mod replay_sessions;
mod rotation;
mod script_plugins;
mod service;
mod service_user;
mod several_instances;
mod several_instances_faults;
mod shared_export;
mod shutdown;
mod sink_faults;
mod sink_status;
mod state;
mod storage_lock;
mod stuck_recordings;
mod switch_over;
mod teleport;
mod teleport_faults;
mod torture;
