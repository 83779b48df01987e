-- Which database this is: a random id written when ferry first opens it.
-- The marker file beside the database (`ferry.marker`) holds the same id, so
-- that a database deleted or replaced while ferry was stopped is refused
-- instead of silently starting afresh (a Teleport source would start at
-- "now" and skip everything in between).
CREATE TABLE identity (
    only       INTEGER PRIMARY KEY NOT NULL CHECK (only = 1),
    id         TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
