//! Runs a batch through the plugins in order and sorts the result by sink.

use super::json;
use crate::event::{Event, Outcome, Route};
use crate::metrics::Metrics;
use crate::plugin::{OnError, PluginError, Transform};
use crate::sink::OutEvent;
use crate::state::{DeadLetter, Stage};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, mpsc};
use std::time::Instant;

/// The plugins of one pipeline, in order, and the sinks they may route to.
pub struct Chain {
    transforms: Vec<Box<dyn Transform>>,
    sinks: BTreeSet<String>,
    default_sink: String,
    source: String,
    metrics: Arc<Metrics>,
    replacements: Option<mpsc::Receiver<Vec<Box<dyn Transform>>>>,
}

/// Hands a chain new plugins while it runs (hot reload). The chain takes
/// them at the start of its next batch, so a batch runs entirely through
/// the old plugins or entirely through the new ones, never half of each.
#[derive(Clone)]
pub struct ChainSwap {
    tx: mpsc::Sender<Vec<Box<dyn Transform>>>,
}

impl ChainSwap {
    /// Queues `transforms` to replace the running plugins before the next
    /// batch. Returns false when the chain is gone (the pipeline stopped).
    pub fn replace(&self, transforms: Vec<Box<dyn Transform>>) -> bool {
        self.tx.send(transforms).is_ok()
    }
}

/// What became of a batch's events.
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// Events to deliver, by sink name, in source order.
    pub deliveries: BTreeMap<String, Vec<OutEvent>>,
    /// Events that failed, with why.
    pub dead: Vec<DeadLetter>,
    /// How many events plugins dropped on purpose.
    pub dropped: u64,
}

/// A plugin with `on-error = "halt"` failed: ferry must stop without moving
/// the cursor past this batch.
#[derive(Debug, thiserror::Error)]
#[error("{error}; stopping because its on-error is `halt` (the batch will be retried at the next start)")]
pub struct Halted {
    /// The failure.
    pub error: PluginError,
}

/// An event on its way through the chain, with the route set so far.
struct InFlight {
    routes: Option<Arc<[String]>>,
}

impl Chain {
    /// A chain of `transforms` whose events go to `sinks` (`default_sink`
    /// when no plugin routes them). `source` names the source in dead letters.
    pub fn new(
        transforms: Vec<Box<dyn Transform>>,
        sinks: BTreeSet<String>,
        default_sink: String,
        source: String,
        metrics: Arc<Metrics>,
    ) -> Chain {
        Chain { transforms, sinks, default_sink, source, metrics, replacements: None }
    }

    /// A handle that replaces this chain's plugins between batches. Only the
    /// latest handle works: taking a new one disconnects the previous.
    pub fn swap_handle(&mut self) -> ChainSwap {
        let (tx, rx) = mpsc::channel();
        self.replacements = Some(rx);
        ChainSwap { tx }
    }

    /// The names of the plugins now in the chain, in order.
    pub fn plugin_names(&self) -> Vec<String> {
        self.transforms.iter().map(|t| t.name().to_owned()).collect()
    }

    /// Takes the newest plugins queued by a [`ChainSwap`], if any. Called
    /// only between batches; the old plugins are dropped here.
    fn take_replacement(&mut self) {
        let Some(replacements) = &self.replacements else { return };
        let mut newest = None;
        while let Ok(transforms) = replacements.try_recv() {
            newest = Some(transforms);
        }
        if let Some(transforms) = newest {
            self.transforms = transforms;
            let plugins = self.plugin_names().join(", ");
            tracing::info!(plugins = %plugins, "New plugin chain in use from this batch on.");
        }
    }

