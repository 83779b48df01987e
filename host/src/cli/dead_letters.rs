//! `ferry dead-letters`: list, show, replay and purge a config's dead letters.
//!
//! `replay` builds today's chain and sinks from the config the way `start`
//! does and sends each dead letter on: one a plugin or the source gave up
//! on goes through the whole chain to the sink it was meant for (a
//! recording's own sink, under its session). One a sink refused goes back to
//! that sink only (the others took it), under the session it was posted
//! under, so that a recording's events reach `<session-url>.<sid>.log`
//! again, `print` events included.
//!
//! A sink letter passed the chain before it was refused, and goes through
//! today's chain again, so that what changed since applies (a redaction
//! tightened after the failure, a filter that now drops it). Running a
//! transform twice is harmless for those ferry ships and the usual ones:
//! a redaction masks what is masked already, a tag sets the same field to
//! the same value. A transform that is not idempotent (one that appends to a
//! list, hashes a field, counts) would apply twice: `--as-stored` sends
//! exactly what was stored instead. Today's routes are not followed for a
//! sink letter: it goes to the sink that refused it, or nowhere when today's
//! chain drops it. A dead letter is deleted
//! only once every sink it went to acknowledged it (or today's chain
//! dropped it); one that fails again keeps its row, with the new stage,
//! reason and payload, in the same transaction. Nothing is lost.

use super::out::say;
use crate::app::FerryConfig;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::pipeline::{Chain, ChainOutput};
use crate::plugin::Transform;
use crate::retry::{Backoff, Retry};
use crate::shutdown::Shutdown;
use crate::sink::{OutEvent, Sink};
use crate::source::teleport::audit::ChunkLetter;
use crate::source::teleport::sessions::RecordingLetter;
use crate::source::{Item, Source};
use crate::state::{DeadLetter, Filter, Stage, State, StoredDeadLetter};
use anyhow::Context;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How many dead letters a replay sends per round (one request per sink).
const REPLAY_CHUNK: usize = 100;

/// `ferry dead-letters [list|show|replay|purge]`; alone, it lists.
#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<DeadLettersCommand>,
    /// The config file.
    #[arg(short, long, env = "FERRY_CONFIG", default_value = "ferry.toml", global = true)]
    pub config: PathBuf,
    /// Which dead letters to list (or, before `list`, `replay` or `purge`,
    /// which ones they are about).
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Which dead letters a command is about; every filter given must hold.
/// Only the commands that take a set of dead letters have them: `show`
/// takes one id, and a filter beside it would be ignored.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only those of this stage.
    #[arg(long, value_parser = ["source", "plugin", "sink"])]
    pub stage: Option<String>,
    /// Only those of this plugin, sink or source (its name).
    #[arg(long)]
    pub component: Option<String>,
    /// Only the dead letter with this id (repeatable).
    #[arg(long = "id")]
    pub ids: Vec<i64>,
    /// At most this many, oldest first (`list`: 1000 unless given).
    #[arg(long)]
    pub limit: Option<u32>,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.stage.is_none() && self.component.is_none() && self.ids.is_empty() && self.limit.is_none()
    }

    /// These filters and those given after the subcommand, together.
    fn and(self, after: FilterArgs) -> FilterArgs {
        FilterArgs {
            stage: after.stage.or(self.stage),
            component: after.component.or(self.component),
            ids: self.ids.into_iter().chain(after.ids).collect(),
            limit: after.limit.or(self.limit),
        }
    }

    fn into_filter(self) -> Filter {
        Filter { stage: self.stage, component: self.component, ids: self.ids, limit: self.limit }
    }
}

