use crate::units::ConfigDuration;
use serde::Deserialize;
use std::time::Duration;

/// `[pipeline]`: batching and flow control.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most events in one batch (one plugin call, one sink request).
    /// Default 256.
    pub batch_size: usize,
    /// Longest a batch waits to fill before it is sent anyway. Default `"200ms"`.
    pub linger: ConfigDuration,
    /// Most batches between the source and the cursor commit at once; with
    /// `batch-size` it bounds memory and how much is re-sent after a crash.
    /// Default 4.
    pub batches_in_flight: usize,
    /// How long a shutdown waits for batches in flight to be acknowledged
    /// before giving up on them (they are sent again at the next start).
    /// Default `"30s"`.
    pub shutdown_timeout: ConfigDuration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: 256,
            linger: ConfigDuration(Duration::from_millis(200)),
            batches_in_flight: 4,
            shutdown_timeout: ConfigDuration(Duration::from_secs(30)),
        }
    }
}

impl PipelineConfig {
    /// Checks the values; returns the key and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.batch_size == 0 {
            return Err(("pipeline.batch-size", "must be at least 1"));
        }
        if self.batches_in_flight == 0 {
            return Err(("pipeline.batches-in-flight", "must be at least 1"));
        }
        Ok(())
    }
}
