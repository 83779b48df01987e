//! Counters for what ferry did, named `ferry_*_total` with few labels
//! (sink, plugin, stage), rendered in Prometheus' text format.
//!
//! Counters change once per batch or per plugin call, not per event, so one
//! mutex-guarded map is cheap enough and keeps the code obvious.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The most distinct counter names one plugin may create; more are ignored
/// so that a plugin cannot grow ferry's memory through its counters.
const MAX_PLUGIN_COUNTERS: usize = 64;

/// A set of counters shared by every part of one ferry.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Adds `delta` to counter `name` with `labels`.
    pub fn add(&self, name: &str, labels: &[(&str, &str)], delta: u64) {
        let key = render_key(name, labels);
        let mut counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *counters.entry(key).or_insert(0) += delta;
    }

    /// Adds to a counter a plugin asked for through the `count` import.
    pub fn add_plugin_counter(&self, plugin: &str, counter: &str, delta: u64) {
        let key = render_key("ferry_plugin_counter_total", &[("plugin", plugin), ("name", counter)]);
        let mut counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let prefix = render_key("ferry_plugin_counter_total", &[("plugin", plugin)]);
        let prefix = prefix.trim_end_matches('}');
        if !counters.contains_key(&key)
            && counters.keys().filter(|k| k.starts_with(prefix)).count() >= MAX_PLUGIN_COUNTERS
        {
            return;
        }
        *counters.entry(key).or_insert(0) += delta;
    }

    /// The current value of a counter, 0 if it was never touched.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counters.get(&render_key(name, labels)).copied().unwrap_or(0)
    }

    /// The sum of a counter over all its labels.
    pub fn total(&self, name: &str) -> u64 {
        let counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counters
            .iter()
            .filter(|(key, _)| key.as_str() == name || key.starts_with(&format!("{name}{{")))
            .map(|(_, value)| value)
            .sum()
    }

    /// Every counter in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let counters = self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counters.iter().map(|(key, value)| format!("{key} {value}\n")).collect()
    }
}

fn render_key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_label_and_in_total() {
        let metrics = Metrics::default();
        metrics.add("ferry_events_delivered_total", &[("sink", "a")], 3);
        metrics.add("ferry_events_delivered_total", &[("sink", "b")], 4);
        metrics.add("ferry_events_delivered_total", &[("sink", "a")], 1);
        assert_eq!(metrics.get("ferry_events_delivered_total", &[("sink", "a")]), 4);
        assert_eq!(metrics.total("ferry_events_delivered_total"), 8);
        assert!(metrics.render().contains("ferry_events_delivered_total{sink=\"b\"} 4\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::default();
        metrics.add("x_total", &[("plugin", "a\"b")], 1);
        assert_eq!(metrics.render(), "x_total{plugin=\"a\\\"b\"} 1\n");
    }

    #[test]
    fn a_plugin_cannot_create_counters_without_bound() {
        let metrics = Metrics::default();
        for i in 0..(MAX_PLUGIN_COUNTERS + 10) {
            metrics.add_plugin_counter("p", &format!("c{i}"), 1);
        }
        metrics.add_plugin_counter("p", "c0", 1);
        assert_eq!(metrics.total("ferry_plugin_counter_total"), MAX_PLUGIN_COUNTERS as u64 + 1);
    }
}