/// The dead-letter commands.
#[derive(Debug, clap::Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters as JSON Lines, oldest first (stage, plugin or sink,
    /// reason, the event).
    List {
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Show one dead letter, its event as JSON.
    Show {
        /// Its id (the `id` of `list`).
        id: i64,
    },
    /// Send dead letters again through today's chain and sinks; each is
    /// removed once delivered, one that fails again stays with its new
    /// reason. Exits non-zero when any failed again.
    Replay {
        /// Longest time to wait for the sinks; what is not acknowledged by
        /// then stays.
        #[arg(long, default_value = "30s", value_parser = crate::units::parse_duration)]
        timeout: Duration,
        /// Send what a sink refused exactly as stored, without today's chain
        /// (for a chain with transforms that must not run twice).
        #[arg(long)]
        as_stored: bool,
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Delete dead letters: all of them with `--all`, or those the filters name.
    Purge {
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
    },
}

impl DeadLettersArgs {
    /// Carries out the command.
    pub async fn run(self) -> anyhow::Result<()> {
        let command = self.command.unwrap_or(DeadLettersCommand::List { filter: FilterArgs::default() });
        if let DeadLettersCommand::Show { id } = &command {
            anyhow::ensure!(
                self.filter.is_empty(),
                "`ferry dead-letters show {id}` shows the one dead letter its id names and takes no filters (--stage, --component, --id, --limit); use `ferry dead-letters list` with them"
            );
        }
        let config = FerryConfig::load(&self.config)?;
        let database = config.state_location()?;
        anyhow::ensure!(!database.is_missing(), "no state database at {database}: ferry has not run with this config");
        // A replay delivers and rewrites dead letters as a running ferry
        // does: on SQLite it holds the storage lock, so it never runs
        // beside one.
        let state = match command {
            DeadLettersCommand::Replay { .. } => State::open_to_write(&database).await?,
            _ => State::open_at(&database).await?,
        };
        let before = self.filter;
        let result = match command {
            DeadLettersCommand::List { filter } => {
                let filter = before.and(filter).into_filter();
                list(&state, Filter { limit: filter.limit.or(Some(1000)), ..filter }).await
            }
            DeadLettersCommand::Show { id } => show(&state, id).await,
            DeadLettersCommand::Replay { timeout, as_stored, filter } => {
                replay(&config, &state, &before.and(filter).into_filter(), timeout, as_stored).await
            }
            DeadLettersCommand::Purge { all, filter } => purge(&state, &before.and(filter).into_filter(), all).await,
        };
        state.close().await;
        result
    }
}

async fn list(state: &State, filter: Filter) -> anyhow::Result<()> {
    let letters = state.find_dead_letters(&filter).await?;
    if letters.is_empty() {
        // On stderr: stdout is JSON Lines for scripts, and none is none.
        let filtered = filter.stage.is_some() || filter.component.is_some() || !filter.ids.is_empty();
        let which = if filtered { " matching the filters" } else { "" };
        eprintln!("no dead letters{which} in {}", state.location());
        return Ok(());
    }
    let mut out = super::out::Stdout::lock();
    for letter in letters {
        let line = serde_json::to_string(&letter).context("cannot encode a dead letter")?;
        writeln!(out, "{line}")?;
    }
    Ok(())
}

async fn show(state: &State, id: i64) -> anyhow::Result<()> {
    let found = state.find_dead_letters(&Filter { ids: vec![id], ..Filter::default() }).await?;
    let Some(letter) = found.into_iter().next() else {
        anyhow::bail!("no dead letter with id {id} in {}", state.location());
    };
    let mut shown = serde_json::to_value(&letter).context("cannot encode a dead letter")?;
    // The event as JSON when it is JSON (a source dead letter may not be).
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&letter.payload) {
        shown["payload"] = event;
    }
    say!("{}", serde_json::to_string_pretty(&shown).context("cannot encode a dead letter")?)?;
    Ok(())
}

async fn purge(state: &State, filter: &Filter, all: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        all || !filter.is_everything(),
        "`ferry dead-letters purge` needs `--all` or filters (`--stage`, `--component`, `--id`, `--limit`) saying which dead letters to delete"
    );
    anyhow::ensure!(!all || filter.is_everything(), "`--all` and filters contradict each other; give one or the other");
    let removed = state.purge_dead_letters(filter).await?;
    say!("removed {removed} dead letter(s) from {}", state.location())?;
    Ok(())
}

/// What became of one dead letter in a replay: the failures it met (none:
/// delivered everywhere, or dropped by today's chain).
struct Replayed {
    id: i64,
    failures: Vec<DeadLetter>,
}

