-- Where each source has got to. `position` is the source's own cursor text
-- (a byte offset for files, a page key and event id for Teleport). It moves
-- only after every event before it was acknowledged by its sinks or
-- written to dead_letters.
CREATE TABLE cursors (
    source     TEXT PRIMARY KEY NOT NULL,
    position   TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Progress through each session recording, so that a restart resumes a
-- session from the next event index instead of from its start.
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY NOT NULL,
    next_index INTEGER NOT NULL DEFAULT 0,
    state      TEXT NOT NULL DEFAULT 'pending',
    attempts   INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Events ferry could not deliver, with why and where they stopped, kept
-- until an operator looks at them.
CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    source     TEXT NOT NULL,
    position   TEXT,
    event_id   TEXT,
    stage      TEXT NOT NULL,
    component  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    payload    BLOB NOT NULL
);

CREATE INDEX dead_letters_by_event ON dead_letters (event_id);
