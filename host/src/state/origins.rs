//! Where each position came from, and the moves that change a position's
//! key: a Teleport position is keyed by cluster name; an older ferry keyed
//! it by the address it reached the cluster at, and the event handler kept
//! it in files. Each move is one transaction, so a crash leaves the old key
//! or the new one, never both or neither.

use super::backend::{Backend, now, on_backend};
use super::{State, StateError};
use serde::Serialize;

/// How a position began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// ferry started it (at `start-time`, or now).
    Own,
    /// Moved from the key an older ferry stored it under.
    Migrated {
        /// The old key, `teleport:<addr>`.
        from: String,
    },
    /// Taken over from the event handler's state folder.
    Imported {
        /// The folder, `<storage>/<host>_<port>`.
        from: String,
    },
}

impl Origin {
    fn kind(&self) -> &'static str {
        match self {
            Origin::Own => "own",
            Origin::Migrated { .. } => "migrated",
            Origin::Imported { .. } => "imported",
        }
    }

    fn from(&self) -> Option<&str> {
        match self {
            Origin::Own => None,
            Origin::Migrated { from } | Origin::Imported { from } => Some(from),
        }
    }
}

/// A stored origin, as `ferry status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionOrigin {
    /// The position's key.
    #[serde(skip)]
    pub source: String,
    /// `own`, `migrated` or `imported`.
    pub kind: String,
    /// The old key or the folder; none for `own`.
    pub from: Option<String>,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// A position taken over whole: the cursor (none when nothing was read
/// yet) and the start time, under `source`.
#[derive(Debug, Clone)]
pub struct TakeOver<'a> {
    /// The key it is stored under.
    pub source: &'a str,
    /// The cursor document, if any.
    pub position: Option<&'a str>,
    /// The start time fixed at the first run, if any.
    pub start_time: Option<&'a str>,
    /// Where it came from.
    pub origin: Origin,
}

/// The keys a source's position is stored under: its cursor and its start time.
fn keys(source: &str) -> [String; 2] {
    [source.to_owned(), format!("{source}#start-time")]
}

impl State {
    /// Every origin recorded, by source.
    pub async fn position_origins(&self) -> Result<Vec<PositionOrigin>, StateError> {
        let sql = "SELECT source, kind, origin, at FROM position_origins ORDER BY source";
        let rows: Vec<(String, String, Option<String>, String)> =
            on_backend!(self, |pool| sqlx::query_as(sql).fetch_all(pool).await.map_err(|err| self.error(err)))?;
        Ok(rows.into_iter().map(|(source, kind, from, at)| PositionOrigin { source, kind, from, at }).collect())
    }