async fn replay(config: &FerryConfig, state: &State, filter: &Filter, timeout: Duration, as_stored: bool) -> anyhow::Result<()> {
    let letters = state.find_dead_letters(filter).await?;
    if letters.is_empty() {
        say!("no dead letters to replay in {}", state.location())?;
        return Ok(());
    }
    let metrics = Arc::new(Metrics::default());
    let parts = crate::app::build_parts(config, metrics.clone(), true).await?;
    let mut read_again = read_source_letters_again(&letters, &parts.source).await;
    let transforms: Vec<Box<dyn Transform>> = parts.plugins.into_iter().map(|p| Box::new(p) as Box<dyn Transform>).collect();
    let names = parts.sinks.keys().cloned().collect();
    let mut chain = Some(Chain::new(transforms, names, parts.default_sink, "replay".to_owned(), metrics));
    let sinks = parts.sinks;

    // One deadline for the whole replay, cut short by SIGINT or SIGTERM: a
    // sink that stays down does not hold the command for ever.
    let (trigger, shutdown) = crate::shutdown::channel();
    crate::shutdown::fire_on_signals(trigger.clone());
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        trigger.fire();
    });

    let (mut delivered, mut failed) = (0usize, 0usize);
    for chunk in letters.chunks(REPLAY_CHUNK) {
        let owned = chunk.to_vec();
        let read: Vec<Option<LetterRead>> = chunk.iter().map(|letter| read_again.remove(&letter.id)).collect();
        let taken = chain.take().expect("the chain is put back after every chunk");
        let (back, routed) = tokio::task::spawn_blocking(move || route(taken, owned, read, as_stored))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
        chain = Some(back);
        let outcomes = deliver(chunk, routed, &sinks, &shutdown, timeout).await;
        let settled: Vec<(i64, Vec<DeadLetter>)> = outcomes.into_iter().map(|r| (r.id, r.failures)).collect();
        state.settle_replayed(&settled).await?;
        for (id, failures) in &settled {
            match failures.first() {
                None => delivered += 1,
                Some(first) => {
                    failed += 1;
                    tracing::warn!(id, stage = first.stage.as_str(), component = %first.component, reason = %first.reason, "Dead letter failed again; it stays.");
                }
            }
        }
    }
    say!(
        "replayed {} dead letter(s): {delivered} delivered (or dropped by the chain) and removed, {failed} failed again and stay",
        letters.len()
    )?;
    anyhow::ensure!(
        failed == 0,
        "{failed} dead letter(s) failed again and stay in {} (`ferry dead-letters list` shows their new reasons)",
        state.location()
    );
    Ok(())
}

/// An export chunk or a session recording given up on, read again: what it
/// holds from its letter's cursor on, or why it still cannot be read.
type LetterRead = Result<Vec<Item>, String>;

/// Reads again every export chunk and session recording a Teleport source
/// gave up on (a source letter naming date, chunk and cursor, or session and
/// index), by letter id, with the config's Teleport source; a letter of
/// another cluster gets a reason, not a read.
async fn read_source_letters_again(letters: &[StoredDeadLetter], source: &Source) -> HashMap<i64, LetterRead> {
    let mut read = HashMap::new();
    for letter in letters {
        if letter.stage != Stage::Source.as_str() || !letter.source.starts_with("teleport:") {
            continue;
        }
        let (what, answer) = match (ChunkLetter::parse(&letter.payload), RecordingLetter::parse(&letter.payload), source) {
            (Some(chunk), _, Source::Teleport(teleport)) if teleport.is_this_cluster(&letter.source) => {
                let what = format!("export chunk {} of {}", chunk.chunk, chunk.date);
                (what, teleport.read_export_chunk(&chunk).await)
            }
            (None, Some(recording), Source::Teleport(teleport)) if teleport.is_this_cluster(&letter.source) => {
                let what = format!("session recording {} from event {}", recording.sid, recording.next_index);
                (what, teleport.read_recording(&recording).await)
            }
            (Some(chunk), _, _) => (format!("export chunk {} of {}", chunk.chunk, chunk.date), Err(not_read_here(letter))),
            (None, Some(recording), _) => (format!("session recording {}", recording.sid), Err(not_read_here(letter))),
            (None, None, _) => continue,
        };
        if let Ok(items) = &answer {
            tracing::info!(id = letter.id, "Read {what} again: {} event(s).", items.len());
        }
        read.insert(letter.id, answer.map_err(|reason| format!("replay: {what} still cannot be read: {reason}")));
    }
    read
}

fn not_read_here(letter: &StoredDeadLetter) -> String {
    format!("it is {}'s, which the config does not read", letter.source)
}

/// Where each dead letter of a chunk goes: per sink, the events and the
/// index in the chunk of the letter each came from; and the failures met
/// before any sink (not an event, a plugin failing again).
struct Routed {
    by_sink: BTreeMap<String, (Vec<OutEvent>, Vec<usize>)>,
    failures: Vec<Vec<DeadLetter>>,
}

