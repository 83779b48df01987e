//! Sources: where events come from, each with a cursor that says how far
//! ferry has got.
//!
//! A source emits [`SourceRecord`]s in order. Each carries the position just
//! past it; the pipeline commits a record's position only once the record
//! and everything before it are delivered or dead-lettered. A source never
//! drops input it cannot parse: it emits it as [`Invalid`] so that it is
//! dead-lettered in order with its neighbours.

pub mod file;
pub mod teleport;

use crate::config::{ConfigError, Context};
use crate::event::Event;
use crate::shutdown::Shutdown;
use crate::state::State;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One thing a source read, with the cursor just past it.
#[derive(Debug)]
pub struct SourceRecord {
    /// What was read.
    pub item: Item,
    /// The source's cursor just past this record.
    pub position: Position,
}

/// A source's cursor as it travels with each record. Only the position of a
/// batch's last record is ever committed, so a source hands out its cursor
/// as it keeps it ([`Position::File`], [`Position::Teleport`]), its parts
/// shared: a copy per record costs a few reference counts and no
/// allocation, and the text is written once per committed batch.
#[derive(Debug, Clone)]
pub enum Position {
    /// Already the text stored.
    Text(String),
    /// The file source's position, written as text only when committed.
    File(file::FileCursor),
    /// The Teleport source's cursor, written as text only when committed.
    Teleport(teleport::cursor::PositionSnapshot),
}

impl Position {
    /// The text stored for the position.
    pub fn encode(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Position::Text(text) => std::borrow::Cow::Borrowed(text),
            Position::File(cursor) => std::borrow::Cow::Owned(cursor.to_text()),
            Position::Teleport(snapshot) => std::borrow::Cow::Owned(snapshot.cursor().encode()),
        }
    }
}

impl Default for Position {
    fn default() -> Position {
        Position::Text(String::new())
    }
}

impl From<String> for Position {
    fn from(text: String) -> Position {
        Position::Text(text)
    }
}

impl PartialEq<&str> for Position {
    fn eq(&self, other: &&str) -> bool {
        self.encode() == *other
    }
}

/// What a source read.
#[derive(Debug)]
pub enum Item {
    /// An event.
    Event(Event),
    /// Input that is not an event, for the dead-letter table.
    Invalid(Invalid),
    /// Nothing to forward, but the cursor moved (past skipped input, to a
    /// new search window, at the end of a session recording).
    Progress,
}

/// Input that could not be read as an event.
#[derive(Debug)]
pub struct Invalid {
    /// Where it starts in the source.
    pub position: String,
    /// Why it is not an event, on one line.
    pub reason: String,
    /// The raw bytes, kept for the dead-letter table.
    pub raw: Vec<u8>,
}

/// A source failed in a way it cannot recover from by itself.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: {message}")]
pub struct SourceError {
    /// The source's name (its cursor key).
    pub source_name: String,
    /// What went wrong.
    pub message: String,
}

/// The event source, `[source.KIND]`; exactly one per ferry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// `[source.file]`: JSON Lines from a file, following appends.
    File(file::FileSourceConfig),
    /// `[source.teleport]`: Teleport's audit log and session recordings.
    Teleport(Box<teleport::TeleportSourceConfig>),
}

/// A configured source, ready to run.
pub enum Source {
    /// JSON Lines from a file.
    File(file::FileSource),
    /// Teleport's audit log and session recordings over gRPC.
    Teleport(Box<teleport::TeleportSource>),
}

impl Source {
    /// Builds the source from its own table, which sits at the dotted `key`
    /// of the config file (`source.teleport`, or `teleport` for an event
    /// handler's file): errors name its keys from there. Its starting
    /// position is read later, from the state, by [`Source::run`]'s caller.
    pub fn build(config: &SourceConfig, key: &str, ctx: &Context) -> Result<Source, ConfigError> {
        match config {
            SourceConfig::File(file) => Ok(Source::File(file::FileSource::build(file, ctx)?)),
            SourceConfig::Teleport(teleport) => {
                Ok(Source::Teleport(Box::new(teleport::TeleportSource::build(teleport, ctx, &format!("{key}."))?)))
            }
        }
    }

    /// Sends the source's session recordings to `sink` (none: the default
    /// sink). Which sink that is depends on the sinks configured, so the
    /// code that assembles the parts settles it, not the source.
    pub fn send_sessions_to(&mut self, sink: Option<Arc<str>>) {
        if let Source::Teleport(source) = self {
            source.send_sessions_to(sink);
        }
    }

    /// Reads slot `slot`'s share of the input, of `slots` (`[leadership]
    /// slots`; only the Teleport source's export engine shares).
    pub fn take_slot(&mut self, slot: u32, slots: u32) {
        if let Source::Teleport(source) = self {
            source.take_slot(slot, slots);
        }
    }

    /// The name this source's cursor and dead letters are stored under.
    pub fn name(&self) -> &str {
        match self {
            Source::File(source) => source.name(),
            Source::Teleport(source) => source.name(),
        }
    }

    /// Settles what must be fixed in the state before the first run (the
    /// Teleport source's start time).
    pub async fn prepare(&mut self, state: &State) -> Result<(), ConfigError> {
        match self {
            Source::File(_) => Ok(()),
            Source::Teleport(source) => source.prepare(state).await,
        }
    }

    /// Reads from `position` (the committed cursor, or the start when none)
    /// and sends records until the input ends, `shutdown` fires or the
    /// receiver goes away.
    pub async fn run(self, position: Option<String>, out: mpsc::Sender<SourceRecord>, shutdown: Shutdown) -> Result<(), SourceError> {
        match self {
            Source::File(source) => source.run(position, out, shutdown).await,
            Source::Teleport(source) => source.run(position, out, shutdown).await,
        }
    }
}