    /// Records that the position under `source` began as `origin`.
    pub async fn set_origin(&self, source: &str, origin: &Origin) -> Result<(), StateError> {
        let fence = self.fence();
        let done: Result<(), sqlx::Error> = on_backend!(self, |pool| async {
            let mut tx = Backend::begin(pool, fence).await?;
            sqlx::query(UPSERT_ORIGIN).bind(source).bind(origin.kind()).bind(origin.from()).bind(now()).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await);
        done.map_err(|err| self.error(err))
    }

    /// Whether anything is stored under `source` (its cursor or its start time).
    pub async fn has_position(&self, source: &str) -> Result<bool, StateError> {
        for key in keys(source) {
            if self.cursor(&key).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Moves the position stored under `from` (cursor, start time, dead
    /// letters) to `to`, which must hold none, and records the move.
    pub async fn move_position(&self, from: &str, to: &str) -> Result<(), StateError> {
        let fence = self.fence();
        let origin = Origin::Migrated { from: from.to_owned() };
        let done: Result<(), sqlx::Error> = on_backend!(self, |pool| async {
            let mut tx = Backend::begin(pool, fence).await?;
            for (old, new) in keys(from).iter().zip(keys(to)) {
                sqlx::query("UPDATE cursors SET source = $1 WHERE source = $2").bind(&new).bind(old).execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE dead_letters SET source = $1 WHERE source = $2").bind(to).bind(from).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM position_origins WHERE source = $1").bind(from).execute(&mut *tx).await?;
            sqlx::query(UPSERT_ORIGIN).bind(to).bind(origin.kind()).bind(origin.from()).bind(now()).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await);
        done.map_err(|err| self.error(err))
    }

    /// Stores a position taken over whole, replacing whatever was stored
    /// under its key, and records where it came from.
    pub async fn take_over(&self, take: &TakeOver<'_>) -> Result<(), StateError> {
        let fence = self.fence();
        let [cursor_key, start_key] = keys(take.source);
        let done: Result<(), sqlx::Error> = on_backend!(self, |pool| async {
            let mut tx = Backend::begin(pool, fence).await?;
            for (key, value) in [(&cursor_key, take.position), (&start_key, take.start_time)] {
                sqlx::query("DELETE FROM cursors WHERE source = $1").bind(key).execute(&mut *tx).await?;
                if let Some(value) = value {
                    sqlx::query("INSERT INTO cursors (source, position, updated_at) VALUES ($1, $2, $3)")
                        .bind(key)
                        .bind(value)
                        .bind(now())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query(UPSERT_ORIGIN)
                .bind(take.source)
                .bind(take.origin.kind())
                .bind(take.origin.from())
                .bind(now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await);
        done.map_err(|err| self.error(err))
    }
}

const UPSERT_ORIGIN: &str = "INSERT INTO position_origins (source, kind, origin, at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (source) DO UPDATE SET kind = excluded.kind, origin = excluded.origin, at = excluded.at";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DeadLetter, Stage};

    #[tokio::test]
    async fn a_move_takes_the_cursor_the_start_time_and_the_dead_letters_along() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("ferry.db")).await.expect("open");
        state.commit_cursor("teleport:auth:3025", "{}").await.expect("commit");
        state.commit_cursor("teleport:auth:3025#start-time", "2024-05-01T00:00:00Z").await.expect("commit");
        let letter = DeadLetter {
            source: "teleport:auth:3025".into(),
            position: None,
            event_id: None,
            stage: Stage::Source,
            component: "teleport".into(),
            reason: "r".into(),
            payload: b"{}".to_vec(),
            session_id: None,
            sink: None,
        };
        state.add_dead_letters(&[letter]).await.expect("letter");
        state.move_position("teleport:auth:3025", "teleport:example").await.expect("move");
        assert!(!state.has_position("teleport:auth:3025").await.expect("read"));
        assert_eq!(state.cursor("teleport:example").await.expect("read").as_deref(), Some("{}"));
        assert_eq!(state.cursor("teleport:example#start-time").await.expect("read").as_deref(), Some("2024-05-01T00:00:00Z"));
        assert_eq!(state.dead_letters(10).await.expect("read")[0].source, "teleport:example");
        let origins = state.position_origins().await.expect("origins");
        assert_eq!(
            origins.iter().map(|o| (o.source.as_str(), o.kind.as_str(), o.from.as_deref())).collect::<Vec<_>>(),
            [("teleport:example", "migrated", Some("teleport:auth:3025"))]
        );
    }

    #[tokio::test]
    async fn a_take_over_replaces_what_was_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(&dir.path().join("ferry.db")).await.expect("open");
        state.commit_cursor("teleport:c", "old").await.expect("commit");
        state.commit_cursor("teleport:c#start-time", "2020-01-01T00:00:00Z").await.expect("commit");
        let take = TakeOver {
            source: "teleport:c",
            position: None,
            start_time: Some("2024-05-01T00:00:00Z"),
            origin: Origin::Imported { from: "/s/a_1".into() },
        };
        state.take_over(&take).await.expect("take over");
        assert_eq!(state.cursor("teleport:c").await.expect("read"), None, "no cursor taken over: none kept");
        assert_eq!(state.cursor("teleport:c#start-time").await.expect("read").as_deref(), Some("2024-05-01T00:00:00Z"));
        assert_eq!(state.position_origins().await.expect("origins")[0].kind, "imported");
    }
}
