use crate::units::ConfigDuration;
use serde::Deserialize;
use std::time::Duration;

/// `[pipeline]`: batching and flow control.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most events in one batch (one plugin call, one sink request).
    /// Default 256, or the page size with the event handler's config
    /// (`batch`); read it through [`PipelineConfig::batch_size`].
    pub batch_size: Option<usize>,
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
            batch_size: None,
            linger: ConfigDuration(Duration::from_millis(200)),
            batches_in_flight: 4,
            shutdown_timeout: ConfigDuration(Duration::from_secs(30)),
        }
    }
}

/// The largest `batch-size` taken: a batch is held in memory whole (and
/// its channels are sized by it), so a mistyped huge value must be an error,
/// not an allocation failure.
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// `batch-size` when neither it nor the event handler's `batch` is set.
pub const DEFAULT_BATCH_SIZE: usize = 256;

impl PipelineConfig {
    /// Most events in one batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// Checks the values; returns the key and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let batch_size = self.batch_size();
        if batch_size == 0 {
            return Err(("pipeline.batch-size", "must be at least 1".into()));
        }
        if batch_size > MAX_BATCH_SIZE {
            return Err((
                "pipeline.batch-size",
                format!("{batch_size} is more than {MAX_BATCH_SIZE} events (each batch is held in memory whole)"),
            ));
        }
        if self.batches_in_flight == 0 {
            return Err(("pipeline.batches-in-flight", "must be at least 1".into()));
        }
        // The in-flight slots are a semaphore, which cannot hold more.
        if self.batches_in_flight > tokio::sync::Semaphore::MAX_PERMITS {
            return Err((
                "pipeline.batches-in-flight",
                format!("{} is more than the most ferry can track ({})", self.batches_in_flight, tokio::sync::Semaphore::MAX_PERMITS),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_batches_in_flight_than_a_semaphore_holds_are_refused() {
        let config = PipelineConfig { batches_in_flight: usize::MAX, ..PipelineConfig::default() };
        let (key, message) = config.validate().expect_err("refused");
        assert_eq!(key, "pipeline.batches-in-flight");
        assert!(message.contains("more than the most ferry can track"), "{message}");
        let config = PipelineConfig { batches_in_flight: tokio::sync::Semaphore::MAX_PERMITS, ..PipelineConfig::default() };
        assert!(config.validate().is_ok());
        let config = PipelineConfig { batch_size: Some(usize::MAX), ..PipelineConfig::default() };
        assert_eq!(config.validate().expect_err("refused").0, "pipeline.batch-size");
    }
}
