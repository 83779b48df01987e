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
}

fn as_text<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&String::from_utf8_lossy(bytes))
}
