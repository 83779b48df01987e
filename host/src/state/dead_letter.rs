use serde::Serialize;

/// Where in ferry an event was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The source could not read it as an event (malformed JSON).
    Source,
    /// A plugin failed on it or on its batch.
    Plugin,
    /// A sink refused it for good (for example HTTP 400).
    Sink,
}

impl Stage {
    /// The name stored in the database and used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Plugin => "plugin",
            Stage::Sink => "sink",
        }
    }
}

/// An event ferry could not deliver, with why and where it stopped.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The source it came from (its cursor name).
    pub source: String,
    /// Its position in the source, when it has one of its own.
    pub position: Option<String>,
    /// Its id, when it could be read.
    pub event_id: Option<String>,
    /// The stage that gave up.
    pub stage: Stage,
    /// The plugin or sink (or source) name.
    pub component: String,
    /// Why, on one line.
    pub reason: String,
    /// The event's bytes as they were when it failed.
    pub payload: Vec<u8>,
    /// The session it was sent under: for a recording's event the recording
    /// it was streamed from (a `print` event has no `sid` of its own), so
    /// that a replay sends it to `<session-url>.<this>.log` again. `None`
    /// for events outside a session.
    pub session_id: Option<String>,
    /// The sink the source meant it for (a recording's own sink), when it
    /// failed before a sink: a replay through the chain sends it there
    /// again. `None` for the default sink and for sink letters (their
    /// `component` names the sink).
    pub sink: Option<String>,
}

/// A dead letter read back from the database.
#[derive(Debug, Clone, Serialize)]
pub struct StoredDeadLetter {
    /// Row id, increasing.
    pub id: i64,
    /// When it was written (UTC, RFC 3339).
    pub created_at: String,
    /// See [`DeadLetter::source`].
    pub source: String,
    /// See [`DeadLetter::position`].
    pub position: Option<String>,
    /// See [`DeadLetter::event_id`].
    pub event_id: Option<String>,
    /// See [`DeadLetter::stage`].
    pub stage: String,
    /// See [`DeadLetter::component`].
    pub component: String,
    /// See [`DeadLetter::reason`].
    pub reason: String,
    /// See [`DeadLetter::payload`].
    #[serde(serialize_with = "as_text")]
    pub payload: Vec<u8>,
    /// See [`DeadLetter::session_id`]; `None` also for letters stored before
    /// ferry recorded it.
    pub session_id: Option<String>,
    /// See [`DeadLetter::sink`].
    pub sink: Option<String>,
}

fn as_text<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&String::from_utf8_lossy(bytes))
}

/// A source's cursor as stored, for `ferry status`.
#[derive(Debug, Clone, Serialize)]
pub struct StoredCursor {
    /// The source's name (`file:PATH`, `teleport`).
    pub source: String,
    /// The source's own cursor text.
    pub position: String,
    /// When it was last committed (UTC, RFC 3339).
    pub updated_at: String,
    /// The newest event time of the batches committed (UTC, RFC 3339), if
    /// any had one.
    pub newest_event_time: Option<String>,
}

/// Which dead letters a command is about: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this stage (`source`, `plugin`, `sink`).
    pub stage: Option<String>,
    /// Only this plugin, sink or source.
    pub component: Option<String>,
    /// Only these row ids (none: any).
    pub ids: Vec<i64>,
    /// At most this many, oldest first.
    pub limit: Option<u32>,
}

impl Filter {
    /// Whether it names nothing in particular (every dead letter).
    pub fn is_everything(&self) -> bool {
        self.stage.is_none() && self.component.is_none() && self.ids.is_empty() && self.limit.is_none()
    }

    /// Adds the `WHERE` clause to `query`, of either backend.
    pub(super) fn push_where<DB: sqlx::Database>(&self, query: &mut sqlx::QueryBuilder<DB>)
    where
        for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let mut word = " WHERE ";
        if let Some(stage) = &self.stage {
            query.push(word).push("stage = ").push_bind(stage.clone());
            word = " AND ";
        }
        if let Some(component) = &self.component {
            query.push(word).push("component = ").push_bind(component.clone());
            word = " AND ";
        }
        if !self.ids.is_empty() {
            query.push(word).push("id IN (");
            let mut ids = query.separated(", ");
            for id in &self.ids {
                ids.push_bind(*id);
            }
            query.push(")");
        }
    }
}