    /// Runs `events` through every plugin and sorts the survivors by sink;
    /// an event no plugin routes goes to its own sink ([`Event::sink`],
    /// session recordings to the sessions sink), else to the default sink.
    pub fn apply(&mut self, mut events: Vec<Event>) -> Result<ChainOutput, Halted> {
        self.take_replacement();
        let mut output = ChainOutput::default();
        let mut flights: Vec<InFlight> = events.iter().map(|_| InFlight { routes: None }).collect();
        for index in 0..self.transforms.len() {
            if events.is_empty() {
                break;
            }
            let transform = &mut self.transforms[index];
            let name = transform.name().to_owned();
            let (events_in, called) = (events.len(), std::time::Instant::now());
            let processed = transform.process(&events);
            self.metrics.observe_plugin_call(&name, called.elapsed());
            let results = match processed {
                Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                Err(error) => {
                    let policy = transform.on_error();
                    self.metrics.add("ferry_plugin_failures_total", &[("plugin", &name)], 1);
                    tracing::error!(plugin = %name, error = %error, policy = %policy, events = events.len(), "Plugin call failed.");
                    if policy == OnError::Halt {
                        return Err(Halted { error });
                    }
                    let fates = isolate(transform.as_mut(), &events, &error, &self.metrics);
                    fates
                        .into_iter()
                        .map(|fate| match (fate, policy) {
                            (Err(_), OnError::Pass) => Ok(Outcome::Keep),
                            (fate, _) => fate,
                        })
                        .collect()
                }
            };
            (events, flights) = self.settle(&name, events, flights, results, &mut output);
            self.metrics.plugin_events(&name, events_in, events.len());
        }
        for (event, flight) in events.into_iter().zip(flights) {
            self.deliver(event, flight, &mut output);
        }
        Ok(output)
    }

    /// Applies one plugin's outcomes; returns the events that go on. An
    /// `Err` is an event whose call failed (on its own, or when isolating
    /// ran out of budget): it is dead-lettered with that reason as it is.
    fn settle(
        &self,
        plugin: &str,
        events: Vec<Event>,
        flights: Vec<InFlight>,
        outcomes: Vec<Result<Outcome, String>>,
        output: &mut ChainOutput,
    ) -> (Vec<Event>, Vec<InFlight>) {
        let mut kept_events = Vec::with_capacity(events.len());
        let mut kept_flights = Vec::with_capacity(events.len());
        let mut dropped = 0;
        for ((event, mut flight), outcome) in events.into_iter().zip(flights).zip(outcomes) {
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(reason) => {
                    output.dead.push(self.dead_letter(plugin, &reason, event));
                    continue;
                }
            };
            let next = match settle(event, outcome, &self.sinks) {
                EventFate::Next { event, routes } => {
                    if routes.is_some() {
                        flight.routes = routes;
                    }
                    Ok(event)
                }
                EventFate::Dropped => {
                    dropped += 1;
                    continue;
                }
                EventFate::Failed { event, reason } => Err((event, reason)),
            };
            match next {
                Ok(event) => {
                    kept_events.push(event);
                    kept_flights.push(flight);
                }
                Err((event, reason)) => {
                    let reason = format!("plugin `{plugin}` failed event {}: {reason}", event.id);
                    output.dead.push(self.dead_letter(plugin, &reason, event));
                }
            }
        }
        if dropped > 0 {
            self.metrics.add("ferry_plugin_events_dropped_total", &[("plugin", plugin)], dropped);
            output.dropped += dropped;
        }
        (kept_events, kept_flights)
    }

    fn deliver(&self, event: Event, flight: InFlight, output: &mut ChainOutput) {
        let fallback;
        let routes: BTreeSet<&str> = match &flight.routes {
            Some(routes) => routes.iter().map(String::as_str).collect(),
            None => {
                fallback = event.sink.as_deref().map_or_else(|| self.default_sink.clone(), str::to_owned);
                BTreeSet::from([fallback.as_str()])
            }
        };
        let last = routes.len().saturating_sub(1);
        // A recorded session's events go by the stream's id (see `Event::stream_session`).
        let session_id = event.stream_session.map_or(event.session_id, |sid| sid.to_string());
        let mut out = Some(OutEvent { id: event.id, session_id, json: event.json });
        for (i, sink) in routes.into_iter().enumerate() {
            let event = if i == last { out.take() } else { out.clone() };
            if let Some(event) = event {
                output.deliveries.entry(sink.to_owned()).or_default().push(event);
            }
        }
    }

    /// The dead letter of `event`, which `plugin` failed: with the recording
    /// and the sink it came with, so that a replay sends it where it was going.
    fn dead_letter(&self, plugin: &str, reason: &str, event: Event) -> DeadLetter {
        DeadLetter {
            source: self.source.clone(),
            position: None,
            event_id: Some(event.id),
            stage: Stage::Plugin,
            component: plugin.to_owned(),
            reason: reason.to_owned(),
            payload: event.json,
            session_id: event.stream_session.map(|sid| sid.to_string()),
            sink: event.sink.map(|sink| sink.to_string()),
        }
    }
}

