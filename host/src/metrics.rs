//! What ferry did, as Prometheus metrics (`prometheus-client`), served at
//! `/metrics` by `ferry start --http-addr` (see [`crate::observe`]).
//!
//! Code counts by name: `metrics.add("ferry_sink_events_sent_total",
//! &[("sink", name)], n)`. Every name is declared once in [`COUNTERS`], with
//! its help text, so that a typo cannot make a new one (a series appears at
//! `/metrics` once it is first counted). Labels stay few and
//! low-cardinality (sink, plugin, stage, component, outcome, result).
//! Counters change once per batch or per plugin call, not per event.

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The most distinct counter names one plugin may create; more are ignored
/// so that a plugin cannot grow ferry's memory through its counters.
const MAX_PLUGIN_COUNTERS: usize = 64;

/// Every counter ferry keeps, with its help text. The names end in `_total`
/// as they appear at `/metrics`.
pub const COUNTERS: &[(&str, &str)] = &[
    ("ferry_events_received_total", "Records read from the source: events and unreadable input."),
    ("ferry_plugin_events_in_total", "Events handed to a plugin, by plugin."),
    ("ferry_plugin_events_out_total", "Events a plugin passed on to the next plugin or the sinks, by plugin."),
    ("ferry_plugin_events_dropped_total", "Events a plugin dropped on purpose, by plugin."),
    ("ferry_plugin_failures_total", "Plugin calls that failed (trap, deadline, memory, bad result), by plugin."),
    ("ferry_plugin_reloads_total", "Plugin chain reloads, by result (ok, refused)."),
    ("ferry_plugin_counter_total", "Counters the plugins keep through the `count` import, by plugin and name."),
    ("ferry_sink_events_sent_total", "Events a sink acknowledged, by sink; an event sent to two sinks counts once for each."),
    ("ferry_sink_events_failed_total", "Events a sink refused for good (they are dead-lettered), by sink."),
    ("ferry_sink_retries_total", "Delivery attempts that failed and were retried, by sink."),
    ("ferry_http_requests_total", "HTTP requests to a sink, by sink and outcome."),
    (
        "ferry_http_retried_total",
        "HTTP requests a sink's receiver did not take and ferry retries, by sink and cause (the status, or tls, connect, timeout).",
    ),
    (
        "ferry_events_dead_lettered_total",
        "Events written to the dead-letter table, by stage (source, plugin, sink) and component (its name).",
    ),
    ("ferry_batches_committed_total", "Batches whose source position was committed after every sink acknowledged them."),
];

/// The label pairs of one series.
type Labels = Vec<(String, String)>;

/// Makes the histograms' buckets: 1 ms to about 33 s, doubling.
type Buckets = fn() -> Histogram;

fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// One counter family and its sum over all labels (for the run's summary
/// and the progress line, which want totals without walking the series).
struct Counted {
    family: Family<Labels, Counter>,
    total: AtomicU64,
}

