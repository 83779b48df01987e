//! `ferry state copy FROM TO`: moving a deployment's state between SQLite
//! and PostgreSQL (either way) without losing or re-sending an event.
//!
//! Everything a start resumes from is copied in one transaction on the
//! target: the cursors (with their start times, commit times and newest
//! event times), where each position came from, the dead letters (in their
//! order; their ids are the target's own) and the plugin chain that last
//! ran. Nothing may move the source meanwhile: a SQLite source is held by
//! its storage lock (refused, naming the holder, while a ferry runs on it);
//! a PostgreSQL source is refused while an instance holds its lease, and its
//! lease is taken for the copy, so that no instance starts in the middle.
//! The target must hold no position and no dead letter yet.

use super::backend::{Backend, Location, on_backend};
use super::{Filter, State, StateError, StoredCursor, StoredDeadLetter};

/// What a copy moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Cursors (and start times) copied.
    pub cursors: usize,
    /// Dead letters copied.
    pub dead_letters: usize,
    /// Plugins in the chain that last ran.
    pub plugins: usize,
}

/// The holder name the copy takes a PostgreSQL source's lease under.
const COPY_HOLDER: &str = "ferry state copy";

/// Copies the state at `from` into the empty state at `to`.
pub async fn copy(from: &Location, to: &Location) -> Result<Copied, StateError> {
    if from == to {
        return Err(StateError::at(to, "is the state being copied; name another place to copy it to".into()));
    }
    let source = match from {
        Location::Sqlite(path) => {
            if !path.exists() {
                return Err(StateError::at(from, "no state database here: nothing to copy".into()));
            }
            State::open_exclusive(path).await?
        }
        Location::Postgres(_) => State::open_at(from).await?,
    };
    let held = source.hold_still(COPY_HOLDER).await?;
    let target = State::open_to_write(to).await?;
    let copied = copy_between(&source, &target).await;
    if held.is_some() {
        let _ = source.release_all(COPY_HOLDER).await;
    }
    target.close().await;
    source.close().await;
    copied
}

async fn copy_between(source: &State, target: &State) -> Result<Copied, StateError> {
    if !target.cursors().await?.is_empty() || target.dead_letter_count().await? > 0 {
        return Err(StateError::at(target.location(), "already holds positions or dead letters; copy into an empty state".into()));
    }
    let cursors = source.cursors().await?;
    let origins = source.position_origins().await?;
    let letters = source.find_dead_letters(&Filter::default()).await?;
    let chain = source.plugin_chain().await?;
    target.restore(&cursors, &origins, &letters).await?;
    target.remember_plugin_chain(&chain).await?;
    Ok(Copied { cursors: cursors.len(), dead_letters: letters.len(), plugins: chain.len() })
}

impl State {
    /// Writes cursors as stored elsewhere, their origins and dead letters,
    /// in one transaction.
    async fn restore(
        &self,
        cursors: &[StoredCursor],
        origins: &[super::PositionOrigin],
        letters: &[StoredDeadLetter],
    ) -> Result<(), StateError> {
        let fence = self.fence();
        let done: Result<(), sqlx::Error> = on_backend!(self, |pool| async {
            let mut tx = Backend::begin(pool, fence).await?;
            for cursor in cursors {
                sqlx::query("INSERT INTO cursors (source, position, updated_at, newest_event_time) VALUES ($1, $2, $3, $4)")
                    .bind(&cursor.source)
                    .bind(&cursor.position)
                    .bind(&cursor.updated_at)
                    .bind(&cursor.newest_event_time)
                    .execute(&mut *tx)
                    .await?;
            }
            for origin in origins {
                sqlx::query("INSERT INTO position_origins (source, kind, origin, at) VALUES ($1, $2, $3, $4)")
                    .bind(&origin.source)
                    .bind(&origin.kind)
                    .bind(&origin.from)
                    .bind(&origin.at)
                    .execute(&mut *tx)
                    .await?;
            }
            for letter in letters {
                sqlx::query(
                    "INSERT INTO dead_letters (created_at, source, position, event_id, stage, component, reason, payload, session_id, sink)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&letter.created_at)
                .bind(&letter.source)
                .bind(&letter.position)
                .bind(&letter.event_id)
                .bind(&letter.stage)
                .bind(&letter.component)
                .bind(&letter.reason)
                .bind(&letter.payload)
                .bind(&letter.session_id)
                .bind(&letter.sink)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await);
        done.map_err(|err| self.error(err))
    }
}