/// What one plugin outcome makes of its event.
#[derive(Debug)]
pub enum EventFate {
    /// The event goes on to the next plugin, rebuilt from the plugin's JSON
    /// when it replaced it; `routes` when the plugin routed it.
    Next {
        /// The event as it goes on.
        event: Event,
        /// The sinks the plugin routed it to (all configured), if it routed.
        routes: Option<Arc<[String]>>,
    },
    /// The plugin dropped the event on purpose.
    Dropped,
    /// The event fails: the plugin failed it, or answered what the pipeline
    /// cannot use (a replacement that is not one JSON object, a route to no
    /// sink or to a sink not in `sinks`).
    Failed {
        /// The event as the plugin received it.
        event: Event,
        /// Why, on one line.
        reason: String,
    },
}

/// Settles one plugin outcome for `event` as the chain does, given the
/// configured sink names: the one rule that `ferry start` and `ferry plugin
/// test` share, so that a plugin tried out fails where it would fail in the
/// pipeline.
pub fn settle(event: Event, outcome: Outcome, sinks: &BTreeSet<String>) -> EventFate {
    let replaced = |original: Event, json: Vec<u8>| {
        let json = if json::has_line_break(&json) { json::compact(&json) } else { json };
        let (stream_session, sink) = (original.stream_session.clone(), original.sink.clone());
        match Event::from_json(json) {
            Ok(event) => EventFate::Next { event: Event { stream_session, sink, ..event }, routes: None },
            Err(err) => EventFate::Failed { event: original, reason: format!("returned {err}") },
        }
    };
    match outcome {
        Outcome::Keep => EventFate::Next { event, routes: None },
        Outcome::Replace(json) => replaced(event, json),
        Outcome::Drop => EventFate::Dropped,
        Outcome::Fail(reason) => EventFate::Failed { event, reason: reason.replace('\n', " ") },
        Outcome::Route(Route { sinks: routes, json }) => {
            if routes.is_empty() {
                return EventFate::Failed { event, reason: "routed to no sink (use drop to drop an event)".to_owned() };
            }
            if let Some(unknown) = routes.iter().find(|sink| !sinks.contains(*sink)) {
                let reason = format!("routed to unknown sink `{unknown}`");
                return EventFate::Failed { event, reason };
            }
            let settled = match json {
                Some(json) => replaced(event, json),
                None => EventFate::Next { event, routes: None },
            };
            match settled {
                EventFate::Next { event, .. } => EventFate::Next { event, routes: Some(routes) },
                other => other,
            }
        }
    }
}

/// Most calls that may fail while isolating the events of one batch that
/// fail on their own: two per halving level, so that any two poisonous
/// events are found (each costs one failed call per level on its way down).
fn isolation_failures(events: usize) -> usize {
    let levels = usize::BITS - events.saturating_sub(1).leading_zeros();
    2 * levels as usize + 2
}

/// Isolating stops starting calls once it has taken this many deadlines.
const ISOLATION_DEADLINES: u32 = 2;

