//! What ferry's criterion benches share.

use std::path::Path;

/// Criterion's median time per iteration of `group`/`variant` under
/// `dir`, in nanoseconds. The median, because the machine is shared: other
/// work inflates some samples.
pub fn median_nanos(dir: &Path, group: &str, variant: &str) -> Option<f64> {
    let path = dir.join(group).join(variant).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}