/// Sends each letter through the chain (one call per letter, so that what
/// comes out is known to be its own); one a sink refused goes back to that
/// sink only, through the chain unless `as_stored`. Blocks: plugins run here.
fn route(mut chain: Chain, letters: Vec<StoredDeadLetter>, mut read: Vec<Option<LetterRead>>, as_stored: bool) -> (Chain, Routed) {
    let mut routed = Routed { by_sink: BTreeMap::new(), failures: letters.iter().map(|_| Vec::new()).collect() };
    for (index, letter) in letters.iter().enumerate() {
        let again =
            |stage: Stage, component: &str, reason: String, payload: Vec<u8>| letter_again(letter, stage, component, reason, payload);
        if letter.stage == Stage::Sink.as_str() {
            match back_to_its_sink(&mut chain, letter, as_stored) {
                Ok(Some(out)) => {
                    let entry = routed.by_sink.entry(letter.component.clone()).or_default();
                    entry.0.push(out);
                    entry.1.push(index);
                }
                Ok(None) => {} // Today's chain dropped it.
                Err(failures) => routed.failures[index].extend(failures),
            }
            continue;
        }
        match read.get_mut(index).and_then(Option::take) {
            Some(Ok(items)) => {
                // An export chunk read again: its events go through the chain
                // as one batch; one that still cannot be read keeps the letter.
                let mut events = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Item::Event(event) => events.push(event),
                        Item::Invalid(invalid) => {
                            routed.failures[index].push(again(Stage::Source, &letter.component, invalid.reason, invalid.raw))
                        }
                        Item::Progress => {}
                    }
                }
                apply(&mut chain, events, index, &mut routed, letter);
                continue;
            }
            Some(Err(reason)) => {
                routed.failures[index].push(again(Stage::Source, &letter.component, reason, letter.payload.clone()));
                continue;
            }
            None => {}
        }
        if letter.stage == Stage::Source.as_str() && letter.source.starts_with("teleport:") {
            // Any other Teleport source letter records input it could not
            // read (an event whose Struct is malformed), not an event: sent
            // on, the record would be stored as if it were one. It stays as
            // it is. (A chunk or recording given up on was read again above.)
            tracing::warn!(
                id = letter.id,
                position = letter.position.as_deref().unwrap_or_default(),
                "Dead letter {} records Teleport input that could not be read, not an event; it is not replayed.",
                letter.id
            );
            routed.failures[index].push(again(Stage::Source, &letter.component, letter.reason.clone(), letter.payload.clone()));
            continue;
        }
        let event = match Event::from_json(letter.payload.clone()) {
            Ok(event) => event,
            Err(err) => {
                routed.failures[index].push(again(
                    Stage::Source,
                    &letter.component,
                    format!("replay: still not an event: {err}"),
                    letter.payload.clone(),
                ));
                continue;
            }
        };
        // Where the source meant it to go (a recording's sink and session).
        let event =
            Event { stream_session: letter.session_id.as_deref().map(Arc::from), sink: letter.sink.as_deref().map(Arc::from), ..event };
        apply(&mut chain, vec![event], index, &mut routed, letter);
    }
    (chain, routed)
}

/// The dead letter `letter` becomes when it fails again: where it came from
/// and where it was going stay, the rest is the new failure's.
fn letter_again(letter: &StoredDeadLetter, stage: Stage, component: &str, reason: String, payload: Vec<u8>) -> DeadLetter {
    DeadLetter {
        source: letter.source.clone(),
        position: letter.position.clone(),
        event_id: letter.event_id.clone(),
        stage,
        component: component.to_owned(),
        reason,
        payload,
        session_id: letter.session_id.clone(),
        sink: letter.sink.clone(),
    }
}

/// A letter a sink refused, made ready to go back to that sink: under the
/// session it was posted under (stored with it; for a letter older than
/// that, the event's `sid`), through today's chain unless `as_stored` (see
/// the module's doc). `Ok(None)`: today's chain dropped it; `Err`: it failed
/// in the chain again.
fn back_to_its_sink(chain: &mut Chain, letter: &StoredDeadLetter, as_stored: bool) -> Result<Option<OutEvent>, Vec<DeadLetter>> {
    let parsed = Event::from_json(letter.payload.clone());
    let from_event = parsed.as_ref().ok().map(|event| event.session_id.clone());
    let session_id = letter.session_id.clone().or(from_event).unwrap_or_default();
    let event = match parsed {
        Ok(event) if !as_stored => event,
        // As stored (or not an event: a sink took it so, and gets it so again).
        Ok(event) => return Ok(Some(OutEvent { id: event.id, session_id, json: letter.payload.clone() })),
        Err(_) => {
            let id = letter.event_id.clone().unwrap_or_default();
            return Ok(Some(OutEvent { id, session_id, json: letter.payload.clone() }));
        }
    };
    let stream_session = Some(session_id.as_str()).filter(|sid| !sid.is_empty()).map(Arc::from);
    let event = Event { stream_session, sink: Some(Arc::from(letter.component.as_str())), ..event };
    // Failing in the chain now, it keeps where it was going: the next replay
    // sends it through the chain to the sink that refused it.
    let (session, sink) = (Some(session_id.clone()).filter(|sid| !sid.is_empty()), Some(letter.component.clone()));
    match chain.apply(vec![event]) {
        Err(halted) => {
            let again = letter_again(letter, Stage::Plugin, "chain", format!("replay: {}", halted.error), letter.payload.clone());
            Err(vec![DeadLetter { session_id: session, sink, ..again }])
        }
        Ok(ChainOutput { dead, .. }) if !dead.is_empty() => Err(dead
            .into_iter()
            .map(|dead| DeadLetter {
                session_id: session.clone(),
                sink: sink.clone(),
                ..letter_again(letter, dead.stage, &dead.component, dead.reason, dead.payload)
            })
            .collect()),
        // One event in: whichever sinks today's routes name, it is the same
        // event; it goes back to the sink that refused it only.
        Ok(ChainOutput { deliveries, .. }) => Ok(deliveries.into_values().flatten().next().map(|out| OutEvent { session_id, ..out })),
    }
}