/// After a call over all of `events` failed with `error`: runs the batch
/// again by halves, halving only what fails, so that only the events that
/// fail on their own are failed. Returns one outcome or failure reason per
/// event, in order.
///
/// The budget, so that a plugin that fails every call, or sleeps to its
/// deadline in every call, does not cost 2N calls or 2N deadlines: at most
/// [`isolation_failures`] failed calls (18 for a batch of 256), and no new
/// call once isolating has taken [`ISOLATION_DEADLINES`] × the plugin's
/// deadline. A call is itself cut at the deadline, so one batch costs a
/// plugin at most 4 deadlines in all (the first call, 2 of isolating, one
/// call started just before the budget ran out). Events still undecided
/// when the budget runs out fail with the batch's error, as before
/// isolating existed.
fn isolate(transform: &mut dyn Transform, events: &[Event], error: &PluginError, metrics: &Metrics) -> Vec<Result<Outcome, String>> {
    if events.len() <= 1 {
        return events.iter().map(|_| Err(error.to_string())).collect();
    }
    let mut fates: Vec<Option<Result<Outcome, String>>> = (0..events.len()).map(|_| None).collect();
    let (max_failures, max_time) = (isolation_failures(events.len()), transform.deadline().saturating_mul(ISOLATION_DEADLINES));
    let started = Instant::now();
    let mut failures = 0;
    let mut calls = 0;
    let mut pending = halves(0..events.len());
    while let Some(range) = pending.pop() {
        if failures >= max_failures || started.elapsed() >= max_time {
            tracing::warn!(plugin = %transform.name(), calls, failures, undecided = events.len() - fates.iter().filter(|f| f.is_some()).count(), "Stopped isolating the events that fail on their own: its budget is spent; the rest of the batch follows on-error.");
            break;
        }
        calls += 1;
        match transform.process(&events[range.clone()]) {
            Ok(outcomes) => {
                for (fate, outcome) in fates[range].iter_mut().zip(outcomes) {
                    *fate = Some(Ok(outcome));
                }
            }
            Err(failed) => {
                failures += 1;
                metrics.add("ferry_plugin_failures_total", &[("plugin", transform.name())], 1);
                tracing::debug!(plugin = %transform.name(), error = %failed, events = range.len(), "Plugin call failed while isolating.");
                if range.len() == 1 {
                    fates[range.start] = Some(Err(failed.to_string()));
                } else {
                    pending.extend(halves(range));
                }
            }
        }
    }
    let alone = fates.iter().filter(|fate| matches!(fate, Some(Err(_)))).count();
    tracing::info!(plugin = %transform.name(), events = events.len(), failed_alone = alone, calls, "Isolated the events of a failed batch that fail on their own.");
    fates.into_iter().map(|fate| fate.unwrap_or_else(|| Err(error.to_string()))).collect()
}

