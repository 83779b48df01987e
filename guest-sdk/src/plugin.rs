//! The [`Plugin`] trait and the state slot behind [`export_plugin!`](crate::export_plugin).

use crate::bindings::ferry::plugin::types::Output;
use crate::{Event, Outcome, wire};
use std::cell::RefCell;
use std::thread::LocalKey;

/// A ferry plugin: its state, how config builds it, and what it does to a batch.
///
/// Implement it for the type that holds everything the plugin keeps between
/// calls (parsed config, compiled patterns, caches), then hand that type to
/// [`export_plugin!`](crate::export_plugin). The SDK owns the value: `init` creates it and every
/// later `process` call gets it back by `&mut`.
///
/// Neither method should panic: a panic traps the instance, which fails the
/// whole batch and makes ferry rebuild the plugin.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its config.
    ///
    /// `config` is the plugin's own table from ferry.toml as JSON text (`{}`
    /// when it has none). Validate all of it here, so that nothing fails later
    /// for a config reason: refuse unknown keys, missing required keys and bad
    /// values. On `Err`, ferry refuses to load the plugin and prints the
    /// message next to the plugin's name, so the message should name the key
    /// and say what was expected, without repeating the plugin's name.
    fn init(config: &str) -> Result<Self, String>;

    /// Decides what happens to each event of a batch.
    ///
    /// Must return exactly one [`Outcome`] per event, in the order of
    /// `batch`; a result of another length fails the whole batch. Each
    /// event's JSON is borrowed from the buffer ferry sent: read it in place.
    fn process(&mut self, batch: &[Event<'_>]) -> Vec<Outcome>;
}

/// The slot [`export_plugin!`](crate::export_plugin) declares for a plugin's state: empty until a
/// successful `init`.
pub type State<P> = RefCell<Option<P>>;

/// Why an event failed when `process` came before a successful `init`.
///
/// ferry always calls `init` first and does not call `process` after a failed
/// `init`, so seeing this means a host bug, not a plugin bug.
pub(crate) const NOT_INITIALISED: &str = "plugin not initialised: `process` was called before a successful `init`";

/// The export `init`: drops any earlier state, then stores the new one.
///
/// Dropping first gives the memory back before the new state is built, and
/// leaves the slot empty if the new config is refused, so a plugin never
/// goes on running with a config ferry was told is wrong.
pub fn init<P: Plugin>(slot: &'static LocalKey<State<P>>, config: &str) -> Result<(), String> {
    slot.set(None);
    let plugin = P::init(config)?;
    slot.set(Some(plugin));
    Ok(())
}

/// The export `process`: splits the batch into events, hands them to the
/// stored plugin (or fails each with `NOT_INITIALISED` when there is none),
/// and writes the outcomes as the contract's output.
pub fn process<P: Plugin>(slot: &'static LocalKey<State<P>>, lines: &[u8]) -> Output {
    wire::output(outcomes(slot, &wire::events(lines)))
}

fn outcomes<P: Plugin>(slot: &'static LocalKey<State<P>>, batch: &[Event<'_>]) -> Vec<Outcome> {
    // The component model forbids re-entering an instance while a call is
    // running, so this borrow is never contended.
    slot.with_borrow_mut(|state| match state {
        Some(plugin) => plugin.process(batch),
        None => not_initialised(batch.len()),
    })
}

/// One `NOT_INITIALISED` failure per event.
fn not_initialised(events: usize) -> Vec<Outcome> {
    (0..events).map(|_| Outcome::Fail(NOT_INITIALISED.to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the batches it saw; refuses any config but `{}`.
    struct Counter {
        batches: usize,
    }

    impl Plugin for Counter {
        fn init(config: &str) -> Result<Self, String> {
            match config {
                "{}" => Ok(Counter { batches: 0 }),
                other => Err(format!("unexpected config {other}")),
            }
        }

        fn process(&mut self, batch: &[Event<'_>]) -> Vec<Outcome> {
            self.batches += 1;
            let reason = format!("batch {}", self.batches);
            batch.iter().map(|_| Outcome::Fail(reason.clone())).collect()
        }
    }

    thread_local! {
        static SLOT: State<Counter> = const { RefCell::new(None) };
    }

    fn event() -> Event<'static> {
        Event::new(br#"{"event":"user.login"}"#)
    }

    fn reasons(outcomes: &[Outcome]) -> Vec<String> {
        outcomes
            .iter()
            .map(|outcome| match outcome {
                Outcome::Fail(reason) => reason.clone(),
                other => panic!("expected a failure, got {other:?}"),
            })
            .collect()
    }

    fn process(slot: &'static LocalKey<State<Counter>>, batch: Vec<Event<'_>>) -> Vec<Outcome> {
        outcomes(slot, &batch)
    }

    #[test]
    fn process_before_init_fails_each_event_without_panicking() {
        let outcomes = process(&SLOT, vec![event(), event()]);
        assert_eq!(reasons(&outcomes), [NOT_INITIALISED, NOT_INITIALISED]);
    }

    #[test]
    fn state_persists_between_calls() {
        init(&SLOT, "{}").expect("config is accepted");
        assert_eq!(reasons(&process(&SLOT, vec![event()])), ["batch 1"]);
        assert_eq!(reasons(&process(&SLOT, vec![event()])), ["batch 2"]);
    }

    #[test]
    fn init_again_starts_from_fresh_state() {
        init(&SLOT, "{}").expect("config is accepted");
        process(&SLOT, vec![event()]);
        init(&SLOT, "{}").expect("config is accepted");
        assert_eq!(reasons(&process(&SLOT, vec![event()])), ["batch 1"]);
    }

    #[test]
    fn refused_config_leaves_no_state_behind() {
        init(&SLOT, "{}").expect("config is accepted");
        let error = init(&SLOT, "[]").expect_err("config is refused");
        assert_eq!(error, "unexpected config []");
        assert_eq!(reasons(&process(&SLOT, vec![event()])), [NOT_INITIALISED]);
    }

    #[test]
    fn empty_batch_gets_no_outcomes() {
        assert!(process(&SLOT, Vec::new()).is_empty());
    }
}