/// Every metric of one ferry, shared by all its parts.
pub struct Metrics {
    registry: Registry,
    counters: HashMap<&'static str, Counted>,
    /// Distinct counter names per plugin, for [`MAX_PLUGIN_COUNTERS`].
    plugin_counter_names: Mutex<HashMap<String, usize>>,
    sink_request_seconds: Family<Labels, Histogram, Buckets>,
    plugin_call_seconds: Family<Labels, Histogram, Buckets>,
    newest_delivered: Gauge<f64, AtomicU64>,
    lag_seconds: Gauge<f64, AtomicU64>,
    source_parts_failing: Gauge,
    leader: Gauge,
    lease_epoch: Gauge,
    slot: Gauge,
    /// The newest event time of each batch between the plugins and the
    /// commit, by batch sequence number: the lag is measured from what
    /// was committed, not from what was read.
    batch_times: Mutex<BTreeMap<u64, SystemTime>>,
    /// The newest event time delivered and committed, kept a time for the
    /// lag; the gauge shows it in seconds.
    newest_time: Mutex<Option<SystemTime>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let mut counters = HashMap::new();
        for (name, help) in COUNTERS {
            let family = Family::<Labels, Counter>::default();
            // prometheus-client adds `_total` to a counter's name itself.
            registry.register(name.trim_end_matches("_total"), *help, family.clone());
            counters.insert(*name, Counted { family, total: AtomicU64::new(0) });
        }
        let sink_request_seconds = Family::<Labels, Histogram, Buckets>::new_with_constructor(seconds_buckets as Buckets);
        registry.register(
            "ferry_sink_request_seconds",
            "Time from sending one request (one batch) to a sink to its answer, by sink; retries are separate requests.",
            sink_request_seconds.clone(),
        );
        let plugin_call_seconds = Family::<Labels, Histogram, Buckets>::new_with_constructor(seconds_buckets as Buckets);
        registry.register("ferry_plugin_call_seconds", "Time of one plugin call on one batch, by plugin.", plugin_call_seconds.clone());
        let newest_delivered = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "ferry_newest_delivered_event_timestamp_seconds",
            "The `time` of the newest event whose batch was delivered and committed, in seconds since 1970; 0 until one is.",
            newest_delivered.clone(),
        );
        let lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "ferry_lag_seconds",
            "Now minus the `time` of the newest event delivered and committed; 0 until one is.",
            lag_seconds.clone(),
        );
        let source_parts_failing = Gauge::default();
        registry.register(
            "ferry_source_parts_failing",
            "Parts of the source's input that fail while the rest flows (session recordings, export chunks), asked for again within bounds.",
            source_parts_failing.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "ferry_leader",
            "1 while this instance is the active one (always, with SQLite state); 0 while it stands by for instances sharing a PostgreSQL state.",
            leader.clone(),
        );
        let lease_epoch = Gauge::default();
        registry.register(
            "ferry_lease_epoch",
            "The epoch of the lease this instance holds (PostgreSQL state); it grows by one at every takeover. 0 while standing by.",
            lease_epoch.clone(),
        );
        let slot = Gauge::default();
        registry.register(
            "ferry_slot",
            "The slot whose lease this instance holds while active ([leadership] slots; 0 with one slot or SQLite state).",
            slot.clone(),
        );
        Metrics {
            registry,
            counters,
            plugin_counter_names: Mutex::new(HashMap::new()),
            sink_request_seconds,
            plugin_call_seconds,
            newest_delivered,
            lag_seconds,
            source_parts_failing,
            leader,
            lease_epoch,
            slot,
            batch_times: Mutex::new(BTreeMap::new()),
            newest_time: Mutex::new(None),
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Metrics {
    /// Adds `delta` to the counter `name` (one of [`COUNTERS`]) with `labels`.
    pub fn add(&self, name: &str, labels: &[(&str, &str)], delta: u64) {
        let Some(counted) = self.counters.get(name) else {
            debug_assert!(false, "the counter {name} is not declared in metrics::COUNTERS");
            return;
        };
        counted.family.get_or_create(&self::labels(labels)).inc_by(delta);
        counted.total.fetch_add(delta, Ordering::Relaxed);
    }

    /// Adds to a counter a plugin asked for through the `count` import.
    pub fn add_plugin_counter(&self, plugin: &str, counter: &str, delta: u64) {
        let name = "ferry_plugin_counter_total";
        let series = labels(&[("plugin", plugin), ("name", counter)]);
        let Some(counted) = self.counters.get(name) else { return };
        if counted.family.get(&series).is_none() {
            let mut names = self.plugin_counter_names.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let known = names.entry(plugin.to_owned()).or_insert(0);
            if *known >= MAX_PLUGIN_COUNTERS {
                return;
            }
            *known += 1;
        }
        counted.family.get_or_create(&series).inc_by(delta);
        counted.total.fetch_add(delta, Ordering::Relaxed);
    }

    /// The current value of a counter, 0 if it was never touched.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters.get(name).and_then(|counted| counted.family.get(&self::labels(labels)).map(|counter| counter.get())).unwrap_or(0)
    }

    /// The sum of a counter over all its labels.
    pub fn total(&self, name: &str) -> u64 {
        self.counters.get(name).map_or(0, |counted| counted.total.load(Ordering::Relaxed))
    }

    /// Records how long one request to the sink `sink` took.
    pub fn observe_sink_request(&self, sink: &str, took: Duration) {
        self.sink_request_seconds.get_or_create(&labels(&[("sink", sink)])).observe(took.as_secs_f64());
    }

    /// Records how long one call of the plugin `plugin` took.
    pub fn observe_plugin_call(&self, plugin: &str, took: Duration) {
        self.plugin_call_seconds.get_or_create(&labels(&[("plugin", plugin)])).observe(took.as_secs_f64());
    }

    /// The events handed to the plugin `plugin` and those it passed on.
    pub fn plugin_events(&self, plugin: &str, events_in: usize, events_out: usize) {
        self.add("ferry_plugin_events_in_total", &[("plugin", plugin)], events_in as u64);
        self.add("ferry_plugin_events_out_total", &[("plugin", plugin)], events_out as u64);
    }

    /// Notes the newest event time of batch `seq`, read before the plugins
    /// (the same value the cursor's commit stores).
    pub fn batch_read(&self, seq: u64, time: SystemTime) {
        let mut times = self.batch_times.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        times.insert(seq, time);
    }

    /// Every batch up to `seq` was delivered and committed: its newest event
    /// time becomes the newest delivered one.
    pub fn committed_through(&self, seq: u64) {
        let mut times = self.batch_times.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let newest = times.range(..=seq).map(|(_, time)| *time).max();
        *times = times.split_off(&seq.saturating_add(1));
        drop(times);
        let Some(newest) = newest else { return };
        let mut delivered = self.newest_time.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if delivered.is_none_or(|known| newest > known) {
            *delivered = Some(newest);
            self.newest_delivered.set(newest.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64()));
        }
    }

    /// Now minus the newest delivered event's time; `None` until an event
    /// with a time was delivered.
    pub fn lag(&self) -> Option<Duration> {
        let newest = (*self.newest_time.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))?;
        Some(SystemTime::now().duration_since(newest).unwrap_or_default())
    }

    /// Whether this instance is active, and the epoch of its lease (0 with
    /// SQLite state, or while standing by).
    pub fn set_leader(&self, leads: bool, epoch: i64) {
        self.leader.set(i64::from(leads));
        self.lease_epoch.set(epoch);
    }

    /// The slot whose lease this instance holds.
    pub fn set_slot(&self, slot: u32) {
        self.slot.set(i64::from(slot));
    }

    /// Every metric in the OpenMetrics text format, which Prometheus reads
    /// (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        self.lag_seconds.set(self.lag().map_or(0.0, |lag| lag.as_secs_f64()));
        self.source_parts_failing.set(i64::try_from(crate::observe::health().source_parts_failing()).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_label_and_in_total() {
        let metrics = Metrics::default();
        metrics.add("ferry_sink_events_sent_total", &[("sink", "a")], 3);
        metrics.add("ferry_sink_events_sent_total", &[("sink", "b")], 4);
        metrics.add("ferry_sink_events_sent_total", &[("sink", "a")], 1);
        assert_eq!(metrics.get("ferry_sink_events_sent_total", &[("sink", "a")]), 4);
        assert_eq!(metrics.total("ferry_sink_events_sent_total"), 8);
        let rendered = metrics.render();
        assert!(rendered.contains("ferry_sink_events_sent_total{sink=\"b\"} 4\n"), "{rendered}");
        assert!(rendered.contains("# HELP ferry_sink_events_sent Events a sink acknowledged"), "{rendered}");
        assert!(rendered.ends_with("# EOF\n"), "{rendered}");
    }

    #[test]
    fn every_declared_counter_renders_under_its_own_name() {
        let metrics = Metrics::default();
        for (name, _) in COUNTERS {
            metrics.add(name, &[("sink", "s")], 1);
        }
        let rendered = metrics.render();
        for (name, _) in COUNTERS {
            assert!(name.ends_with("_total"), "{name}");
            assert!(
                rendered.contains(&format!("# TYPE {} counter\n", name.trim_end_matches("_total"))),
                "{name} missing from:\n{rendered}"
            );
            assert!(rendered.contains(&format!("\n{name}{{sink=\"s\"}} 1\n")), "{name} missing from:\n{rendered}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::default();
        metrics.add("ferry_plugin_failures_total", &[("plugin", "a\"b")], 1);
        assert!(metrics.render().contains("ferry_plugin_failures_total{plugin=\"a\\\"b\"} 1\n"));
    }

    #[test]
    fn a_plugin_cannot_create_counters_without_bound() {
        let metrics = Metrics::default();
        for i in 0..(MAX_PLUGIN_COUNTERS + 10) {
            metrics.add_plugin_counter("p", &format!("c{i}"), 1);
        }
        metrics.add_plugin_counter("p", "c0", 1);
        metrics.add_plugin_counter("q", "c0", 1);
        assert_eq!(metrics.total("ferry_plugin_counter_total"), MAX_PLUGIN_COUNTERS as u64 + 2);
        assert_eq!(metrics.get("ferry_plugin_counter_total", &[("plugin", "p"), ("name", "c0")]), 2);
    }

    #[test]
    fn histograms_count_each_observation() {
        let metrics = Metrics::default();
        metrics.observe_sink_request("default", Duration::from_millis(3));
        metrics.observe_sink_request("default", Duration::from_millis(300));
        metrics.observe_plugin_call("redact", Duration::from_micros(50));
        let rendered = metrics.render();
        assert!(rendered.contains("ferry_sink_request_seconds_count{sink=\"default\"} 2\n"), "{rendered}");
        assert!(rendered.contains("ferry_plugin_call_seconds_count{plugin=\"redact\"} 1\n"), "{rendered}");
    }

    #[test]
    fn lag_follows_the_newest_committed_batch_only() {
        let metrics = Metrics::default();
        assert_eq!(metrics.lag(), None);
        let time = |text: &str| crate::units::parse_time(text).expect("a time");
        metrics.batch_read(0, time("2020-01-01T00:00:00Z"));
        metrics.batch_read(1, time("2020-01-01T00:10:00.123456Z"));
        assert_eq!(metrics.lag(), None, "nothing committed yet");
        metrics.committed_through(0);
        let old = metrics.lag().expect("a lag once a batch is committed");
        metrics.committed_through(2);
        let new = metrics.lag().expect("a lag");
        assert!(old > new && old - new > Duration::from_secs(599), "{old:?} {new:?}");
        assert!(metrics.batch_times.lock().expect("not poisoned").is_empty());
        assert!(metrics.render().contains("ferry_newest_delivered_event_timestamp_seconds 1577837400.12"), "{}", metrics.render());
    }
}