/// The two halves of `range`, the first half last (so popped first); a
/// single event is its own half.
fn halves(range: Range<usize>) -> Vec<Range<usize>> {
    if range.len() <= 1 {
        return vec![range];
    }
    let middle = range.start + range.len() / 2;
    vec![middle..range.end, range.start..middle]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transform that answers with fixed outcomes, or fails.
    struct Scripted {
        name: &'static str,
        on_error: OnError,
        answer: fn(&[Event]) -> Result<Vec<Outcome>, PluginError>,
    }

    impl Transform for Scripted {
        fn name(&self) -> &str {
            self.name
        }
        fn on_error(&self) -> OnError {
            self.on_error
        }
        fn process(&mut self, batch: &[Event]) -> Result<Vec<Outcome>, PluginError> {
            (self.answer)(batch)
        }
    }

    fn chain(transforms: Vec<Box<dyn Transform>>) -> Chain {
        let sinks = ["default", "security"].into_iter().map(String::from).collect();
        Chain::new(transforms, sinks, "default".into(), "file:x".into(), Arc::new(Metrics::default()))
    }

    fn events(types: &[&str]) -> Vec<Event> {
        types
            .iter()
            .enumerate()
            .map(|(i, t)| Event::from_json(format!("{{\"uid\":\"u{i}\",\"event\":\"{t}\"}}").into_bytes()).expect("valid"))
            .collect()
    }

    fn ids(output: &ChainOutput, sink: &str) -> Vec<String> {
        output.deliveries.get(sink).map(|events| events.iter().map(|e| e.id.clone()).collect()).unwrap_or_default()
    }

    #[test]
    fn every_outcome_lands_where_it_says() {
        let script = Scripted {
            name: "p",
            on_error: OnError::DeadLetter,
            answer: |_| {
                Ok(vec![
                    Outcome::Keep,
                    Outcome::Drop,
                    Outcome::Replace(b"{\n \"uid\": \"u2\", \"new\": true\n}".to_vec()),
                    Outcome::Route(Route { sinks: vec!["security".into(), "default".into()].into(), json: None }),
                    Outcome::Fail("bad\nthing".into()),
                    Outcome::Route(Route { sinks: vec!["nowhere".into()].into(), json: None }),
                    Outcome::Replace(b"not json".to_vec()),
                ])
            },
        };
        let mut chain = chain(vec![Box::new(script)]);
        let output = chain.apply(events(&["a", "b", "c", "d", "e", "f", "g"])).expect("no halt");
        assert_eq!(ids(&output, "default"), ["u0", "u2", "u3"]);
        assert_eq!(ids(&output, "security"), ["u3"]);
        assert_eq!(output.deliveries["default"][1].json, br#"{"uid":"u2","new":true}"#.to_vec());
        assert_eq!(output.dropped, 1);
        let dead: Vec<_> = output.dead.iter().map(|d| (d.event_id.clone().unwrap_or_default(), d.reason.clone())).collect();
        assert_eq!(dead.len(), 3);
        assert_eq!(dead[0], ("u4".into(), "plugin `p` failed event u4: bad thing".into()));
        assert!(dead[1].1.ends_with("routed to unknown sink `nowhere`"), "{}", dead[1].1);
        assert_eq!(dead[2].1, "plugin `p` failed event u6: returned invalid JSON: expected ident at line 1 column 2");
        assert_eq!(output.dead[2].payload, br#"{"uid":"u6","event":"g"}"#.to_vec(), "the original is kept");
    }

    fn failing(on_error: OnError) -> Box<dyn Transform> {
        Box::new(Scripted {
            name: "broken",
            on_error,
            answer: |_| Err(PluginError::Call { plugin: "broken".into(), message: "trapped: oops".into() }),
        })
    }

    #[test]
    fn a_failed_call_follows_the_plugins_policy() {
        let output = chain(vec![failing(OnError::DeadLetter)]).apply(events(&["a", "b"])).expect("no halt");
        assert!(output.deliveries.is_empty());
        assert_eq!(output.dead.len(), 2);
        assert_eq!(output.dead[0].reason, "plugin `broken` failed: trapped: oops");
        assert_eq!(output.dead[0].component, "broken");

        let output = chain(vec![failing(OnError::Pass)]).apply(events(&["a", "b"])).expect("no halt");
        assert_eq!(ids(&output, "default"), ["u0", "u1"]);
        assert!(output.dead.is_empty());

        let halted = chain(vec![failing(OnError::Halt)]).apply(events(&["a"])).expect_err("halts");
        assert!(halted.to_string().contains("on-error is `halt`"), "{halted}");
    }

    #[test]
    fn a_swap_takes_effect_at_the_next_batch_and_the_newest_wins() {
        let dropper = || {
            Box::new(Scripted { name: "dropper", on_error: OnError::DeadLetter, answer: |b| Ok(b.iter().map(|_| Outcome::Drop).collect()) })
        };
        let keeper = || {
            Box::new(Scripted { name: "keeper", on_error: OnError::DeadLetter, answer: |b| Ok(b.iter().map(|_| Outcome::Keep).collect()) })
        };
        let mut chain = chain(vec![dropper()]);
        let swap = chain.swap_handle();
        assert_eq!(chain.apply(events(&["a"])).expect("no halt").dropped, 1);
        assert!(swap.replace(vec![dropper()]));
        assert!(swap.replace(vec![keeper()]));
        assert_eq!(chain.plugin_names(), ["dropper"], "nothing changes until a batch starts");
        let output = chain.apply(events(&["a", "b"])).expect("no halt");
        assert_eq!((ids(&output, "default").len(), output.dropped), (2, 0), "the newest chain ran the whole batch");
        assert_eq!(chain.plugin_names(), ["keeper"]);
        drop(chain);
        assert!(!swap.replace(vec![keeper()]), "a stopped chain refuses replacements");
    }

    #[test]
    fn later_plugins_see_earlier_changes_and_the_last_route_wins() {
        let first = Scripted {
            name: "first",
            on_error: OnError::DeadLetter,
            answer: |batch| {
                Ok(batch
                    .iter()
                    .map(|_| {
                        Outcome::Route(Route { sinks: vec!["security".into()].into(), json: Some(b"{\"uid\":\"x\",\"step\":1}".to_vec()) })
                    })
                    .collect())
            },
        };
        let second = Scripted {
            name: "second",
            on_error: OnError::DeadLetter,
            answer: |batch| {
                assert!(batch.iter().all(|e| e.json == b"{\"uid\":\"x\",\"step\":1}"));
                Ok(batch.iter().map(|_| Outcome::Keep).collect())
            },
        };
        let output = chain(vec![Box::new(first), Box::new(second)]).apply(events(&["a"])).expect("no halt");
        assert_eq!(ids(&output, "security"), ["x"]);
        assert!(!output.deliveries.contains_key("default"));
    }

    /// A chain of the example plugin `ecs` and then `second`, built from
    /// `plugins/` and loaded through the real runtime.
    fn after_ecs(second: crate::plugin::WasmPlugin) -> Chain {
        chain(vec![Box::new(crate::plugin::examples_tests::load("ecs", "")), Box::new(second)])
    }

    #[test]
    fn a_rust_plugin_after_ecs_sees_the_type_and_id_ferry_sees() {
        use crate::plugin::examples_tests::{fixtures, load};
        let mut events = fixtures();
        // One event without a `uid`: its id is the SHA-256 of its original JSON.
        events.push(
            Event::from_json(br#"{"event":"session.start","time":"2024-01-01T00:00:00Z","user":"bob","sid":"s-1"}"#.to_vec())
                .expect("valid"),
        );
        let starts: Vec<&str> = events.iter().filter(|event| event.event_type == "session.start").map(|event| event.id.as_str()).collect();
        assert_eq!(starts.len(), 2, "the fixture's session.start and the one without a uid");

        // The type: `hostile` fails the events its SDK reads as `session.start`.
        let output =
            after_ecs(load("hostile", "mode = \"fail-each\"\nwhen-type = \"session.start\"")).apply(events.clone()).expect("no halt");
        let failed: Vec<&str> = output.dead.iter().filter_map(|dead| dead.event_id.as_deref()).collect();
        assert_eq!(failed, starts, "the plugin after ecs sees each event's type");
        assert_eq!(output.deliveries["default"].len(), events.len() - starts.len());

        // The id: `hostile` writes each event's id as its SDK reads it.
        let output = after_ecs(load("hostile", "mode = \"remember\"")).apply(events.clone()).expect("no halt");
        let seen: Vec<String> = output.deliveries["default"]
            .iter()
            .map(|out| {
                serde_json::from_slice::<serde_json::Value>(&out.json).expect("hostile writes JSON")["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
        assert_eq!(seen, ids, "the plugin after ecs sees each event's id as ferry does");
    }

    /// Fails any call whose batch holds an event with a uid in `poison`,
    /// after sleeping `pause`; counts its calls.
    struct Poisoned {
        poison: &'static [&'static str],
        on_error: OnError,
        pause: std::time::Duration,
        calls: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Transform for Poisoned {
        fn name(&self) -> &str {
            "poisoned"
        }
        fn on_error(&self) -> OnError {
            self.on_error
        }
        fn deadline(&self) -> std::time::Duration {
            std::time::Duration::from_millis(20)
        }
        fn process(&mut self, batch: &[Event]) -> Result<Vec<Outcome>, PluginError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(self.pause);
            if batch.iter().any(|event| self.poison.contains(&event.id.as_str())) {
                return Err(PluginError::Call { plugin: "poisoned".into(), message: "wasm trap: poison".into() });
            }
            Ok(batch.iter().map(|_| Outcome::Keep).collect())
        }
    }

    fn poisoned(
        poison: &'static [&'static str],
        on_error: OnError,
        pause_ms: u64,
    ) -> (Box<dyn Transform>, Arc<std::sync::atomic::AtomicUsize>) {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let transform = Poisoned { poison, on_error, pause: std::time::Duration::from_millis(pause_ms), calls: calls.clone() };
        (Box::new(transform), calls)
    }

    fn many(n: usize) -> Vec<Event> {
        events(&vec!["e"; n])
    }

    #[test]
    fn only_the_events_that_fail_on_their_own_are_dead_lettered() {
        let (transform, calls) = poisoned(&["u77", "u200"], OnError::DeadLetter, 0);
        let output = chain(vec![transform]).apply(many(256)).expect("no halt");
        let dead: Vec<_> = output.dead.iter().map(|d| (d.event_id.clone().unwrap_or_default(), d.reason.clone())).collect();
        assert_eq!(
            dead,
            [
                ("u77".into(), "plugin `poisoned` failed: wasm trap: poison".into()),
                ("u200".into(), "plugin `poisoned` failed: wasm trap: poison".into())
            ]
        );
        let delivered = ids(&output, "default");
        assert_eq!(delivered.len(), 254);
        assert!(delivered.iter().all(|id| id != "u77" && id != "u200"), "in order, without the poison");
        assert!(calls.load(std::sync::atomic::Ordering::SeqCst) <= 1 + 2 * isolation_failures(256), "{calls:?}");
    }

    #[test]
    fn a_poisonous_event_passes_alone_when_the_policy_is_pass_and_halt_stays_halt() {
        let (transform, _) = poisoned(&["u3"], OnError::Pass, 0);
        let output = chain(vec![transform]).apply(many(8)).expect("no halt");
        assert_eq!(ids(&output, "default").len(), 8);
        assert!(output.dead.is_empty());

        let (transform, calls) = poisoned(&["u3"], OnError::Halt, 0);
        assert!(chain(vec![transform]).apply(many(8)).is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "halt does not retry");
    }

    #[test]
    fn a_plugin_that_fails_every_call_costs_a_bounded_number_of_calls() {
        let (transform, calls) = every_call_fails(0);
        let output = chain(vec![transform]).apply(many(256)).expect("no halt");
        assert_eq!(output.dead.len(), 256, "nothing is lost");
        assert!(output.dead.iter().all(|d| d.reason == "plugin `poisoned` failed: wasm trap: poison"));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1 + isolation_failures(256), "not 2N calls");
    }

    #[test]
    fn a_plugin_that_runs_to_its_deadline_every_call_costs_at_most_four_deadlines() {
        // The deadline is 20 ms; each call takes all of it and fails.
        let (transform, calls) = every_call_fails(20);
        let started = std::time::Instant::now();
        let output = chain(vec![transform]).apply(many(256)).expect("no halt");
        let took = started.elapsed();
        assert_eq!(output.dead.len(), 256);
        assert!(calls.load(std::sync::atomic::Ordering::SeqCst) <= 4, "{calls:?}");
        assert!(took < std::time::Duration::from_millis(4 * 20 + 60), "{took:?}");
    }

    /// A plugin whose every call fails (every uid is poison).
    fn every_call_fails(pause_ms: u64) -> (Box<dyn Transform>, Arc<std::sync::atomic::AtomicUsize>) {
        static EVERY_UID: std::sync::LazyLock<Vec<&'static str>> =
            std::sync::LazyLock::new(|| (0..256).map(|i| &*Box::leak(format!("u{i}").into_boxed_str())).collect());
        poisoned(EVERY_UID.as_slice(), OnError::DeadLetter, pause_ms)
    }
}