/// Sends the events of the letter at `index` through the chain, noting
/// where each comes out and what fails again.
fn apply(chain: &mut Chain, events: Vec<Event>, index: usize, routed: &mut Routed, letter: &StoredDeadLetter) {
    if events.is_empty() {
        return;
    }
    match chain.apply(events) {
        Err(halted) => routed.failures[index].push(letter_again(
            letter,
            Stage::Plugin,
            "chain",
            format!("replay: {}", halted.error),
            letter.payload.clone(),
        )),
        Ok(ChainOutput { deliveries, dead, .. }) => {
            for dead in dead {
                // The chain's letter knows the session and sink of its event
                // (an export chunk's events have their own).
                let again = letter_again(letter, dead.stage, &dead.component, dead.reason, dead.payload);
                routed.failures[index].push(DeadLetter { session_id: dead.session_id, sink: dead.sink, ..again });
            }
            for (sink, events) in deliveries {
                let entry = routed.by_sink.entry(sink).or_default();
                entry.1.extend(std::iter::repeat_n(index, events.len()));
                entry.0.extend(events);
            }
        }
    }
}

/// Hands each sink its events and collects, per letter, what failed: a
/// refusal (with the sink's reason), a sink the config no longer has, or
/// no acknowledgement before the deadline.
async fn deliver(
    letters: &[StoredDeadLetter],
    routed: Routed,
    sinks: &BTreeMap<String, Box<dyn Sink>>,
    shutdown: &Shutdown,
    timeout: Duration,
) -> Vec<Replayed> {
    let Routed { by_sink, mut failures } = routed;
    // Refused by a sink: under the session it was posted under, as `start` stores it.
    let again = |index: usize, sink: &str, reason: String, event: OutEvent| {
        let session_id = Some(event.session_id).filter(|sid| !sid.is_empty());
        DeadLetter { session_id, sink: None, ..letter_again(&letters[index], Stage::Sink, sink, reason, event.json) }
    };
    for (name, (events, owners)) in by_sink {
        let Some(sink) = sinks.get(&name) else {
            for (event, &index) in events.into_iter().zip(&owners) {
                failures[index].push(again(index, &name, format!("replay: the sink `{name}` is not in the config any more"), event));
            }
            continue;
        };
        let retry = Retry::new(Backoff::default(), shutdown.clone());
        // The sink retries until the deadline fires; an attempt under way
        // then still gets its own timeout, and this bounds even that.
        let answer = tokio::time::timeout(timeout + Duration::from_secs(5), sink.deliver(&events, retry)).await;
        match answer {
            Ok(Ok(delivery)) => {
                let mut events: Vec<Option<OutEvent>> = events.into_iter().map(Some).collect();
                for (at, reason) in delivery.rejected {
                    if let (Some(event), Some(&index)) = (events.get_mut(at).and_then(Option::take), owners.get(at)) {
                        failures[index].push(again(index, &name, reason, event));
                    }
                }
            }
            Ok(Err(_)) | Err(_) => {
                let reason = format!(
                    "replay: the sink `{name}` did not acknowledge within {} (see the log for its errors)",
                    humantime::format_duration(timeout)
                );
                for (event, &index) in events.into_iter().zip(&owners) {
                    failures[index].push(again(index, &name, reason.clone(), event));
                }
            }
        }
    }
    letters.iter().zip(failures).map(|(letter, failures)| Replayed { id: letter.id, failures }).collect()
}
